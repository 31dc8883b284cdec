//! The lab's API semantics through kube-rs: auth, error Status objects, watches and 410 Gone,
//! API restarts that keep state, crash loops, and node reachability in loopback mode.

mod common;

use std::time::Duration;

use common::{Fixture, eventually};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kubeway_lab::{Denial, LabSpec};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("expected an API Status, got {other:?}"),
    }
}

#[tokio::test]
async fn requests_without_the_token_get_401() {
    let f = Fixture::start(LabSpec::default()).await;
    let text = std::fs::read_to_string(&f.kubeconfig).expect("read");
    let bad = text.replace(f.lab.token(), "wrong-token");
    let path = f.dir.path().join("bad");
    std::fs::write(&path, bad).expect("write");
    let kc = kube::config::Kubeconfig::read_from(&path).expect("parse");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(cfg).expect("client");
    let err = Api::<Pod>::all(client)
        .list(&ListParams::default())
        .await
        .expect_err("unauthorized");
    assert_eq!(api_error(err), (401, "Unauthorized".into()));
}

#[tokio::test]
async fn errors_are_kubernetes_status_objects() {
    let f = Fixture::start(LabSpec::default()).await;
    let client = f.client().await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let err = svcs.get("nope").await.expect_err("missing");
    assert_eq!(api_error(err), (404, "NotFound".into()));

    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "a"}}
    }))
    .expect("svc");
    let created = svcs
        .create(&PostParams::default(), &svc)
        .await
        .expect("create");
    let ip = created
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .expect("clusterIP allocated");
    assert!(ip.starts_with("127.96."), "{ip}");
    let err = svcs
        .create(&PostParams::default(), &svc)
        .await
        .expect_err("dup");
    assert_eq!(api_error(err), (409, "AlreadyExists".into()));

    let mut stale = created.clone();
    stale.metadata.resource_version = Some("1".into());
    let err = svcs
        .replace("a", &PostParams::default(), &stale)
        .await
        .expect_err("stale");
    assert_eq!(api_error(err), (409, "Conflict".into()));

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let bad: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bad"},
        "spec": {"selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "kubeway.local/http"}]}}}
    }))
    .expect("deployment");
    let err = deploys
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("invalid");
    assert_eq!(api_error(err), (422, "Invalid".into()));

    let np: Service = serde_json::from_value(json!({
        "metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}
    }))
    .expect("svc");
    let err = svcs
        .create(&PostParams::default(), &np)
        .await
        .expect_err("nodePort out of range");
    assert_eq!(api_error(err).0, 422);

    f.lab.deny(Denial::new("list", "pods"));
    let err = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .expect_err("denied");
    assert_eq!(api_error(err), (403, "Forbidden".into()));
    f.lab.allow_all();

    let ns_missing: Api<Service> = Api::namespaced(client, "no-such-ns");
    let err = ns_missing
        .create(&PostParams::default(), &svc)
        .await
        .expect_err("no ns");
    assert_eq!(api_error(err), (404, "NotFound".into()));
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_gone_and_fresh_watches_see_changes() {
    let f = Fixture::start(LabSpec::default()).await;
    let svcs: Api<Service> = Api::namespaced(f.client().await, "default");
    let list = svcs.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.expect("rv");
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "w"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .expect("svc");
    svcs.create(&PostParams::default(), &svc)
        .await
        .expect("create");

    // A watch from the list's version replays the create.
    let mut stream = svcs
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .expect("watch")
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("event decodes");
    match ev {
        WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some("w")),
        other => panic!("expected ADDED, got {other:?}"),
    }

    f.lab.compact_history();
    let mut stream = svcs
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .expect("watch")
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("event decodes");
    match ev {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn the_api_server_restarts_with_its_state() {
    let f = Fixture::sample().await;
    let addr = f.lab.api_addr();
    f.lab.stop_api().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped API refuses connections"
    );
    f.lab.start_api().await.expect("restart on the same port");
    let pods: Api<Pod> = Api::namespaced(f.client().await, "default");
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list after restart");
    assert_eq!(list.items.len(), 2, "state kept across the restart");
}

#[tokio::test]
async fn a_crashing_container_is_restarted_with_a_growing_count() {
    let f = Fixture::start(LabSpec::default()).await;
    let pods: Api<Pod> = Api::namespaced(f.client().await, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "crashy"},
        "spec": {"containers": [{"name": "c", "image": "kubeway.local/echo", "args": ["--crash-after=200ms"]}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let restarts = eventually(Duration::from_secs(20), || async {
        let p = pods.get("crashy").await.ok()?;
        let cs = p.status?.container_statuses?;
        let n = cs.first()?.restart_count;
        (n >= 2).then_some(n)
    })
    .await;
    assert!(restarts.is_some(), "restartCount never reached 2");

    let unknown: Pod = serde_json::from_value(json!({
        "metadata": {"name": "unknown"}, "spec": {"containers": [{"name": "c", "image": "quay.io/someone/unknown:1.27"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &unknown)
        .await
        .expect("create");
    let reason = eventually(Duration::from_secs(10), || async {
        let p = pods.get("unknown").await.ok()?;
        let w = p
            .status?
            .container_statuses?
            .first()?
            .state
            .clone()?
            .waiting?;
        w.reason
            .filter(|r| r == "ImagePullBackOff" || r == "ErrImagePull")
    })
    .await;
    assert!(
        reason.is_some(),
        "an unknown image is reported as a pull failure"
    );
}

async fn http_get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn nodeports_answer_on_reachable_nodes_only() {
    for reachable in [true, false] {
        let f = Fixture::sample_with(LabSpec::default().reachable(reachable)).await;
        let svcs: Api<Service> = Api::namespaced(f.client().await, "default");
        let web = svcs.get("web").await.expect("web");
        let node_port = web.spec.and_then(|s| s.ports).expect("ports")[0]
            .node_port
            .expect("nodePort");
        let (_, node_ip, _) = f.lab.nodes()[0];
        assert!(node_ip.is_loopback());
        let addr = std::net::SocketAddr::from((node_ip, node_port as u16));
        if reachable {
            let page = eventually(Duration::from_secs(10), || async {
                http_get(addr).await.ok()
            })
            .await
            .expect("NodePort answers");
            assert!(
                page.contains("200 OK") && page.contains("Hello from web-"),
                "{page}"
            );
        } else {
            assert!(
                http_get(addr).await.is_err(),
                "a node behind a boundary must not answer"
            );
        }
        f.lab.shutdown().await;
    }
}
