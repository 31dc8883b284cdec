//! `kubeway forward`: kubectl port-forward that spreads connections over the ready endpoints,
//! follows rollouts, isolates per-connection errors, survives API outages, and says what it does.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kubeway_core::target::{PortRef, PortSpec, Target, TargetKind};
use kubeway_kube::backends::{BackendSet, Endpoint, Resolved, watch_backends};
use kubeway_kube::{Cluster, ConnectOptions, ForwardOptions, PortForwarder, Transport, connect};
use kubeway_net::Stats;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, ForwardArgs, Output};
use crate::lab::shutdown_signal;

/// How long a new connection waits for a ready endpoint before it is closed.
const WAIT_FOR_ENDPOINT: Duration = Duration::from_secs(30);

/// Dials ready endpoints round-robin, one pooled forwarder per pod.
pub struct Router {
    base: PortForwarder,
    forwarders: Mutex<HashMap<String, PortForwarder>>,
    backends: watch::Receiver<BackendSet>,
    next: AtomicUsize,
    per_pod: Mutex<HashMap<String, u64>>,
    errors: AtomicU64,
    out: Out,
}

/// Where a forward's events go.
#[derive(Clone, Copy)]
pub struct Out {
    /// One JSON object per line on stdout (else text on stderr).
    pub json: bool,
    /// Nothing at all (the caller reports).
    pub quiet: bool,
}

impl Out {
    fn event(&self, text: impl AsRef<str>, v: serde_json::Value) {
        if self.quiet {
            return;
        }
        if self.json {
            println!("{v}");
        } else {
            eprintln!("{}", text.as_ref());
        }
    }
}

impl Router {
    /// Resolves `port` of `target` and starts watching its ready endpoints until `cancel`.
    pub async fn start(
        cluster: &Cluster,
        target: &Target,
        port: &PortRef,
        transport: Transport,
        out: Out,
        cancel: CancellationToken,
    ) -> Result<(Resolved, Arc<Router>)> {
        let (resolved, rx) = watch_backends(cluster, target, port, cancel).await?;
        let base = PortForwarder::new(
            cluster,
            &cluster.namespace,
            rx.borrow()
                .ready
                .first()
                .map(|e| e.pod.as_str())
                .unwrap_or("pending"),
            ForwardOptions::default().with_transport(transport),
        );
        let router = Arc::new(Router {
            base,
            forwarders: Mutex::new(HashMap::new()),
            backends: rx,
            next: AtomicUsize::new(0),
            per_pod: Mutex::new(HashMap::new()),
            errors: AtomicU64::new(0),
            out,
        });
        Ok((resolved, router))
    }

    fn forwarder(&self, pod: &str) -> PortForwarder {
        let mut map = self.forwarders.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(pod.to_string())
            .or_insert_with(|| self.base.for_pod(pod))
            .clone()
    }

    /// Drops pools of pods that are no longer backends.
    fn prune(&self, set: &BackendSet) {
        let mut map = self.forwarders.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|pod, _| set.ready.iter().any(|e| e.pod == *pod));
    }

    async fn ready(&self) -> Option<Vec<Endpoint>> {
        let mut rx = self.backends.clone();
        let wait = async {
            loop {
                let ready = rx.borrow_and_update().ready.clone();
                if !ready.is_empty() {
                    return ready;
                }
                if rx.changed().await.is_err() {
                    return Vec::new();
                }
            }
        };
        tokio::time::timeout(WAIT_FOR_ENDPOINT, wait)
            .await
            .ok()
            .filter(|r| !r.is_empty())
    }

    pub(crate) async fn dial(&self) -> Result<Conn, String> {
        let mut last = String::from("no ready endpoint");
        for _ in 0..3 {
            let Some(ready) = self.ready().await else {
                let why = self
                    .backends
                    .borrow()
                    .why_empty
                    .clone()
                    .unwrap_or_else(|| "no ready endpoint".into());
                return Err(format!(
                    "no ready endpoint within {}s: {why}",
                    WAIT_FOR_ENDPOINT.as_secs()
                ));
            };
            let ep = &ready[self.next.fetch_add(1, Ordering::Relaxed) % ready.len()];
            match self.forwarder(&ep.pod).connect(ep.port).await {
                Ok(s) => {
                    let s = Conn {
                        eof_on_shutdown: s.transport() == Transport::V4,
                        inner: s,
                        shut: false,
                    };
                    *self
                        .per_pod
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(ep.pod.clone())
                        .or_default() += 1;
                    return Ok(s);
                }
                Err(e) => {
                    last = format!("pod {}: {e}", ep.pod);
                    // A pod that just went away: try another endpoint.
                }
            }
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
        Err(last)
    }
}

