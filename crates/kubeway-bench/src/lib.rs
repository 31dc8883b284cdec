//! The port-forward benchmark (issue 3): in one run, through one lab, it measures throughput,
//! sequential connection latency and concurrent correctness for raw loopback, kubeway's
//! transports and `kubectl port-forward`, and compares them. A program, not a test: nothing here
//! asserts on time.
//!
//! Three tokio runtimes stand for three processes: the lab and its pods (and the loopback
//! servers), kubeway's forwarder, and the client that drives the workloads. kubectl runs as a
//! real child process.

pub mod contenders;
pub mod report;
pub mod servers;
pub mod workload;

use std::time::Duration;

use anyhow::Context;
use contenders::{BLOB_PORT, Contender, Env, Pods};
use k8s_openapi::api::core::v1::Pod;
use kubeway_lab::{Lab, LabSpec};
use report::{ConfigSummary, ContenderResult, Environment, Report};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bytes per throughput transfer.
    pub bytes: u64,
    /// Also measure uploads (`sink`).
    pub upload: bool,
    /// Sequential short connections for latency.
    pub latency_connections: usize,
    /// Untimed connections before them.
    pub warmup_connections: usize,
    /// Concurrent connections.
    pub concurrent_connections: usize,
    /// Bytes each concurrent connection echoes.
    pub concurrent_bytes: usize,
    /// Which contenders, in order.
    pub contenders: Vec<Contender>,
    /// The kubectl program.
    pub kubectl: String,
    /// Worker threads of each runtime (pods, forwarder, client).
    pub threads: usize,
}

impl Config {
    /// The full run: 1 GiB, 1,000 sequential and 200 concurrent connections of 64 KiB.
    pub fn full() -> Self {
        Self {
            bytes: 1 << 30,
            upload: true,
            latency_connections: 1000,
            warmup_connections: 20,
            concurrent_connections: 200,
            concurrent_bytes: 64 << 10,
            contenders: Contender::ALL.to_vec(),
            kubectl: "kubectl".into(),
            threads: 2,
        }
    }

    /// A smoke run: 64 MiB and 200 sequential connections.
    pub fn quick() -> Self {
        Self {
            bytes: 64 << 20,
            latency_connections: 200,
            warmup_connections: 5,
            ..Self::full()
        }
    }

    fn summary(&self) -> ConfigSummary {
        ConfigSummary {
            bytes: self.bytes,
            upload: self.upload,
            latency_connections: self.latency_connections,
            warmup_connections: self.warmup_connections,
            concurrent_connections: self.concurrent_connections,
            concurrent_bytes: self.concurrent_bytes,
        }
    }

    /// Time allowed for one bulk transfer: at least two minutes, or 2 MiB/s.
    fn transfer_timeout(&self) -> Duration {
        Duration::from_secs(120.max(self.bytes / (2 << 20)))
    }
}

/// Parses `1GiB`, `64MiB`, `64KiB`, `1G`, `64M`, `64k` (all binary) or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 1GiB, 64MiB, 4096)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a usable size"))
}

fn runtime(name: &str, threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(format!("bench-{name}"))
        .enable_all()
        .build()
        .with_context(|| format!("building the {name} runtime"))
}

/// `kubectl version --client`, or why it cannot run.
fn kubectl_version(kubectl: &str) -> Result<String, String> {
    let out = std::process::Command::new(kubectl)
        .args(["version", "--client", "-o", "json"])
        .output()
        .map_err(|e| {
            format!("{kubectl} cannot be started ({e}); install kubectl or pass --kubectl PATH")
        })?;
    if !out.status.success() {
        return Err(format!(
            "{kubectl} version --client failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(v["clientVersion"]["gitVersion"]
        .as_str()
        .unwrap_or("unknown")
        .to_string())
}

/// Starts the lab with the sample app and a blob pod; returns the lab and where the pods are.
async fn start_lab(dir: &std::path::Path) -> anyhow::Result<(Lab, Pods)> {
    let lab = Lab::start(LabSpec::default().with_sample())
        .await
        .context("starting the lab")?;
    match prepare_lab(&lab, dir).await {
        Ok(pods) => Ok((lab, pods)),
        Err(e) => {
            let _ = tokio::time::timeout(Duration::from_secs(10), lab.shutdown()).await;
            Err(e)
        }
    }
}

async fn prepare_lab(lab: &Lab, dir: &std::path::Path) -> anyhow::Result<Pods> {
    let kubeconfig = dir.join("kubeconfig");
    lab.write_kubeconfig(&kubeconfig)
        .context("writing the lab's kubeconfig")?;
    let ns = "default".to_string();
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .context("the lab's kubeconfig")?,
    )?;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
    let blob: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bench-blob", "labels": {"app": "bench-blob"}},
        "spec": {"containers": [{
            "name": "blob", "image": "kubeway.local/blob",
            "ports": [{"name": "blob", "containerPort": BLOB_PORT}],
        }]},
    }))?;
    pods.create(&Default::default(), &blob)
        .await
        .context("creating the blob pod")?;
    for (sel, what) in [("app=echo", "echo"), ("app=bench-blob", "blob")] {
        anyhow::ensure!(
            lab.wait_ready(&ns, sel, 1, Duration::from_secs(30)).await,
            "the {what} pod did not become ready within 30 s"
        );
    }
    let echo = pods
        .list(&kube::api::ListParams::default().labels("app=echo"))
        .await
        .context("listing the echo pod")?
        .items
        .into_iter()
        .find_map(|p| p.metadata.name)
        .context("the sample app has no echo pod")?;
    Ok(Pods {
        kubeconfig,
        namespace: ns,
        echo,
        blob: "bench-blob".into(),
    })
}

