//! Shared helpers for kubeway-kube's integration tests: a lab on loopback with its kubeconfig and
//! sample pods, deterministic payloads, and echo exchanges checked by hash.

#![allow(dead_code)]

pub mod fake_api;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kubeway_kube::{
    Cluster, ConnectOptions, ForwardOptions, PfStream, PortForwarder, Transport, connect,
};
use kubeway_lab::{Lab, LabSpec};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The echo pod's port (TCP echo, half-close aware; "RESET" first resets the connection).
pub const ECHO_PORT: u16 = 9000;
/// The blob pod's port (`source N\n`, `sink\n`).
pub const BLOB_PORT: u16 = 9001;

/// Labs take turns within a test binary: two labs in one process give their pods the same
/// loopback addresses, and the machine has few cores.
static LAB_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A lab with the sample app, its kubeconfig on disk, and a connected [`Cluster`].
pub struct Fixture {
    pub lab: Lab,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub cluster: Cluster,
    pub echo: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Fixture {
    pub async fn sample() -> Self {
        let turn = LAB_TURN.lock().await;
        let lab = Lab::start(LabSpec::default().with_sample())
            .await
            .expect("lab starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        lab.write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        assert!(
            lab.wait_ready("default", "app=echo", 1, Duration::from_secs(30))
                .await,
            "echo pod ready"
        );
        let cluster = connect(&ConnectOptions {
            kubeconfig: Some(kubeconfig.clone()),
            ..Default::default()
        })
        .await
        .expect("connects to the lab");
        assert!(
            cluster.server.contains("127.0.0.1"),
            "the lab listens on loopback: {}",
            cluster.server
        );
        let echo = pod_named(&cluster, "app=echo").await;
        Self {
            lab,
            dir,
            kubeconfig,
            cluster,
            echo,
            _turn: turn,
        }
    }

    pub fn forwarder(&self, pod: &str, transport: Transport) -> PortForwarder {
        PortForwarder::new(
            &self.cluster,
            "default",
            pod,
            ForwardOptions::default().with_transport(transport),
        )
    }

    /// Creates a `kubeway.local/blob` pod and waits until it is ready.
    pub async fn blob_pod(&self) -> String {
        let pods: Api<Pod> = Api::namespaced(self.cluster.client.clone(), "default");
        let blob: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "blob", "labels": {"app": "blob"}},
            "spec": {"containers": [{
                "name": "blob", "image": "kubeway.local/blob",
                "ports": [{"name": "blob", "containerPort": BLOB_PORT}],
            }]},
        }))
        .expect("pod manifest");
        pods.create(&Default::default(), &blob)
            .await
            .expect("blob pod created");
        assert!(
            self.lab
                .wait_ready("default", "app=blob", 1, Duration::from_secs(30))
                .await,
            "blob pod ready"
        );
        "blob".into()
    }
}

/// The first pod matching `selector` in `default`.
pub async fn pod_named(cluster: &Cluster, selector: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    pods.list(&ListParams::default().labels(selector))
        .await
        .expect("pods listed")
        .items
        .into_iter()
        .find_map(|p| p.metadata.name)
        .expect("a pod matches")
}

/// SplitMix64: a small deterministic PRNG, so every run sends the same bytes.
#[derive(Clone)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `n` payload sizes, log-uniform from 1 byte to 8 MiB (both ends included), whose total stays
/// at most `budget` bytes.
pub fn sizes(seed: u64, n: usize, budget: usize) -> Vec<usize> {
    const MAX: usize = 8 << 20;
    let mut rng = Prng::new(seed);
    let mut out: Vec<usize> = (0..n)
        .map(|_| {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            ((MAX as f64).powf(u).round() as usize).clamp(1, MAX)
        })
        .collect();
    if n >= 2 {
        out[0] = 1;
        out[1] = MAX;
    }
    // Trim the largest until the total fits.
    while out.iter().sum::<usize>() > budget {
        if let Some(m) = out.iter_mut().skip(2).max() {
            *m /= 2;
        } else {
            break;
        }
    }
    out
}

/// What one echo exchange saw.
#[derive(Debug)]
pub struct Echoed {
    pub sent: usize,
    pub sent_hash: [u8; 32],
    pub received: usize,
    pub received_hash: [u8; 32],
}

impl Echoed {
    pub fn exact(&self) -> bool {
        self.sent == self.received && self.sent_hash == self.received_hash
    }
}

/// Writes `len` deterministic bytes (seeded by `seed`) while reading the echo. With
/// `half_close`, shuts the write side down and reads to EOF; otherwise reads exactly `len` bytes
/// (for `v4.channel.k8s.io`, which cannot half-close). Both directions are hashed.
pub async fn echo_exchange(
    stream: PfStream,
    seed: u64,
    len: usize,
    half_close: bool,
) -> std::io::Result<Echoed> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = async move {
        let mut rng = Prng::new(seed);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len());
            rng.fill(&mut buf[..n]);
            h.update(&buf[..n]);
            wr.write_all(&buf[..n]).await?;
            left -= n;
        }
        if half_close {
            wr.shutdown().await?;
        } else {
            wr.flush().await?;
        }
        std::io::Result::Ok((h.finalize().into(), wr))
    };
    let reader = async move {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        loop {
            let want = if half_close {
                buf.len()
            } else {
                (len - got).min(buf.len())
            };
            if want == 0 {
                break;
            }
            let n = rd.read(&mut buf[..want]).await?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            got += n;
        }
        std::io::Result::Ok((got, h.finalize().into(), rd))
    };
    let (w, r) = tokio::join!(writer, reader);
    let (sent_hash, _wr) = w?;
    let (received, received_hash, _rd) = r?;
    Ok(Echoed {
        sent: len,
        sent_hash,
        received,
        received_hash,
    })
}
