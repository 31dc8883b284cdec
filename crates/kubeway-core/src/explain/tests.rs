//! Scenario tests: one set of facts per failure class, each asserting the hop, the layer, a fix
//! command and a one-sentence summary.

use std::collections::BTreeMap;

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
fn context_does_not_exist() {
    let mut f = healthy();
    f.context.name = "kind-knid".into();
    f.context.exists = false;
    f.api.reachable = Tri::Unknown;
    let report = assert_verdict(
        &f,
        FindingKind::ContextMissing,
        HopKind::Context,
        Layer::Host,
    );
    assert_eq!(report.verdict.health, Health::Broken);
    let cmds = commands(&report);
    assert!(cmds.contains("kubectl config get-contexts"), "{cmds}");
    assert!(cmds.contains("--context kind-kind"), "{cmds}");
    assert!(report.verdict.summary.contains("kind-kind"));
    // Nothing past the context is claimed broken.
    assert_eq!(
        report.hop(HopKind::Service).unwrap().status,
        Status::Unknown
    );
}

#[test]
fn api_server_unreachable_names_the_providers_start_command() {
    let mut f = healthy();
    f.api.reachable = Tri::No;
    f.api.error = Some("dial tcp 127.0.0.1:40000: connect: connection refused".into());
    f.environment = None;
    let report = assert_verdict(
        &f,
        FindingKind::ApiUnreachable,
        HopKind::ApiServer,
        Layer::Api,
    );
    assert!(commands(&report).contains("kind get clusters"));
    assert!(report.verdict.summary.contains("is the cluster running?"));

    f.context.name = "minikube".into();
    let report = assert_verdict(
        &f,
        FindingKind::ApiUnreachable,
        HopKind::ApiServer,
        Layer::Api,
    );
    assert!(commands(&report).contains("minikube start"));
    assert_eq!(report.hop(HopKind::Pods).unwrap().status, Status::Unknown);
}

#[test]
fn service_not_found_suggests_close_names() {
    let mut f = healthy();
    f.target = Target::parse("svc/wbe", TargetKind::Service).unwrap();
    f.target_found = Tri::No;
    f.service = None;
    f.pods.clear();
    f.endpoints.clear();
    let report = assert_verdict(
        &f,
        FindingKind::ServiceNotFound,
        HopKind::Service,
        Layer::Kubernetes,
    );
    assert!(
        report.verdict.summary.contains("did you mean web?"),
        "{}",
        report.verdict.summary
    );
    assert!(commands(&report).contains("kubeway explain svc/web"));
}

