//! API-layer rules: the API server, its errors, RBAC on port-forward.

use super::*;

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
