//! Driver-layer rules: the boundary and the LoadBalancer implementation.

use super::*;

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
