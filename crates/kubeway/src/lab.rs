//! `kubeway lab up`: runs the stand-in cluster in the foreground until Ctrl-C/SIGTERM, and the
//! helpers every lab-starting command shares.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kubeway_lab::{Lab, LabSpec};
use serde_json::json;

use crate::cli::{LabOptions, LabUpArgs, Output};

/// Starts a lab as the options say.
pub async fn start(opts: &LabOptions, sample: bool) -> Result<Lab> {
    let mut spec = LabSpec::new(opts.persona.provider());
    if let Some(r) = opts.node_reachable {
        spec = spec.reachable(r);
    }
    if let Some(t) = opts.netns {
        if opts.node_reachable.is_some() {
            anyhow::bail!(
                "--node-reachable does not apply with --netns: the topology decides (`reachable` or `published`)"
            );
        }
        spec = spec.netns(t);
    }
    spec.api_port = opts.api_port;
    spec.sample = sample;
    Lab::start(spec).await.with_context(|| {
        if opts.api_port != 0 {
            format!(
                "starting the lab (is port {} already in use? try --api-port 0)",
                opts.api_port
            )
        } else {
            "starting the lab".to_string()
        }
    })
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM). The handlers are installed
/// when this is called, not when it is first polled, so call it before announcing readiness.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn default_kubeconfig_path() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("kubeway/lab/kubeconfig")
}

/// Removes a file we wrote, saying so if that fails.
pub fn remove_written(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("warning: could not remove {}: {e}", path.display());
    }
}

/// One line on what the lab is.
pub fn describe(lab: &Lab) -> String {
    let p = lab.persona();
    let nodes: Vec<String> = lab
        .nodes()
        .iter()
        .map(|(name, ip, reachable)| {
            let how = if *reachable {
                "reachable from the host"
            } else {
                "behind a boundary: NodePorts there do not answer from the host"
            };
            format!("node {name} at {ip} ({how})")
        })
        .collect();
    let ns = match (lab.host_netns(), lab.topology()) {
        (Some(host), Some(t)) => format!(
            "; namespace mode ({}): run kubeway and kubectl behind the boundary with `sudo ip netns exec {host} …` \
             (use the kubeconfig only there: elsewhere its addresses would go out by your default route)",
            match t {
                kubeway_lab::Topology::Reachable => "reachable: a veth to the node",
                kubeway_lab::Topology::Published =>
                    "published: only the API port, no route to the node",
            }
        ),
        _ => String::new(),
    };
    format!(
        "{} persona, {}{ns}",
        p.provider.display_name(),
        nodes.join(", ")
    )
}

/// Runs `kubeway lab up`.
pub async fn up(args: LabUpArgs, output: Output) -> Result<()> {
    let path = args
        .kubeconfig_out
        .clone()
        .unwrap_or_else(default_kubeconfig_path);
    let stop = shutdown_signal();
    let lab = start(&args.lab, args.sample).await?;
    if let Err(e) = lab.write_kubeconfig(&path) {
        lab.shutdown().await;
        return Err(e).context("the lab stopped because its kubeconfig could not be written; pass --kubeconfig-out PATH");
    }
    match output {
        Output::Json => println!(
            "{}",
            json!({"event": "ready", "api": lab.api_url(), "kubeconfig": path.display().to_string(),
                   "context": lab.context_name(), "persona": lab.persona().provider.as_str(),
                   "nodes": lab.nodes().iter().map(|(n, ip, r)| json!({"name": n, "address": ip.to_string(), "reachable": r})).collect::<Vec<_>>(),
                   "sample": args.sample, "hostNetns": lab.host_netns(), "nodeNetns": lab.node_netns()})
        ),
        Output::Text => {
            println!(
                "kubeway lab is ready at {} ({}). Use it with: export KUBECONFIG={}   (Ctrl-C stops the lab)",
                lab.api_url(),
                describe(&lab),
                path.display()
            );
        }
    }
    stop.await;
    let left = lab.host_pids();
    if !left.is_empty() {
        eprintln!(
            "warning: process(es) {} still run in the lab's host namespace {}; they lose the way to the node now (stop them, e.g. `kill {}`)",
            left.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            lab.host_netns().unwrap_or_default(),
            left.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    lab.shutdown().await;
    remove_written(&path);
    if output == Output::Json {
        println!("{}", json!({"event": "stopped"}));
    } else {
        eprintln!("kubeway lab stopped; removed {}", path.display());
    }
    Ok(())
}
