//! `pf-bench`: the port-forward benchmark program. Starts a lab, measures every contender through
//! it, prints a table with ratios (stdout) and progress (stderr), and can write JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kubeway_bench::contenders::Contender;
use kubeway_bench::{Config, parse_size, report};

/// Port-forward benchmark: raw loopback vs kubeway's transports vs `kubectl port-forward`,
/// through one lab on loopback, in one run. Prints numbers; never passes or fails on them.
#[derive(Debug, Parser)]
#[command(name = "pf-bench", version)]
struct Args {
    /// Bytes moved through one connection per throughput measurement (e.g. 1GiB, 64MiB).
    #[arg(long, value_parser = parse_size)]
    bytes: Option<u64>,
    /// Sequential short connections for the latency measurement.
    #[arg(long)]
    conns: Option<usize>,
    /// Untimed connections before the latency measurement.
    #[arg(long)]
    warmup: Option<usize>,
    /// Concurrent connections.
    #[arg(long)]
    concurrent: Option<usize>,
    /// Bytes each concurrent connection echoes (e.g. 64KiB).
    #[arg(long, value_parser = parse_size)]
    concurrent_bytes: Option<u64>,
    /// Smaller run for smoke checks (64 MiB, 200 sequential connections); other flags override.
    #[arg(long)]
    quick: bool,
    /// Skip the upload (`sink`) measurement.
    #[arg(long)]
    no_upload: bool,
    /// Run only these contenders (comma-separated or repeated): loopback, kubeway-ws-spdy,
    /// kubeway-spdy, kubeway-v4, kubectl-ws, kubectl-spdy.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Contender>,
    /// Write every number as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The kubectl program.
    #[arg(long, default_value = "kubectl")]
    kubectl: String,
    /// Worker threads per runtime (pods, kubeway forwarder, client).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut cfg = if a.quick {
        Config::quick()
    } else {
        Config::full()
    };
    if let Some(b) = a.bytes {
        cfg.bytes = b;
    }
    if let Some(n) = a.conns {
        cfg.latency_connections = n;
    }
    if let Some(n) = a.warmup {
        cfg.warmup_connections = n;
    }
    if let Some(n) = a.concurrent {
        cfg.concurrent_connections = n;
    }
    if let Some(b) = a.concurrent_bytes {
        cfg.concurrent_bytes = usize::try_from(b).context("--concurrent-bytes is too large")?;
    }
    if a.no_upload {
        cfg.upload = false;
    }
    if !a.only.is_empty() {
        cfg.contenders = Contender::ALL
            .into_iter()
            .filter(|c| a.only.contains(c))
            .collect();
    }
    cfg.kubectl = a.kubectl;
    cfg.threads = a.threads;

    let started = std::time::Instant::now();
    let progress = move |msg: &str| {
        eprintln!("[{:7.1}s] {msg}", started.elapsed().as_secs_f64());
    };
    let report = kubeway_bench::run(&cfg, &progress)?;
    print!("{}", report::render(&report));
    if let Some(path) = a.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
