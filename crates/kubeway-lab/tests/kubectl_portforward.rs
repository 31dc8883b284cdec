//! Unmodified `kubectl port-forward` against the lab, over the WebSocket-tunnelled SPDY transport
//! (kubectl's default) and over legacy SPDY (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`): 200
//! concurrent connections with payloads from 1 byte to 8 MiB, every byte hash-checked in both
//! directions, each request half-closed before its response is read.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Fixture, require};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Payload sizes: log-uniform from 1 B to 8 MiB, both ends included, deterministic.
fn sizes(n: usize) -> Vec<usize> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let max = (8u64 << 20) as f64;
    let mut out: Vec<usize> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            max.powf(u).round().max(1.0) as usize
        })
        .collect();
    out[0] = 1;
    out[1] = 8 << 20;
    out
}

fn payload(seed: usize, len: usize) -> Vec<u8> {
    let mut x = (seed as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `data` and reads its echo back (exactly as many bytes: no half-close, which a container
/// runtime's port-forward does not pass on); returns the hash of what came back.
async fn echo_once(addr: SocketAddr, data: Vec<u8>) -> std::io::Result<[u8; 32]> {
    let s = TcpStream::connect(addr).await?;
    let (mut rd, mut wr) = s.into_split();
    let len = data.len();
    let writer = tokio::spawn(async move { wr.write_all(&data).await.map(|()| wr) });
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < len {
        let n = rd.read(&mut buf[..(len - got).min(64 * 1024)]).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("EOF after {got} of {len} bytes"),
            ));
        }
        h.update(&buf[..n]);
        got += n;
    }
    drop(writer.await.map_err(std::io::Error::other)??);
    Ok(h.finalize().into())
}

async fn start_forward(f: &Fixture, pod: &str, websockets: bool) -> (Child, SocketAddr) {
    let mut child = Command::new("kubectl")
        .args([
            "port-forward",
            &format!("pod/{pod}"),
            ":9000",
            "--address",
            "127.0.0.1",
        ])
        .env("KUBECONFIG", &f.kubeconfig)
        .env(
            "KUBECTL_PORT_FORWARD_WEBSOCKETS",
            if websockets { "true" } else { "false" },
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl port-forward starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("kubectl reports the forward in time")
        .expect("read")
        .expect("a line");
    // "Forwarding from 127.0.0.1:41234 -> 9000"
    let addr = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected kubectl output: {line}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

async fn two_hundred_connections(websockets: bool) {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let f = Fixture::sample().await;
    let pods: Api<Pod> = Api::namespaced(f.client().await, "default");
    let echo = pods
        .list(&ListParams::default().labels("app=echo"))
        .await
        .expect("list")
        .items[0]
        .metadata
        .name
        .clone()
        .expect("name");
    let (mut child, addr) = start_forward(&f, &echo, websockets).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, len) in sizes(200).into_iter().enumerate() {
        tasks.spawn(async move {
            let data = payload(i, len);
            let want: [u8; 32] = Sha256::digest(&data).into();
            let got = echo_once(addr, data).await;
            (i, len, got.map(|g| g == want))
        });
    }
    let mut bad = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (i, len, ok) = r.expect("task");
        match ok {
            Ok(true) => {}
            Ok(false) => bad.push(format!("#{i} ({len} B): bytes differ")),
            Err(e) => bad.push(format!("#{i} ({len} B): {e}")),
        }
    }
    let _ = child.kill().await;
    assert!(
        bad.is_empty(),
        "{} of 200 connections failed: {bad:?}",
        bad.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_over_websocket_tunnelled_spdy() {
    two_hundred_connections(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_over_legacy_spdy() {
    two_hundred_connections(false).await;
}
