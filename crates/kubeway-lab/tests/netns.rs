//! The lab's namespace mode: a real boundary between the host namespace (no default route) and the
//! node's namespace, in both topologies, seen from where kubeway runs (TCP, and UDP NodePorts);
//! and nothing left behind.
//! Needs root and iproute2; skipped with a message otherwise.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use kubeway_core::env::Provider;
use kubeway_lab::netns::{self, Place};
use kubeway_lab::{Lab, LabSpec, Topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn skip() -> bool {
    if let Some(why) = netns::unavailable() {
        // Written past the test harness's capture, so the skip shows in CI's log.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: namespace-mode test not run: {why}"
        );
        return true;
    }
    false
}

async fn get(place: &Place, addr: SocketAddr) -> std::io::Result<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), place.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    Ok(out)
}

fn service_field(lab: &Lab, name: &str, f: impl Fn(&serde_json::Value) -> Option<u64>) -> u16 {
    let svc = lab
        .store()
        .get(kubeway_lab::resources::core("services"), "default", name)
        .expect("service");
    f(&svc).and_then(|p| u16::try_from(p).ok()).expect("port")
}

fn ip_out(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks the namespaces are gone after shutdown.
async fn shutdown_and_check(lab: Lab) {
    let names = [
        lab.host_netns().expect("host").to_string(),
        lab.node_netns().expect("node").to_string(),
    ];
    lab.shutdown().await;
    let left = netns::lab_namespaces();
    for n in &names {
        assert!(!left.contains(n), "namespace {n} left behind: {left:?}");
    }
    assert!(
        !ip_out(&["link", "show"]).contains("kw-host")
            && !ip_out(&["link", "show"]).contains("kw-node"),
        "a lab veth leaked into the root namespace"
    );
}

/// A namespace-mode lab with the sample app's web pods ready.
async fn start(persona: Provider, topology: Topology) -> Lab {
    let lab = Lab::start(LabSpec::new(persona).netns(topology).with_sample())
        .await
        .expect("lab");
    assert!(
        lab.wait_ready("default", "app=web", 2, Duration::from_secs(20))
            .await
    );
    lab
}

#[tokio::test]
async fn reachable_node_answers_nodeports_from_the_host_namespace() {
    if skip() {
        return;
    }
    let lab = start(Provider::Minikube, Topology::Reachable).await;
    let host = lab.host_place();
    let node_ip = IpAddr::V4(netns::plan::node_ip(0));

    // The API server answers at the node address, from the host namespace.
    assert_eq!(lab.api_addr().ip(), node_ip);
    host.connect(lab.api_addr())
        .await
        .expect("API at the node address");

    // A NodePort on the node address reaches a pod.
    let np = service_field(&lab, "web", |s| s["spec"]["ports"][0]["nodePort"].as_u64());
    let page = get(&host, SocketAddr::new(node_ip, np)).await.expect("GET");
    assert!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );
    assert!(page.contains("web-"), "the page names its pod: {page}");

    // Pods and ClusterIPs are inside the node: the host has no route to them, and the process's
    // own namespace does not have these addresses at all.
    let pod_ip: IpAddr = lab
        .store()
        .list(kubeway_lab::resources::core("pods"), Some("default"))
        .0
        .iter()
        .find_map(|p| p["status"]["podIP"].as_str()?.parse().ok())
        .expect("pod ip");
    assert!(matches!(pod_ip, IpAddr::V4(v) if v.octets()[..3] == [203, 0, 113]));
    let started = Instant::now();
    let err = host
        .connect(SocketAddr::new(pod_ip, 8080))
        .await
        .expect_err("pod IPs are not routed from the host");
    assert_eq!(
        err.raw_os_error(),
        Some(101),
        "ENETUNREACH expected, got {err}"
    );
    eprintln!("pod IP from the host: {err} after {:?}", started.elapsed());

    // The kube-proxy of the node answers the ClusterIP inside the node namespace.
    let cip: IpAddr = lab
        .store()
        .get(kubeway_lab::resources::core("services"), "default", "web")
        .and_then(|s| s["spec"]["clusterIP"].as_str()?.parse().ok())
        .expect("cluster ip");
    let port = service_field(&lab, "web", |s| s["spec"]["ports"][0]["port"].as_u64());
    let inside = lab.net().place.clone();
    let page = get(&inside, SocketAddr::new(cip, port))
        .await
        .expect("ClusterIP");
    assert!(page.contains("web-"), "{page}");

    // Real kubectl, run in the host namespace, talks to the API server behind the veth.
    let dir = tempfile::tempdir().expect("dir");
    let kc = dir.path().join("kubeconfig");
    lab.write_kubeconfig(&kc).expect("kubeconfig");
    // (tokio's Command: the lab serves on this test's runtime while kubectl runs.)
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", lab.host_netns().expect("host"), "kubectl"])
        .arg(format!("--kubeconfig={}", kc.display()))
        .args(["get", "nodes", "-o", "wide"])
        .output()
        .await
        .expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("198.51.100.2"), "{text}");

    shutdown_and_check(lab).await;
}