/// A forwarded connection. `v4.channel.k8s.io` cannot carry a half-close, so there the
/// connection ends when the local client half-closes (otherwise it would wait forever for a pod
/// that waits for the EOF); SPDY passes the half-close on.
pub(crate) struct Conn {
    inner: kubeway_kube::PfStream,
    eof_on_shutdown: bool,
    shut: bool,
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.shut && self.eof_on_shutdown {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        if r.is_ready() {
            self.shut = true;
        }
        r
    }
}

fn addresses(spec: &str) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for a in spec.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        if a == "localhost" {
            out.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
            out.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
        } else {
            out.push(
                a.parse().with_context(|| {
                    format!("--address {a:?} is not an IP address or `localhost`")
                })?,
            );
        }
    }
    if out.is_empty() {
        bail!("--address is empty: give `localhost` or IP addresses, comma-separated");
    }
    Ok(out)
}

async fn bind(ip: IpAddr, port: u16) -> Result<TcpListener> {
    kubeway_net::listen(SocketAddr::new(ip, port))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
                "local port {port} on {ip} is already in use: pick another (`{}:REMOTE`), or `:REMOTE` for a free one",
                port + 1
            ),
            std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
                "binding {ip}:{port} needs root or CAP_NET_BIND_SERVICE (ports below 1024 are privileged): use a port ≥ 1024, e.g. `8080:{port}`"
            ),
            _ => anyhow::anyhow!("binding {ip}:{port}: {e}"),
        })
}

