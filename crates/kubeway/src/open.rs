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
use crate::reach::Direct;

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
            match svcs.get_opt(&name).await.with_context(|| {
                format!(
                    "cannot reach the API server at {} (is the cluster running?)",
                    cluster.server
                )
            })? {
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
        (None, true) => svcs.list(&ListParams::default()).await?.items,
        _ => bail!(
            "name a service (`kubeway open web`) or pass --all for every service of the namespace"
        ),
    };
    let direct = Direct::learn(&opts).await;
    let timeout = args.probe_timeout;
    let scheme = &args.scheme;
    let mut opened = Vec::new();
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
                        let explain_args = crate::cli::ExplainArgs {
                            target: format!("svc/{name}"),
                            via: crate::cli::Via::Any,
                            svg: None,
                            probe_timeout: timeout,
                        };
                        let sentence = crate::explain::report(&opts, &explain_args)
                            .await
                            .map(|r| r.verdict.summary)
                            .unwrap_or_else(|_| "no pod behind it is ready".into());
                        fwd.stop().await;
                        eprintln!(
                            "error: {name} port {label} has no working URL: {sentence} (Kubernetes layer; see `kubeway explain svc/{name}`)"
                        );
                        std::process::exit(3);
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
    if opened.is_empty() {
        bail!("no TCP port to open in namespace {ns} (Services without a selector are skipped)");
    }
    match (cli.output, args.url) {
        (Output::Json, _) => println!("{}", serde_json::to_string_pretty(&json!(opened))?),
        (_, true) => {
            for o in &opened {
                println!("{}", o.url);
            }
            // Scripts read URLs from stdout; the reasons go to the terminal.
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
    Ok(())
}
