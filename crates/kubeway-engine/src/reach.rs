//! The direct ways from this host into a cluster, checked live: a Service's NodePort on each node
//! address, and on localhost where the environment publishes NodePorts there. Shared by `open`
//! and `tunnel`, which fall back to a forward through the API server when none answers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use kubeway_core::env::{Detection, Tri, detect};
use kubeway_kube::{ConnectOptions, snapshot};
use kubeway_net::probe;

/// What the host knows about reaching the nodes.
pub struct Direct {
    /// Node name and address (InternalIP and ExternalIP).
    pub nodes: Vec<(String, IpAddr)>,
    /// The environment detected, if the snapshot could be taken.
    pub detection: Option<Detection>,
}

/// A direct way that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `NodePort` or `NodePort on localhost`.
    pub via: &'static str,
}

impl Direct {
    /// Lists the nodes and detects the environment; failures leave the lists empty.
    pub async fn learn(opts: &ConnectOptions) -> Self {
        let collected = snapshot::collect(opts).await.ok();
        let detection = collected.as_ref().map(|c| detect(&c.snapshot));
        let nodes = collected
            .map(|c| {
                c.snapshot
                    .nodes
                    .into_iter()
                    .flat_map(|n| {
                        let name = n.name;
                        n.addresses
                            .into_iter()
                            .filter(|a| a.kind == "InternalIP" || a.kind == "ExternalIP")
                            .filter_map(move |a| {
                                a.address.parse().ok().map(|ip| (name.clone(), ip))
                            })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { nodes, detection }
    }

    /// The environment's name, for sentences.
    pub fn env_name(&self) -> String {
        self.detection
            .as_ref()
            .map(|d| d.provider.display_name().to_string())
            .unwrap_or_else(|| "the environment".into())
    }

    /// Whether detection says the host cannot reach the node.
    pub fn node_unreachable(&self) -> bool {
        self.detection
            .as_ref()
            .is_some_and(|d| d.node_reachable.value == Tri::No)
    }

    /// Probes NodePort `np` on every node address, then on localhost where the environment
    /// publishes NodePorts there. The first that answers, else what each probe saw.
    pub async fn node_port(&self, np: u16, timeout: Duration) -> Result<Found, Vec<String>> {
        let mut tried = Vec::new();
        for (node, ip) in &self.nodes {
            let addr = SocketAddr::new(*ip, np);
            let r = probe(addr, timeout).await;
            if r.answered() {
                return Ok(Found {
                    addr,
                    via: "NodePort",
                });
            }
            tried.push(format!("NodePort {np} on node {node} ({ip}) {r}"));
        }
        let localhost = self
            .detection
            .as_ref()
            .is_some_and(|d| d.nodeports_on_localhost.value == Tri::Yes);
        if localhost {
            let addr = SocketAddr::from(([127, 0, 0, 1], np));
            let r = probe(addr, timeout).await;
            if r.answered() {
                return Ok(Found {
                    addr,
                    via: "NodePort on localhost",
                });
            }
            tried.push(format!("localhost:{np} {r}"));
        }
        Err(tried)
    }

    /// Why no direct way answered, in one sentence.
    pub fn why_not_direct(&self, tried: &[String]) -> String {
        if self.node_unreachable() {
            format!(
                "the host cannot reach the node: {} is in between ({})",
                self.env_name(),
                tried.join("; ")
            )
        } else {
            format!(
                "no direct way answered ({})",
                if tried.is_empty() {
                    "nothing to try".to_string()
                } else {
                    tried.join("; ")
                }
            )
        }
    }
}
