//! Kubernetes-layer rules: the target, the Service, selectors and workloads, readiness, target
//! ports, EndpointSlices.

use super::*;

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
