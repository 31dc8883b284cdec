//! `kubeway forward`: kubectl port-forward that spreads connections over the ready endpoints,
//! follows rollouts, isolates per-connection errors, survives API outages, and says what it
//! does: every connection that fails or is cut gets a line (rate-limited) and a count. The
//! routing itself is `kubeway_engine`'s; this module binds the listeners and speaks to the user.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kubeway_core::target::{PortRef, PortSpec, Target, TargetKind};
use kubeway_engine::{End, Event, Events, Router, RouterOptions, serve_routed};
use kubeway_kube::backends::BackendSet;
use kubeway_kube::{Cluster, ConnectOptions, ForwardOptions, Transport, connect};
use kubeway_net::Stats;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, ForwardArgs, Output};
use crate::lab::shutdown_signal;

/// Which events a forward shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Endpoints, API state and failed or cut connections.
    All,
    /// API state and failed or cut connections only (the caller prints its own table).
    Failures,
    /// Nothing (the caller reports).
    Quiet,
}

/// Where a forward's events go.
#[derive(Clone, Copy)]
pub struct Out {
    /// One JSON object per line on stdout (else text on stderr).
    pub json: bool,
    /// What to show.
    pub level: Level,
}

/// Connection lines shown per second before the rest are only counted.
const LINES_PER_SECOND: u32 = 5;

/// Prints events: text lines on stderr (clearing the status line first) or JSON on stdout,
/// with connection lines rate-limited.
pub struct Printer {
    out: Out,
    verbose: bool,
    status_shown: AtomicBool,
    window: Mutex<(Instant, u32)>,
    suppressed: AtomicU64,
}

impl Printer {
    /// A printer for `out`; `verbose` also shows connections the client itself aborted.
    pub fn new(out: Out, verbose: bool) -> Arc<Self> {
        Arc::new(Self {
            out,
            verbose,
            status_shown: AtomicBool::new(false),
            window: Mutex::new((Instant::now(), 0)),
            suppressed: AtomicU64::new(0),
        })
    }

    /// Writes one line (text on stderr, or the JSON value on stdout).
    pub fn line(&self, text: impl AsRef<str>, v: serde_json::Value) {
        if self.out.level == Level::Quiet {
            return;
        }
        if self.out.json {
            println!("{v}");
        } else {
            let mut err = std::io::stderr().lock();
            if self.status_shown.swap(false, Ordering::Relaxed) {
                let _ = write!(err, "\r\x1b[2K");
            }
            let _ = writeln!(err, "{}", text.as_ref());
        }
    }

    /// Redraws the one-line status (TTY only).
    fn status(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        self.status_shown.store(true, Ordering::Relaxed);
    }

    /// Whether a connection line may be printed now (at most [`LINES_PER_SECOND`]).
    fn admit(&self) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.0.elapsed() >= Duration::from_secs(1) {
            let dropped = self.suppressed.swap(0, Ordering::Relaxed);
            *w = (Instant::now(), 0);
            drop(w);
            if dropped > 0 {
                self.line(
                    format!("… and {dropped} more failed or cut connection(s) not shown (all are in the counts)"),
                    json!({"event": "connections_not_shown", "count": dropped}),
                );
            }
            w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        }
        if w.1 < LINES_PER_SECOND {
            w.1 += 1;
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// The engine's event sink.
    pub fn events(self: &Arc<Self>) -> Events {
        let me = self.clone();
        Arc::new(move |e| me.event(e))
    }

    fn event(&self, e: Event) {
        let v = serde_json::to_value(&e).unwrap_or_default();
        match &e {
            Event::Endpoints {
                target,
                remote,
                ready,
                added,
                removed,
                why_empty,
                first,
            } => {
                if self.out.level != Level::All {
                    return;
                }
                if ready.is_empty() {
                    let why = why_empty.as_deref().unwrap_or("no ready endpoint");
                    self.line(format!("Waiting for {target} port {remote}: {why}"), v);
                } else {
                    let list: Vec<String> =
                        ready.iter().map(|e| format!("{}:{}", e.pod, e.port)).collect();
                    let mut text = format!("Endpoints of {target} port {remote}: {}", list.join(", "));
                    if !first {
                        for a in added {
                            text.push_str(&format!("  +{}", a.pod));
                        }
                        for r in removed {
                            text.push_str(&format!("  -{}", r.pod));
                        }
                    }
                    self.line(text, v);
                }
            }
            Event::ApiUnreachable { target, error } => self.line(
                format!(
                    "API server trouble while following {target}: {error}. Retrying. New connections use the last known endpoints; open connections also run through the API server, and any that break are reported."
                ),
                v,
            ),
            Event::Carrier {
                service,
                port,
                via,
                why,
                ..
            } => self.line(format!("{service} port {port}: now via {via}: {why}"), v),
            Event::ApiBack { target } => self.line(
                format!("API server answers again; following {target} again"),
                v,
            ),
            Event::Connection(c) => {
                if c.end == End::Aborted && !self.verbose {
                    return;
                }
                if !self.admit() {
                    return;
                }
                let via = c
                    .pod
                    .as_deref()
                    .map(|p| format!(" (pod {p})"))
                    .unwrap_or_default();
                let retried = if c.retried.is_empty() {
                    String::new()
                } else {
                    format!("; refused first by {}", c.retried.join(", "))
                };
                let error = c.error.as_deref().unwrap_or("unknown");
                let text = match c.end {
                    End::Failed => format!(
                        "connection failed: {} -> {} port {}{via}: {error}{retried}",
                        c.local, c.target, c.remote
                    ),
                    End::Cut => format!(
                        "connection cut after ↑{} ↓{}, the client was reset: {} -> {} port {}{via}: {error}{retried}",
                        bytes(c.up),
                        bytes(c.down),
                        c.local,
                        c.target,
                        c.remote
                    ),
                    End::Aborted => format!(
                        "connection aborted by the client: {} -> {} port {}{via}: {error}",
                        c.local, c.target, c.remote
                    ),
                    End::Completed => return,
                };
                self.line(text, v);
            }
        }
    }
}

/// A byte count in KiB/MiB/GiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub(crate) fn addresses(spec: &str) -> Result<Vec<IpAddr>> {
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
                port.checked_add(1).unwrap_or(8080)
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
    let mut allowed = BTreeMap::new();
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

/// A running forward: listeners, routers and counters.
pub struct Forwarding {
    /// One router per port spec.
    routers: Vec<Arc<Router>>,
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
        match self.routers.first() {
            Some(r) => r.wait_ready(timeout).await.is_some(),
            None => false,
        }
    }

