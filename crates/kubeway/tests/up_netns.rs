//! `kubeway up` behind a real boundary: the lab's namespace mode (reachable topology), kubeway
//! and kubectl run in the host namespace, which has no default route. The web Service goes
//! straight to its NodePort on the node, and a UDP port is relayed to its UDP NodePort.
//! Needs root and iproute2; skipped with a message otherwise.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Env, root_net, shutdown_netns, skip_without_netns};
use kubeway_core::env::Provider;
use kubeway_lab::{LabSpec, Topology};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const UDP_ECHO: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: udp-echo}
spec:
  selector: {matchLabels: {app: udp-echo}}
  template:
    metadata: {labels: {app: udp-echo}}
    spec:
      containers:
      - name: echo
        image: kubeway.local/echo
        ports:
        - {containerPort: 9000}
        - {containerPort: 9000, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: udp-echo}
spec:
  type: NodePort
  selector: {app: udp-echo}
  ports:
  - {name: tcp, port: 9000}
  - {name: udp, port: 9000, protocol: UDP}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reachable_node_carries_nodeports_and_relays_udp() {
    if skip_without_netns() {
        return;
    }
    let root = root_net();
    let env = Env::start(LabSpec::new(Provider::Minikube).netns(Topology::Reachable)).await;
    let host = env.lab.host_netns().expect("namespace mode").to_string();
    let mut kubectl = tokio::process::Command::new("ip")
        .args(["netns", "exec", &host, "kubectl"])
        .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    let mut stdin = kubectl.stdin.take().expect("stdin");
    stdin
        .write_all(UDP_ECHO.as_bytes())
        .await
        .expect("manifest");
    drop(stdin);
    let out = kubectl.wait_with_output().await.expect("kubectl apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        env.lab
            .wait_ready("default", "app=udp-echo", 1, Duration::from_secs(30))
            .await
    );

    let mut up = env
        .kubeway(&["up", "-n", "default", "-o", "json"])
        .env("KUBEWAY_STATE_DIR", env.dir.path().join("state"))
        .spawn()
        .expect("up starts");
    let mut lines = BufReader::new(up.stdout.take().expect("stdout")).lines();
    let mut services: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            lines.next_line(),
        )
        .await
        .expect("up is ready in time")
        .expect("read")
        .expect("a line before exit");
        let v: Value = serde_json::from_str(&line).expect("JSON");
        if v["event"] == "ready" {
            break;
        }
        if v["event"] == "service" {
            services.push(v);
        }
    }
    let find = |name: &str| {
        services
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} served: {services:?}"))
            .clone()
    };

    // web: straight to its NodePort on the node, no forward.
    let web = find("web");
    let port = &web["ports"][0];
    assert!(
        port["way"]
            .as_str()
            .is_some_and(|w| w.starts_with("NodePort 198.51.100.2:")),
        "web goes to the node's NodePort: {web}"
    );
    let local = port["local"].as_str().expect("local");
    assert!(
        env.page(&format!("http://{local}/"))
            .await
            .contains("Hello from web-"),
        "web answers on {local}"
    );

    // udp-echo: its UDP port relayed to the UDP NodePort; a datagram comes back.
    let echo = find("udp-echo");
    let udp = echo["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["protocol"] == "UDP")
        .expect("the UDP port")
        .clone();
    assert!(
        udp["way"]
            .as_str()
            .is_some_and(|w| w.starts_with("UDP NodePort 198.51.100.2:")),
        "{echo}"
    );
    let to: SocketAddr = udp["local"].as_str().expect("local").parse().expect("addr");
    let sock = env
        .lab
        .host_place()
        .udp(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("a UDP socket in the host namespace");
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        sock.send_to(b"datagram", to).await.expect("send");
        match tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => break buf[..n].to_vec(),
            _ if Instant::now() < deadline => {}
            other => panic!("no UDP answer from {to}: {other:?}"),
        }
    };
    assert_eq!(got, b"datagram");

    let pid = up.id().expect("running");
    let _ = tokio::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(30), up.wait()).await;
    shutdown_netns(env, &root).await;
}
