//! `kubeway lab up`: runs the stand-in cluster in the foreground until Ctrl-C/SIGTERM, and the
//! helpers every lab-starting command shares.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kubeway_host::files::FileId;
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

/// The folder of lab kubeconfigs in the state directory (made 0700, checked to be the user's).
fn lab_dir() -> Result<PathBuf> {
    let state = kubeway_host::state::state_dir()?;
    kubeway_host::files::ensure_own_dir(&state).context("the state directory")?;
    let dir = state.join("lab");
    kubeway_host::files::ensure_own_dir(&dir).context("the lab's kubeconfig directory")?;
    Ok(dir)
}

/// The pid in a default lab kubeconfig's name: `lab-PID.kubeconfig`, `kwlab-PID-N-host.kubeconfig`.
fn kubeconfig_owner(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".kubeconfig")?;
    let rest = stem
        .strip_prefix("lab-")
        .or_else(|| stem.strip_prefix("kwlab-"))?;
    rest.split('-').next()?.parse().ok()
}

/// Removes default kubeconfigs of labs whose process is gone (killed with SIGKILL).
fn remove_stale_kubeconfigs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = kubeconfig_owner(&name)
            && !kubeway_host::process::is_alive(pid)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes the kubeconfig a lab wrote, if it is still that file, saying so if that fails.
pub fn remove_written(path: &Path, id: FileId) {
    if let Err(e) = kubeway_host::files::remove_if_same(path, id) {
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
             (the kubeconfig names that namespace, and kubeway refuses it anywhere else; this namespace routes the lab's \
             documentation ranges nowhere while the lab runs)",
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

/// Where `lab up` writes its kubeconfig.
enum Destination {
    /// The file the user named.
    Chosen(PathBuf),
    /// A file of this lab's own in this folder.
    Default(PathBuf),
}

/// Runs `kubeway lab up`; `kubeconfig` is the global `--kubeconfig`, which names where to write.
pub async fn up(args: LabUpArgs, kubeconfig: Option<PathBuf>, output: Output) -> Result<()> {
    let chosen = kubeconfig.or_else(|| args.kubeconfig_out.clone());
    // Where the default goes is settled before the lab starts: no state directory, no lab.
    let dest = match chosen {
        Some(p) => Destination::Chosen(p),
        None => {
            let d = lab_dir()?;
            remove_stale_kubeconfigs(&d);
            Destination::Default(d)
        }
    };
    let stop = shutdown_signal();
    let lab = start(&args.lab, args.sample).await?;
    let path = match dest {
        Destination::Chosen(p) => p,
        Destination::Default(d) => d.join(match lab.host_netns() {
            // Namespace mode: the file names the namespace it is for.
            Some(ns) => format!("{ns}.kubeconfig"),
            None => format!("lab-{}.kubeconfig", std::process::id()),
        }),
    };
    let written = match lab.write_kubeconfig(&path) {
        Ok(id) => id,
        Err(e) => {
            lab.shutdown().await;
            return Err(e).context(
                "the lab stopped because its kubeconfig could not be written (choose another file with --kubeconfig PATH)",
            );
        }
    };
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
    remove_written(&path, written);
    if output == Output::Json {
        println!("{}", json!({"event": "stopped"}));
    } else {
        eprintln!("kubeway lab stopped; removed {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_kubeconfigs_name_their_lab_process() {
        assert_eq!(kubeconfig_owner("lab-4242.kubeconfig"), Some(4242));
        assert_eq!(kubeconfig_owner("kwlab-4242-0-host.kubeconfig"), Some(4242));
        assert_eq!(kubeconfig_owner("kubeconfig"), None);
        assert_eq!(kubeconfig_owner("lab-x.kubeconfig"), None);
    }
}