/// Runs the benchmark. `progress` gets one line per step (stderr in the binary).
pub fn run(cfg: &Config, progress: &(dyn Fn(&str) + Sync)) -> anyhow::Result<Report> {
    let kubectl = if cfg.contenders.iter().any(|c| c.is_kubectl()) {
        Some(kubectl_version(&cfg.kubectl))
    } else {
        None
    };
    let pod_rt = runtime("pods", cfg.threads)?;
    let fwd_rt = runtime("forwarder", cfg.threads)?;
    let client_rt = runtime("client", cfg.threads)?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;

    progress("starting the lab");
    let (lab, pods) = pod_rt.block_on(start_lab(dir.path()))?;
    let env = Env {
        pods,
        pod_rt: pod_rt.handle().clone(),
        fwd_rt: fwd_rt.handle().clone(),
        kubectl: cfg.kubectl.clone(),
    };
    let results = client_rt.block_on(measure_all(cfg, &env, kubectl.as_ref(), progress));
    client_rt.shutdown_timeout(Duration::from_secs(2));
    fwd_rt.shutdown_timeout(Duration::from_secs(2));
    progress("stopping the lab");
    let stopped = pod_rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), lab.shutdown()).await });
    if stopped.is_err() {
        progress("the lab did not stop within 10 s; abandoning it");
    }
    pod_rt.shutdown_timeout(Duration::from_secs(2));

    let ratios = report::ratios(&results);
    let bar = report::bar(&results, &ratios, cfg.concurrent_connections);
    Ok(Report {
        config: cfg.summary(),
        environment: Environment {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kubectl: kubectl.and_then(Result::ok),
            bench_version: env!("CARGO_PKG_VERSION").into(),
        },
        contenders: results,
        ratios,
        bar,
    })
}

async fn measure_all(
    cfg: &Config,
    env: &Env,
    kubectl: Option<&Result<String, String>>,
    progress: &(dyn Fn(&str) + Sync),
) -> Vec<ContenderResult> {
    let upload = cfg.upload.then(|| workload::UploadPlan::new(cfg.bytes));
    let mut out = Vec::new();
    for &c in &cfg.contenders {
        let mut r = ContenderResult::new(c);
        if let (true, Some(Err(e))) = (c.is_kubectl(), kubectl) {
            r.unavailable = Some(e.clone());
            out.push(r);
            continue;
        }
        progress(&format!("{c}: starting"));
        match contenders::start(c, env).await {
            Ok(mut live) => {
                measure(cfg, env, &mut live, upload.as_ref(), &mut r, progress).await;
                r.notes.extend(live.stop().await);
            }
            Err(e) => r.failures.push(format!("start: {e:#}")),
        }
        out.push(r);
    }
    out
}

async fn measure(
    cfg: &Config,
    env: &Env,
    live: &mut contenders::Live,
    upload: Option<&workload::UploadPlan>,
    r: &mut ContenderResult,
    progress: &(dyn Fn(&str) + Sync),
) {
    let c = live.contender;
    let timeout = cfg.transfer_timeout();
    let per_op = Duration::from_secs(10);

    progress(&format!("{c}: download {} bytes", cfg.bytes));
    match tokio::time::timeout(timeout, workload::download(live.blob, cfg.bytes)).await {
        Ok(Ok(t)) => r.download = Some(t),
        Ok(Err(e)) => r.failures.push(format!("download: {e:#}")),
        Err(_) => r
            .failures
            .push(format!("download: timed out after {timeout:?}")),
    }
    revive(env, live, r).await;

    if let Some(plan) = upload {
        if c.half_close() {
            progress(&format!("{c}: upload {} bytes", cfg.bytes));
            match tokio::time::timeout(timeout, workload::upload(live.blob, plan)).await {
                Ok(Ok(t)) => r.upload = Some(t),
                Ok(Err(e)) => r.failures.push(format!("upload: {e:#}")),
                Err(_) => r
                    .failures
                    .push(format!("upload: timed out after {timeout:?}")),
            }
            revive(env, live, r).await;
        } else {
            r.notes.push(
                "upload: n/a, v4.channel.k8s.io carries no half-close, so the sink never sees the end of the upload"
                    .into(),
            );
        }
    }

    progress(&format!(
        "{c}: {} sequential connections",
        cfg.latency_connections
    ));
    match workload::latency(
        live.echo,
        cfg.latency_connections,
        cfg.warmup_connections,
        per_op,
    )
    .await
    {
        Ok(l) => r.latency = Some(l),
        Err(e) => r.failures.push(format!("latency: {e:#}")),
    }
    revive(env, live, r).await;

    progress(&format!(
        "{c}: {} concurrent connections",
        cfg.concurrent_connections
    ));
    r.concurrency = Some(
        workload::concurrency(
            live.echo,
            cfg.concurrent_connections,
            cfg.concurrent_bytes,
            Duration::from_secs(60),
        )
        .await,
    );
    revive(env, live, r).await;
}

/// Restarts a kubectl that died during the previous workload, noting it.
async fn revive(env: &Env, live: &mut contenders::Live, r: &mut ContenderResult) {
    match live.revive(env).await {
        Ok(notes) => r.notes.extend(notes),
        Err(e) => r.failures.push(format!("restart: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64 k"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1TiB").is_err());
        assert!(parse_size("lots").is_err());
    }
}
