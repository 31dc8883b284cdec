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

#[test]
fn rejected_credentials_are_an_api_verdict_naming_the_user() {
    let mut f = healthy();
    f.api.reachable = Tri::No;
    f.api.user = Some("kind-kind".into());
    f.api.credentials = Some("client certificate".into());
    f.api.failure = Some(ApiFailure {
        kind: ApiFailureKind::Unauthorized,
        status: Some(401),
        verb: None,
        resource: None,
        namespace: None,
        message: "Unauthorized".into(),
    });
    let report = assert_verdict(
        &f,
        FindingKind::ApiUnauthorized,
        HopKind::ApiServer,
        Layer::Api,
    );
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    assert!(
        cause.contains("rejected the credentials of user kind-kind"),
        "{cause}"
    );
    assert!(!cause.contains("is the cluster running"), "{cause}");
    assert!(commands(&report).contains("kind export kubeconfig --name kind"));
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn a_forbidden_target_names_the_missing_verb() {
    let mut f = healthy();
    f.service = None;
    f.target_found = Tri::Unknown;
    f.api.user = Some("dev".into());
    f.api_failures = vec![ApiFailure {
        kind: ApiFailureKind::Forbidden,
        status: Some(403),
        verb: Some("get".into()),
        resource: Some("services".into()),
        namespace: Some("default".into()),
        message: "services \"web\" is forbidden".into(),
    }];
    let report = assert_verdict(&f, FindingKind::ApiForbidden, HopKind::Service, Layer::Api);
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    assert!(
        cause.contains("user dev get services in namespace default"),
        "{cause}"
    );
    assert!(commands(&report).contains("kubectl auth can-i get services"));
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn a_timeout_names_the_url() {
    let mut f = healthy();
    f.api.reachable = Tri::No;
    f.api.failure = Some(ApiFailure {
        kind: ApiFailureKind::TimedOut,
        status: None,
        verb: None,
        resource: None,
        namespace: None,
        message: "timed out".into(),
    });
    let report = assert_verdict(
        &f,
        FindingKind::ApiUnreachable,
        HopKind::ApiServer,
        Layer::Api,
    );
    assert!(
        report
            .verdict
            .summary
            .contains("https://127.0.0.1:40000 did not answer in time")
    );
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn another_refused_request_is_a_warning_that_says_what_was_not_checked() {
    let mut f = healthy();
    f.api_failures = vec![ApiFailure {
        kind: ApiFailureKind::Forbidden,
        status: Some(403),
        verb: Some("list".into()),
        resource: Some("events".into()),
        namespace: Some("default".into()),
        message: "events is forbidden".into(),
    }];
    let report = explain(&f);
    assert_eq!(report.verdict.health, Health::Healthy);
    let w = report
        .verdict
        .findings
        .iter()
        .find(|x| x.kind == FindingKind::ApiRequestFailed)
        .expect("a warning");
    assert!(
        w.cause.contains("list events (403 Forbidden)"),
        "{}",
        w.cause
    );
}
