//! The lab's kube-proxy: answers NodePorts (and servicelb LoadBalancer ports) on node addresses
//! and carries TCP connections and UDP flows to ready endpoints, round-robin. In loopback mode
//! only *reachable* nodes listen: a node "behind a boundary" gets no listeners, like a VM the
//! host cannot route to. In namespace mode every node listens inside its namespace (the boundary
//! is real), and ClusterIPs answer there too, as iptables rules on a node do.
//!
//! UDP is carried as conntrack carries it: the first datagram from a client address picks an
//! endpoint and opens a flow (one upstream socket, sent from the node address, as kube-proxy's
//! masquerading does); the client's later datagrams follow the flow, and the endpoint's answers
//! go back to the client from the NodePort. A flow idle for [`UDP_FLOW_IDLE`] is forgotten, and
//! a flow whose endpoint stopped being ready is dropped at once (kube-proxy clears those
//! conntrack entries), so the next datagram picks a ready endpoint.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::images::{MAX_DATAGRAM, udp_error_is_transient};
use crate::resources::core;
use crate::store::ns_name;

/// How long a UDP flow lives without a datagram either way (conntrack's
/// `nf_conntrack_udp_timeout`).
pub const UDP_FLOW_IDLE: Duration = Duration::from_secs(30);

/// The transport a Service port is carried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// A Service port's `protocol`; None for SCTP, which the lab does not carry.
    fn of(port: &Value) -> Option<Self> {
        match port["protocol"].as_str().unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        }
    }
}

/// One listener: node address, port and protocol, serving one Service port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    addr: SocketAddr,
    proto: Proto,
    /// Published on the host side (the host namespace's 127.0.0.1), not on the node.
    on_host: bool,
    ns: String,
    svc: String,
    port_name: String,
}

/// Ready endpoints of one Service port: pod IP and target port.
type Endpoints = Vec<(IpAddr, u16)>;

struct Listener {
    cancel: CancellationToken,
    /// UDP: the endpoints the relay picks from, kept current by [`Proxy::sync`].
    endpoints: Option<watch::Sender<Endpoints>>,
}

/// The running listeners.
#[derive(Default)]
pub struct Proxy {
    listeners: std::sync::Mutex<HashMap<Key, Listener>>,
}

fn ready_endpoints(ctx: &Ctx, ns: &str, svc: &str, port_name: &str, proto: Proto) -> Endpoints {
    let (slices, _) = ctx.store.list(core("endpointslices"), Some(ns));
    let mut out = Vec::new();
    for s in slices
        .iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == svc)
    {
        let Some(port) = s["ports"]
            .as_array()
            .and_then(|ps| {
                ps.iter().find(|p| {
                    p["name"].as_str().unwrap_or("") == port_name
                        && p["protocol"].as_str().unwrap_or("TCP") == proto.name()
                })
            })
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for e in s["endpoints"].as_array().into_iter().flatten() {
            if e["conditions"]["ready"] != Value::Bool(true) {
                continue;
            }
            if let Some(ip) = e["addresses"][0].as_str().and_then(|a| a.parse().ok()) {
                out.push((ip, port));
            }
        }
    }
    out
}

