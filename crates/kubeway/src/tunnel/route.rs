//! `kubeway tunnel --route` (Linux, root): the minikube-compatible way — one kernel route sends
//! the cluster's whole Service range to a node the host reaches, so every ClusterIP answers from
//! the host and a LoadBalancer's EXTERNAL-IP is its ClusterIP. This module decides the range and
//! the node, and refuses, naming why, when the node is out of reach or a route is in the way.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Result, bail};
use kubeway_kube::Cluster;
use kubeway_kube::servicecidr::service_cidrs;
use kubeway_net::route::{self, Ipv4Net};
use kubeway_net::{Probe, probe};

use kubeway_engine::reach::Direct;

/// The port probed on a node to learn whether packets reach it: the kubelet's. Whether it
/// accepts or resets, the node answered.
const KUBELET_PORT: u16 = 10250;

/// The route to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// The Service range.
    pub net: Ipv4Net,
    /// The node address to route through.
    pub via: Ipv4Addr,
    /// That node's name.
    pub node: String,
}

/// Runs a blocking route operation off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, route::RouteError> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// The Service range: `--service-cidr`, else the API server's ServiceCIDRs (IPv4).
async fn service_range(cluster: &Cluster, flag: Option<Ipv4Net>) -> Result<Ipv4Net> {
    if let Some(net) = flag {
        return Ok(net);
    }
    let cidrs = service_cidrs(cluster).await?;
    let v4: Vec<Ipv4Net> = cidrs.iter().filter_map(|c| c.parse().ok()).collect();
    match v4.as_slice() {
        [net] => Ok(*net),
        [] if cidrs.is_empty() => bail!(
            "the API server publishes no ServiceCIDR (networking.k8s.io/v1 needs Kubernetes 1.33+): \
             pass the Service range with --service-cidr (minikube's default is 10.96.0.0/12; \
             `kubectl cluster-info dump | grep service-cluster-ip-range` shows it)"
        ),
        [] => bail!(
            "the cluster's Service ranges are not IPv4 ({}): --route routes IPv4 only",
            cidrs.join(", ")
        ),
        many => bail!(
            "the cluster has several IPv4 Service ranges ({}): pick the one to route with --service-cidr",
            many.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Decides the route, or says why there is none. Nothing is changed here.
pub async fn plan(
    cluster: &Cluster,
    direct: &Direct,
    flag: Option<Ipv4Net>,
    timeout: Duration,
) -> Result<RoutePlan> {
    if !cfg!(target_os = "linux") {
        bail!("--route manages kernel routes on Linux only; run `kubeway tunnel` without --route");
    }
    let net = service_range(cluster, flag).await?;
    let mut tried = Vec::new();
    for (node, ip) in &direct.nodes {
        let IpAddr::V4(v4) = *ip else {
            continue;
        };
        if net.contains(&v4) {
            tried.push(format!("{node} ({v4}) is inside the Service range"));
            continue;
        }
        let r = probe(SocketAddr::new(*ip, KUBELET_PORT), timeout).await;
        match r {
            Probe::Answered { .. } | Probe::Refused | Probe::ClosedAtOnce => {
                return Ok(RoutePlan {
                    net,
                    via: v4,
                    node: node.clone(),
                });
            }
            other => tried.push(format!("node {node} ({v4}) {other}")),
        }
    }
    if tried.is_empty() {
        bail!(
            "no node has an IPv4 address to route {net} through: run `kubeway tunnel` without --route"
        );
    }
    bail!(
        "no node is reachable from this host, so there is nothing to route {net} through: {}{}. \
         Run `kubeway tunnel` without --route: it carries connections through the API server instead",
        tried.join("; "),
        if direct.node_unreachable() {
            format!(" ({} is in between)", direct.env_name())
        } else {
            String::new()
        }
    )
}

/// Adds the route, refusing if anything overlaps it.
pub async fn add(plan: &RoutePlan) -> Result<()> {
    let (net, via) = (plan.net, plan.via);
    blocking(move || route::add(net, via)).await
}

/// Removes the route if it is still exactly ours. True if it was there.
pub async fn remove(net: Ipv4Net, via: Ipv4Addr) -> Result<bool> {
    blocking(move || route::remove(net, via)).await
}
