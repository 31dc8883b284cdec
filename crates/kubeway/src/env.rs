//! `kubeway env`: which environment is behind the context, with its evidence, the API endpoint,
//! node addresses probed live from the host, LoadBalancer support, and the way kubeway will take.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use kubeway_core::env::{
    Confidence, Detection, DockerDesktopMode, HostKind, LbAccess, LbSupport, Tri, Weight, detect,
};
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

/// `localhost:nodePort`, probed from the host.
#[derive(Debug, Serialize)]
pub struct LocalhostProbe {
    /// The port.
    pub port: u16,
    /// What came back.
    pub probe: Probe,
}

/// The claims the probes make.
#[derive(Debug, Serialize)]
pub struct Measured {
    /// A node address answered a NodePort (yes), every probe failed (no), nothing probed.
    pub node_reachable: Tri,
    /// `localhost:nodePort` answered.
    pub nodeports_on_localhost: Tri,
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
    /// `localhost:nodePort`, probed from the host.
    pub localhost_probe: Option<LocalhostProbe>,
    /// What the probes showed: these, not the detector's expectations, are the claims.
    pub measured: Measured,
    /// Where the probes contradict what the environment usually does, or the API refused.
    pub findings: Vec<String>,
    /// The API server's failure, classified (401, 403, unreachable, timed out).
    pub api_failure: Option<kubeway_core::explain::ApiFailure>,
    /// The kubeconfig user the context authenticates as, when the API server refused it.
    pub api_user: Option<String>,
    /// This cluster's `kubeway tunnel`, as its journal says (None: none with changes in force).
    pub tunnel: Option<kubeway_engine::journal::TunnelStatus>,
}

/// Builds the report: collect, detect, probe.
pub async fn report(opts: &ConnectOptions, timeout: Duration) -> Result<EnvReport> {
    let Collected {
        snapshot,
        cluster,
        api_error,
        api_failure,
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
    let localhost_probe = match &node_port {
        Some(np) => Some(LocalhostProbe {
            port: np.node_port,
            probe: probe(SocketAddr::from(([127, 0, 0, 1], np.node_port)), timeout).await,
        }),
        None => None,
    };
    let probed: Vec<&Probe> = node_probes
        .iter()
        .filter_map(|p| p.probe.as_ref())
        .collect();
    let measured = Measured {
        node_reachable: if probed.iter().any(|p| p.answered()) {
            Tri::Yes
        } else if probed.is_empty() {
            Tri::Unknown
        } else {
            Tri::No
        },
        nodeports_on_localhost: match &localhost_probe {
            Some(l) if l.probe.answered() => Tri::Yes,
            Some(_) => Tri::No,
            None => Tri::Unknown,
        },
    };
    let server = cluster
        .as_ref()
        .map(|c| c.server.clone())
        .unwrap_or_else(|| snapshot.kubeconfig.server.clone());
    let mut findings = Vec::new();
    if let Some((f, user)) = &api_failure {
        findings.push(format!(
            "API layer: {}.",
            kubeway_core::explain::api_failure_sentence(f, &server, user.as_deref())
        ));
    }
    let env = detection.provider.display_name();
    let host = host_words(detection.host);
    let first_failure = node_probes
        .iter()
        .find_map(|p| p.probe.as_ref().filter(|r| !r.answered()).map(|r| (p, r)))
        .map(|(p, r)| {
            format!(
                "NodePort {} on node {} ({}) {r}",
                p.port.unwrap_or(0),
                p.node,
                p.address
            )
        });
    match (detection.node_reachable.value, measured.node_reachable) {
        (Tri::Yes, Tri::No) => findings.push(format!(
            "{env} usually makes the node reachable from {host}; here it refused: {}.",
            first_failure.clone().unwrap_or_default()
        )),
        (Tri::No, Tri::Yes) => findings.push(format!(
            "{env} usually keeps the node behind a boundary on {host}; here the node answered its NodePort, so direct NodePorts work."
        )),
        _ => {}
    }
    if let Some(l) = &localhost_probe {
        match (detection.nodeports_on_localhost.value, measured.nodeports_on_localhost) {
            (Tri::Yes, Tri::No) => findings.push(format!(
                "{env} usually publishes NodePorts on localhost; here localhost:{} {}.",
                l.port, l.probe
            )),
            (Tri::No | Tri::Unknown, Tri::Yes) if detection.node_reachable.value != Tri::Yes => {
                findings.push(format!(
                    "localhost:{} answers although {env} is not known to publish NodePorts there: something on this host forwards it.",
                    l.port
                ))
            }
            _ => {}
        }
    }
    let tunnel = kubeway_host::state::state_dir().ok().and_then(|dir| {
        kubeway_engine::journal::peek(
            &dir,
            kubeway_engine::journal::Kind::Tunnel,
            &server,
            &snapshot.kubeconfig.context,
        )
    });
    Ok(EnvReport {
        context: snapshot.kubeconfig.context.clone(),
        server,
        tunnel,
        server_version: snapshot.server_version.clone(),
        api_error,
        detection,
        node_probes,
        probed_service: node_port.map(|n| n.service),
        localhost_probe,
        measured,
        findings,
        api_user: api_failure.as_ref().and_then(|(_, u)| u.clone()),
        api_failure: api_failure.map(|(f, _)| f),
    })
}

fn tri(t: Tri) -> &'static str {
    match t {
        Tri::Yes => "yes",
        Tri::No => "no",
        Tri::Unknown => "unknown",
    }
}

