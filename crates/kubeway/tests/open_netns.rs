//! `kubeway open`, `env` and `explain` behind a real boundary: the lab's namespace mode, with
//! kubeway run in the host namespace (no default route). Reachable node: a direct NodePort URL,
//! no forward. Published API port only: a forward that says why, and explain names the boundary.
//! Needs root and iproute2; skipped with a message otherwise.

mod common;

use std::time::Duration;

use common::{Env, root_net, shutdown_netns, skip_without_netns};
use kubeway_core::env::Provider;
use kubeway_lab::{LabSpec, Topology};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reachable_node_opens_direct_with_no_forward() {
    if skip_without_netns() {
        return;
    }
    let root = root_net();
    let env = Env::start(LabSpec::new(Provider::Minikube).netns(Topology::Reachable)).await;
    let out = env
        .kubeway(&["open", "web", "--url", "--no-browser"])
        .output()
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        url.starts_with("http://198.51.100.2:3"),
        "a NodePort URL on the node address: {url}"
    );
    // kubeway has exited: no forward runs, and the URL answers from the host namespace.
    assert!(env.page(&url).await.contains("Hello from web-"));

    // env reports the node reachable, by the same probe.
    let out = env
        .kubeway(&["env", "-o", "json"])
        .output()
        .await
        .expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "env -o json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let probes = report["node_probes"].as_array().expect("node probes");
    assert!(
        probes
            .iter()
            .any(|p| p["address"] == "198.51.100.2" && p["probe"]["result"] != "unreachable"),
        "{report:#}"
    );
    shutdown_netns(env, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_api_only_forwards_and_names_the_boundary() {
    if skip_without_netns() {
        return;
    }
    let root = root_net();
    let env = Env::start(LabSpec::new(Provider::Minikube).netns(Topology::Published)).await;
    let mut child = env
        .kubeway(&["open", "web", "--url", "--no-browser"])
        .spawn()
        .expect("runs");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("a URL in time")
        .expect("read")
        .expect("a line");
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "a forward's URL: {url}"
    );
    assert!(env.page(&url).await.contains("Hello from web-"));
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut said = Vec::new();
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_secs(10), stderr.next_line()).await
    {
        let done = l.contains("foreground");
        said.push(l);
        if done {
            break;
        }
    }
    let said = said.join("\n");
    assert!(
        said.contains("forwarding because") && said.contains("198.51.100.2"),
        "says why it forwards: {said}"
    );
    child.kill().await.expect("stop the forward");

    // env says the same, by the same probe.
    let out = env
        .kubeway(&["env", "-o", "json"])
        .output()
        .await
        .expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("env -o json");
    assert!(
        report["node_probes"].as_array().is_some_and(|ps| ps
            .iter()
            .any(|p| p["address"] == "198.51.100.2" && p["probe"]["result"] == "unreachable")),
        "{report:#}"
    );
    let out = env
        .kubeway(&["explain", "svc/web"])
        .output()
        .await
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("198.51.100.2") && text.to_lowercase().contains("minikube"),
        "explain names the node and the boundary: {text}"
    );
    shutdown_netns(env, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_desktop_publishes_nodeports_on_localhost_and_open_takes_them() {
    if skip_without_netns() {
        return;
    }
    let root = root_net();
    let env = Env::start(LabSpec::new(Provider::DockerDesktop).netns(Topology::Published)).await;
    let out = env
        .kubeway(&["open", "web", "--no-browser", "-o", "json"])
        .output()
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opened: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let o = &opened[0];
    assert_eq!(o["via"], "NodePort on localhost", "{opened:#}");
    let url = o["url"].as_str().expect("url");
    assert!(url.starts_with("http://127.0.0.1:3"), "{url}");
    // kubeway has exited; the published port answers from the host namespace.
    assert!(env.page(url).await.contains("Hello from web-"));

    // Docker Desktop's load balancer announces `localhost`; open takes it.
    let out = env
        .kubeway(&["open", "web-lb", "--url"])
        .output()
        .await
        .expect("runs");
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        url,
        "http://localhost:80",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = common::http_get(&env.lab.host_place(), "127.0.0.1:80".parse().expect("addr")).await;
    assert!(page.contains("Hello from web-"), "{page}");
    shutdown_netns(env, &root).await;
}
