//! UDP in the lab, on loopback (127.0.0.0/8 only): the echo image answers datagrams on the
//! container ports declared `protocol: UDP`; the apiserver shares one NodePort between the TCP
//! and UDP ports of one number; EndpointSlices carry UDP ports; the kube-proxy carries UDP
//! NodePorts to ready endpoints and back, one flow per client; a node made unreachable, or a
//! Service without ready endpoints, stops answering.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{Fixture, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kubeway_lab::LabSpec;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

/// Sends `msg` to `to` until an answer comes (up to 10 s): the NodePort opens within a second of
/// the endpoints becoming ready. Returns the answer and who sent it.
async fn udp_ask(sock: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<(Vec<u8>, SocketAddr)> {
    eventually(Duration::from_secs(10), || async {
        sock.send_to(msg, to).await.ok()?;
        let mut buf = vec![0u8; 2048];
        let (n, from) = tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some((buf[..n].to_vec(), from))
    })
    .await
}

/// Polls until a datagram to `to` comes back as "port unreachable" (ECONNREFUSED on a connected
/// socket): nothing listens there any more.
async fn udp_refused(to: SocketAddr) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.connect(to).await.expect("connect");
    eventually(Duration::from_secs(10), || async {
        if let Err(e) = sock.send(b"anyone?").await {
            return (e.kind() == std::io::ErrorKind::ConnectionRefused).then_some(());
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await
    .is_some()
}

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API Status, got {other:?}"),
    }
}

#[tokio::test]
async fn apiserver_shares_a_nodeport_between_tcp_and_udp_of_one_number() {
    let f = Fixture::start(LabSpec::default()).await;
    let svcs: Api<Service> = Api::namespaced(f.client().await, "default");
    let svc = |name: &str, ports: serde_json::Value| -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "ports": ports}}),
        )
        .expect("service")
    };
    let node_ports = |s: &Service| -> Vec<(String, i32, Option<i32>)> {
        s.spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.protocol.unwrap_or_default(), p.port, p.node_port))
            .collect()
    };

    // Allocated: TCP 53 and UDP 53 get the same NodePort; 8053 gets its own.
    let dns = svcs
        .create(
            &PostParams::default(),
            &svc(
                "dns",
                json!([{"name": "dns-tcp", "port": 53}, {"name": "dns", "port": 53, "protocol": "UDP"},
                       {"name": "alt", "port": 8053, "protocol": "UDP"}]),
            ),
        )
        .await
        .expect("create");
    let got = node_ports(&dns);
    let (tcp, udp, alt) = (
        got[0].2.expect("np"),
        got[1].2.expect("np"),
        got[2].2.expect("np"),
    );
    assert_eq!((got[0].0.as_str(), got[1].0.as_str()), ("TCP", "UDP"));
    assert_eq!(tcp, udp, "one NodePort for TCP and UDP 53: {got:?}");
    assert_ne!(alt, tcp, "{got:?}");

    // Requested on the UDP port only: the TCP port of the same number takes it too.
    let req = (30000..=32767)
        .find(|p| ![tcp, alt].contains(p))
        .expect("a free NodePort");
    let shared = svcs
        .create(
            &PostParams::default(),
            &svc(
                "shared",
                json!([{"name": "t", "port": 5000}, {"name": "u", "port": 5000, "protocol": "UDP", "nodePort": req}]),
            ),
        )
        .await
        .expect("create");
    assert_eq!(
        node_ports(&shared).iter().map(|p| p.2).collect::<Vec<_>>(),
        vec![Some(req), Some(req)]
    );

    // The same NodePort twice on one protocol is a duplicate; another Service's is taken.
    let free = (30000..=32767)
        .find(|p| ![tcp, alt, req].contains(p))
        .expect("a free NodePort");
    let err = svcs
        .create(
            &PostParams::default(),
            &svc(
                "dup",
                json!([{"name": "a", "port": 1, "protocol": "UDP", "nodePort": free},
                       {"name": "b", "port": 2, "protocol": "UDP", "nodePort": free}]),
            ),
        )
        .await
        .expect_err("duplicate");
    let (code, msg) = api_error(err);
    assert_eq!(code, 422, "{msg}");
    assert!(
        msg.contains("spec.ports[1].nodePort") && msg.contains("Duplicate value"),
        "{msg}"
    );
    let err = svcs
        .create(
            &PostParams::default(),
            &svc(
                "taken",
                json!([{"name": "u", "port": 9, "protocol": "UDP", "nodePort": req}]),
            ),
        )
        .await
        .expect_err("taken");
    let (code, msg) = api_error(err);
    assert_eq!(code, 422, "{msg}");
    assert!(msg.contains("already allocated"), "{msg}");
    f.lab.shutdown().await;
}

