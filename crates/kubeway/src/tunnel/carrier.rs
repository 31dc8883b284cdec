//! How `kubeway tunnel` places a Service on the host and carries its connections: the address
//! strategy (a loopback address of its own per Service where the OS routes all of 127.0.0.0/8,
//! else 127.0.0.1 shared, with conflicts reported) and the carrier (the NodePort when the host
//! reaches it, else the port-forward transport spread over ready endpoints, as `forward` does).
//! A new way into the cluster is another [`Addressing`] and another [`Carrier`].

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kubeway_core::target::{PortRef, Target, TargetKind};
use kubeway_engine::{Router, serve_routed};
use kubeway_kube::loadbalancer::{LbPort, LbService};
use kubeway_kube::{Cluster, ForwardOptions};
use kubeway_net::Stats;
use kubeway_net::loopback::{self, BoundPort};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

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

/// A forward kept in reserve for a NodePort carrier: started the first time the NodePort does
/// not answer (the node's network went away, kube-proxy restarts …), then used for a while
/// before the NodePort is tried again.
pub struct Fallback {
    cluster: Cluster,
    service: String,
    port: u16,
    notes: Notes,
    /// Whether the last connection went through the forward because the NodePort failed.
    fell_back: std::sync::atomic::AtomicBool,
    cancel: CancellationToken,
    router: tokio::sync::OnceCell<Arc<Router>>,
    /// Until when new connections skip the NodePort.
    avoid_until: std::sync::Mutex<Option<Instant>>,
}

/// Events from connection handling, for the tunnel's report: text and JSON.
pub type Notes = tokio::sync::mpsc::UnboundedSender<(String, serde_json::Value)>;

/// The engine's events a tunnel shows: every connection that failed or was cut (endpoint
/// changes are the tunnel's own table's business).
fn failures_to(notes: Notes) -> kubeway_engine::Events {
    Arc::new(move |e: kubeway_engine::Event| {
        if let kubeway_engine::Event::Connection(c) = &e {
            if c.end == kubeway_engine::End::Aborted {
                return;
            }
            let via = c
                .pod
                .as_deref()
                .map(|p| format!(" (pod {p})"))
                .unwrap_or_default();
            let text = format!(
                "connection {}: {} -> {} port {}{via}: {}",
                if c.end == kubeway_engine::End::Failed {
                    "failed"
                } else {
                    "cut, the client was reset"
                },
                c.local,
                c.target,
                c.remote,
                c.error.as_deref().unwrap_or("unknown")
            );
            let _ = notes.send((text, serde_json::to_value(&e).unwrap_or_default()));
        }
    })
}

/// How long connections go through the forward after the NodePort failed, before it is tried
/// again.
const AVOID_NODE_PORT: Duration = Duration::from_secs(30);
/// How long a connect to the NodePort may take before the forward is used instead.
const NODE_PORT_CONNECT: Duration = Duration::from_secs(3);

