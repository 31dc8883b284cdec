//! `kubeway explain TARGET`: the layered path from the host to the target's pods, every hop
//! checked live, the first broken hop named with its layer and fix; as text, JSON or SVG.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use kubeway_core::env::Tri;
use kubeway_core::explain::{ExplainFacts, ProbeFacts, explain, service_port};
use kubeway_core::path::PathReport;
use kubeway_core::render;
use kubeway_core::target::{Target, TargetKind};
use kubeway_kube::ConnectOptions;
use kubeway_kube::explain::{Collected, collect};
use kubeway_net::probe;

use crate::cli::{Cli, ExplainArgs, Output};

fn probe_facts(
    node: Option<String>,
    address: &str,
    port: u16,
    p: &kubeway_net::Probe,
) -> ProbeFacts {
    ProbeFacts {
        node,
        address: address.to_string(),
        port,
        answered: if p.answered() { Tri::Yes } else { Tri::No },
        detail: Some(p.to_string()),
    }
}

/// Adds what the host sees: NodePorts on node addresses and on localhost, LoadBalancer addresses.
async fn probe_from_host(c: &mut Collected, timeout: Duration) {
    let facts: &mut ExplainFacts = &mut c.facts;
    let Some(svc) = facts.service.clone() else {
        return;
    };
    let Some(port) = service_port(&svc, facts.target.port.as_ref()).cloned() else {
        return;
    };
    if let Some(np) = port.node_port {
        for n in &c.nodes {
            for a in n
                .addresses
                .iter()
                .filter(|a| a.kind == "InternalIP" || a.kind == "ExternalIP")
            {
                if let Ok(ip) = a.address.parse::<IpAddr>() {
                    let p = probe(SocketAddr::new(ip, np), timeout).await;
                    facts
                        .node_probes
                        .push(probe_facts(Some(n.name.clone()), &a.address, np, &p));
                }
            }
        }
        // Only where the environment publishes NodePorts on localhost: elsewhere nothing is
        // expected there, and a refusal would be a false alarm.
        let published = facts
            .environment
            .as_ref()
            .is_some_and(|d| d.nodeports_on_localhost.value == Tri::Yes);
        if published {
            let lo = SocketAddr::from(([127, 0, 0, 1], np));
            let p = probe(lo, timeout).await;
            facts.localhost_probe = Some(probe_facts(None, "127.0.0.1", np, &p));
        }
    }
    for addr in &svc.lb_ingress {
        let ip = match addr.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) if addr == "localhost" => IpAddr::from([127, 0, 0, 1]),
            Err(_) => continue,
        };
        let p = probe(SocketAddr::new(ip, port.port), timeout).await;
        facts.lb_probes.push(probe_facts(None, addr, port.port, &p));
    }
}

/// Collects, probes and explains.
pub async fn report(opts: &ConnectOptions, args: &ExplainArgs) -> Result<PathReport> {
    let target = Target::parse(&args.target, TargetKind::Service)
        .with_context(|| format!("reading the target {:?}", args.target))?;
    let mut collected = collect(opts, &target, args.via.into(), args.probe_timeout).await?;
    probe_from_host(&mut collected, args.probe_timeout).await;
    Ok(explain(&collected.facts))
}

/// Runs `kubeway explain`; the exit code is the report's: 0 healthy or degraded, 1 when the
/// question could not be answered, 3 when the path is broken.
pub async fn run(cli: &Cli, args: &ExplainArgs) -> Result<u8> {
    let opts = ConnectOptions {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        namespace: cli.namespace.clone(),
    };
    let r = report(&opts, args).await?;
    if let Some(path) = &args.svg {
        // A new file (0600) in the same folder, renamed into place: a link at `path` is
        // replaced, never followed.
        kubeway_host::files::replace(path, render::svg(&r).as_bytes()).context("--svg")?;
    }
    match cli.output {
        Output::Json => println!("{}", render::json(&r)?),
        Output::Text => print!("{}", render::text(&r, std::io::stdout().is_terminal())),
    }
    Ok(r.exit_code())
}