/// A Deployment of the echo image with TCP and UDP 9000, and a NodePort Service for both, made
/// through the API as a user would. Returns the Service's NodePorts (TCP, UDP).
async fn deploy_udp_echo(f: &Fixture, replicas: u32) -> (u16, u16) {
    let client = f.client().await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "udp-echo"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "udp-echo"}},
            "template": {"metadata": {"labels": {"app": "udp-echo"}}, "spec": {"containers": [{
                "name": "echo", "image": "kubeway.local/echo:1.0",
                "ports": [{"name": "echo", "containerPort": 9000},
                          {"name": "echo-udp", "containerPort": 9000, "protocol": "UDP"}]}]}}}
    }))
    .expect("deployment");
    deploys
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    let svcs: Api<Service> = Api::namespaced(client, "default");
    let s: Service = serde_json::from_value(json!({
        "metadata": {"name": "udp-echo"},
        "spec": {"type": "NodePort", "selector": {"app": "udp-echo"}, "ports": [
            {"name": "tcp", "port": 9000, "targetPort": "echo"},
            {"name": "udp", "port": 9000, "protocol": "UDP", "targetPort": "echo-udp"}]}
    }))
    .expect("service");
    let s = svcs
        .create(&PostParams::default(), &s)
        .await
        .expect("create service");
    let ports = s.spec.and_then(|s| s.ports).expect("ports");
    let np = |i: usize| u16::try_from(ports[i].node_port.expect("nodePort")).expect("u16");
    assert!(
        f.lab
            .wait_ready(
                "default",
                "app=udp-echo",
                replicas as usize,
                Duration::from_secs(30)
            )
            .await,
        "echo pods ready"
    );
    (np(0), np(1))
}

#[tokio::test]
async fn udp_nodeport_echoes_through_the_kube_proxy() {
    let f = Fixture::start(LabSpec::default().reachable(true)).await;
    let (tcp_np, udp_np) = deploy_udp_echo(&f, 2).await;
    assert_eq!(tcp_np, udp_np, "TCP and UDP 9000 share their NodePort");

    // The EndpointSlice carries the UDP port, its protocol and the named targetPort resolved.
    let slices: Api<EndpointSlice> = Api::namespaced(f.client().await, "default");
    let udp_port = eventually(Duration::from_secs(10), || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=udp-echo"))
            .await
            .ok()?;
        let s = list.items.into_iter().next()?;
        let ready = s
            .endpoints
            .iter()
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        (ready == 2).then_some(())?;
        s.ports?
            .into_iter()
            .find(|p| p.name.as_deref() == Some("udp"))
    })
    .await
    .expect("a slice with two ready endpoints and the udp port");
    assert_eq!(
        (udp_port.protocol.as_deref(), udp_port.port),
        (Some("UDP"), Some(9000))
    );

    let (_, node_ip, _) = f.lab.nodes()[0];
    assert!(node_ip.is_loopback());
    let nodeport = SocketAddr::new(IpAddr::V4(node_ip), udp_np);

    // One client: its datagram comes back unchanged, from the NodePort.
    let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind a");
    let (back, from) = udp_ask(&a, nodeport, b"hello over udp")
        .await
        .expect("the UDP NodePort answers");
    assert_eq!(back, b"hello over udp");
    assert_eq!(from, nodeport, "answers come from the NodePort");

    // Two clients at once, interleaved: each gets its own answers, in order, nothing else.
    let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind b");
    udp_ask(&b, nodeport, b"b joins").await.expect("b answered");
    for i in 0..20u8 {
        a.send_to(&[b'a', i], nodeport).await.expect("send a");
        b.send_to(&[b'b', i, i], nodeport).await.expect("send b");
    }
    let mut buf = [0u8; 64];
    for i in 0..20u8 {
        let (n, from) = tokio::time::timeout(Duration::from_secs(10), a.recv_from(&mut buf))
            .await
            .expect("a's answer in time")
            .expect("recv a");
        assert_eq!((&buf[..n], from), (&[b'a', i][..], nodeport));
        let (n, from) = tokio::time::timeout(Duration::from_secs(10), b.recv_from(&mut buf))
            .await
            .expect("b's answer in time")
            .expect("recv b");
        assert_eq!((&buf[..n], from), (&[b'b', i, i][..], nodeport));
    }

    // TCP on the same NodePort number is its own socket, and echoes too.
    let mut tcp = tokio::net::TcpStream::connect(SocketAddr::new(IpAddr::V4(node_ip), tcp_np))
        .await
        .expect("TCP NodePort");
    tcp.write_all(b"tcp too").await.expect("write");
    tcp.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).await.expect("read");
    assert_eq!(got, b"tcp too");

    // A node made unreachable stops answering UDP; reachable again, it answers again.
    f.lab.set_reachable(false);
    assert!(
        udp_refused(nodeport).await,
        "an unreachable node still answers UDP"
    );
    f.lab.set_reachable(true);
    let (back, _) = udp_ask(&a, nodeport, b"back again")
        .await
        .expect("answers once reachable again");
    assert_eq!(back, b"back again");

    // No ready endpoint left: port unreachable, as kube-proxy's REJECT rule answers.
    let deploys: Api<Deployment> = Api::namespaced(f.client().await, "default");
    deploys
        .patch(
            "udp-echo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("scale to 0");
    assert!(
        udp_refused(nodeport).await,
        "a Service without ready endpoints still answers UDP"
    );
    f.lab.shutdown().await;
}