fn host_words(h: HostKind) -> &'static str {
    match h {
        HostKind::Linux => "Linux",
        HostKind::MacOs => "macOS",
        HostKind::Windows => "Windows",
        HostKind::Wsl2 => "WSL2",
        HostKind::LimaGuest => "a Lima guest",
    }
}

fn confidence_words(c: Confidence) -> &'static str {
    match c {
        Confidence::Low => "low",
        Confidence::Medium => "medium",
        Confidence::High => "high",
    }
}

fn weight_words(w: Weight) -> &'static str {
    match w {
        Weight::Hint => "hint",
        Weight::Strong => "strong",
        Weight::Decisive => "decisive",
    }
}

fn lb_words(s: LbSupport) -> &'static str {
    match s {
        LbSupport::K3sServiceLb => "k3s ServiceLB (klipper-lb)",
        LbSupport::DockerDesktop => "Docker Desktop's vpnkit",
        LbSupport::CloudProviderKind => "cloud-provider-kind",
        LbSupport::MetalLb => "MetalLB",
        LbSupport::OrbStack => "OrbStack's load balancer",
        LbSupport::CloudProvider => "the cloud provider's load balancer",
        LbSupport::None => "none (LoadBalancer Services stay <pending>)",
        LbSupport::Unknown => "not known",
    }
}

fn access_words(a: LbAccess) -> &'static str {
    match a {
        LbAccess::IngressAddress => "at its EXTERNAL-IP",
        LbAccess::LocalhostPort => "at localhost:<port>",
        LbAccess::NotReachable => "not reachable from this host",
        LbAccess::Unknown => "not known",
    }
}

fn docker_desktop_words(m: DockerDesktopMode) -> &'static str {
    match m {
        DockerDesktopMode::Kubeadm => "kubeadm",
        DockerDesktopMode::Kind => "kind",
    }
}

/// A claim from the probe, with the detector's expectation beside it.
fn claim(measured: Tri, how: &str, expected: Tri, confidence: Confidence) -> String {
    let expectation = format!(
        "expected {} ({} confidence)",
        tri(expected),
        confidence_words(confidence)
    );
    match measured {
        Tri::Unknown => format!("not probed ({how}); {expectation}"),
        m => format!("{} (probed: {how}); {expectation}", tri(m)),
    }
}

/// Renders the report for a terminal.
pub fn render_text(r: &EnvReport) -> String {
    let d = &r.detection;
    let mut out = String::new();
    let api = match (&r.server_version, &r.api_error, &r.api_failure) {
        (Some(v), _, _) => format!("answers, {v}"),
        (None, _, Some(f)) => match f.status {
            Some(s) => format!("refused ({s})"),
            None => "does not answer".to_string(),
        },
        (None, Some(e), None) => format!("does not answer: {e}"),
        (None, None, None) => "not asked".into(),
    };
    out.push_str(&format!("Context:       {}\n", r.context));
    out.push_str(&format!("API server:    {} ({api})\n", r.server));
    let mut env = d.provider.display_name().to_string();
    if let Some(drv) = &d.minikube_driver {
        env.push_str(&format!(", {} driver", drv.name));
        if drv.needs_port_forward == Tri::Yes {
            env.push_str(" in port-forward mode");
        }
    }
    if let Some(mode) = d.docker_desktop_mode {
        env.push_str(&format!(", {} mode", docker_desktop_words(mode)));
    }
    out.push_str(&format!(
        "Environment:   {env}  (confidence {}, decided by {})\n",
        confidence_words(d.provider_confidence),
        d.decided_by
    ));
    out.push_str(&format!("Host:          {}\n", host_words(d.host)));
    let node_how = match (
        &r.node_probes.iter().find_map(|p| p.port),
        r.measured.node_reachable,
    ) {
        (Some(port), _) => format!("NodePort {port} on each node address"),
        (None, _) => "no NodePort Service to probe with".to_string(),
    };
    out.push_str(&format!(
        "Node reachable from host:   {}\n",
        claim(
            r.measured.node_reachable,
            &node_how,
            d.node_reachable.value,
            d.node_reachable.confidence
        )
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
        out.push_str(&format!("  (probed with the NodePort of Service {s})\n"));
    }
    let lo_how = match &r.localhost_probe {
        Some(l) => format!("localhost:{} {}", l.port, l.probe),
        None => "no NodePort Service to probe with".to_string(),
    };
    out.push_str(&format!(
        "NodePorts on localhost:     {}\n",
        claim(
            r.measured.nodeports_on_localhost,
            &lo_how,
            d.nodeports_on_localhost.value,
            d.nodeports_on_localhost.confidence
        )
    ));
    out.push_str(&format!(
        "LoadBalancer:  {} (expected access from this host: {})\n",
        lb_words(d.load_balancer.support),
        access_words(d.load_balancer.access)
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
                weight_words(e.weight)
            ));
        }
    }
    for c in &d.conflicts {
        out.push_str(&format!("Conflict: {c}\n"));
    }
    for n in &d.notes {
        out.push_str(&format!("Note: {n}\n"));
    }
    for f in &r.findings {
        out.push_str(&format!("Finding: {f}\n"));
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
    if let Some(f) = &r.api_failure {
        // What the kubeconfig says was reported; the cluster could not be asked.
        anyhow::bail!(
            "{} (API layer)",
            kubeway_core::explain::api_failure_sentence(f, &r.server, r.api_user.as_deref())
        );
    }
    Ok(())
}
