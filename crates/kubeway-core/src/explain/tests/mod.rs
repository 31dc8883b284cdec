//! Scenario tests: one set of facts per failure class, each asserting the hop, the layer, a fix
//! command and a one-sentence summary.

use std::collections::BTreeMap;

mod api;
mod app;
mod driver;
mod host;
mod kubernetes;
mod node;

use super::*;
use crate::env::{Detection, HostFacts, HostOs, MinikubeProfileFacts, Provider, Tri, detect};
use crate::path::{FindingKind, Health, HopKind, Layer, PathReport, Severity, Status, WayKind};
use crate::persona::persona;
use crate::target::{PortRef, Target, TargetKind};

pub(crate) fn detection(provider: Provider, ips: &[&str], os: HostOs) -> Detection {
    let p = persona(provider);
    let mut snap = p.snapshot(&p.server_example, ips, HostFacts::new(os));
    if provider == Provider::Minikube {
        snap.minikube_profile = Some(MinikubeProfileFacts {
            name: "minikube".into(),
            driver: Some("docker".into()),
            ..MinikubeProfileFacts::default()
        });
    }
    detect(&snap)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pod(name: &str, ip: &str, ready: bool) -> PodFacts {
    PodFacts {
        name: name.into(),
        phase: "Running".into(),
        ready,
        pod_ip: Some(ip.into()),
        node: Some("kind-control-plane".into()),
        labels: labels(&[("app", "web")]),
        container_ports: vec![ContainerPortFacts {
            container: "web".into(),
            name: Some("http".into()),
            port: 8080,
            protocol: "TCP".into(),
        }],
        owner: Some("replicaset/web-5d8f9".into()),
        ..PodFacts::default()
    }
}

fn endpoint(pod: &str, ip: &str, ready: bool) -> EndpointFacts {
    EndpointFacts {
        pod: Some(pod.into()),
        ip: ip.into(),
        ready,
        ports: vec![EndpointPortFacts {
            name: None,
            port: 8080,
        }],
    }
}

fn probe(address: &str, port: u16, answered: Tri) -> ProbeFacts {
    ProbeFacts {
        node: Some("kind-control-plane".into()),
        address: address.into(),
        port,
        answered,
        detail: (answered == Tri::No).then(|| "timed out after 1s".to_string()),
    }
}

/// A healthy NodePort Service on kind on Linux: every hop checked and ok.
pub(crate) fn healthy() -> ExplainFacts {
    let mut f = ExplainFacts::new(
        Target::parse("svc/web", TargetKind::Service).unwrap(),
        "default",
    );
    f.context = ContextFacts {
        name: "kind-kind".into(),
        exists: true,
        known_contexts: vec!["kind-kind".into(), "minikube".into()],
    };
    f.api = ApiFacts {
        server: "https://127.0.0.1:40000".into(),
        reachable: Tri::Yes,
        error: None,
        version: Some("v1.33.1".into()),
        ..ApiFacts::default()
    };
    f.environment = Some(detection(Provider::Kind, &["172.18.0.2"], HostOs::Linux));
    f.target_found = Tri::Yes;
    f.names_in_namespace = vec!["web".into(), "db".into()];
    f.service = Some(ServiceFacts {
        name: "web".into(),
        type_: ServiceType::NodePort,
        cluster_ip: Some("10.96.12.34".into()),
        selector: labels(&[("app", "web")]),
        ports: vec![ServicePortFacts {
            name: None,
            port: 80,
            protocol: "TCP".into(),
            target_port: PortRef::Name("http".into()),
            node_port: Some(30080),
        }],
        lb_ingress: vec![],
        external_name: None,
    });
    f.pods = vec![
        pod("web-1", "10.244.0.5", true),
        pod("web-2", "10.244.0.6", true),
    ];
    f.namespace_pods = f
        .pods
        .iter()
        .map(|p| PodLabels {
            name: p.name.clone(),
            labels: p.labels.clone(),
            workload: Some("deployment/web".into()),
        })
        .collect();
    f.endpoints = vec![
        endpoint("web-1", "10.244.0.5", true),
        endpoint("web-2", "10.244.0.6", true),
    ];
    f.node_probes = vec![probe("172.18.0.2", 30080, Tri::Yes)];
    f.portforward = vec![PortForwardProbe {
        pod: "web-1".into(),
        port: 8080,
        ok: true,
        error: None,
    }];
    f.rbac = RbacFacts {
        get_portforward: Tri::Yes,
        create_portforward: Tri::Yes,
        reason: None,
    };
    f
}

/// minikube's docker driver on macOS: the NodePort is behind the boundary, port-forward works.
pub(crate) fn boundary() -> ExplainFacts {
    let mut f = healthy();
    f.context.name = "minikube".into();
    f.environment = Some(detection(
        Provider::Minikube,
        &["192.168.49.2"],
        HostOs::MacOs,
    ));
    f.node_probes = vec![probe("192.168.49.2", 30080, Tri::No)];
    f
}

/// The summary is one plain sentence: it ends once, and nothing in it ends a sentence before.
fn assert_one_sentence(text: &str) {
    assert!(
        text.ends_with('.') || text.ends_with('?'),
        "not a sentence: {text}"
    );
    let body = &text[..text.len() - 1];
    for stop in [". ", "? ", "! "] {
        assert!(!body.contains(stop), "more than one sentence: {text}");
    }
    assert!(!text.contains('\n'), "{text}");
}

/// Asserts the verdict names `hop` in `layer` with a fix command, and returns the report.
fn assert_verdict(f: &ExplainFacts, kind: FindingKind, hop: HopKind, layer: Layer) -> PathReport {
    let report = explain(f);
    let primary = report
        .verdict
        .primary
        .clone()
        .unwrap_or_else(|| panic!("no primary finding: {:#?}", report.verdict));
    assert_eq!(primary.kind, kind, "{:#?}", report.verdict);
    assert_eq!(primary.hop, hop.id(), "{:#?}", report.verdict);
    assert_eq!(primary.layer, layer, "{:#?}", report.verdict);
    assert!(
        primary.fixes.iter().any(|f| f.command.is_some()),
        "no fix command: {primary:#?}"
    );
    assert_one_sentence(&primary.cause);
    assert_one_sentence(&report.verdict.summary);
    let hop_status = report.hop(hop).map(|h| h.status);
    assert!(
        matches!(hop_status, Some(Status::Broken | Status::Warning)),
        "hop {hop} is {hop_status:?}"
    );
    // Every renderer takes every report.
    let text = crate::render::text(&report, false);
    assert!(text.contains(&report.verdict.summary), "{text}");
    let _ = crate::render::svg(&report);
    report
}

fn commands(report: &PathReport) -> String {
    report
        .verdict
        .primary
        .iter()
        .flat_map(|p| p.fixes.iter())
        .filter_map(|f| f.command.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn healthy_service_is_healthy_without_alarms() {
    let report = explain(&healthy());
    assert_eq!(
        report.verdict.health,
        Health::Healthy,
        "{:#?}",
        report.verdict
    );
    assert!(report.verdict.primary.is_none(), "{:#?}", report.verdict);
    assert!(report.verdict.findings.is_empty(), "{:#?}", report.verdict);
    for hop in &report.hops {
        assert_eq!(hop.status, Status::Ok, "{hop:#?}");
    }
    assert_eq!(
        report.verdict.works_via,
        vec![WayKind::NodePort, WayKind::PortForward]
    );
    assert_one_sentence(&report.verdict.summary);
    assert!(report.verdict.summary.contains("reachable via"));
    // No driver boundary on kind with a native Linux engine? There is: the node container, and
    // the host routes to it.
    assert_eq!(
        report.hop(HopKind::DriverBoundary).map(|h| h.status),
        Some(Status::Ok)
    );
    assert_eq!(report.pods.len(), 2);
    assert!(report.pods.iter().all(|p| p.port == Some(8080)));
}

#[test]
fn hops_come_in_path_order() {
    let report = explain(&healthy());
    let ids: Vec<&str> = report.hops.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "host",
            "context",
            "driver_boundary",
            "node_port",
            "service",
            "selector",
            "endpoints",
            "pods",
            "target_port",
            "process",
            "api_server",
            "rbac"
        ]
    );
    let pf = report.way(WayKind::PortForward).unwrap();
    assert_eq!(
        pf.hops,
        [
            "host",
            "context",
            "api_server",
            "rbac",
            "selector",
            "pods",
            "target_port",
            "process"
        ]
    );
    assert_eq!(
        pf.command.as_deref(),
        Some("kubeway forward svc/web 8080:80")
    );
}

#[test]
fn facts_deserialize_from_a_minimal_document() {
    let json = r#"{
        "target": {"kind": "service", "name": "web", "port": null},
        "namespace": "default",
        "api": {"server": "https://127.0.0.1:6443", "reachable": "yes"},
        "service": {"name": "web", "type": "node_port", "selector": {"app": "web"},
                    "ports": [{"port": 80, "target_port": {"number": 8080}, "node_port": 30080}]},
        "pods": [{"name": "web-1", "ready": true, "pod_ip": "10.0.0.1"}],
        "endpoints": [{"ip": "10.0.0.1"}],
        "portforward": [{"pod": "web-1", "port": 8080, "ok": true}]
    }"#;
    let f: ExplainFacts = serde_json::from_str(json).unwrap();
    assert!(f.context.exists);
    assert_eq!(f.service.as_ref().unwrap().ports[0].protocol, "TCP");
    let report = explain(&f);
    assert_eq!(
        report.verdict.health,
        Health::Healthy,
        "{:#?}",
        report.verdict
    );
    assert_eq!(
        "NodePort".parse::<ServiceType>().unwrap(),
        ServiceType::NodePort
    );
    assert!("Nope".parse::<ServiceType>().is_err());
}

