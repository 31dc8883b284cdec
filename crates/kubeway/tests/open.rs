//! `kubeway open` in loopback mode: a reachable node gets a direct NodePort URL with no forward
//! running; a node behind a boundary gets a forward whose URL works; a ClusterIP Service opens
//! through a forward; a Service with no ready pods gets the Kubernetes-layer explanation instead
//! of a dead URL.

mod common;

use std::time::Duration;

use common::Env;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use kubeway_core::env::Provider;
use kubeway_lab::LabSpec;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn open_cmd(env: &Env, args: &[&str]) -> Command {
    let mut c = env.kubeway(&["open", "--no-browser"]);
    c.args(args);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reachable_node_gets_a_direct_nodeport_url() {
    let env = Env::start(LabSpec::new(Provider::Generic)).await;
    let out = open_cmd(&env, &["web", "--url"])
        .output()
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (_, node_ip, _) = env.lab.nodes()[0];
    assert!(
        url.starts_with(&format!("http://{node_ip}:3")),
        "a NodePort URL on the node: {url}"
    );
    // The process has exited: no forward is running, and the URL still answers.
    assert!(env.page(&url).await.contains("Hello from web-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_boundary_and_a_clusterip_service_open_through_a_forward() {
    let env = Env::start(LabSpec::new(Provider::Minikube)).await;
    for svc in ["web", "echo"] {
        let mut child = open_cmd(&env, &[svc]).spawn().expect("runs");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut table = Vec::new();
        while let Ok(Ok(Some(l))) =
            tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await
        {
            let done = l.contains("forwarding because");
            table.push(l);
            if done {
                break;
            }
        }
        let row = table
            .iter()
            .find(|l| l.starts_with("default"))
            .unwrap_or_else(|| panic!("a row: {table:?}"));
        assert!(
            row.ends_with("forward"),
            "{svc} goes through a forward: {table:?}"
        );
        let why = table.last().expect("why");
        if svc == "web" {
            assert!(why.contains("minikube"), "names the boundary: {why}");
            let url = row.split_whitespace().nth(3).expect("url");
            assert!(url.starts_with("http://127.0.0.1:"));
            assert!(env.page(url).await.contains("Hello from web-"));
        } else {
            assert!(why.contains("ClusterIP"), "{why}");
        }
        let _ = child.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_ready_pods_gets_an_explanation_not_a_dead_url() {
    let env = Env::start(LabSpec::new(Provider::Generic)).await;
    let s: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "nobody"},
        "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]}
    }))
    .expect("service");
    Api::<Service>::namespaced(env.client().await, "default")
        .create(&PostParams::default(), &s)
        .await
        .expect("create");
    let out = open_cmd(&env, &["nobody", "--url"])
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty(), "no dead URL is printed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Kubernetes layer") && err.contains("nobody"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_checks_the_pods_before_it_answers() {
    let env = Env::start(LabSpec::new(Provider::Generic)).await;
    let client = env.client().await;
    let apply = |v: serde_json::Value| {
        let client = client.clone();
        async move {
            let kind = v["kind"].as_str().unwrap_or_default().to_string();
            let ns = v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            match kind.as_str() {
                "Namespace" => {
                    let o: k8s_openapi::api::core::v1::Namespace =
                        serde_json::from_value(v).expect("ns");
                    Api::all(client)
                        .create(&PostParams::default(), &o)
                        .await
                        .map(|_| ())
                }
                "Deployment" => {
                    let o: k8s_openapi::api::apps::v1::Deployment =
                        serde_json::from_value(v).expect("deploy");
                    Api::namespaced(client, &ns)
                        .create(&PostParams::default(), &o)
                        .await
                        .map(|_| ())
                }
                _ => {
                    let o: Service = serde_json::from_value(v).expect("svc");
                    Api::namespaced(client, &ns)
                        .create(&PostParams::default(), &o)
                        .await
                        .map(|_| ())
                }
            }
            .expect("created");
        }
    };
    let deploy = |ns: &str, name: &str, args: &[&str]| {
        serde_json::json!({"kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
              "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                {"name": "web", "image": "kubeway.local/http", "args": args,
                 "ports": [{"name": "http", "containerPort": 8080}]}]}}}})
    };
    let svc = |ns: &str, name: &str, target: serde_json::Value| {
        serde_json::json!({"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "NodePort", "selector": {"app": name},
                     "ports": [{"port": 80, "targetPort": target}]}})
    };

    // An app on localhost only: the NodePort is refused behind the node, so open hands out a
    // forward, which works, never the dead NodePort URL.
    apply(deploy("default", "loc", &["--listen=localhost"])).await;
    apply(svc("default", "loc", serde_json::json!("http"))).await;
    assert!(
        env.lab
            .wait_ready("default", "app=loc", 1, Duration::from_secs(30))
            .await
    );
    let mut child = open_cmd(&env, &["loc", "--url"]).spawn().expect("runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a URL in time")
        .expect("read")
        .expect("a line");
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "a forward, not the NodePort: {url}"
    );
    assert!(env.page(&url).await.contains("Hello from loc-"));
    let _ = child.kill().await;

    // --all in a namespace with a working and a broken Service: every working URL, the failing
    // row marked with its reason, exit 3.
    apply(serde_json::json!({"kind": "Namespace", "metadata": {"name": "shop"}})).await;
    apply(deploy("shop", "good", &[])).await;
    apply(svc("shop", "good", serde_json::json!("http"))).await;
    apply(deploy("shop", "bad", &[])).await;
    apply(svc("shop", "bad", serde_json::json!(9999))).await;
    assert!(
        env.lab
            .wait_ready("shop", "app=good", 1, Duration::from_secs(30))
            .await
    );
    assert!(
        env.lab
            .wait_ready("shop", "app=bad", 1, Duration::from_secs(30))
            .await
    );
    let out = open_cmd(&env, &["--all", "-n", "shop"])
        .output()
        .await
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = text
        .lines()
        .find(|l| l.starts_with("shop") && l.contains(" good "))
        .unwrap_or_else(|| panic!("the working row: {text}"));
    let url = good.split_whitespace().nth(3).expect("url");
    assert!(env.page(url).await.contains("Hello from good-"), "{url}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("shop") && l.contains(" bad ") && l.ends_with("failing")),
        "{text}"
    );
    assert!(
        text.contains("bad 80: no working URL: Nothing accepts connections on port 9999"),
        "the reason, as explain says it: {text}"
    );
    // A single broken Service: no URL at all, exit 3.
    let out = open_cmd(&env, &["bad", "-n", "shop", "--url"])
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty(), "no dead URL is printed");
}
