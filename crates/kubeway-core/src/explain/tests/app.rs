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