/// Fails early, with the verb named, when RBAC forbids every port-forward transport.
async fn preflight_rbac(cluster: &Cluster, transport: Transport) -> Result<()> {
    let api: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let mut allowed = HashMap::new();
    for verb in ["get", "create"] {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(cluster.namespace.clone()),
                    verb: Some(verb.into()),
                    resource: Some("pods".into()),
                    subresource: Some("portforward".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        // If the review itself is refused, let the real request decide.
        let ok = match api.create(&PostParams::default(), &review).await {
            Ok(r) => r.status.is_none_or(|s| s.allowed),
            Err(_) => true,
        };
        allowed.insert(verb, ok);
    }
    let (get, create) = (allowed["get"], allowed["create"]);
    let ns = &cluster.namespace;
    let denied = match transport {
        Transport::Spdy => (!create).then_some("create"),
        Transport::WsSpdy | Transport::V4 => (!get).then_some("get"),
        _ => (!get && !create).then_some("get and create"),
    };
    if let Some(verb) = denied {
        bail!(
            "RBAC forbids port-forward here: you may not {verb} pods/portforward in namespace {ns} \
             (WebSocket transports need get, legacy SPDY needs create; on Kubernetes 1.35+ WebSocket needs both). \
             Ask for a Role like: kubectl create role port-forward --verb=get,create --resource=pods/portforward -n {ns}"
        );
    }
    Ok(())
}

fn describe_set(set: &BackendSet) -> String {
    set.ready
        .iter()
        .map(|e| format!("{}:{}", e.pod, e.port))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A running forward: listeners, routers and counters.
pub struct Forwarding {
    /// One router per port spec.
    routers: Vec<(Resolved, Arc<Router>)>,
    /// The accept loops.
    serving: Vec<tokio::task::JoinHandle<()>>,
    /// The local addresses listened on.
    pub locals: Vec<SocketAddr>,
    /// Connection counters.
    pub stats: Arc<Stats>,
    /// Cancels everything.
    pub cancel: CancellationToken,
}

impl Forwarding {
    /// Whether a ready endpoint appears within `timeout`.
    pub async fn has_ready_endpoint(&self, timeout: Duration) -> bool {
        let Some((_, router)) = self.routers.first() else {
            return false;
        };
        let mut rx = router.backends.clone();
        tokio::time::timeout(timeout, async {
            loop {
                if !rx.borrow_and_update().ready.is_empty() {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// Stops accepting and gives open connections up to two seconds to finish.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            futures::future::join_all(self.serving),
        )
        .await;
    }
}

/// Opens the forward: watches the backends of `target` for each port and listens on `ips`.
async fn open(
    cluster: &Cluster,
    target: &Target,
    specs: &[PortSpec],
    ips: &[IpAddr],
    transport: Transport,
    pod_running_timeout: Duration,
    out: Out,
) -> Result<Forwarding> {
    let cancel = CancellationToken::new();
    let stats = Arc::new(Stats::default());
    let mut serving = Vec::new();
    let mut locals = Vec::new();
    let mut routers = Vec::new();
    for spec in specs {
        let (resolved, router) = Router::start(
            cluster,
            target,
            &spec.remote,
            transport,
            out,
            cancel.child_token(),
        )
        .await
        .inspect_err(|_| cancel.cancel())?;
        let rx = router.backends.clone();
        if target.kind == TargetKind::Pod {
            wait_pod_running(&rx, pod_running_timeout, &resolved).await?;
        }
        // Bind every address on the same port: the first picks it when it is random.
        let mut port = spec
            .local
            .bind_port(spec.remote.number().unwrap_or(resolved.remote_port));
        for ip in ips {
            let listener = match bind(*ip, port).await {
                Ok(l) => l,
                Err(e) if ip.is_ipv6() && ips.len() > 1 => {
                    tracing::warn!("not listening on {ip}: {e:#}");
                    continue;
                }
                Err(e) => {
                    cancel.cancel();
                    return Err(e);
                }
            };
            let local = listener.local_addr()?;
            locals.push(local);
            port = local.port();
            out.event(
                format!("Forwarding from {} -> {}", fmt_addr(local), resolved.remote_port),
                json!({"event": "forwarding", "local": local.to_string(), "target": resolved.target, "remote": resolved.remote_port, "transport": transport.as_str()}),
            );
            serving.push(serve_routed(
                listener,
                router.clone(),
                stats.clone(),
                cancel.clone(),
            ));
        }
        spawn_reporter(rx, router.clone(), resolved.clone(), cancel.clone());
        routers.push((resolved, router));
    }
    Ok(Forwarding {
        routers,
        serving,
        locals,
        stats,
        cancel,
    })
}

/// Accepts on `listener` until `cancel` and carries each connection to the next ready endpoint
/// of `router`; a failed dial closes that connection only, and is reported.
pub fn serve_routed(
    listener: TcpListener,
    router: Arc<Router>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(kubeway_net::serve_connect(
        listener,
        cancel,
        stats,
        Duration::from_secs(2),
        move |peer: SocketAddr| {
            let r = router.clone();
            async move {
                r.dial().await.map_err(|e| {
                    r.out.event(
                        format!("connection from {peer} failed: {e}"),
                        json!({"event": "connection_error", "peer": peer.to_string(), "error": e}),
                    );
                    e
                })
            }
        },
    ))
}

/// Opens a forward that reports nothing (for `kubeway open`, which prints its own table).
pub async fn open_quiet(cluster: &Cluster, target: &Target, spec: &PortSpec) -> Result<Forwarding> {
    open(
        cluster,
        target,
        std::slice::from_ref(spec),
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        Transport::Auto,
        Duration::from_secs(60),
        Out {
            json: false,
            quiet: true,
        },
    )
    .await
}

/// Opens a forward for the demo: `target` on a local port of 127.0.0.1, text events on stderr.
pub async fn open_for_demo(
    cluster: &Cluster,
    target: &Target,
    spec: &PortSpec,
) -> Result<Forwarding> {
    open(
        cluster,
        target,
        std::slice::from_ref(spec),
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        Transport::Auto,
        Duration::from_secs(60),
        Out {
            json: false,
            quiet: false,
        },
    )
    .await
}

/// Runs `kubeway forward`.
pub async fn run(cli: &Cli, args: &ForwardArgs) -> Result<()> {
    let out = Out {
        json: cli.output == Output::Json,
        quiet: false,
    };
    let target = Target::parse_without_port(&args.target, TargetKind::Pod)
        .with_context(|| format!("reading the target {:?}", args.target))?;
    if args.ports.is_empty() {
        bail!(
            "name at least one port: `kubeway forward {} 8080:80` (LOCAL:REMOTE), `:80` for a free local port",
            args.target
        );
    }
    let specs: Vec<PortSpec> = args
        .ports
        .iter()
        .map(|p| {
            p.parse::<PortSpec>()
                .with_context(|| format!("reading the port {p:?}"))
        })
        .collect::<Result<_>>()?;
    let transport: Transport = args.transport.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let ips = addresses(&args.address)?;
    let stop = shutdown_signal();
    let cluster = connect(&ConnectOptions {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        namespace: cli.namespace.clone(),
    })
    .await?;
    cluster
        .client
        .apiserver_version()
        .await
        .with_context(|| format!("cannot reach the API server at {} (API layer: is the cluster running? check `kubectl cluster-info`)", cluster.server))?;
    preflight_rbac(&cluster, transport).await?;

    let Forwarding {
        routers,
        serving,
        stats,
        cancel,
        ..
    } = open(
        &cluster,
        &target,
        &specs,
        &ips,
        transport,
        args.pod_running_timeout,
        out,
    )
    .await?;
    let status = spawn_status_line(stats.clone(), out, cancel.clone());

    // Run until Ctrl-C, or until a single-pod target is deleted. One receiver per router, kept
    // across turns, so a value once seen is not seen again (a fresh clone would see every value
    // as new and turn this into a busy loop).
    let mut watches: Vec<_> = routers.iter().map(|(_, r)| r.backends.clone()).collect();
    let pod_gone = async {
        loop {
            for rx in &mut watches {
                if let Some(msg) = rx.borrow_and_update().pod_gone.clone() {
                    return msg;
                }
            }
            let waits = watches.iter_mut().map(|rx| Box::pin(rx.changed()));
            let (changed, _, _) = futures::future::select_all(waits).await;
            if changed.is_err() {
                // The watch ended (cancelled): nothing more will change.
                std::future::pending::<()>().await;
            }
        }
    };
    let ended_by = tokio::select! {
        _ = stop => None,
        msg = pod_gone => Some(msg),
    };
    // Stop accepting, let in-flight connections drain briefly.
    cancel.cancel();
    let drain = futures::future::join_all(serving);
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    status.abort();
    let mut per_pod: HashMap<String, u64> = HashMap::new();
    let mut errors = 0;
    for (_, r) in &routers {
        errors += r.errors.load(Ordering::Relaxed);
        for (p, n) in r.per_pod.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            *per_pod.entry(p.clone()).or_default() += n;
        }
    }
    let mut spread: Vec<_> = per_pod.into_iter().collect();
    spread.sort();
    let accepted = stats.accepted.load(Ordering::Relaxed);
    let (up, down) = (
        stats.bytes_up.load(Ordering::Relaxed),
        stats.bytes_down.load(Ordering::Relaxed),
    );
    out.event(
        format!(
            "\nstopped: {accepted} connection(s), {errors} failed, {up} bytes sent, {down} bytes received; per pod: {}",
            spread.iter().map(|(p, n)| format!("{p}={n}")).collect::<Vec<_>>().join(" ")
        ),
        json!({"event": "summary", "connections": accepted, "failed": errors, "bytes_up": up, "bytes_down": down,
               "per_pod": spread.iter().map(|(p, n)| json!({"pod": p, "connections": n})).collect::<Vec<_>>()}),
    );
    if let Some(msg) = ended_by {
        bail!("{msg}");
    }
    Ok(())
}

fn fmt_addr(a: SocketAddr) -> String {
    match a {
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        v4 => v4.to_string(),
    }
}

async fn wait_pod_running(
    rx: &watch::Receiver<BackendSet>,
    timeout: Duration,
    resolved: &Resolved,
) -> Result<()> {
    let mut rx = rx.clone();
    let ok = tokio::time::timeout(timeout, async {
        loop {
            {
                let set = rx.borrow_and_update();
                if !set.ready.is_empty() {
                    return true;
                }
                if set.pod_gone.is_some() {
                    return false;
                }
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    })
    .await
    .unwrap_or(false);
    if !ok {
        let why = rx.borrow().why_empty.clone().unwrap_or_default();
        bail!(
            "{} is not running after {:?} (--pod-running-timeout): {why}",
            resolved.target,
            timeout
        );
    }
    Ok(())
}

fn spawn_reporter(
    mut rx: watch::Receiver<BackendSet>,
    router: Arc<Router>,
    resolved: Resolved,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let mut last = BackendSet::default();
        let mut first = true;
        // The first value is a placeholder until the watch has listed the objects.
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = cancel.cancelled() => return,
        }
        loop {
            let set = rx.borrow_and_update().clone();
            let out = router.out;
            if set.api_error.is_some() && last.api_error.is_none() {
                let e = set.api_error.clone().unwrap_or_default();
                out.event(
                    format!("API server unreachable, retrying (open connections keep going; new ones use the last known endpoints): {e}"),
                    json!({"event": "api", "state": "unreachable", "error": e}),
                );
            } else if set.api_error.is_none() && last.api_error.is_some() {
                out.event(
                    "API server is back; following endpoint changes again",
                    json!({"event": "api", "state": "ok"}),
                );
            }
            if set.ready != last.ready || first {
                router.prune(&set);
                if set.ready.is_empty() {
                    let why = set
                        .why_empty
                        .clone()
                        .unwrap_or_else(|| "no ready endpoint".into());
                    out.event(
                        format!("Waiting for {}: {why}", resolved.target),
                        json!({"event": "endpoints", "ready": [], "why": why}),
                    );
                } else {
                    let added: Vec<_> = set
                        .ready
                        .iter()
                        .filter(|e| !last.ready.contains(e))
                        .collect();
                    let removed: Vec<_> = last
                        .ready
                        .iter()
                        .filter(|e| !set.ready.contains(e))
                        .collect();
                    let mut text =
                        format!("Endpoints of {}: {}", resolved.target, describe_set(&set));
                    if !first {
                        for a in &added {
                            text.push_str(&format!("  +{}", a.pod));
                        }
                        for r in &removed {
                            text.push_str(&format!("  -{}", r.pod));
                        }
                    }
                    out.event(text, json!({"event": "endpoints", "ready": set.ready, "added": added, "removed": removed}));
                }
            }
            first = false;
            last = set;
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = cancel.cancelled() => return,
            }
        }
    });
}

fn spawn_status_line(
    stats: Arc<Stats>,
    out: Out,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let tty = !out.json && std::io::stderr().is_terminal();
    tokio::spawn(async move {
        if !tty {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancel.cancelled() => return,
            }
            eprint!(
                "\r\x1b[2K{} open, {} connections, {} failed, ↑{} B ↓{} B",
                stats.open.load(Ordering::Relaxed),
                stats.accepted.load(Ordering::Relaxed),
                stats.failed.load(Ordering::Relaxed),
                stats.bytes_up.load(Ordering::Relaxed),
                stats.bytes_down.load(Ordering::Relaxed)
            );
        }
    })
}