#[tokio::test]
async fn published_api_port_only_node_unreachable() {
    if skip() {
        return;
    }
    let lab = start(Provider::DockerDesktop, Topology::Published).await;
    let host = lab.host_place();

    // The API server is a published port on the host namespace's 127.0.0.1 ...
    assert!(lab.api_addr().ip().is_loopback());
    host.connect(lab.api_addr())
        .await
        .expect("published API port");
    // ... which the process's own namespace does not have.
    let own = tokio::net::TcpStream::connect(lab.api_addr()).await;
    assert!(
        own.is_err(),
        "the published port must exist only in the host namespace"
    );

    // The node is behind the boundary: no route, the connect fails at once.
    let np = service_field(&lab, "web", |s| s["spec"]["ports"][0]["nodePort"].as_u64());
    let node_ip = IpAddr::V4(netns::plan::node_ip(0));
    let err = host
        .connect(SocketAddr::new(node_ip, np))
        .await
        .expect_err("node unreachable");
    assert_eq!(
        err.raw_os_error(),
        Some(101),
        "ENETUNREACH expected, got {err}"
    );
    // Inside the node the same NodePort answers: the boundary, not the Service, is in the way.
    let page = get(&lab.net().place, SocketAddr::new(node_ip, np))
        .await
        .expect("NodePort inside the node");
    assert!(page.contains("web-"), "{page}");

    shutdown_and_check(lab).await;
}

/// The echo image with TCP and UDP 9000 behind a NodePort Service, applied with real kubectl
/// from the host namespace. Returns the UDP NodePort once the pod is ready.
async fn apply_udp_echo(lab: &Lab, dir: &std::path::Path) -> u16 {
    let kc = dir.join("kubeconfig");
    lab.write_kubeconfig(&kc).expect("kubeconfig");
    let manifest = r#"
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
    let mut child = tokio::process::Command::new("ip")
        .args(["netns", "exec", lab.host_netns().expect("host"), "kubectl"])
        .arg(format!("--kubeconfig={}", kc.display()))
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(manifest.as_bytes())
        .await
        .expect("manifest");
    drop(stdin);
    let out = child.wait_with_output().await.expect("kubectl apply");
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        lab.wait_ready("default", "app=udp-echo", 1, Duration::from_secs(30))
            .await,
        "echo pod ready"
    );
    service_field(lab, "udp-echo", |s| {
        s["spec"]["ports"]
            .as_array()?
            .iter()
            .find(|p| p["protocol"] == "UDP")?["nodePort"]
            .as_u64()
    })
}

/// Sends `msg` from `sock` to `to` until an answer comes (up to 10 s; the NodePort opens within
/// a second of the endpoint becoming ready).
async fn udp_ask(
    sock: &tokio::net::UdpSocket,
    to: SocketAddr,
    msg: &[u8],
) -> std::io::Result<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 2048];
    loop {
        sock.send_to(msg, to).await?;
        match tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => return Ok((buf[..n].to_vec(), from)),
            Ok(Err(e)) => return Err(e),
            Err(_) if Instant::now() < deadline => {}
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer from {to}"),
                ));
            }
        }
    }
}

#[tokio::test]
async fn udp_nodeport_answers_from_the_host_namespace() {
    if skip() {
        return;
    }
    let lab = Lab::start(LabSpec::new(Provider::Minikube).netns(Topology::Reachable))
        .await
        .expect("lab");
    let dir = tempfile::tempdir().expect("dir");
    let np = apply_udp_echo(&lab, dir.path()).await;
    let node = SocketAddr::new(IpAddr::V4(netns::plan::node_ip(0)), np);

    // From the host namespace's end of the veth, across the boundary, and back from the NodePort.
    let host = lab.host_place();
    let sock = host
        .udp(SocketAddr::new(IpAddr::V4(netns::plan::HOST_IP), 0))
        .expect("a UDP socket in the host namespace");
    let (back, from) = udp_ask(&sock, node, b"datagram across the veth")
        .await
        .expect("the UDP NodePort answers");
    assert_eq!(back, b"datagram across the veth");
    assert_eq!(from, node);

    // The pod's UDP socket is inside the node: the host has no route to the pod IP.
    let pod_ip: IpAddr = lab
        .store()
        .list(kubeway_lab::resources::core("pods"), Some("default"))
        .0
        .iter()
        .find_map(|p| p["status"]["podIP"].as_str()?.parse().ok())
        .expect("pod ip");
    let err = sock
        .send_to(b"direct", SocketAddr::new(pod_ip, 9000))
        .await
        .expect_err("pod IPs are not routed from the host");
    assert_eq!(
        err.raw_os_error(),
        Some(101),
        "ENETUNREACH expected, got {err}"
    );

    drop(sock);
    shutdown_and_check(lab).await;
}

#[tokio::test]
async fn udp_nodeport_published_on_the_host_localhost() {
    if skip() {
        return;
    }
    let lab = Lab::start(LabSpec::new(Provider::DockerDesktop).netns(Topology::Published))
        .await
        .expect("lab");
    let dir = tempfile::tempdir().expect("dir");
    let np = apply_udp_echo(&lab, dir.path()).await;
    let host = lab.host_place();
    let sock = host
        .udp(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("a UDP socket in the host namespace");

    // As vpnkit publishes it: the UDP NodePort on the host namespace's 127.0.0.1.
    let local = SocketAddr::from(([127, 0, 0, 1], np));
    let (back, from) = udp_ask(&sock, local, b"via localhost")
        .await
        .expect("the UDP NodePort answers on the host's localhost");
    assert_eq!((back.as_slice(), from), (&b"via localhost"[..], local));

    // The node address itself is unroutable from the host.
    let node = SocketAddr::new(IpAddr::V4(netns::plan::node_ip(0)), np);
    let err = sock
        .send_to(b"direct", node)
        .await
        .expect_err("the node is behind the boundary");
    assert_eq!(
        err.raw_os_error(),
        Some(101),
        "ENETUNREACH expected, got {err}"
    );

    drop(sock);
    shutdown_and_check(lab).await;
}