    /// Stops accepting, gives open connections [`kubeway_engine::DRAIN`] to finish and resets
    /// the rest.
    pub async fn stop(self) {
        self.cancel.cancel();
        futures::future::join_all(self.serving).await;
    }

    /// Connections per pod so far, over every port.
    pub fn per_pod(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for r in &self.routers {
            for (p, n) in r.per_pod() {
                *all.entry(p).or_default() += n;
            }
        }
        all
    }
}

/// Opens the forward: one watch for `target`, a router per port, listeners on `ips`.
async fn open(
    cluster: &Cluster,
    target: &Target,
    specs: &[PortSpec],
    ips: &[IpAddr],
    options: RouterOptions,
    pod_running_timeout: Duration,
    printer: &Arc<Printer>,
) -> Result<Forwarding> {
    let transport = options.forward.transport;
    let cancel = CancellationToken::new();
    let stats = Arc::new(Stats::default());
    let remotes: Vec<PortRef> = specs.iter().map(|s| s.remote.clone()).collect();
    let routers = Router::start(
        cluster,
        target,
        &remotes,
        options,
        printer.events(),
        cancel.child_token(),
    )
    .await
    .inspect_err(|_| cancel.cancel())?;
    if target.kind == TargetKind::Pod
        && let Some(r) = routers.first()
        && let Err(e) = wait_pod_running(r, pod_running_timeout).await
    {
        cancel.cancel();
        return Err(e);
    }
    let mut serving = Vec::new();
    let mut locals = Vec::new();
    for (spec, router) in specs.iter().zip(&routers) {
        let resolved = router.resolved().clone();
        // Bind every address on the same port: the first picks it when it is random.
        let mut port = spec.local.bind_port(resolved.remote_port);
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
            printer.line(
                format!(
                    "Forwarding from {} -> {}",
                    fmt_addr(local),
                    resolved.remote()
                ),
                json!({"event": "forwarding", "local": local.to_string(), "target": resolved.target,
                       "remote": resolved.remote_port, "remote_name": resolved.port_name,
                       "transport": transport.as_str()}),
            );
            serving.push(serve_routed(
                listener,
                router.clone(),
                stats.clone(),
                cancel.clone(),
            ));
        }
    }
    Ok(Forwarding {
        routers,
        serving,
        locals,
        stats,
        cancel,
    })
}

/// Opens a forward for `kubeway open`, which prints its own table: only API trouble and
/// failed or cut connections are shown.
pub async fn open_for_url(
    cluster: &Cluster,
    target: &Target,
    spec: &PortSpec,
    json: bool,
) -> Result<Forwarding> {
    let printer = Printer::new(
        Out {
            json,
            level: Level::Failures,
        },
        false,
    );
    open(
        cluster,
        target,
        std::slice::from_ref(spec),
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        RouterOptions::default(),
        Duration::from_secs(60),
        &printer,
    )
    .await
}