impl Proxy {
    /// Opens and closes listeners to match the Services, and hands UDP relays their endpoints.
    pub async fn sync(&self, ctx: &Arc<Ctx>) {
        let lb = ctx.lb_ingress().is_some();
        let mut want: HashMap<Key, Endpoints> = HashMap::new();
        let (services, _) = ctx.store.list(core("services"), None);
        if ctx.net.place.is_netns() {
            for svc in &services {
                let ip = svc["spec"]["clusterIP"]
                    .as_str()
                    .and_then(|a| a.parse::<IpAddr>().ok());
                let Some(ip) = ip else { continue };
                let (ns, name) = ns_name(svc);
                for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
                    let port_name = p["name"].as_str().unwrap_or_default().to_string();
                    let port = p["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                    let (Some(port), Some(proto)) = (port, Proto::of(p)) else {
                        continue;
                    };
                    let eps = ready_endpoints(ctx, &ns, &name, &port_name, proto);
                    if eps.is_empty() {
                        continue;
                    }
                    let key = Key {
                        addr: SocketAddr::new(ip, port),
                        proto,
                        on_host: false,
                        ns: ns.clone(),
                        svc: name.clone(),
                        port_name,
                    };
                    want.insert(key, eps);
                }
            }
        }
        for node_ip in ctx.proxied_node_ips() {
            for svc in &services {
                let ty = svc["spec"]["type"].as_str().unwrap_or_default();
                if !matches!(ty, "NodePort" | "LoadBalancer") {
                    continue;
                }
                let (ns, name) = ns_name(svc);
                for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
                    let port_name = p["name"].as_str().unwrap_or_default().to_string();
                    let Some(proto) = Proto::of(p) else { continue };
                    // Like kube-proxy's REJECT rule: no ready endpoint, connection refused (TCP)
                    // or port unreachable (UDP).
                    let eps = ready_endpoints(ctx, &ns, &name, &port_name, proto);
                    if eps.is_empty() {
                        continue;
                    }
                    let mut ports = Vec::new();
                    if let Some(np) = p["nodePort"].as_u64() {
                        ports.push(np);
                    }
                    if ty == "LoadBalancer" && lb {
                        ports.extend(p["port"].as_u64());
                    }
                    for port in ports.into_iter().filter_map(|p| u16::try_from(p).ok()) {
                        let key = Key {
                            addr: SocketAddr::new(node_ip, port),
                            proto,
                            on_host: false,
                            ns: ns.clone(),
                            svc: name.clone(),
                            port_name: port_name.clone(),
                        };
                        want.insert(key, eps.clone());
                    }
                }
            }
        }
        if ctx.nodeports_on_host_localhost() {
            // What vpnkit does for Docker Desktop: every NodePort also on the host's localhost.
            let node_keys: Vec<(Key, Endpoints)> = want
                .iter()
                .filter(|(k, _)| {
                    ctx.nodes
                        .first()
                        .is_some_and(|n| k.addr.ip() == IpAddr::V4(n.ip))
                })
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect();
            for (k, eps) in node_keys {
                let key = Key {
                    addr: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), k.addr.port()),
                    on_host: true,
                    ..k
                };
                want.insert(key, eps);
            }
        }
        let to_open: Vec<(Key, Endpoints)> = {
            let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            l.retain(|k, listener| {
                let Some(eps) = want.get(k) else {
                    listener.cancel.cancel();
                    return false;
                };
                if let Some(tx) = &listener.endpoints {
                    tx.send_if_modified(|have| {
                        let changed = have != eps;
                        if changed {
                            have.clone_from(eps);
                        }
                        changed
                    });
                }
                true
            });
            want.into_iter()
                .filter(|(k, _)| !l.contains_key(k))
                .collect()
        };
        for (key, eps) in to_open {
            let place = if key.on_host {
                &ctx.api_place
            } else {
                &ctx.net.place
            };
            let cancel = ctx.root_cancel().child_token();
            let endpoints = match key.proto {
                Proto::Tcp => {
                    let listener = match place.listen(key.addr) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::debug!(addr = %key.addr, error = %e, "node port listener not opened");
                            continue;
                        }
                    };
                    tokio::spawn(serve_tcp(
                        ctx.clone(),
                        key.clone(),
                        listener,
                        cancel.clone(),
                    ));
                    None
                }
                Proto::Udp => {
                    let sock = match place.udp(key.addr) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(addr = %key.addr, error = %e, "UDP node port not opened");
                            continue;
                        }
                    };
                    let (tx, rx) = watch::channel(eps);
                    // Upstream flows leave from the node address (the first node's for ports
                    // published on the host or answered on a ClusterIP).
                    let source = ctx
                        .nodes
                        .iter()
                        .map(|n| IpAddr::V4(n.ip))
                        .find(|ip| !key.on_host && *ip == key.addr.ip())
                        .or_else(|| ctx.nodes.first().map(|n| IpAddr::V4(n.ip)));
                    let Some(source) = source else { continue };
                    let relay = UdpRelay {
                        ctx: ctx.clone(),
                        sock: Arc::new(sock),
                        source,
                        cancel: cancel.clone(),
                        epoch: tokio::time::Instant::now(),
                    };
                    tokio::spawn(relay.run(rx));
                    Some(tx)
                }
            };
            self.listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, Listener { cancel, endpoints });
        }
    }
}

