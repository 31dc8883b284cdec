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