/// Opens a forward for the demo: `target` on a local port of 127.0.0.1, text events on stderr.
pub async fn open_for_demo(
    cluster: &Cluster,
    target: &Target,
    spec: &PortSpec,
) -> Result<Forwarding> {
    let printer = Printer::new(
        Out {
            json: false,
            level: Level::All,
        },
        false,
    );
    open(
        cluster,
        target,
        std::slice::from_ref(spec),
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        RouterOptions::default(),
        Duration::from_secs(60),
        &printer,
    )
    .await
}

/// Runs `kubeway forward`.
pub async fn run(cli: &Cli, args: &ForwardArgs) -> Result<()> {
    let out = Out {
        json: cli.output == Output::Json,
        level: Level::All,
    };
    let printer = Printer::new(out, cli.verbose > 0);
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
        .with_context(|| format!("API layer: cannot reach the API server at {} (is the cluster running? check `kubectl cluster-info`)", cluster.server))?;
    preflight_rbac(&cluster, transport).await?;

    let fwd = open(
        &cluster,
        &target,
        &specs,
        &ips,
        RouterOptions {
            forward: ForwardOptions::default().with_transport(transport),
            half_close_idle: args.half_close_timeout,
        },
        args.pod_running_timeout,
        &printer,
    )
    .await?;
    let status = spawn_status_line(fwd.stats.clone(), printer.clone(), out, fwd.cancel.clone());

    // Run until Ctrl-C, or until a single-pod target is deleted.
    let mut rx = fwd
        .routers
        .first()
        .map(|r| r.backends())
        .context("no port to forward")?;
    let ended_by = tokio::select! {
        _ = stop => None,
        msg = pod_gone(&mut rx) => Some(msg),
    };
    status.abort();
    let per_pod = fwd.per_pod();
    let stats = fwd.stats.clone();
    // Stop accepting, let in-flight connections drain briefly, reset the rest.
    fwd.stop().await;
    summary(&printer, &stats, &per_pod);
    if let Some(msg) = ended_by {
        bail!("{msg}");
    }
    Ok(())
}

/// Prints the final counts.
fn summary(printer: &Printer, stats: &Stats, per_pod: &BTreeMap<String, u64>) {
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (accepted, completed, failed, cut, aborted) = (
        n(&stats.accepted),
        n(&stats.completed),
        n(&stats.failed),
        n(&stats.cut),
        n(&stats.aborted),
    );
    let (up, down) = (n(&stats.bytes_up), n(&stats.bytes_down));
    let spread = per_pod
        .iter()
        .map(|(p, n)| format!("{p}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    printer.line(
        format!(
            "\nstopped: {accepted} connection{}: {completed} completed, {failed} failed (never reached the app), {cut} cut (the client was reset), {aborted} ended by the client; ↑{} ↓{}; per pod: {}",
            if accepted == 1 { "" } else { "s" },
            bytes(up),
            bytes(down),
            if spread.is_empty() { "none" } else { &spread }
        ),
        json!({"event": "summary", "connections": accepted, "completed": completed, "failed": failed,
               "cut": cut, "aborted": aborted, "bytes_up": up, "bytes_down": down,
               "per_pod": per_pod.iter().map(|(p, n)| json!({"pod": p, "connections": n})).collect::<Vec<_>>()}),
    );
}

/// Resolves when a single-pod target is deleted, with what would have survived.
async fn pod_gone(rx: &mut watch::Receiver<BackendSet>) -> String {
    loop {
        if let Some(msg) = rx.borrow_and_update().pod_gone.clone() {
            return msg;
        }
        if rx.changed().await.is_err() {
            // The watch ended (cancelled): nothing more will change.
            std::future::pending::<()>().await;
        }
    }
}

fn fmt_addr(a: SocketAddr) -> String {
    match a {
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        v4 => v4.to_string(),
    }
}

async fn wait_pod_running(router: &Router, timeout: Duration) -> Result<()> {
    let mut rx = router.backends();
    let ok = tokio::time::timeout(timeout, async {
        loop {
            {
                let set = rx.borrow_and_update();
                if set.ports.iter().any(|p| !p.ready.is_empty()) {
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
        let why = rx.borrow().port(0).why_empty.clone().unwrap_or_default();
        bail!(
            "{} is not running after {:?} (--pod-running-timeout): {why}",
            router.resolved().target,
            timeout
        );
    }
    Ok(())
}

fn spawn_status_line(
    stats: Arc<Stats>,
    printer: Arc<Printer>,
    out: Out,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let tty = !out.json && std::io::stderr().is_terminal();
    tokio::spawn(async move {
        if !tty {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancel.cancelled() => return,
            }
            let accepted = n(&stats.accepted);
            printer.status(&format!(
                "{} open, {accepted} connection{} ({} failed, {} cut), ↑{} ↓{}",
                n(&stats.open),
                if accepted == 1 { "" } else { "s" },
                n(&stats.failed),
                n(&stats.cut),
                bytes(n(&stats.bytes_up)),
                bytes(n(&stats.bytes_down)),
            ));
        }
    })
}