#[test]
fn report_json_round_trips() {
    let report = explain(&healthy());
    let json = crate::render::json(&report).unwrap();
    assert!(json.contains("\"health\": \"healthy\""));
    assert!(json.contains("\"id\": \"driver_boundary\""));
    let back: PathReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn no_panic_on_odd_facts() {
    let odd = "wéb\u{1b}[31m<&>\"'\n\u{0}";
    for kind in TargetKind::ALL {
        let target = Target {
            kind,
            name: odd.into(),
            port: Some(PortRef::Name(odd.into())),
        };
        let mut f = ExplainFacts::new(target.clone(), odd);
        for intent in [
            Intent::Any,
            Intent::Direct,
            Intent::NodePort,
            Intent::LoadBalancer,
            Intent::PortForward,
        ] {
            f.intent = intent;
            let report = explain(&f);
            let _ = crate::render::text(&report, true);
            let _ = crate::render::svg(&report);
        }
        // Contradictory facts: pods and probes without a service, errors everywhere.
        let mut f = healthy();
        f.target = target;
        f.service.as_mut().unwrap().ports.clear();
        f.pods[0].name = odd.into();
        f.pods[0].container_ports.clear();
        f.portforward[0].ok = false;
        f.portforward[0].error = Some(odd.into());
        f.api.error = Some(odd.into());
        f.node_probes[0].address = "::1".into();
        for reachable in [Tri::Yes, Tri::No, Tri::Unknown] {
            f.api.reachable = reachable;
            let report = explain(&f);
            let _ = crate::render::text(&report, false);
            let _ = crate::render::svg(&report);
        }
        let mut f = healthy();
        f.service.as_mut().unwrap().type_ = ServiceType::ExternalName;
        let report = explain(&f);
        assert_eq!(
            report.verdict.primary.unwrap().kind,
            FindingKind::ExternalNameService
        );
    }
}

#[test]
#[ignore = "prints the diagrams for a human to read"]
fn print_samples() {
    let mut f = boundary();
    println!("{}", crate::render::text(&explain(&f), false));
    f.portforward[0].ok = false;
    f.portforward[0].error = Some("error forwarding port 8080 to pod web-1, uid abc: failed to connect to localhost:8080 inside namespace \"x\": connection refused".into());
    println!("{}", crate::render::text(&explain(&f), false));
    let mut f = healthy();
    f.pods.clear();
    f.endpoints.clear();
    f.namespace_pods = vec![PodLabels {
        name: "web-v2-7d9c".into(),
        labels: labels(&[("app", "web-v2")]),
        workload: Some("deployment/web".into()),
    }];
    println!("{}", crate::render::text(&explain(&f), false));
    println!("{}", crate::render::text(&explain(&healthy()), false));
    if let Ok(dir) = std::env::var("KUBEWAY_SVG_OUT") {
        let _ = std::fs::write(
            format!("{dir}/healthy.svg"),
            crate::render::svg(&explain(&healthy())),
        );
        let _ = std::fs::write(
            format!("{dir}/boundary.svg"),
            crate::render::svg(&explain(&boundary())),
        );
        let mut f = healthy();
        f.pods.clear();
        f.endpoints.clear();
        f.portforward.clear();
        f.node_probes.clear();
        f.namespace_pods = vec![PodLabels {
            name: "web-v2-7d9c".into(),
            labels: labels(&[("app", "web-v2")]),
            workload: Some("deployment/web".into()),
        }];
        let _ = std::fs::write(
            format!("{dir}/selector.svg"),
            crate::render::svg(&explain(&f)),
        );
    }
}
