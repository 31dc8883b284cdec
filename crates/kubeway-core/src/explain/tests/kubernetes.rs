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
        workload: Some("deployment/web".into()),
    }];
    let report = assert_verdict(
        &f,
        FindingKind::SelectorNearMiss,
        HopKind::Selector,
        Layer::Kubernetes,
    );
    let primary = report.verdict.primary.as_ref().unwrap();
    assert!(primary.cause.contains("app=web-v2"), "{}", primary.cause);
    let cmds = commands(&report);
    assert!(
        cmds.contains(r#"{"spec":{"selector":{"app":"web-v2"}}}"#),
        "{cmds}"
    );
    assert!(
        !cmds.contains("kubectl label pod"),
        "never relabel a controller-owned pod: {cmds}"
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
    assert_eq!(report.exit_code(), 3);
}

/// No pods and no endpoints behind svc/web, with these pods in the namespace.
fn orphan(pods: Vec<PodLabels>) -> ExplainFacts {
    let mut f = healthy();
    f.pods.clear();
    f.endpoints.clear();
    f.node_probes.clear();
    f.portforward.clear();
    f.namespace_pods = pods;
    f
}

fn labelled(name: &str, pairs: &[(&str, &str)], workload: Option<&str>) -> PodLabels {
    PodLabels {
        name: name.into(),
        labels: labels(pairs),
        workload: workload.map(str::to_string),
    }
}

#[test]
fn a_selector_typo_names_the_nearest_pods_ranked_by_edit_distance() {
    let f = orphan(vec![
        labelled("db-1", &[("app", "db")], Some("deployment/db")),
        labelled("wbe-7d9c-x", &[("app", "wbe")], Some("deployment/wbe")),
        labelled("webb-1", &[("app", "webby")], Some("deployment/webby")),
    ]);
    let report = assert_verdict(
        &f,
        FindingKind::SelectorNearMiss,
        HopKind::Selector,
        Layer::Kubernetes,
    );
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    assert!(
        cause.contains("wbe-7d9c-x of deployment/wbe has app=wbe, 1 edit from app=web"),
        "{cause}"
    );
    assert!(
        !cause.contains("db-1"),
        "app=db is no typo of app=web: {cause}"
    );
    let cmds = commands(&report);
    assert!(
        cmds.contains(r#"{"spec":{"selector":{"app":"wbe"}}}"#),
        "{cmds}"
    );
    assert!(!cmds.contains("kubectl label"), "{cmds}");
    assert!(
        report.verdict.primary.as_ref().unwrap().fixes[1]
            .action
            .contains("deployment/wbe's pod template"),
        "the other fix is the workload's template"
    );
}

#[test]
fn a_pod_no_controller_owns_may_be_relabelled() {
    let f = orphan(vec![labelled("hand-made", &[("app", "wbe")], None)]);
    let report = explain(&f);
    assert!(
        commands(&report).contains("kubectl label pod hand-made app=web --overwrite"),
        "{}",
        commands(&report)
    );
}

#[test]
fn a_missing_label_is_added_to_the_workload_template() {
    let mut f = orphan(vec![labelled(
        "web-1",
        &[("app", "web")],
        Some("deployment/web"),
    )]);
    f.service.as_mut().unwrap().selector = labels(&[("app", "web"), ("tier", "frontend")]);
    let report = assert_verdict(
        &f,
        FindingKind::SelectorNearMiss,
        HopKind::Selector,
        Layer::Kubernetes,
    );
    let cmds = commands(&report);
    assert!(
        cmds.contains(r#"kubectl patch deployment/web -p '{"spec":{"template":{"metadata":{"labels":{"tier":"frontend"}}}}}'"#),
        "{cmds}"
    );
    assert!(
        cmds.contains(r#"{"spec":{"selector":{"tier":null}}}"#),
        "{cmds}"
    );
    assert!(!cmds.contains("kubectl label"), "{cmds}");
}

#[test]
fn a_workload_scaled_to_zero_is_named_before_labels() {
    let mut f = orphan(vec![labelled(
        "db-1",
        &[("app", "db")],
        Some("deployment/db"),
    )]);
    f.workloads = vec![WorkloadSummary {
        kind: "deployment".into(),
        name: "web".into(),
        replicas: Some(0),
        template_labels: labels(&[("app", "web"), ("pod-template-hash", "x")]),
        ..WorkloadSummary::default()
    }];
    let report = assert_verdict(
        &f,
        FindingKind::WorkloadScaledToZero,
        HopKind::Selector,
        Layer::Kubernetes,
    );
    let cmds = commands(&report);
    assert!(
        cmds.contains("kubectl scale deployment/web --replicas=1"),
        "{cmds}"
    );
    assert!(!cmds.contains("label"), "{cmds}");
    assert!(report.verdict.summary.contains("scaled to 0"));
}

#[test]
fn a_workload_that_cannot_create_pods_says_why() {
    let mut f = orphan(vec![]);
    f.workloads = vec![WorkloadSummary {
        kind: "deployment".into(),
        name: "web".into(),
        replicas: Some(2),
        template_labels: labels(&[("app", "web")]),
        problems: vec![ConditionFacts {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("pods \"web-1\" is forbidden: exceeded quota: compute".into()),
        }],
        ..WorkloadSummary::default()
    }];
    let report = assert_verdict(
        &f,
        FindingKind::WorkloadRolloutFailing,
        HopKind::Selector,
        Layer::Kubernetes,
    );
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    assert!(
        cause.contains("exceeded quota") && cause.contains("2 pods"),
        "{cause}"
    );
}

#[test]
fn pods_in_another_namespace_are_named() {
    let mut f = orphan(vec![]);
    f.other_namespace_pods = vec![NamespacedName {
        namespace: "shop".into(),
        name: "web-1".into(),
    }];
    let report = assert_verdict(
        &f,
        FindingKind::PodsInOtherNamespace,
        HopKind::Selector,
        Layer::Kubernetes,
    );
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    assert!(
        cause.contains("namespace shop") && cause.contains("shop/web-1"),
        "{cause}"
    );
}

#[test]
fn a_missing_namespace_is_named_as_missing() {
    let mut f = healthy();
    f.namespace = "shpo".into();
    f.target_found = Tri::No;
    f.service = None;
    f.namespace_found = Tri::No;
    f.namespaces = vec!["default".into(), "shop".into()];
    let report = assert_verdict(
        &f,
        FindingKind::NamespaceNotFound,
        HopKind::Service,
        Layer::Kubernetes,
    );
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    assert!(
        cause.contains("Namespace shpo does not exist") && cause.contains("shop"),
        "{cause}"
    );
    assert!(!cause.contains("no Service"), "{cause}");
    assert_eq!(
        report.exit_code(),
        1,
        "not found is an error, not a broken path"
    );
}

/// svc/web with both pods stuck, their first container as `c`.
fn stuck(c: ContainerFacts, waiting: Option<&str>, events: Vec<EventFacts>) -> ExplainFacts {
    let mut f = healthy();
    for p in &mut f.pods {
        p.ready = false;
        p.waiting_reason = waiting.map(str::to_string);
        p.containers = vec![c.clone()];
        p.events = events.clone();
    }
    for e in &mut f.endpoints {
        e.ready = false;
    }
    f.node_probes.clear();
    f.portforward.clear();
    f
}

#[test]
fn an_image_that_cannot_be_pulled_is_named_and_no_log_is_advised() {
    let f = stuck(
        ContainerFacts {
            name: "web".into(),
            image: "nginx:1.999".into(),
            waiting_reason: Some("ImagePullBackOff".into()),
            waiting_message: Some("Back-off pulling image \"nginx:1.999\"".into()),
            ..ContainerFacts::default()
        },
        Some("ImagePullBackOff"),
        vec![EventFacts {
            reason: "Failed".into(),
            message: "Failed to pull image \"nginx:1.999\": not found".into(),
            count: 3,
        }],
    );
    let report = assert_verdict(
        &f,
        FindingKind::ImagePullFailing,
        HopKind::Pods,
        Layer::Kubernetes,
    );
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    assert!(
        cause.contains("\"nginx:1.999\"") && cause.contains("not found"),
        "{cause}"
    );
    let cmds = commands(&report);
    assert!(
        !cmds.contains("kubectl logs"),
        "the container never started: {cmds}"
    );
    assert!(
        cmds.contains("kubectl set image deployment/web web=IMAGE:TAG"),
        "{cmds}"
    );
}

#[test]
fn a_crash_loop_gives_exit_code_reason_and_last_log_line() {
    let f = stuck(
        ContainerFacts {
            name: "web".into(),
            image: "kubeway.local/http".into(),
            restarts: 4,
            waiting_reason: Some("CrashLoopBackOff".into()),
            exit_code: Some(3),
            exit_reason: Some("Error".into()),
            last_log: vec!["listening on :8080".into(), "fatal: no DATABASE_URL".into()],
            ..ContainerFacts::default()
        },
        Some("CrashLoopBackOff"),
        vec![],
    );
    let report = assert_verdict(&f, FindingKind::CrashLooping, HopKind::Pods, Layer::App);
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    for words in [
        "exited with code 3 (Error)",
        "4 restarts",
        "CrashLoopBackOff",
        "fatal: no DATABASE_URL",
    ] {
        assert!(cause.contains(words), "{words}: {cause}");
    }
    assert!(commands(&report).contains("kubectl logs web-2 -c web --previous"));
}

#[test]
fn never_ready_names_the_probe_and_its_last_failure() {
    let f = stuck(
        ContainerFacts {
            name: "web".into(),
            image: "kubeway.local/http".into(),
            readiness_probe: Some(ReadinessProbeFacts {
                kind: "httpGet".into(),
                target: "GET :8080/healthz".into(),
                port: Some(8080),
            }),
            ..ContainerFacts::default()
        },
        None,
        vec![EventFacts {
            reason: "Unhealthy".into(),
            message: "Readiness probe failed: HTTP probe failed with statuscode: 503".into(),
            count: 12,
        }],
    );
    let report = assert_verdict(
        &f,
        FindingKind::ReadinessFailing,
        HopKind::Pods,
        Layer::Kubernetes,
    );
    let cause = &report.verdict.primary.as_ref().unwrap().cause;
    for words in ["httpGet GET :8080/healthz", "statuscode: 503", "12 times"] {
        assert!(cause.contains(words), "{words}: {cause}");
    }
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
        ..WorkloadFacts::default()
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
