//! The lab's kube-proxy: answers NodePorts (and servicelb LoadBalancer ports) on node addresses
//! and carries connections to ready endpoints, round-robin. In loopback mode only *reachable*
//! nodes listen: a node "behind a boundary" gets no listeners, like a VM the host cannot route
//! to. In namespace mode every node listens inside its namespace (the boundary is real), and
//! ClusterIPs answer there too, as iptables rules on a node do.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::resources::core;
use crate::store::ns_name;

/// One listener: node address and port, serving one Service port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    addr: SocketAddr,
    /// Published on the host side (the host namespace's 127.0.0.1), not on the node.
    on_host: bool,
    ns: String,
    svc: String,
    port_name: String,
}

/// The running listeners.
#[derive(Default)]
pub struct Proxy {
    listeners: std::sync::Mutex<HashMap<Key, CancellationToken>>,
}

fn ready_endpoints(ctx: &Ctx, ns: &str, svc: &str, port_name: &str) -> Vec<(IpAddr, u16)> {
    let (slices, _) = ctx.store.list(core("endpointslices"), Some(ns));
    let mut out = Vec::new();
    for s in slices
        .iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == svc)
    {
        let Some(port) = s["ports"]
            .as_array()
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p["name"].as_str().unwrap_or("") == port_name)
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
    /// Opens and closes listeners to match the Services.
    pub async fn sync(&self, ctx: &Arc<Ctx>) {
        let lb = ctx.lb_ingress().is_some();
        let mut want: Vec<Key> = Vec::new();
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
                    let Some(port) = port else { continue };
                    if p["protocol"].as_str().unwrap_or("TCP") != "TCP"
                        || ready_endpoints(ctx, &ns, &name, &port_name).is_empty()
                    {
                        continue;
                    }
                    want.push(Key {
                        addr: SocketAddr::new(ip, port),
                        on_host: false,
                        ns: ns.clone(),
                        svc: name.clone(),
                        port_name,
                    });
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
                    // Like kube-proxy's REJECT rule: no ready endpoint, connection refused.
                    if ready_endpoints(ctx, &ns, &name, &port_name).is_empty() {
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
                        want.push(Key {
                            addr: SocketAddr::new(node_ip, port),
                            on_host: false,
                            ns: ns.clone(),
                            svc: name.clone(),
                            port_name: port_name.clone(),
                        });
                    }
                }
            }
        }
        if ctx.nodeports_on_host_localhost() {
            // What vpnkit does for Docker Desktop: every NodePort also on the host's localhost.
            let node_keys: Vec<Key> = want
                .iter()
                .filter(|k| {
                    ctx.nodes
                        .first()
                        .is_some_and(|n| k.addr.ip() == IpAddr::V4(n.ip))
                })
                .cloned()
                .collect();
            for k in node_keys {
                want.push(Key {
                    addr: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), k.addr.port()),
                    on_host: true,
                    ..k
                });
            }
        }
        let to_open: Vec<Key> = {
            let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            l.retain(|k, c| {
                let keep = want.contains(k);
                if !keep {
                    c.cancel();
                }
                keep
            });
            want.into_iter().filter(|k| !l.contains_key(k)).collect()
        };
        for key in to_open {
            let place = if key.on_host {
                &ctx.api_place
            } else {
                &ctx.net.place
            };
            let listener = match place.listen(key.addr) {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(addr = %key.addr, error = %e, "node port listener not opened");
                    continue;
                }
            };
            let cancel = ctx.root_cancel().child_token();
            self.listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), cancel.clone());
            let ctx = ctx.clone();
            let rr = Arc::new(AtomicUsize::new(0));
            tokio::spawn(async move {
                loop {
                    let (mut client, _) = tokio::select! {
                        c = listener.accept() => match c { Ok(c) => c, Err(_) => continue },
                        _ = cancel.cancelled() => return,
                    };
                    let eps = ready_endpoints(&ctx, &key.ns, &key.svc, &key.port_name);
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
            });
        }
    }
}
