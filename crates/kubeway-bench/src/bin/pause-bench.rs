//! `pause-bench`: what a reader that stops reading costs the other connections of the same
//! `kubeway forward` (the binary). Downloads through the forward for a while to get a
//! baseline, then opens one download whose reader pauses for `--pause` seconds in the middle,
//! and measures the other connections' throughput during the pause; finally checks that the
//! paused reader received every byte, then a clean end. Prints numbers, never a test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kubeway_bench::workload::pattern_byte;
use kubeway_lab::{Lab, LabSpec};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

/// Measures the blast radius of a paused reader on `kubeway forward`.
#[derive(Debug, Parser)]
#[command(name = "pause-bench", version)]
struct Args {
    /// Seconds the reader pauses.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pause: u64,
    /// MiB each of the other connections downloads.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    chunk_mib: u64,
    /// The kubeway binary (default: `kubeway` next to this program).
    #[arg(long)]
    kubeway: Option<PathBuf>,
}

/// Downloads `n` bytes of the blob's source, checking the first and last byte of every read;
/// returns how many arrived before a clean end.
async fn download(addr: SocketAddr, n: u64, pause: Option<(u64, Duration)>) -> anyhow::Result<u64> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("source {n}\n").as_bytes()).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    let mut paused = pause.is_none();
    loop {
        if let (false, Some((at, d))) = (paused, pause)
            && got >= at
        {
            paused = true;
            tokio::time::sleep(d).await;
        }
        let k = s.read(&mut buf).await?;
        if k == 0 {
            return Ok(got);
        }
        ensure!(
            buf[0] == pattern_byte(got) && buf[k - 1] == pattern_byte(got + k as u64 - 1),
            "wrong bytes at {got}"
        );
        got += k as u64;
    }
}

/// MiB/s of back-to-back downloads of `chunk` bytes for `window`.
async fn throughput(addr: SocketAddr, chunk: u64, window: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut moved = 0u64;
    while start.elapsed() < window {
        let got = download(addr, chunk, None).await?;
        ensure!(
            got == chunk,
            "a download ended after {got} of {chunk} bytes"
        );
        moved += got;
    }
    Ok(moved as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let kubeway = match a.kubeway {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("the program's folder")?
            .join("kubeway"),
    };
    let dir = tempfile::tempdir()?;
    let lab = Lab::start(LabSpec::default()).await?;
    let kc = dir.path().join("kubeconfig");
    lab.write_kubeconfig(&kc)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kc)?,
            &Default::default(),
        )
        .await?,
    )?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let blob: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "blob", "labels": {"app": "blob"}},
        "spec": {"containers": [{"name": "blob", "image": "kubeway.local/blob",
                                  "ports": [{"containerPort": 9001}]}]},
    }))?;
    pods.create(&PostParams::default(), &blob).await?;
    if !lab
        .wait_ready("default", "app=blob", 1, Duration::from_secs(60))
        .await
    {
        bail!("the blob pod did not become ready");
    }
    let mut fw = Command::new(&kubeway)
        .args([
            "forward",
            "-o",
            "json",
            "--address",
            "127.0.0.1",
            "--kubeconfig",
        ])
        .arg(&kc)
        .args(["pod/blob", ":9001"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", kubeway.display()))?;
    let mut lines = BufReader::new(fw.stdout.take().context("stdout")?).lines();
    let addr: SocketAddr = loop {
        let line = lines.next_line().await?.context("forward ended")?;
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == "forwarding" {
            break v["local"].as_str().context("local")?.parse()?;
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let chunk = a.chunk_mib << 20;
    let pause = Duration::from_secs(a.pause);
    eprintln!(
        "baseline: back-to-back {} MiB downloads for 10 s",
        a.chunk_mib
    );
    let baseline = throughput(addr, chunk, Duration::from_secs(10)).await?;
    let total = 1u64 << 30;
    eprintln!(
        "a reader pauses {}s after 16 MiB of a 1 GiB download",
        a.pause
    );
    let paused = tokio::spawn(download(addr, total, Some((16 << 20, pause))));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = throughput(addr, chunk, pause.saturating_sub(Duration::from_secs(4))).await?;
    let got = paused.await??;
    println!(
        "kubeway forward pod/blob (lab on loopback), a reader paused {}s:",
        a.pause
    );
    println!("  other connections before:  {baseline:.1} MiB/s");
    println!(
        "  other connections during:  {during:.1} MiB/s ({:.2}x)",
        during / baseline
    );
    println!(
        "  the paused reader:         {} of {} bytes, then a clean end{}",
        got,
        total,
        if got == total { "" } else { " (BYTES MISSING)" }
    );
    let _ = fw.start_kill();
    let _ = fw.wait().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), lab.shutdown()).await;
    Ok(())
}