impl Fallback {
    async fn router(&self) -> Result<Arc<Router>> {
        self.router
            .get_or_try_init(|| async {
                let target = Target::parse(&format!("svc/{}", self.service), TargetKind::Service)?;
                let routers = Router::start(
                    &self.cluster,
                    &target,
                    &[PortRef::Number(self.port)],
                    ForwardOptions::default(),
                    failures_to(self.notes.clone()),
                    self.cancel.clone(),
                )
                .await?;
                routers
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("no router for port {}", self.port))
            })
            .await
            .cloned()
    }

    fn avoiding(&self) -> bool {
        self.avoid_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| Instant::now() < t)
    }

    fn avoid(&self) {
        *self.avoid_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Instant::now().checked_add(AVOID_NODE_PORT);
    }

    /// One connection: the NodePort, else (or while it is avoided) the forward.
    async fn dial(
        &self,
        addr: SocketAddr,
    ) -> std::result::Result<Either<TcpStream, kubeway_engine::RoutedConn>, String> {
        let node_port_error = if self.avoiding() {
            None
        } else {
            match tokio::time::timeout(NODE_PORT_CONNECT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    if self
                        .fell_back
                        .swap(false, std::sync::atomic::Ordering::Relaxed)
                    {
                        self.note(addr, format!("NodePort {addr}"), "answers again".into());
                    }
                    return Ok(Either::Left(s));
                }
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer in {}s", NODE_PORT_CONNECT.as_secs())),
            }
        };
        if let Some(e) = &node_port_error {
            self.avoid();
            if !self
                .fell_back
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                self.note(
                    addr,
                    "forward".into(),
                    format!(
                        "NodePort {addr} does not answer ({e}); trying it again in {}s",
                        AVOID_NODE_PORT.as_secs()
                    ),
                );
            }
        }
        let router = self.router().await.map_err(|fe| {
            format!(
                "NodePort {addr}: {}; the forward could not start either: {fe:#}",
                node_port_error.as_deref().unwrap_or("avoided")
            )
        })?;
        router
            .connect()
            .await
            .map(Either::Right)
            .map_err(|e| e.to_string())
    }

    fn note(&self, addr: SocketAddr, via: String, why: String) {
        let key = format!("{}/{}", self.cluster.namespace, self.service);
        let _ = self.notes.send((
            format!("{key} port {}: now via {via}: {why}", self.port),
            serde_json::json!({"event": "carrier", "service": key, "port": self.port,
                "node_port": addr.to_string(), "via": via, "why": why}),
        ));
    }

    /// Whether connections currently go through the forward.
    pub fn in_use(&self) -> bool {
        self.avoiding()
    }
}

/// How connections to one Service port reach its pods.
pub enum Carrier {
    /// Straight to a NodePort the host reaches (kube-proxy spreads them on the node); through
    /// a forward for a while when it stops answering.
    NodePort {
        /// Node address and NodePort.
        addr: SocketAddr,
        /// `NodePort` or `NodePort on localhost`.
        via: &'static str,
        /// The forward in reserve.
        fallback: Arc<Fallback>,
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
        notes: Notes,
    ) -> Result<Self> {
        let tried = match port.node_port {
            Some(np) => match direct.node_port(np, probe_timeout).await {
                Ok(found) => {
                    let mut cluster = cluster.clone();
                    cluster.namespace = svc.namespace.clone();
                    return Ok(Carrier::NodePort {
                        addr: found.addr,
                        via: found.via,
                        fallback: Arc::new(Fallback {
                            cluster,
                            service: svc.name.clone(),
                            port: port.port,
                            notes,
                            fell_back: false.into(),
                            cancel,
                            router: tokio::sync::OnceCell::new(),
                            avoid_until: std::sync::Mutex::new(None),
                        }),
                    });
                }
                Err(tried) => tried,
            },
            None => vec!["no NodePort allocated (allocateLoadBalancerNodePorts: false)".into()],
        };
        let mut cluster = cluster.clone();
        cluster.namespace = svc.namespace.clone();
        let target = Target::parse(&format!("svc/{}", svc.name), TargetKind::Service)?;
        let router = Router::start(
            &cluster,
            &target,
            &[PortRef::Number(port.port)],
            ForwardOptions::default(),
            failures_to(notes.clone()),
            cancel,
        )
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no router for port {}", port.port))?;
        Ok(Carrier::Forward {
            router,
            why: direct.why_not_direct(&tried),
        })
    }

    /// A short name: `NodePort 127.49.0.2:31000` or `forward`.
    pub fn describe(&self) -> String {
        match self {
            Carrier::NodePort {
                addr,
                via,
                fallback,
            } => {
                if fallback.in_use() {
                    format!("forward ({via} {addr} not answering)")
                } else {
                    format!("{via} {addr}")
                }
            }
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
            Carrier::NodePort { addr, fallback, .. } => {
                let addr = *addr;
                let fallback = fallback.clone();
                tokio::spawn(kubeway_net::serve_connect(
                    listener,
                    cancel,
                    stats,
                    Duration::from_secs(2),
                    move |_| {
                        let fallback = fallback.clone();
                        async move { fallback.dial(addr).await }
                    },
                ))
            }
            Carrier::Forward { router, .. } => {
                serve_routed(listener, router.clone(), stats, cancel)
            }
        }
    }
}
