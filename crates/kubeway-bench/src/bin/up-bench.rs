//! `up-bench`: how long `kubeway up` (the binary) takes to serve N Services of one namespace,
//! how long a Service created afterwards takes to answer, and what `up` costs while idle
//! (CPU from /proc). One lab on loopback; a program that prints numbers, never a test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use kubeway_lab::{Lab, LabSpec};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

/// Times `kubeway up` over many Services and measures its idle CPU.
#[derive(Debug, Parser)]
#[command(name = "up-bench", version)]
struct Args {
    /// Services to create before `up` starts.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=2000))]
    services: u32,
    /// Seconds of idle CPU measurement.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    idle_seconds: u64,
    /// The kubeway binary (default: `kubeway` next to this program).
    #[arg(long)]
    kubeway: Option<PathBuf>,
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) of `pid` so far.
fn cpu_seconds(pid: u32, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

async fn get(addr: SocketAddr) -> bool {
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
    else {
        return false;
    };
    if s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await,
        Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 200")
    )
}

fn service(name: &str) -> anyhow::Result<Service> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))?)
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
    let lab = Lab::start(LabSpec::default().with_sample()).await?;
    let kc = dir.path().join("kubeconfig");
    lab.write_kubeconfig(&kc)?;
    if !lab
        .wait_ready("default", "app=web", 2, Duration::from_secs(60))
        .await
    {
        bail!("the sample's web pods did not become ready");
    }
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kc)?,
            &Default::default(),
        )
        .await?,
    )?;
    let svcs: Api<Service> = Api::namespaced(client, "default");
    for i in 0..a.services {
        svcs.create(&PostParams::default(), &service(&format!("svc-{i:04}"))?)
            .await?;
    }
    let total = a.services as usize + 3; // the sample's web, web-lb and echo
    eprintln!(
        "{} Services in namespace default; starting kubeway up",
        total
    );
    let started = Instant::now();
    let mut up = Command::new(&kubeway)
        .args(["up", "-n", "default", "-o", "json", "--kubeconfig"])
        .arg(&kc)
        .env("KUBEWAY_STATE_DIR", dir.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", kubeway.display()))?;
    let pid = up.id().context("up's pid")?;
    let mut lines = BufReader::new(up.stdout.take().context("stdout")?).lines();
    let mut services = 0usize;
    let mut last_addr = None;
    loop {
        let Some(line) = lines.next_line().await? else {
            bail!("kubeway up ended before it was ready");
        };
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == "service" {
            services += 1;
            last_addr = v["ports"][0]["local"]
                .as_str()
                .and_then(|s| s.parse::<SocketAddr>().ok());
        }
        if v["event"] == "ready" {
            break;
        }
    }
    let ready = started.elapsed();
    let answered = match last_addr {
        Some(addr) if get(addr).await => started.elapsed(),
        _ => bail!("the last Service served does not answer"),
    };
    // A Service created now: how long until it answers.
    let created = Instant::now();
    svcs.create(&PostParams::default(), &service("late")?)
        .await?;
    let late = loop {
        let Some(line) = lines.next_line().await? else {
            bail!("kubeway up ended");
        };
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == "service" && v["name"] == "late" {
            let addr: SocketAddr = v["ports"][0]["local"]
                .as_str()
                .context("late's address")?
                .parse()?;
            while !get(addr).await {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            break created.elapsed();
        }
    };
    // Idle: nothing flows for a while.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let ticks = clock_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cpu_seconds(pid, ticks).context("up's CPU")?;
    let window = Duration::from_secs(a.idle_seconds);
    tokio::time::sleep(window).await;
    let after = cpu_seconds(pid, ticks).context("up's CPU")?;
    let idle = (after - before) / window.as_secs_f64() * 100.0;
    println!("kubeway up, {total} Services in one namespace (lab on loopback):");
    println!("  Services served:              {services}");
    println!(
        "  ready (all served):           {:.2} s",
        ready.as_secs_f64()
    );
    println!(
        "  the last one answering:       {:.2} s",
        answered.as_secs_f64()
    );
    println!(
        "  a new Service answering:      {:.2} s after it was created",
        late.as_secs_f64()
    );
    println!(
        "  idle CPU over {}s:             {idle:.2}% of one core",
        a.idle_seconds
    );
    let _ = up.start_kill();
    let _ = up.wait().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), lab.shutdown()).await;
    Ok(())
}
