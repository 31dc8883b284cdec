//! The contenders and how each is started and stopped: raw loopback (servers of the lab's echo
//! and blob protocols on 127.0.0.1, no port-forward: the limit), kubeway's transports (behind a
//! local listener this program runs, dialing through `kubeway-kube`'s `PortForwarder` per
//! connection) and `kubectl port-forward` in its WebSocket and legacy SPDY modes. Each one ends up
//! as two local addresses, one reaching the echo pod and one the blob pod, so the client side is
//! identical.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use kubeway_kube::portforward::{ForwardOptions, PortForwarder, Transport};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::runtime::Handle;

use crate::servers::{self, Protocol};

/// Port of the echo server in the `echo` pod.
pub const ECHO_PORT: u16 = 9000;
/// Port of the blob server in the benchmark's blob pod.
pub const BLOB_PORT: u16 = 9001;

/// One way to reach the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Contender {
    /// The pods' servers started directly on 127.0.0.1: no API server, no port-forward.
    Loopback,
    /// kubeway over `v4.channel.k8s.io`: one WebSocket per connection.
    KubewayV4,
    /// kubeway over pooled SPDY sessions tunnelled in WebSockets.
    KubewayWsSpdy,
    /// kubeway over pooled legacy SPDY sessions.
    KubewaySpdy,
    /// `kubectl port-forward` with `KUBECTL_PORT_FORWARD_WEBSOCKETS=true` (its default).
    KubectlWs,
    /// `kubectl port-forward` with `KUBECTL_PORT_FORWARD_WEBSOCKETS=false` (legacy SPDY).
    KubectlSpdy,
}

impl Contender {
    /// Every contender, in the order they run and print.
    pub const ALL: [Contender; 6] = [
        Contender::Loopback,
        Contender::KubewayWsSpdy,
        Contender::KubewaySpdy,
        Contender::KubewayV4,
        Contender::KubectlWs,
        Contender::KubectlSpdy,
    ];

    /// The `--only` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Loopback => "loopback",
            Contender::KubewayV4 => "kubeway-v4",
            Contender::KubewayWsSpdy => "kubeway-ws-spdy",
            Contender::KubewaySpdy => "kubeway-spdy",
            Contender::KubectlWs => "kubectl-ws",
            Contender::KubectlSpdy => "kubectl-spdy",
        }
    }

    /// What it is, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Contender::Loopback => "the pod servers on 127.0.0.1 directly (the limit)",
            Contender::KubewayV4 => "kubeway, v4.channel.k8s.io (one WebSocket per connection)",
            Contender::KubewayWsSpdy => "kubeway, pooled SPDY/3.1 tunnelled in WebSockets",
            Contender::KubewaySpdy => "kubeway, pooled legacy SPDY/3.1 (POST + Upgrade)",
            Contender::KubectlWs => "kubectl port-forward, KUBECTL_PORT_FORWARD_WEBSOCKETS=true",
            Contender::KubectlSpdy => "kubectl port-forward, KUBECTL_PORT_FORWARD_WEBSOCKETS=false",
        }
    }

    /// Whether the transport carries a TCP half-close (the `sink` upload needs one).
    pub fn half_close(self) -> bool {
        self != Contender::KubewayV4
    }

    /// One of kubeway's transports.
    pub fn is_kubeway(self) -> bool {
        matches!(
            self,
            Contender::KubewayV4 | Contender::KubewayWsSpdy | Contender::KubewaySpdy
        )
    }

    /// One of kubectl's modes.
    pub fn is_kubectl(self) -> bool {
        matches!(self, Contender::KubectlWs | Contender::KubectlSpdy)
    }
}

impl fmt::Display for Contender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Contender {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Contender::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown contender {s:?}; known: {}",
                    Contender::ALL.map(Contender::name).join(", ")
                )
            })
    }
}

/// Where the benchmark's pods are, and how to reach the lab.
#[derive(Debug, Clone)]
pub struct Pods {
    /// The lab's kubeconfig on disk.
    pub kubeconfig: PathBuf,
    /// Namespace of both pods.
    pub namespace: String,
    /// The sample app's echo pod (port 9000).
    pub echo: String,
    /// The benchmark's blob pod (port 9001).
    pub blob: String,
}

/// What starting a contender needs.
#[derive(Debug, Clone)]
pub struct Env {
    /// The pods.
    pub pods: Pods,
    /// The runtime playing the pods (and the lab): loopback servers start there.
    pub pod_rt: Handle,
    /// The runtime playing kubeway's forwarder process.
    pub fwd_rt: Handle,
    /// The kubectl program.
    pub kubectl: String,
}