async fn serve_tcp(
    ctx: Arc<Ctx>,
    key: Key,
    listener: tokio::net::TcpListener,
    cancel: CancellationToken,
) {
    let rr = AtomicUsize::new(0);
    loop {
        let (mut client, _) = tokio::select! {
            c = listener.accept() => match c { Ok(c) => c, Err(_) => continue },
            _ = cancel.cancelled() => return,
        };
        let eps = ready_endpoints(&ctx, &key.ns, &key.svc, &key.port_name, Proto::Tcp);
        if eps.is_empty() {
            // kube-proxy rejects traffic to a Service without ready endpoints.
            crate::images::reset(client);
            continue;
        }
        let (ip, port) = eps[rr.fetch_add(1, Ordering::Relaxed) % eps.len()];
        let ctx2 = ctx.clone();
        let cancel2 = cancel.clone();
        tokio::spawn(async move {
            let Ok(mut upstream) = ctx2.kubelet.dial_pod_ip(ip, port).await else {
                crate::images::reset(client);
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                _ = cancel2.cancelled() => {}
            }
        });
    }
}

/// One UDP flow: a client address bound to one endpoint through one upstream socket.
struct Flow<T> {
    endpoint: (IpAddr, u16),
    /// Milliseconds (since the relay's start) of the last datagram either way.
    seen: Arc<AtomicU64>,
    /// Cancelled when the flow ends (its answer reader stops), or by the reader when the
    /// endpoint reports its port unreachable.
    stop: CancellationToken,
    upstream: T,
}

impl<T> Drop for Flow<T> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The relay's conntrack table: client address → flow.
struct Flows<T> {
    map: HashMap<SocketAddr, Flow<T>>,
    idle_ms: u64,
}

