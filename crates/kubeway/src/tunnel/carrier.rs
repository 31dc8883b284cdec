//! How `kubeway tunnel` places a Service on the host and carries its connections: the address
//! strategy (a loopback address of its own per Service where the OS routes all of 127.0.0.0/8,
//! else 127.0.0.1 shared, with conflicts reported) and the carrier (the NodePort when the host
//! reaches it, else the port-forward transport spread over ready endpoints, as `forward` does).
//! A new way into the cluster is another [`Addressing`] and another [`Carrier`].

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kubeway_core::target::{PortRef, Target, TargetKind};
use kubeway_kube::loadbalancer::{LbPort, LbService};
use kubeway_kube::{Cluster, Transport};
use kubeway_net::Stats;
use kubeway_net::loopback::{self, BoundPort};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::forward::{Out, Router, serve_routed};
use crate::reach::Direct;

/// Where Services get their host address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Addressing {
    /// A distinct loopback address per Service from 127.77.0.0/16 (so two Services can both
    /// use port 80).
    PerService,
    /// 127.0.0.1 for every Service; a port two Services share goes to a free port instead,
    /// reported as a conflict.
    Shared,
}

impl Addressing {
    /// Per-Service addresses where the OS routes all of 127.0.0.0/8 to the loopback interface.
    /// `KUBEWAY_TUNNEL_ADDRESSING=shared` forces the shared address (how macOS and Windows
    /// behave, and how the tests reach that branch on Linux).
    pub fn detect() -> Self {
        let forced = std::env::var("KUBEWAY_TUNNEL_ADDRESSING").ok();
        if forced.as_deref() == Some("shared") || !loopback::whole_loopback_net_routed() {
            Addressing::Shared
        } else {
            Addressing::PerService
        }
    }

    /// Picks an address for `svc` (not one of `used`) and binds its TCP `ports` there.
    pub fn place(
        self,
        svc: &LbService,
        ports: &[&LbPort],
        used: &HashSet<IpAddr>,
    ) -> Result<Placement> {
        match self {
            Addressing::Shared => {
                let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
                let bound = bind_all(ip, ports, false)
                    .with_context(|| format!("listening for {} on {ip}", svc.key()))?;
                Ok(Placement {
                    ip,
                    claim: None,
                    bound,
                })
            }
            Addressing::PerService => {
                for v4 in loopback::candidates(&svc.key()) {
                    let ip = IpAddr::V4(v4);
                    if used.contains(&ip) {
                        continue;
                    }
                    let claim = if ports.iter().any(|p| p.port == loopback::CLAIM_PORT) {
                        None
                    } else {
                        match loopback::claim(ip)
                            .with_context(|| format!("claiming the loopback address {ip}"))?
                        {
                            Some(l) => Some(l),
                            None => continue,
                        }
                    };
                    match bind_all(ip, ports, true) {
                        Ok(bound) => return Ok(Placement { ip, claim, bound }),
                        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("listening for {} on {ip}", svc.key()));
                        }
                    }
                }
                anyhow::bail!(
                    "no free address left in 127.{}.0.0/16 for {}",
                    loopback::SERVICE_NET[1],
                    svc.key()
                )
            }
        }
    }

    /// Binds one more port at an address already placed (a Service gained a port).
    pub fn bind_more(self, ip: IpAddr, port: u16) -> std::io::Result<BoundPort> {
        loopback::bind_service_port(ip, port, false)
    }
}

fn bind_all(
    ip: IpAddr,
    ports: &[&LbPort],
    other_address_possible: bool,
) -> std::io::Result<Vec<(u16, BoundPort)>> {
    ports
        .iter()
        .map(|p| {
            loopback::bind_service_port(ip, p.port, other_address_possible).map(|b| (p.port, b))
        })
        .collect()
}

/// A Service's place on the host.
pub struct Placement {
    /// Its address.
    pub ip: IpAddr,
    /// Holds the address against other kubeway processes while the Service is served.
    pub claim: Option<TcpListener>,
    /// Its TCP ports, bound.
    pub bound: Vec<(u16, BoundPort)>,
}

/// How connections to one Service port reach its pods.
pub enum Carrier {
    /// Straight to a NodePort the host reaches (kube-proxy spreads them on the node).
    NodePort {
        /// Node address and NodePort.
        addr: SocketAddr,
        /// `NodePort` or `NodePort on localhost`.
        via: &'static str,
    },
    /// Through the API server's port-forward, round-robin over ready endpoints.
    Forward {
        /// The router over the port's endpoints.
        router: Arc<Router>,
        /// Why no direct way was taken.
        why: String,
    },
}

impl Carrier {
    /// The best way for `port` of `svc`: its NodePort if a probe answers, else a forward.
    pub async fn choose(
        cluster: &Cluster,
        direct: &Direct,
        svc: &LbService,
        port: &LbPort,
        probe_timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let tried = match port.node_port {
            Some(np) => match direct.node_port(np, probe_timeout).await {
                Ok(found) => {
                    return Ok(Carrier::NodePort {
                        addr: found.addr,
                        via: found.via,
                    });
                }
                Err(tried) => tried,
            },
            None => vec!["no NodePort allocated (allocateLoadBalancerNodePorts: false)".into()],
        };
        let mut cluster = cluster.clone();
        cluster.namespace = svc.namespace.clone();
        let target = Target::parse(&format!("svc/{}", svc.name), TargetKind::Service)?;
        let (_, router) = Router::start(
            &cluster,
            &target,
            &PortRef::Number(port.port),
            Transport::Auto,
            Out {
                json: false,
                quiet: true,
            },
            cancel,
        )
        .await?;
        Ok(Carrier::Forward {
            router,
            why: direct.why_not_direct(&tried),
        })
    }

    /// A short name: `NodePort 127.49.0.2:31000` or `forward`.
    pub fn describe(&self) -> String {
        match self {
            Carrier::NodePort { addr, via } => format!("{via} {addr}"),
            Carrier::Forward { .. } => "forward".into(),
        }
    }

    /// Why a forward, if it is one.
    pub fn why(&self) -> Option<&str> {
        match self {
            Carrier::Forward { why, .. } => Some(why),
            Carrier::NodePort { .. } => None,
        }
    }

    /// Accepts on `listener` until `cancel`, carrying each connection this way.
    pub fn serve(
        &self,
        listener: TcpListener,
        stats: Arc<Stats>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        match self {
            Carrier::NodePort { addr, .. } => {
                let addr = *addr;
                tokio::spawn(kubeway_net::serve(listener, cancel, stats, move |_| {
                    TcpStream::connect(addr)
                }))
            }
            Carrier::Forward { router, .. } => {
                serve_routed(listener, router.clone(), stats, cancel)
            }
        }
    }
}
