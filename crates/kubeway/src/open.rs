//! `kubeway open SVC`: the working URL of each Service port. Direct when the host reaches a
//! LoadBalancer address or a NodePort (on a node address or on localhost), checked live, in that
//! order; otherwise a forward through the API server, kept open in the foreground. Says which
//! way it took and why.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kubeway_core::target::{PortSpec, Target, TargetKind};
use kubeway_kube::backends::closest;
use kubeway_kube::{ConnectOptions, connect};
use kubeway_net::probe;
use serde::Serialize;
use serde_json::json;

use crate::cli::{Cli, OpenArgs, Output};
use crate::lab::shutdown_signal;
use kubeway_engine::reach::Direct;

/// One opened port.
#[derive(Debug, Clone, Serialize)]
pub struct Opened {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// `name/port` or `port`.
    pub port: String,
    /// The URL that works.
    pub url: String,
    /// `LoadBalancer`, `NodePort`, `NodePort on localhost`, `forward`.
    pub via: String,
    /// Why a forward was needed, in one sentence.
    pub why: Option<String>,
}

fn browser_command() -> Option<&'static str> {
    ["xdg-open", "wslview", "open"].into_iter().find(|c| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(c).is_file()))
    })
}

/// Runs `kubeway open`.
pub async fn run(cli: &Cli, args: &OpenArgs) -> Result<()> {
    let opts = ConnectOptions {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        namespace: cli.namespace.clone(),
    };
    let stop = shutdown_signal();
    let cluster = connect(&opts).await?;
    let ns = cluster.namespace.clone();
    let svcs: Api<Service> = Api::namespaced(cluster.client.clone(), &ns);
    let services: Vec<Service> = match (&args.service, args.all) {
        (Some(name), false) => {
            let name = Target::parse(name, TargetKind::Service)
                .with_context(|| format!("reading the service {name:?}"))?
                .name;
            let got = match svcs.get_opt(&name).await {
                Ok(g) => g,
                Err(e) => bail!(
                    "{} (API layer)",
                    api_words(&e, "get", "services", &ns, &cluster, &opts)
                ),
            };
            match got {
                Some(s) => vec![s],
                None => {
                    let known: Vec<String> = svcs
                        .list_metadata(&ListParams::default())
                        .await
                        .map(|l| {
                            l.items
                                .into_iter()
                                .filter_map(|m| m.metadata.name)
                                .collect()
                        })
                        .unwrap_or_default();
                    match closest(&name, &known) {
                        Some(n) => bail!(
                            "service {name:?} not found in namespace {ns}: did you mean {n:?}?"
                        ),
                        None => bail!(
                            "service {name:?} not found in namespace {ns} (services here: {})",
                            known.join(", ")
                        ),
                    }
                }
            }
        }
        (None, true) => match svcs.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => bail!(
                "{} (API layer)",
                api_words(&e, "list", "services", &ns, &cluster, &opts)
            ),
        },
        _ => bail!(
            "name a service (`kubeway open web`) or pass --all for every service of the namespace"
        ),
    };
    let direct = Direct::learn(&opts).await;
    let timeout = args.probe_timeout;
    let scheme = &args.scheme;
    let mut opened = Vec::new();
    let mut failed: Vec<Failed> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut forwards = Vec::new();
    for svc in services.iter().filter(|s| {
        s.spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|m| !m.is_empty())
    }) {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let spec = svc.spec.clone().unwrap_or_default();
        let ty = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
        let ingress: Vec<String> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip.or(i.hostname))
            .collect();
        for p in spec.ports.clone().unwrap_or_default() {
            if p.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let port = u16::try_from(p.port).unwrap_or(0);
            let label = match &p.name {
                Some(n) if !n.is_empty() => format!("{n}/{port}"),
                _ => port.to_string(),
            };
            // The pods' processes first, as explain checks them: no URL for a way that fails.
            let explain_args = crate::cli::ExplainArgs {
                target: format!("svc/{name}:{port}"),
                via: crate::cli::Via::Any,
                svg: None,
                probe_timeout: timeout,
            };
            match crate::explain::report(&opts, &explain_args).await {
                Ok(r) if r.exit_code() != 0 => {
                    let layer = r
                        .verdict
                        .primary
                        .as_ref()
                        .map(|p| p.layer.human())
                        .unwrap_or("Kubernetes");
                    failed.push(Failed {
                        namespace: ns.clone(),
                        name: name.clone(),
                        port: label.clone(),
                        reason: format!(
                            "{} ({layer} layer; see `kubeway explain{} svc/{name}:{port}`)",
                            r.verdict.summary.trim_end_matches('.'),
                            if ns == "default" {
                                String::new()
                            } else {
                                format!(" -n {ns}")
                            }
                        ),
                    });
                    continue;
                }
                Ok(r) if r.verdict.health == kubeway_core::path::Health::Degraded => {
                    warnings.push(format!("{name} {label}: {}", r.verdict.summary));
                }
                Ok(_) => {}
                Err(e) => {
                    failed.push(Failed {
                        namespace: ns.clone(),
                        name: name.clone(),
                        port: label.clone(),
                        reason: format!("could not be checked: {e:#}"),
                    });
                    continue;
                }
            }
            let mut found: Option<(String, &str)> = None;
            let mut tried = Vec::new();
            for addr in &ingress {
                let ip = if addr == "localhost" {
                    IpAddr::from([127, 0, 0, 1])
                } else if let Ok(ip) = addr.parse() {
                    ip
                } else {
                    continue;
                };
                let r = probe(SocketAddr::new(ip, port), timeout).await;
                if r.answered() {
                    found = Some((format!("{scheme}://{addr}:{port}"), "LoadBalancer"));
                    break;
                }
                tried.push(format!("LoadBalancer {addr}:{port} {r}"));
            }
            if found.is_none()
                && let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok())
            {
                match direct.node_port(np, timeout).await {
                    Ok(f) => found = Some((format!("{scheme}://{}", f.addr), f.via)),
                    Err(t) => tried.extend(t),
                }
            }
            let (url, via, why) = match found {
                Some((url, via)) => (url, via.to_string(), None),
                None => {
                    let why = if ty == "ClusterIP" {
                        format!("{name} is a ClusterIP Service, reachable only inside the cluster")
                    } else {
                        direct.why_not_direct(&tried)
                    };
                    let target = Target::parse(&format!("svc/{name}"), TargetKind::Service)?;
                    let spec: PortSpec = format!(":{port}").parse()?;
                    let fwd = match crate::forward::open_for_url(
                        &cluster,
                        &target,
                        &spec,
                        cli.output == Output::Json,
                    )
                    .await
                    {
                        Ok(f) => f,
                        Err(e) => {
                            bail!(
                                "{name} port {label}: {why}, and the forward through the API server could not open either: {e:#}"
                            );
                        }
                    };
                    if !fwd.has_ready_endpoint(Duration::from_secs(10)).await {
                        fwd.stop().await;
                        failed.push(Failed {
                            namespace: ns.clone(),
                            name: name.clone(),
                            port: label.clone(),
                            reason: format!(
                                "no pod behind it became ready for the forward (Kubernetes layer; see `kubeway explain svc/{name}`)"
                            ),
                        });
                        continue;
                    }
                    let url = format!("{scheme}://{}", fwd.locals[0]);
                    forwards.push(fwd);
                    (url, "forward".to_string(), Some(why))
                }
            };
            opened.push(Opened {
                namespace: ns.clone(),
                name: name.clone(),
                port: label,
                url,
                via,
                why,
            });
        }
    }
    if opened.is_empty() && failed.is_empty() {
        bail!("no TCP port to open in namespace {ns} (Services without a selector are skipped)");
    }
    if opened.is_empty() {
        // Nothing works: say why on stderr, print no URL, exit 3.
        for f in &failed {
            eprintln!(
                "error: {} port {} has no working URL: {}",
                f.name, f.port, f.reason
            );
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(3);
    }
    match (cli.output, args.url) {
        (Output::Json, _) => {
            // One row per Service port, as before; a failing one has no URL and says why.
            let mut rows: Vec<serde_json::Value> = opened.iter().map(|o| json!(o)).collect();
            for (row, o) in rows.iter_mut().zip(&opened) {
                let prefix = format!("{} {}: ", o.name, o.port);
                if let Some(w) = warnings.iter().find(|w| w.starts_with(&prefix)) {
                    row["warning"] = json!(w.trim_start_matches(&prefix));
                }
            }
            rows.extend(failed.iter().map(|f| {
                json!({"namespace": f.namespace, "name": f.name, "port": f.port, "url": null,
                       "via": "failing", "why": f.reason})
            }));
            println!("{}", serde_json::to_string_pretty(&rows)?)
        }
        (_, true) => {
            for o in &opened {
                println!("{}", o.url);
            }
            // Scripts read URLs from stdout; the reasons go to the terminal.
            for f in &failed {
                eprintln!("{} {}: no working URL: {}", f.name, f.port, f.reason);
            }
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            for o in opened.iter().filter(|o| o.why.is_some()) {
                eprintln!(
                    "{} {}: forwarding because {}",
                    o.name,
                    o.port,
                    o.why.clone().unwrap_or_default()
                );
            }
        }
        _ => {
            let w = |f: &dyn Fn(&Opened) -> String, h: &str| {
                opened
                    .iter()
                    .map(f)
                    .chain([h.to_string()])
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            };
            let (wn, wa, wp, wu) = (
                w(&|o| o.namespace.clone(), "NAMESPACE"),
                w(&|o| o.name.clone(), "NAME"),
                w(&|o| o.port.clone(), "TARGET PORT"),
                w(&|o| o.url.clone(), "URL"),
            );
            println!(
                "{:wn$}  {:wa$}  {:wp$}  {:wu$}  VIA",
                "NAMESPACE", "NAME", "TARGET PORT", "URL"
            );
            for o in &opened {
                println!(
                    "{:wn$}  {:wa$}  {:wp$}  {:wu$}  {}",
                    o.namespace, o.name, o.port, o.url, o.via
                );
            }
            for f in &failed {
                println!(
                    "{:wn$}  {:wa$}  {:wp$}  {:wu$}  failing",
                    f.namespace, f.name, f.port, "-"
                );
            }
            for f in &failed {
                println!("{} {}: no working URL: {}", f.name, f.port, f.reason);
            }
            for w in &warnings {
                println!("warning: {w}");
            }
            for o in opened.iter().filter(|o| o.why.is_some()) {
                println!(
                    "{} {}: forwarding because {}",
                    o.name,
                    o.port,
                    o.why.clone().unwrap_or_default()
                );
            }
        }
    }
    if !args.no_browser && !args.url && cli.output == Output::Text {
        match browser_command() {
            Some(cmd) => {
                let _ = std::process::Command::new(cmd)
                    .arg(&opened[0].url)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
            }
            None => eprintln!("open {} in your browser", opened[0].url),
        }
    }
    if !forwards.is_empty() {
        eprintln!("Forwarding in the foreground; Ctrl-C stops it.");
        stop.await;
        for f in forwards {
            f.stop().await;
        }
    }
    if !failed.is_empty() {
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(3);
    }
    Ok(())
}

/// A Service port with no working URL, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// `name/port` or `port`.
    pub port: String,
    /// Why, as explain says it, with the layer.
    pub reason: String,
}

/// An API error in words, with the user the context authenticates as.
fn api_words(
    e: &kube::Error,
    verb: &str,
    resource: &str,
    ns: &str,
    cluster: &kubeway_kube::Cluster,
    opts: &ConnectOptions,
) -> String {
    let failure = kubeway_kube::apierror::classify(e, verb, resource, Some(ns));
    let user = opts
        .kubeconfig
        .as_ref()
        .map(kube::config::Kubeconfig::read_from)
        .unwrap_or_else(kube::config::Kubeconfig::read)
        .ok()
        .and_then(|kc| kubeway_kube::apierror::credentials(&kc, &cluster.context).0);
    kubeway_core::explain::api_failure_sentence(&failure, &cluster.server, user.as_deref())
}