impl<T> Flows<T> {
    fn new(idle: Duration) -> Self {
        Self {
            map: HashMap::new(),
            idle_ms: u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The live flow of `client`, marked as seen at `now_ms`; a flow whose endpoint went away
    /// is forgotten here.
    fn get(&mut self, client: SocketAddr, now_ms: u64) -> Option<&Flow<T>> {
        if self.map.get(&client).is_some_and(|f| f.stop.is_cancelled()) {
            self.map.remove(&client);
        }
        let f = self.map.get(&client)?;
        f.seen.fetch_max(now_ms, Ordering::Relaxed);
        Some(f)
    }

    fn insert(&mut self, client: SocketAddr, flow: Flow<T>) {
        self.map.insert(client, flow);
    }

    fn remove(&mut self, client: SocketAddr) {
        self.map.remove(&client);
    }

    /// Forgets flows idle since `now_ms - idle`; returns when the next one may expire.
    fn expire(&mut self, now_ms: u64) -> Option<u64> {
        let idle = self.idle_ms;
        self.map.retain(|_, f| {
            !f.stop.is_cancelled() && f.seen.load(Ordering::Relaxed).saturating_add(idle) > now_ms
        });
        self.map
            .values()
            .map(|f| f.seen.load(Ordering::Relaxed).saturating_add(idle))
            .min()
    }

    /// Drops flows whose endpoint is no longer ready.
    fn keep_endpoints(&mut self, ready: &[(IpAddr, u16)]) {
        self.map.retain(|_, f| ready.contains(&f.endpoint));
    }
}

/// A UDP NodePort: datagrams from clients to endpoints and back.
struct UdpRelay {
    ctx: Arc<Ctx>,
    /// The NodePort's socket: receives from clients, answers them.
    sock: Arc<UdpSocket>,
    /// Where upstream sockets are bound (the node address).
    source: IpAddr,
    cancel: CancellationToken,
    /// Flow times are milliseconds since this instant.
    epoch: tokio::time::Instant,
}

fn millis_since(epoch: tokio::time::Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl UdpRelay {
    async fn run(self, mut endpoints: watch::Receiver<Endpoints>) {
        let epoch = self.epoch;
        let now_ms = || millis_since(epoch);
        let mut flows: Flows<Arc<UdpSocket>> = Flows::new(UDP_FLOW_IDLE);
        let mut next_expiry: Option<u64> = None;
        let mut rr = 0usize;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let expiry = async {
                match next_expiry {
                    Some(ms) => tokio::time::sleep_until(epoch + Duration::from_millis(ms)).await,
                    None => std::future::pending().await,
                }
            };
            let (n, client) = tokio::select! {
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok(v) => v,
                    Err(e) if udp_error_is_transient(&e) => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, "UDP node port failed");
                        return;
                    }
                },
                changed = endpoints.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let ready = endpoints.borrow_and_update().clone();
                    flows.keep_endpoints(&ready);
                    continue;
                }
                _ = expiry => {
                    next_expiry = flows.expire(now_ms());
                    continue;
                }
                _ = self.cancel.cancelled() => return,
            };
            let now = now_ms();
            let upstream = match flows.get(client, now) {
                Some(f) => f.upstream.clone(),
                None => {
                    let ready = endpoints.borrow().clone();
                    if ready.is_empty() {
                        continue;
                    }
                    let endpoint = ready[rr % ready.len()];
                    rr = rr.wrapping_add(1);
                    let flow = match self.open_flow(client, endpoint, now).await {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::debug!(client = %client, error = %e, "UDP flow not opened");
                            continue;
                        }
                    };
                    let upstream = flow.upstream.clone();
                    flows.insert(client, flow);
                    next_expiry.get_or_insert(now.saturating_add(flows.idle_ms));
                    upstream
                }
            };
            if upstream.send(&buf[..n]).await.is_err() {
                // The endpoint's port is gone (an ICMP error came back): the next datagram
                // opens a new flow.
                flows.remove(client);
            }
        }
    }

    /// Opens an upstream socket from the node address to `endpoint` and starts carrying its
    /// answers back to `client`.
    async fn open_flow(
        &self,
        client: SocketAddr,
        endpoint: (IpAddr, u16),
        now_ms: u64,
    ) -> std::io::Result<Flow<Arc<UdpSocket>>> {
        let up = self.ctx.net.place.udp(SocketAddr::new(self.source, 0))?;
        up.connect(self.ctx.kubelet.pod_udp_addr(endpoint.0, endpoint.1))
            .await?;
        let up = Arc::new(up);
        let seen = Arc::new(AtomicU64::new(now_ms));
        let stop = self.cancel.child_token();
        let (sock, up2, seen2, stop2) = (self.sock.clone(), up.clone(), seen.clone(), stop.clone());
        let epoch = self.epoch;
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let n = tokio::select! {
                    r = up2.recv(&mut buf) => match r {
                        Ok(n) => n,
                        // The endpoint's socket is gone: end the flow.
                        Err(_) => break,
                    },
                    _ = stop2.cancelled() => return,
                };
                seen2.fetch_max(millis_since(epoch), Ordering::Relaxed);
                let _ = sock.send_to(&buf[..n], client).await;
            }
            stop2.cancel();
        });
        Ok(Flow {
            endpoint,
            seen,
            stop,
            upstream: up,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(endpoint: (IpAddr, u16), seen: u64) -> Flow<()> {
        Flow {
            endpoint,
            seen: Arc::new(AtomicU64::new(seen)),
            stop: CancellationToken::new(),
            upstream: (),
        }
    }

    #[test]
    fn udp_flows_expire_when_idle_and_follow_ready_endpoints() {
        let a: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let b: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
        let ep1 = ("127.244.0.2".parse().expect("ip"), 9000);
        let ep2 = ("127.244.0.3".parse().expect("ip"), 9000);
        let mut flows = Flows::new(Duration::from_secs(30));
        flows.insert(a, flow(ep1, 0));
        flows.insert(b, flow(ep2, 10_000));

        // A datagram at 20 s keeps `a` alive until 50 s; `b` was last seen at 10 s.
        assert!(flows.get(a, 20_000).is_some());
        assert_eq!(flows.expire(39_999), Some(40_000));
        assert_eq!(
            flows.expire(40_000),
            Some(50_000),
            "b idle for 30 s is gone"
        );
        assert!(flows.get(b, 40_000).is_none());
        let a_stop = flows.map[&a].stop.clone();
        assert_eq!(flows.expire(50_000), None);
        assert!(
            a_stop.is_cancelled(),
            "a forgotten flow stops its answer reader"
        );

        // A flow whose endpoint is no longer ready is dropped; the others stay.
        flows.insert(a, flow(ep1, 60_000));
        flows.insert(b, flow(ep2, 60_000));
        flows.keep_endpoints(&[ep2]);
        assert!(flows.get(a, 60_000).is_none());
        assert_eq!(flows.get(b, 60_000).map(|f| f.endpoint), Some(ep2));

        // A flow whose endpoint answered "port unreachable" is forgotten on the next datagram.
        flows.map[&b].stop.cancel();
        assert!(flows.get(b, 61_000).is_none());
        assert!(flows.map.is_empty());
    }
}