/// A started contender: two local addresses that reach the echo and blob servers.
pub struct Live {
    /// Which one.
    pub contender: Contender,
    /// Reaches the echo server.
    pub echo: SocketAddr,
    /// Reaches the blob server.
    pub blob: SocketAddr,
    inner: Inner,
}

enum Inner {
    Loopback(Vec<servers::Server>),
    Kubeway(Vec<Forwarder>),
    Kubectl(Vec<KubectlForward>),
}

/// Starts `c`.
pub async fn start(c: Contender, env: &Env) -> anyhow::Result<Live> {
    match c {
        Contender::Loopback => start_loopback(env).await,
        Contender::KubewayV4 | Contender::KubewayWsSpdy | Contender::KubewaySpdy => {
            start_kubeway(c, env).await
        }
        Contender::KubectlWs | Contender::KubectlSpdy => start_kubectl(c, env).await,
    }
}

impl Live {
    /// Restarts a kubectl process that exited during the previous workload (kubectl ends its
    /// whole forward after one connection's error, kubernetes#111825); returns what happened,
    /// for the report.
    pub async fn revive(&mut self, env: &Env) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        if let Inner::Kubectl(forwards) = &mut self.inner {
            for f in forwards.iter_mut() {
                if let Some(status) = f.child.try_wait()? {
                    notes.push(format!(
                        "kubectl port-forward to {} exited ({status}) during the previous workload; stderr: {}; restarted it",
                        f.pod,
                        f.stderr_tail()
                    ));
                    *f = KubectlForward::spawn(env, &f.pod.clone(), f.port, f.websockets).await?;
                }
            }
            self.echo = forwards[0].addr;
            self.blob = forwards[1].addr;
        }
        Ok(notes)
    }

    /// Stops everything it started; returns notes worth reporting (forwarder dial failures).
    pub async fn stop(self) -> Vec<String> {
        let mut notes = Vec::new();
        match self.inner {
            Inner::Loopback(servers) => drop(servers),
            Inner::Kubeway(fwds) => {
                for f in fwds {
                    notes.extend(f.stop().await);
                }
            }
            Inner::Kubectl(forwards) => {
                for mut f in forwards {
                    let _ = f.child.start_kill();
                    let _ = tokio::time::timeout(Duration::from_secs(5), f.child.wait()).await;
                }
            }
        }
        notes
    }
}

fn loopback_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

async fn start_loopback(env: &Env) -> anyhow::Result<Live> {
    // Started on the pod runtime, where the lab's own containers run.
    let servers = env
        .pod_rt
        .spawn(async {
            std::io::Result::Ok(vec![
                servers::start(Protocol::Echo).await?,
                servers::start(Protocol::Blob).await?,
            ])
        })
        .await
        .context("the loopback server task")?
        .context("starting the loopback echo and blob servers")?;
    Ok(Live {
        contender: Contender::Loopback,
        echo: servers[0].addr,
        blob: servers[1].addr,
        inner: Inner::Loopback(servers),
    })
}

/// A byte stream through kubeway's transport.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A stream and whether its transport carries a half-close.
type Dialed = (Box<dyn Io>, bool);
type DialFuture = Pin<Box<dyn Future<Output = anyhow::Result<Dialed>> + Send>>;
/// Opens one stream to a fixed pod and port.
type Dial = Arc<dyn Fn() -> DialFuture + Send + Sync>;
/// The dialer's connections still open, and its state (its pool) in words, for the report.
type Describe = Arc<dyn Fn() -> (usize, String) + Send + Sync>;

