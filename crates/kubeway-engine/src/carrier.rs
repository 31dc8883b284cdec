//! How connections to one Service port reach its pods: the NodePort when a probe from the
//! host answers (with a forward kept in reserve for when it stops answering), else the
//! port-forward router over ready endpoints. Shared by `tunnel` and `up`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubeway_core::target::{PortRef, Target, TargetKind};
use kubeway_kube::{Cluster, ForwardOptions, KubeError};
use kubeway_net::Stats;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::event::{Event, Events};
use crate::reach::Direct;
use crate::{Router, serve_routed};

/// Why a carrier could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    /// The Service's name is not a valid target.
    #[error("service {0:?} cannot be a target")]
    Target(String),
    /// Starting the forward failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The forward started without a router for the port.
    #[error("no router for port {port} of service {service}")]
    NoRouter {
        /// The Service.
        service: String,
        /// The port.
        port: u16,
    },
}

/// One Service port to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// The Service port.
    pub port: u16,
    /// Its NodePort, if one is allocated.
    pub node_port: Option<u16>,
}

/// A forward kept in reserve for a NodePort carrier: started the first time the NodePort does
/// not answer (the node's network went away, kube-proxy restarts …), then used for a while
/// before the NodePort is tried again.
pub struct Fallback {
    cluster: Cluster,
    service: String,
    port: u16,
    events: Events,
    /// Whether the last connection went through the forward because the NodePort failed.
    fell_back: std::sync::atomic::AtomicBool,
    cancel: CancellationToken,
    router: tokio::sync::OnceCell<Arc<Router>>,
    /// Until when new connections skip the NodePort.
    avoid_until: std::sync::Mutex<Option<Instant>>,
}

/// How long connections go through the forward after the NodePort failed, before it is tried
/// again.
const AVOID_NODE_PORT: Duration = Duration::from_secs(30);
/// How long a connect to the NodePort may take before the forward is used instead.
const NODE_PORT_CONNECT: Duration = Duration::from_secs(3);

impl Fallback {
    async fn router(&self) -> Result<Arc<Router>, CarrierError> {
        self.router
            .get_or_try_init(|| {
                start_router(
                    &self.cluster,
                    &self.service,
                    self.port,
                    self.events.clone(),
                    self.cancel.clone(),
                )
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
    async fn dial(&self, addr: SocketAddr) -> Result<Either<TcpStream, crate::RoutedConn>, String> {
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
                "NodePort {addr}: {}; the forward could not start either: {}",
                node_port_error.as_deref().unwrap_or("avoided"),
                crate::error_chain(&fe)
            )
        })?;
        router
            .connect()
            .await
            .map(Either::Right)
            .map_err(|e| e.to_string())
    }

    fn note(&self, addr: SocketAddr, via: String, why: String) {
        (self.events)(Event::Carrier {
            service: format!("{}/{}", self.cluster.namespace, self.service),
            port: self.port,
            node_port: addr,
            via,
            why,
        });
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
    /// The best way for `port`: its NodePort if a probe answers, else a forward. Failed and
    /// cut connections and carrier switches go to `events`.
    pub async fn choose(
        cluster: &Cluster,
        direct: &Direct,
        port: &ServicePort,
        probe_timeout: Duration,
        cancel: CancellationToken,
        events: Events,
    ) -> Result<Self, CarrierError> {
        let mut cluster = cluster.clone();
        cluster.namespace = port.namespace.clone();
        let tried = match port.node_port {
            Some(np) => match direct.node_port(np, probe_timeout).await {
                Ok(found) => {
                    return Ok(Carrier::NodePort {
                        addr: found.addr,
                        via: found.via,
                        fallback: Arc::new(Fallback {
                            cluster,
                            service: port.service.clone(),
                            port: port.port,
                            events,
                            fell_back: false.into(),
                            cancel,
                            router: tokio::sync::OnceCell::new(),
                            avoid_until: std::sync::Mutex::new(None),
                        }),
                    });
                }
                Err(tried) => tried,
            },
            None => vec!["no NodePort allocated".into()],
        };
        let router = start_router(&cluster, &port.service, port.port, events, cancel).await?;
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

    /// The router, when connections go (or may fall back) through a forward already started.
    pub fn router(&self) -> Option<Arc<Router>> {
        match self {
            Carrier::Forward { router, .. } => Some(router.clone()),
            Carrier::NodePort { fallback, .. } => fallback.router.get().cloned(),
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

/// A router over the ready endpoints of `port` of Service `service` in `cluster.namespace`.
async fn start_router(
    cluster: &Cluster,
    service: &str,
    port: u16,
    events: Events,
    cancel: CancellationToken,
) -> Result<Arc<Router>, CarrierError> {
    let target = Target::parse(&format!("svc/{service}"), TargetKind::Service)
        .map_err(|_| CarrierError::Target(service.to_string()))?;
    let routers = Router::start(
        cluster,
        &target,
        &[PortRef::Number(port)],
        ForwardOptions::default(),
        events,
        cancel,
    )
    .await?;
    routers.into_iter().next().ok_or(CarrierError::NoRouter {
        service: service.to_string(),
        port,
    })
}