#[test]
fn selector_matches_no_pods_names_the_near_miss() {
    let mut f = healthy();
    f.pods.clear();
    f.endpoints.clear();
    f.node_probes = vec![probe("172.18.0.2", 30080, Tri::No)];
    f.portforward.clear();
    f.namespace_pods = vec![PodLabels {
        name: "web-v2-7d9c".into(),
        labels: labels(&[("app", "web-v2")]),
    }];
    let report = assert_verdict(
        &f,
        FindingKind::SelectorMatchesNothing,
        HopKind::Selector,
        Layer::Kubernetes,
    );
    let primary = report.verdict.primary.as_ref().unwrap();
    assert!(primary.cause.contains("app=web-v2"), "{}", primary.cause);
    let cmds = commands(&report);
    assert!(cmds.contains("kubectl get pods --show-labels"), "{cmds}");
    assert!(
        cmds.contains(r#"{"spec":{"selector":{"app":"web-v2"}}}"#),
        "{cmds}"
    );
    assert!(
        cmds.contains("kubectl label pod web-v2-7d9c app=web --overwrite"),
        "{cmds}"
    );
    // The failed NodePort probe is not blamed on the boundary.
    assert_ne!(
        report.hop(HopKind::DriverBoundary).unwrap().status,
        Status::Broken
    );
    assert_eq!(
        report.hop(HopKind::NodePort).unwrap().status,
        Status::Unknown
    );
    assert_eq!(report.verdict.health, Health::Broken);
}

#[test]
fn pods_exist_but_none_ready() {
    let mut f = healthy();
    for p in &mut f.pods {
        p.ready = false;
    }
    f.pods[1].waiting_reason = Some("CrashLoopBackOff".into());
    f.pods[1].restarts = 5;
    for e in &mut f.endpoints {
        e.ready = false;
    }
    f.node_probes = vec![probe("172.18.0.2", 30080, Tri::No)];
    f.portforward[0].ok = false;
    f.portforward[0].error = Some("pod is not running".into());
    let report = assert_verdict(
        &f,
        FindingKind::PodsNotReady,
        HopKind::Pods,
        Layer::Kubernetes,
    );
    let summary = &report.verdict.summary;
    assert!(
        summary.contains("CrashLoopBackOff") && summary.contains("web-2"),
        "{summary}"
    );
    let cmds = commands(&report);
    assert!(cmds.contains("kubectl describe pod web-2"), "{cmds}");
    assert!(cmds.contains("kubectl logs web-2 --previous"), "{cmds}");
    assert_eq!(
        report.hop(HopKind::Endpoints).unwrap().status,
        Status::Broken
    );
}

#[test]
fn target_port_name_missing_on_the_pods() {
    let mut f = healthy();
    for p in &mut f.pods {
        p.container_ports[0].name = Some("web".into());
    }
    f.endpoints.clear();
    f.node_probes = vec![probe("172.18.0.2", 30080, Tri::No)];
    f.portforward.clear();
    let report = assert_verdict(
        &f,
        FindingKind::TargetPortNameMissing,
        HopKind::TargetPort,
        Layer::Kubernetes,
    );
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    assert!(
        cause.contains("\"http\"") && cause.contains("8080 (web)"),
        "{cause}"
    );
    assert!(commands(&report).contains(r#"{"spec":{"ports":[{"port":80,"targetPort":8080}]}}"#));
    assert!(report.pods.iter().all(|p| p.status == Status::Broken));
}

#[test]
fn target_port_number_not_served() {
    let mut f = healthy();
    if let Some(s) = &mut f.service {
        s.ports[0].target_port = PortRef::Number(8081);
    }
    for e in &mut f.endpoints {
        e.ports[0].port = 8081;
    }
    f.node_probes = vec![probe("172.18.0.2", 30080, Tri::No)];
    f.portforward = vec![PortForwardProbe {
        pod: "web-1".into(),
        port: 8081,
        ok: false,
        error: Some(
            "error forwarding port 8081 to pod 1f2e, uid : failed to connect to localhost:8081 inside namespace \"1f2e\", IPv4: dial tcp4 127.0.0.1:8081: connect: connection refused IPv6 dial tcp6 [::1]:8081: connect: connection refused"
                .into(),
        ),
    }];
    let report = assert_verdict(
        &f,
        FindingKind::TargetPortNotServed,
        HopKind::TargetPort,
        Layer::Kubernetes,
    );
    assert!(commands(&report).contains(r#""targetPort":8080"#));
    assert_eq!(report.hop(HopKind::Process).unwrap().status, Status::Broken);
}

#[test]
fn app_listens_on_its_pod_address_only() {
    let mut f = healthy();
    f.portforward = vec![PortForwardProbe {
        pod: "web-1".into(),
        port: 8080,
        ok: false,
        error: Some(
            "error forwarding port 8080 to pod web-1, uid abc: failed to connect to localhost:8080 inside namespace \"ns\": connection refused"
                .into(),
        ),
    }];
    let report = assert_verdict(
        &f,
        FindingKind::ListensOnPodAddressOnly,
        HopKind::Process,
        Layer::App,
    );
    let primary = report.verdict.primary.as_ref().unwrap();
    assert!(primary.cause.contains("10.244.0.5"), "{}", primary.cause);
    assert!(primary.cause.contains("Service traffic may still reach it"));
    assert!(primary.fixes[0].action.contains("0.0.0.0:8080"));
    // The NodePort still works, so the service is degraded, not down.
    assert_eq!(report.verdict.health, Health::Degraded);
    assert!(
        report
            .verdict
            .summary
            .contains("still reachable via NodePort")
    );
    let process = report.hop(HopKind::Process).unwrap();
    assert!(
        process
            .observed
            .contains("failed to connect to localhost:8080: connection refused"),
        "{}",
        process.observed
    );

    // Without the NodePort, nothing works.
    f.node_probes.clear();
    f.environment = Some(detection(
        Provider::Minikube,
        &["192.168.49.2"],
        HostOs::MacOs,
    ));
    let report = assert_verdict(
        &f,
        FindingKind::ListensOnPodAddressOnly,
        HopKind::Process,
        Layer::App,
    );
    assert_eq!(report.verdict.health, Health::Broken);
}

#[test]
fn cluster_ip_opened_as_if_node_port() {
    let mut f = healthy();
    if let Some(s) = &mut f.service {
        s.type_ = ServiceType::ClusterIp;
        s.ports[0].node_port = None;
    }
    f.node_probes.clear();
    f.intent = Intent::NodePort;
    let report = assert_verdict(
        &f,
        FindingKind::ClusterIpNotNodePort,
        HopKind::NodePort,
        Layer::Kubernetes,
    );
    assert_eq!(report.verdict.health, Health::Broken);
    assert!(report.verdict.summary.contains("only inside the cluster"));
    let cmds = commands(&report);
    assert!(cmds.contains("kubeway open svc/web"), "{cmds}");
    assert!(cmds.contains("kubeway forward svc/web 8080:80"), "{cmds}");
    assert!(
        cmds.contains(r#"kubectl patch svc web -p '{"spec":{"type":"NodePort"}}'"#),
        "{cmds}"
    );

    // Asking for a NodePort-range port on a ClusterIP Service says the same.
    f.intent = Intent::Any;
    f.target.port = Some(PortRef::Number(30080));
    let report = assert_verdict(
        &f,
        FindingKind::ClusterIpNotNodePort,
        HopKind::NodePort,
        Layer::Kubernetes,
    );
    assert!(
        report
            .verdict
            .summary
            .contains("port 30080 looks like a NodePort")
    );

    // A ClusterIP Service asked about in general is healthy through port-forward.
    f.target.port = None;
    let report = explain(&f);
    assert_eq!(
        report.verdict.health,
        Health::Healthy,
        "{:#?}",
        report.verdict
    );
    assert!(report.verdict.primary.is_none());
    assert_eq!(
        report.verdict.findings[0].kind,
        FindingKind::ClusterIpInClusterOnly
    );
    assert_eq!(report.verdict.findings[0].severity, Severity::Info);
}

#[test]
fn load_balancer_pending_without_implementation() {
    let mut f = healthy();
    f.environment = Some(detection(
        Provider::Minikube,
        &["192.168.49.2"],
        HostOs::Linux,
    ));
    if let Some(s) = &mut f.service {
        s.type_ = ServiceType::LoadBalancer;
    }
    f.node_probes = vec![probe("192.168.49.2", 30080, Tri::Yes)];
    let report = assert_verdict(
        &f,
        FindingKind::LoadBalancerPending,
        HopKind::LbIngress,
        Layer::Driver,
    );
    let cmds = commands(&report);
    assert!(
        cmds.contains("kubeway tunnel") && cmds.contains("minikube tunnel"),
        "{cmds}"
    );
    assert!(report.verdict.summary.contains("<pending>"));
    assert_eq!(report.verdict.health, Health::Degraded);
    assert_eq!(
        report.way(WayKind::LoadBalancer).unwrap().status,
        Status::Broken
    );
}

#[test]
fn boundary_blocks_node_port_while_port_forward_works_is_healthy_with_a_warning() {
    let mut f = boundary();
    let report = explain(&f);
    assert_eq!(
        report.verdict.health,
        Health::Healthy,
        "{:#?}",
        report.verdict
    );
    let primary = report.verdict.primary.clone().unwrap();
    assert_eq!(primary.kind, FindingKind::BoundaryBlocksNodePort);
    assert_eq!(primary.hop, "driver_boundary");
    assert_eq!(primary.layer, Layer::Driver);
    assert_eq!(primary.severity, Severity::Warning);
    assert_one_sentence(&primary.cause);
    assert!(
        primary.cause.contains("minikube's docker driver on macOS"),
        "{}",
        primary.cause
    );
    let summary = &report.verdict.summary;
    assert_one_sentence(summary);
    assert!(
        summary.contains("reachable via port-forward; direct NodePort is blocked by minikube (docker driver) — KIC container in a VM."),
        "{summary}"
    );
    assert!(commands(&report).contains("kubeway open svc/web"));
    assert!(commands(&report).contains("minikube service web --url"));
    assert_eq!(
        report.hop(HopKind::DriverBoundary).unwrap().status,
        Status::Warning
    );
    assert_eq!(report.verdict.works_via, vec![WayKind::PortForward]);

    // Asked about direct access, the same boundary is the broken verdict.
    f.intent = Intent::Direct;
    let report = assert_verdict(
        &f,
        FindingKind::BoundaryBlocksNodePort,
        HopKind::DriverBoundary,
        Layer::Driver,
    );
    assert_eq!(report.verdict.health, Health::Broken);
    assert_eq!(report.verdict.primary.unwrap().severity, Severity::Broken);
}

#[test]
fn docker_desktop_vm_named_and_localhost_node_port_used() {
    let mut f = healthy();
    f.context.name = "docker-desktop".into();
    f.environment = Some(detection(
        Provider::DockerDesktop,
        &["192.168.65.3"],
        HostOs::MacOs,
    ));
    f.node_probes = vec![probe("192.168.65.3", 30080, Tri::No)];
    f.localhost_probe = Some(ProbeFacts {
        node: None,
        address: "localhost".into(),
        port: 30080,
        answered: Tri::Yes,
        detail: None,
    });
    let report = explain(&f);
    assert_eq!(
        report.verdict.health,
        Health::Healthy,
        "{:#?}",
        report.verdict
    );
    let primary = report.verdict.primary.clone().unwrap();
    assert_eq!(primary.hop, "driver_boundary");
    assert!(
        primary
            .cause
            .starts_with("Docker Desktop's VM is in between"),
        "{}",
        primary.cause
    );
    assert!(
        report
            .verdict
            .works_via
            .contains(&WayKind::LocalhostNodePort)
    );
    assert_eq!(
        report.environment.boundary.as_deref(),
        Some("Docker Desktop VM")
    );
    // Direct access works through localhost, so even a direct question is answered healthy.
    f.intent = Intent::Direct;
    assert_eq!(explain(&f).verdict.health, Health::Healthy);
}

#[test]
fn rbac_denies_port_forward() {
    let mut f = healthy();
    f.environment = Some(detection(
        Provider::Minikube,
        &["192.168.49.2"],
        HostOs::MacOs,
    ));
    f.node_probes.clear();
    f.rbac = RbacFacts {
        get_portforward: Tri::No,
        create_portforward: Tri::Yes,
        reason: None,
    };
    f.portforward = vec![PortForwardProbe {
        pod: "web-1".into(),
        port: 8080,
        ok: false,
        error: Some("pods \"web-1\" is forbidden: User \"dev\" cannot get resource \"pods/portforward\" in API group \"\" in the namespace \"default\"".into()),
    }];
    let report = assert_verdict(
        &f,
        FindingKind::PortForwardForbidden,
        HopKind::Rbac,
        Layer::Api,
    );
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    assert!(cause.contains("not get pods/portforward"), "{cause}");
    assert!(
        cause.contains("WebSocket port-forward needs get"),
        "{cause}"
    );
    assert!(
        commands(&report).contains(
            "kubectl create role portforward --verb=get,create --resource=pods/portforward"
        )
    );
    assert_eq!(report.verdict.health, Health::Broken);

    // From the access review alone, without a probe.
    f.portforward.clear();
    f.rbac.create_portforward = Tri::No;
    let report = assert_verdict(
        &f,
        FindingKind::PortForwardForbidden,
        HopKind::Rbac,
        Layer::Api,
    );
    assert!(report.verdict.summary.contains("neither get nor create"));
}

#[test]
fn rbac_with_one_verb_is_a_warning_when_port_forward_works() {
    let mut f = healthy();
    f.rbac.get_portforward = Tri::No;
    let report = explain(&f);
    assert_eq!(report.verdict.health, Health::Healthy);
    let primary = report.verdict.primary.unwrap();
    assert_eq!(primary.kind, FindingKind::PortForwardVerbMissing);
    assert_eq!(primary.severity, Severity::Warning);
}

#[test]
fn pod_and_deployment_targets() {
    let mut f = healthy();
    f.target = Target::parse("pod/web-1:8080", TargetKind::Pod).unwrap();
    f.service = None;
    f.pods.truncate(1);
    f.endpoints.clear();
    f.node_probes.clear();
    let report = explain(&f);
    assert_eq!(
        report.verdict.health,
        Health::Healthy,
        "{:#?}",
        report.verdict
    );
    assert!(report.hop(HopKind::Service).is_none());
    assert_eq!(report.ways.len(), 1);

    f.pods[0].ready = false;
    f.pods[0].waiting_reason = Some("ImagePullBackOff".into());
    f.portforward.clear();
    let report = assert_verdict(
        &f,
        FindingKind::PodsNotReady,
        HopKind::Pods,
        Layer::Kubernetes,
    );
    assert!(
        report
            .verdict
            .summary
            .starts_with("Pod web-1 is not ready: it is waiting in ImagePullBackOff")
    );

    let mut f = healthy();
    f.target = Target::parse("deploy/web", TargetKind::Deployment).unwrap();
    f.service = None;
    f.workload = Some(WorkloadFacts {
        replicas: Some(0),
        selector: labels(&[("app", "web")]),
    });
    f.pods.clear();
    f.portforward.clear();
    let report = assert_verdict(
        &f,
        FindingKind::WorkloadHasNoPods,
        HopKind::Selector,
        Layer::Kubernetes,
    );
    assert!(commands(&report).contains("kubectl scale deploy/web --replicas=1"));
}

#[test]
fn namespaces_appear_in_commands() {
    let mut f = healthy();
    f.namespace = "shop".into();
    f.pods.clear();
    f.endpoints.clear();
    let report = explain(&f);
    assert!(commands(&report).contains("kubectl get pods -n shop --show-labels"));
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
        }];
        let _ = std::fs::write(
            format!("{dir}/selector.svg"),
            crate::render::svg(&explain(&f)),
        );
    }
}