#[derive(Default)]
struct ForwardStats {
    accepted: AtomicU64,
    dial_failed: AtomicU64,
    copy_failed: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl ForwardStats {
    fn remember(&self, e: String) {
        let mut v = self.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < 3 {
            v.push(e);
        }
    }
}

/// A local listener that carries each accepted connection through kubeway's transport.
struct Forwarder {
    what: String,
    describe: Describe,
    accept: tokio::task::JoinHandle<()>,
    stats: Arc<ForwardStats>,
}

impl Forwarder {
    /// Binds 127.0.0.1:0 and serves on the current runtime.
    async fn start(
        what: String,
        (dial, describe): (Dial, Describe),
    ) -> anyhow::Result<(Self, SocketAddr)> {
        let listener =
            servers::bind_loopback().context("binding the kubeway forwarder's local listener")?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ForwardStats::default());
        let st = stats.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut local, _)) = listener.accept().await else {
                    // Out of descriptors or similar: don't spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = local.set_nodelay(true);
                st.accepted.fetch_add(1, Ordering::Relaxed);
                let dial = dial.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let (mut remote, half_close) = match dial().await {
                        Ok(r) => r,
                        Err(e) => {
                            st.dial_failed.fetch_add(1, Ordering::Relaxed);
                            st.remember(format!("dial: {e:#}"));
                            return;
                        }
                    };
                    let copied = if half_close {
                        // What `kubeway forward` and `tunnel` do with each connection.
                        kubeway_net::splice(&mut local, &mut remote).await.map(drop)
                    } else {
                        splice_without_half_close(local, remote).await
                    };
                    if let Err(e) = copied {
                        st.copy_failed.fetch_add(1, Ordering::Relaxed);
                        st.remember(format!("copy: {e}"));
                    }
                });
            }
        });
        Ok((
            Self {
                what,
                describe,
                accept,
                stats,
            },
            addr,
        ))
    }

    /// Stops accepting, gives the dialer up to 3 s to close its last connections (the client
    /// has closed all of them), and reports what is left.
    async fn stop(self) -> Vec<String> {
        self.accept.abort();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let (active, pool) = loop {
            let (active, pool) = (self.describe)();
            if active == 0 || tokio::time::Instant::now() >= deadline {
                break (active, pool);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let s = &self.stats;
        let failed = s.dial_failed.load(Ordering::Relaxed);
        let copy = s.copy_failed.load(Ordering::Relaxed);
        let mut notes = vec![format!(
            "forwarder to {}: {} connections; pool at the end: {pool}",
            self.what,
            s.accepted.load(Ordering::Relaxed),
        )];
        if active > 0 {
            notes.push(format!(
                "forwarder to {}: {active} connections still open in kubeway's dialer 3 s after the client closed them all",
                self.what
            ));
        }
        if failed + copy > 0 {
            notes.push(format!(
                "forwarder to {}: {failed} dial failures, {copy} copy errors; first: {}",
                self.what,
                s.first_errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .join("; ")
            ));
        }
        notes
    }
}

/// Copies both ways over a transport that cannot carry a half-close (v4): the connection ends
/// when either direction ends. (With `copy_bidirectional`, a client's EOF would become a
/// `shutdown` the far side never sees, and an echo connection would stay open for ever.)
async fn splice_without_half_close(local: TcpStream, remote: Box<dyn Io>) -> std::io::Result<()> {
    let (lr, mut lw) = local.into_split();
    let (rr, mut rw) = tokio::io::split(remote);
    let mut lr = tokio::io::BufReader::with_capacity(64 * 1024, lr);
    let mut rr = tokio::io::BufReader::with_capacity(64 * 1024, rr);
    tokio::select! {
        up = tokio::io::copy_buf(&mut lr, &mut rw) => up.map(drop),
        down = async {
            tokio::io::copy_buf(&mut rr, &mut lw).await?;
            lw.shutdown().await
        } => down,
    }
}

async fn start_kubeway(c: Contender, env: &Env) -> anyhow::Result<Live> {
    let pods = env.pods.clone();
    // Everything kubeway runs (client, sessions, listeners) lives on the forwarder runtime, as
    // it would in its own process.
    let (echo, blob) = env
        .fwd_rt
        .spawn(async move {
            let cluster = kubeway_kube::connect(&kubeway_kube::ConnectOptions {
                kubeconfig: Some(pods.kubeconfig.clone()),
                namespace: Some(pods.namespace.clone()),
                ..Default::default()
            })
            .await
            .context("connecting kubeway to the lab")?;
            let echo_dial = dialer(c, &cluster, &pods.echo, ECHO_PORT)?;
            let blob_dial = dialer(c, &cluster, &pods.blob, BLOB_PORT)?;
            let echo = Forwarder::start(format!("{}:{ECHO_PORT}", pods.echo), echo_dial).await?;
            let blob = Forwarder::start(format!("{}:{BLOB_PORT}", pods.blob), blob_dial).await?;
            anyhow::Ok((echo, blob))
        })
        .await
        .context("the kubeway setup task")??;
    Ok(Live {
        contender: c,
        echo: echo.1,
        blob: blob.1,
        inner: Inner::Kubeway(vec![echo.0, blob.0]),
    })
}

/// How kubeway opens one stream to `pod:port` for contender `c`: through
/// `kubeway_kube::portforward::PortForwarder` (the product's dialer, pooled sessions for the
/// SPDY transports), pinned to the contender's transport. Also returns a way to describe the
/// pool afterwards, for the report.
fn dialer(
    c: Contender,
    cluster: &kubeway_kube::Cluster,
    pod: &str,
    port: u16,
) -> anyhow::Result<(Dial, Describe)> {
    let transport = match c {
        Contender::KubewayV4 => Transport::V4,
        Contender::KubewayWsSpdy => Transport::WsSpdy,
        Contender::KubewaySpdy => Transport::Spdy,
        other => bail!("{other} is not a kubeway transport"),
    };
    let fwd = PortForwarder::new(
        cluster,
        &cluster.namespace,
        pod,
        ForwardOptions::default().with_transport(transport),
    );
    let stats = fwd.clone();
    let describe: Describe = Arc::new(move || {
        let st = stats.stats();
        (st.connections_active, format!("{st:?}"))
    });
    let dial: Dial = Arc::new(move || {
        let fwd = fwd.clone();
        Box::pin(async move {
            let s = fwd.connect(port).await?;
            let half_close = s.transport().is_multiplexed();
            Ok((Box::new(s) as Box<dyn Io>, half_close))
        })
    });
    Ok((dial, describe))
}

/// One `kubectl port-forward` process.
struct KubectlForward {
    child: Child,
    addr: SocketAddr,
    pod: String,
    port: u16,
    websockets: bool,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl KubectlForward {
    async fn spawn(env: &Env, pod: &str, port: u16, websockets: bool) -> anyhow::Result<Self> {
        let mut child = Command::new(&env.kubectl)
            .args([
                "port-forward",
                "-n",
                &env.pods.namespace,
                &format!("pod/{pod}"),
                &format!(":{port}"),
                "--address",
                "127.0.0.1",
            ])
            .env("KUBECONFIG", &env.pods.kubeconfig)
            .env(
                "KUBECTL_PORT_FORWARD_WEBSOCKETS",
                if websockets { "true" } else { "false" },
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} port-forward", env.kubectl))?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let tail = stderr.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() == 10 {
                        t.pop_front();
                    }
                    t.push_back(l);
                }
            });
        }
        let mut lines = BufReader::new(child.stdout.take().context("kubectl's stdout")?).lines();
        let mut f = Self {
            child,
            addr: SocketAddr::new(loopback_ip(), 0),
            pod: pod.to_string(),
            port,
            websockets,
            stderr,
        };
        // "Forwarding from 127.0.0.1:41234 -> 9000"
        let first = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line
                    .strip_prefix("Forwarding from ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    return std::io::Result::Ok(Some(addr));
                }
            }
            Ok(None)
        })
        .await;
        match first {
            Ok(Ok(Some(addr))) => {
                // Only loopback, as asked with --address; anything else is refused.
                if !addr.ip().is_loopback() {
                    bail!(
                        "kubectl reported a non-loopback forward address {addr}; refusing to dial it"
                    );
                }
                f.addr = addr;
            }
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = f.child.wait().await.ok();
                tokio::time::sleep(Duration::from_millis(100)).await;
                bail!(
                    "kubectl port-forward pod/{pod} :{port} ended before forwarding ({}): {}",
                    status.map_or("unknown status".into(), |s| s.to_string()),
                    f.stderr_tail()
                );
            }
            Err(_) => bail!(
                "kubectl port-forward pod/{pod} :{port} did not report a forward within 30 s: {}",
                f.stderr_tail()
            ),
        }
        // Keep draining "Handling connection for …" lines so kubectl never blocks on stdout.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(f)
    }

    fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_empty() {
            "(nothing on stderr)".into()
        } else {
            t.iter().cloned().collect::<Vec<_>>().join(" | ")
        }
    }
}

async fn start_kubectl(c: Contender, env: &Env) -> anyhow::Result<Live> {
    let websockets = c == Contender::KubectlWs;
    let echo = KubectlForward::spawn(env, &env.pods.echo, ECHO_PORT, websockets).await?;
    let blob = KubectlForward::spawn(env, &env.pods.blob, BLOB_PORT, websockets).await?;
    Ok(Live {
        contender: c,
        echo: echo.addr,
        blob: blob.addr,
        inner: Inner::Kubectl(vec![echo, blob]),
    })
}
