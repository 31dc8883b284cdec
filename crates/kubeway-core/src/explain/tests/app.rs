//! App-layer rules: the process in each pod.

use super::*;

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

fn pf(pod: &str, ok: bool) -> PortForwardProbe {
    PortForwardProbe {
        pod: pod.into(),
        port: 8080,
        ok,
        error: (!ok).then(|| {
            format!("error forwarding port 8080 to pod {pod}, uid x: failed to connect to localhost:8080 inside namespace \"x\": connection refused")
        }),
    }
}

fn ip(pod: &str, answered: Tri) -> PodIpProbe {
    PodIpProbe {
        pod: pod.into(),
        port: 8080,
        answered,
        detail: (answered == Tri::No)
            .then(|| "dial tcp 10.244.0.5:8080: connect: connection refused".to_string()),
    }
}

#[test]
fn one_pod_of_two_refusing_is_degraded_not_healthy() {
    let mut f = healthy();
    f.portforward = vec![pf("web-1", true), pf("web-2", false)];
    f.pod_ip_probes = vec![ip("web-1", Tri::Yes), ip("web-2", Tri::Yes)];
    let report = assert_verdict(
        &f,
        FindingKind::SomePodsRefuse,
        HopKind::Process,
        Layer::App,
    );
    assert_eq!(report.verdict.health, Health::Degraded);
    assert_eq!(report.exit_code(), 0);
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    assert!(
        cause.contains("1 of the 2 ready pods") && cause.contains("web-2"),
        "{cause}"
    );
    assert!(cause.contains("its pod IP accepts"), "{cause}");
    // Per pod, in the report.
    let bad = report.pods.iter().find(|p| p.name == "web-2").unwrap();
    assert_eq!(bad.process, Status::Broken);
    assert_eq!(bad.pod_ip, Status::Ok);
    assert!(
        bad.process_detail.contains("connection refused"),
        "{}",
        bad.process_detail
    );
}

#[test]
fn an_app_on_localhost_only_is_the_app_layer_not_the_node() {
    let mut f = healthy();
    f.portforward = vec![pf("web-1", true), pf("web-2", true)];
    f.pod_ip_probes = vec![ip("web-1", Tri::No), ip("web-2", Tri::No)];
    f.node_probes[0].answered = Tri::No;
    f.node_probes[0].detail = Some("connection refused".into());
    let report = assert_verdict(
        &f,
        FindingKind::ListensOnLocalhostOnly,
        HopKind::Process,
        Layer::App,
    );
    assert_eq!(
        report.verdict.health,
        Health::Degraded,
        "port-forward still works"
    );
    assert!(
        !report
            .verdict
            .findings
            .iter()
            .any(|x| x.kind == FindingKind::NodePortUnanswered),
        "the node is not blamed: {:#?}",
        report.verdict.findings
    );
    assert_eq!(
        report.way(WayKind::NodePort).unwrap().status,
        Status::Broken
    );
    assert_eq!(report.way(WayKind::PortForward).unwrap().status, Status::Ok);
    let primary = report.verdict.primary.as_ref().unwrap();
    assert!(primary.fixes[0].action.contains("0.0.0.0:8080"));
    f.intent = Intent::NodePort;
    let report = explain(&f);
    assert_eq!(report.verdict.health, Health::Broken);
    assert_eq!(report.exit_code(), 3);
    assert_eq!(
        report.verdict.primary.unwrap().kind,
        FindingKind::ListensOnLocalhostOnly
    );
}

#[test]
fn a_probe_that_dials_the_pod_ip_of_a_localhost_app_is_why_it_is_never_ready() {
    let mut f = healthy();
    for p in &mut f.pods {
        p.ready = false;
        p.containers = vec![ContainerFacts {
            name: "web".into(),
            readiness_probe: Some(ReadinessProbeFacts {
                kind: "tcpSocket".into(),
                target: "TCP :8080".into(),
                port: Some(8080),
            }),
            ..ContainerFacts::default()
        }];
    }
    for e in &mut f.endpoints {
        e.ready = false;
    }
    f.node_probes.clear();
    f.portforward = vec![pf("web-1", true)];
    f.pod_ip_probes = vec![ip("web-1", Tri::No)];
    let report = assert_verdict(
        &f,
        FindingKind::ListensOnLocalhostOnly,
        HopKind::Process,
        Layer::App,
    );
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    assert!(
        cause.contains("tcpSocket TCP :8080") && cause.contains("never ready"),
        "{cause}"
    );
    assert_eq!(report.exit_code(), 3);
}

#[test]
fn a_pod_ip_that_accepts_proves_the_pod_address_only_app() {
    let mut f = healthy();
    f.portforward = vec![pf("web-1", false)];
    f.pod_ip_probes = vec![ip("web-1", Tri::Yes)];
    let report = assert_verdict(
        &f,
        FindingKind::ListensOnPodAddressOnly,
        HopKind::Process,
        Layer::App,
    );
    assert!(
        report
            .verdict
            .primary
            .unwrap()
            .cause
            .contains("accepts on its pod address")
    );
}
