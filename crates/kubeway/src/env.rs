//! `kubeway env`: which environment is behind the context, with its evidence, the API endpoint,
//! node addresses probed live from the host, LoadBalancer support, and the way kubeway will take.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use kubeway_core::env::{Detection, Tri, detect};
use kubeway_kube::ConnectOptions;
use kubeway_kube::snapshot::{Collected, collect};
use kubeway_net::{Probe, probe};
use serde::Serialize;
use serde_json::json;

use crate::cli::{Cli, Output};

/// One probe of a node address from the host.
#[derive(Debug, Serialize)]
pub struct NodeProbe {
    /// Node name.
    pub node: String,
    /// Address type (InternalIP, ExternalIP).
    pub kind: String,
    /// The address.
    pub address: String,
    /// The port probed and why.
    pub port: Option<u16>,
    /// What came back.
    pub probe: Option<Probe>,
    /// Why it was not probed.
    pub skipped: Option<String>,
}

/// Everything `kubeway env` reports.
#[derive(Debug, Serialize)]
pub struct EnvReport {
    /// Context in use.
    pub context: String,
    /// API server URL.
    pub server: String,
    /// `/version`, or the error.
    pub server_version: Option<String>,
    /// Why the API server did not answer.
    pub api_error: Option<String>,
    /// The detection.
    pub detection: Detection,
    /// Live probes of node addresses.
    pub node_probes: Vec<NodeProbe>,
    /// The Service whose NodePort was probed.
    pub probed_service: Option<String>,
    /// This cluster's `kubeway tunnel`, as its journal says (None: none with changes in force).
    pub tunnel: Option<crate::tunnel::state::TunnelStatus>,
}

/// Builds the report: collect, detect, probe.
pub async fn report(opts: &ConnectOptions, timeout: Duration) -> Result<EnvReport> {
    let Collected {
        snapshot,
        cluster,
        api_error,
        node_port,
    } = collect(opts).await?;
    let detection = detect(&snapshot);
    let mut node_probes = Vec::new();
    for n in &snapshot.nodes {
        for a in n
            .addresses
            .iter()
            .filter(|a| a.kind == "InternalIP" || a.kind == "ExternalIP")
        {
            let mut p = NodeProbe {
                node: n.name.clone(),
                kind: a.kind.clone(),
                address: a.address.clone(),
                port: None,
                probe: None,
                skipped: None,
            };
            match (a.address.parse::<IpAddr>(), &node_port) {
                (Ok(ip), Some(np)) => {
                    p.port = Some(np.node_port);
                    p.probe = Some(probe(SocketAddr::new(ip, np.node_port), timeout).await);
                }
                (Ok(_), None) => {
                    p.skipped = Some("no NodePort Service to probe with".into());
                }
                (Err(_), _) => p.skipped = Some("not an IP address".into()),
            }
            node_probes.push(p);
        }
    }
    let server = cluster
        .as_ref()
        .map(|c| c.server.clone())
        .unwrap_or_else(|| snapshot.kubeconfig.server.clone());
    let tunnel = kubeway_host::state::state_dir()
        .ok()
        .and_then(|dir| crate::tunnel::state::peek(&dir, &server, &snapshot.kubeconfig.context));
    Ok(EnvReport {
        context: snapshot.kubeconfig.context.clone(),
        server,
        tunnel,
        server_version: snapshot.server_version.clone(),
        api_error,
        detection,
        node_probes,
        probed_service: node_port.map(|n| n.service),
    })
}

fn tri(t: Tri) -> &'static str {
    match t {
        Tri::Yes => "yes",
        Tri::No => "no",
        Tri::Unknown => "unknown",
    }
}

fn name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Renders the report for a terminal.
pub fn render_text(r: &EnvReport) -> String {
    let d = &r.detection;
    let mut out = String::new();
    let api = match (&r.server_version, &r.api_error) {
        (Some(v), _) => format!("answers, {v}"),
        (None, Some(e)) => format!("does not answer: {e}"),
        (None, None) => "not asked".into(),
    };
    out.push_str(&format!("Context:       {}\n", r.context));
    out.push_str(&format!("API server:    {} ({api})\n", r.server));
    let mut env = d.provider.display_name().to_string();
    if let Some(drv) = &d.minikube_driver {
        env.push_str(&format!(", {} driver", name(&drv.name)));
        if drv.needs_port_forward == Tri::Yes {
            env.push_str(" in port-forward mode");
        }
    }
    if let Some(mode) = &d.docker_desktop_mode {
        env.push_str(&format!(", {} mode", name(mode)));
    }
    out.push_str(&format!(
        "Environment:   {env}  (confidence {}, decided by {})\n",
        name(&d.provider_confidence),
        d.decided_by
    ));
    out.push_str(&format!("Host:          {}\n", name(&d.host)));
    out.push_str(&format!(
        "Node reachable from host:   {} ({} confidence)\n",
        tri(d.node_reachable.value),
        name(&d.node_reachable.confidence)
    ));
    for p in &r.node_probes {
        let what = match (&p.probe, &p.skipped) {
            (Some(pr), _) => format!("NodePort {}: {pr}", p.port.unwrap_or(0)),
            (None, Some(s)) => format!("not probed: {s}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  node {} {} {}  {what}\n",
            p.node, p.kind, p.address
        ));
    }
    if let Some(s) = &r.probed_service {
        out.push_str(&format!("  (probed with the NodePort of service {s})\n"));
    }
    out.push_str(&format!(
        "NodePorts on localhost:     {}\n",
        tri(d.nodeports_on_localhost.value)
    ));
    out.push_str(&format!(
        "LoadBalancer:  {} (access: {})\n",
        name(&d.load_balancer.support),
        name(&d.load_balancer.access)
    ));
    match &r.tunnel {
        Some(t) if t.running => out.push_str(&format!(
            "Tunnel:        kubeway tunnel runs (pid {}), {} change(s) in force\n",
            t.pid, t.changes
        )),
        Some(t) => out.push_str(&format!(
            "Tunnel:        a kubeway tunnel (pid {}) ended without undoing {} change(s) (EXTERNAL-IPs or a route): run `kubeway tunnel --cleanup`\n",
            t.pid, t.changes
        )),
        None => {}
    }
    out.push_str(&format!("Way in:        {}\n", d.strategy));
    if !d.evidence.is_empty() {
        out.push_str("Evidence:\n");
        for e in &d.evidence {
            out.push_str(&format!(
                "  - {} = {} → {} [{}]\n",
                e.signal,
                e.value,
                e.implies,
                name(&e.weight)
            ));
        }
    }
    for c in &d.conflicts {
        out.push_str(&format!("Conflict: {c}\n"));
    }
    for n in &d.notes {
        out.push_str(&format!("Note: {n}\n"));
    }
    out
}

/// Runs `kubeway env`.
pub async fn run(cli: &Cli, timeout: Duration) -> Result<()> {
    let opts = ConnectOptions {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        namespace: cli.namespace.clone(),
    };
    let r = report(&opts, timeout).await?;
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&json!(r))?),
        Output::Text => print!("{}", render_text(&r)),
    }
    Ok(())
}
