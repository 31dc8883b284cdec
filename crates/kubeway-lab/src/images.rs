//! The lab's built-in container images: real local servers (HTTP, TCP and UDP echo, byte
//! source/sink) with switches, set from the manifest's `args`, for the classic failures.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::netns::Place;
use tokio_util::sync::CancellationToken;

/// The images the lab can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// HTTP server answering with its pod name and request details.
    Http,
    /// TCP echo with half-close; UDP echo on the container ports declared `protocol: UDP`.
    Echo,
    /// Byte source and sink for throughput (`source N`, `sink`).
    Blob,
}

/// Names of the built-in images, for messages.
pub const IMAGE_NAMES: &[&str] = &[
    "kubeway.local/http",
    "kubeway.local/echo",
    "kubeway.local/blob",
];

impl Image {
    /// Recognises `kubeway.local/http[:tag]` and friends.
    pub fn from_ref(image: &str) -> Option<Self> {
        let repo = image.split('@').next().unwrap_or(image);
        let repo = match repo.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => r,
            _ => repo,
        };
        match repo {
            "kubeway.local/http" => Some(Self::Http),
            "kubeway.local/echo" => Some(Self::Echo),
            "kubeway.local/blob" => Some(Self::Blob),
            _ => None,
        }
    }

    /// The port the server uses when the manifest names none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 8080,
            Self::Echo => 9000,
            Self::Blob => 9001,
        }
    }
}

/// Where a container's servers listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Pod address and the pod's localhost (like `0.0.0.0` in a container).
    All,
    /// Only the pod address: port-forward (which dials localhost) fails.
    PodIp,
    /// Only the pod's localhost: Services and NodePorts fail, port-forward works.
    Localhost,
}

/// A container's switches, parsed from `args` (`--name=value`).
#[derive(Debug, Clone)]
pub struct Switches {
    /// Where to listen.
    pub listen: Listen,
    /// Extra port to serve besides the manifest's container ports.
    pub port: Option<u16>,
    /// `/healthz` answers 503 until this much time has passed (None = ready at once).
    pub ready_after: Option<Duration>,
    /// `/healthz` never answers 200.
    pub never_ready: bool,
    /// The container exits after running this long.
    pub crash_after: Option<Duration>,
    /// Exit code when it crashes.
    pub exit_code: i32,
    /// Every Nth connection is reset on accept.
    pub reset_every: Option<u64>,
    /// Delay before every response.
    pub delay: Duration,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            listen: Listen::All,
            port: None,
            ready_after: None,
            never_ready: false,
            crash_after: None,
            exit_code: 1,
            reset_every: None,
            delay: Duration::ZERO,
        }
    }
}

/// Parses `250ms`, `2s`, `1m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(sec) = s.strip_suffix('s') {
        return sec.parse::<f64>().ok().map(Duration::from_secs_f64);
    }
    if let Some(m) = s.strip_suffix('m') {
        return m
            .parse::<f64>()
            .ok()
            .map(|m| Duration::from_secs_f64(m * 60.0));
    }
    s.parse::<f64>().ok().map(Duration::from_secs_f64)
}

impl Switches {
    /// Parses container args; unknown args are an error naming the known ones.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut s = Self::default();
        for a in args {
            let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
            let bad = || format!("invalid value {v:?} for {k}");
            match k {
                "--listen" => {
                    s.listen = match v {
                        "all" | "0.0.0.0" => Listen::All,
                        "pod-ip" => Listen::PodIp,
                        "localhost" | "127.0.0.1" => Listen::Localhost,
                        _ => return Err(format!("{}; use all, pod-ip or localhost", bad())),
                    }
                }
                "--port" => s.port = Some(v.parse().map_err(|_| bad())?),
                "--ready-after" if v == "never" => s.never_ready = true,
                "--ready-after" => s.ready_after = Some(parse_duration(v).ok_or_else(bad)?),
                "--crash-after" => s.crash_after = Some(parse_duration(v).ok_or_else(bad)?),
                "--exit-code" => s.exit_code = v.parse().map_err(|_| bad())?,
                "--reset-every" => {
                    s.reset_every = Some(v.parse().map_err(|_| bad())?).filter(|n| *n > 0)
                }
                "--delay" => s.delay = parse_duration(v).ok_or_else(bad)?,
                _ => {
                    return Err(format!(
                        "unknown argument {a:?}; the lab's images accept --listen, --port, --ready-after, --crash-after, --exit-code, --reset-every, --delay"
                    ));
                }
            }
        }
        Ok(s)
    }
}

/// Who a server is, for its answers.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Pod name.
    pub pod: String,
    /// Namespace.
    pub namespace: String,
    /// Pod IP.
    pub pod_ip: IpAddr,
    /// Node name.
    pub node: String,
    /// Container name.
    pub container: String,
}

/// What a pod's containers share about their connections: the kubelet's kill switch (cancelled
/// when the grace period is over, or at once for a crash) and how many are open, so a pod that
/// drained can be removed before its grace period ends, as an app exits once its connections
/// finished.
#[derive(Debug, Clone, Default)]
pub struct PodLife {
    /// Cancelled to end every open connection of the pod (as the kernel closes the sockets of
    /// a killed process).
    pub kill: CancellationToken,
    open: Arc<AtomicU64>,
    drained: Arc<tokio::sync::Notify>,
}

impl PodLife {
    /// A pod's life whose kill switch is `kill`.
    pub fn new(kill: CancellationToken) -> Self {
        Self {
            kill,
            ..Self::default()
        }
    }

    /// Counts one open connection until the guard is dropped.
    pub fn open_guard(&self) -> OpenConn {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenConn(self.clone())
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }

    /// Resolves once no connection is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One open connection of a pod ([`PodLife::open_guard`]).
pub struct OpenConn(PodLife);

impl Drop for OpenConn {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// A running container. [`Running::stop`] is a graceful stop (no new connections; open ones run
/// on until they finish or the kubelet kills the pod, as an app draining on SIGTERM);
/// [`Running::kill`] ends everything at once (a crash). Dropping it stops gracefully.
pub struct Running {
    accept: CancellationToken,
    conns: CancellationToken,
    started: Instant,
    /// (address, container port) → actually bound port (differs when a privileged port was remapped).
    pub bound: Vec<(IpAddr, u16, u16)>,
    /// The same for UDP sockets ([`Running::serve_udp`]).
    pub bound_udp: Vec<(IpAddr, u16, u16)>,
}

impl Running {
    /// A container whose listeners were started elsewhere (the tutorial images of `apps`).
    pub(crate) fn from_parts(
        accept: CancellationToken,
        conns: CancellationToken,
        bound: Vec<(IpAddr, u16, u16)>,
    ) -> Self {
        Self {
            accept,
            conns,
            started: Instant::now(),
            bound,
            bound_udp: Vec::new(),
        }
    }

    /// Serves the image's UDP side on `addrs` × `ports` (the container ports declared with
    /// `protocol: UDP`; TCP and UDP on one number are separate sockets). The echo image sends
    /// every datagram back unchanged to its sender (after `--delay`, if set); the other images
    /// have no UDP server, so nothing is bound and datagrams meet the kernel's "port
    /// unreachable", as for a process that never opened the port. A privileged port the lab may
    /// not bind is served on a free port, remembered in `bound_udp`. The sockets close when the
    /// container stops accepting ([`Running::stop`], [`Running::kill`]).
    pub fn serve_udp(
        &mut self,
        place: &Place,
        image: Image,
        sw: &Switches,
        addrs: &[IpAddr],
        ports: &[u16],
    ) -> std::io::Result<()> {
        if image != Image::Echo {
            return Ok(());
        }
        for &ip in addrs {
            for &port in ports {
                let (sock, actual) = bind_udp(place, ip, port)?;
                self.bound_udp.push((ip, port, actual));
                tokio::spawn(udp_echo(Arc::new(sock), sw.delay, self.accept.clone()));
            }
        }
        Ok(())
    }

    /// Stops accepting; open connections run on until they end or the pod is killed.
    pub fn stop(&self) {
        self.accept.cancel();
    }

    /// Ends every listener and connection now.
    pub fn kill(&self) {
        self.accept.cancel();
        self.conns.cancel();
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.accept.is_cancelled() {
            self.stop();
        }
    }
}

/// Binds with a deep accept queue, as servers in containers usually have (tokio's default is 128).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    Place::Here.listen(addr)
}

/// Binds `ip:port` in `place`; a privileged port the lab may not bind is served on a free port
/// instead (the caller remembers the mapping).
pub(crate) fn bind(place: &Place, ip: IpAddr, port: u16) -> std::io::Result<(TcpListener, u16)> {
    match place.listen(SocketAddr::new(ip, port)) {
        Ok(l) => {
            let actual = l.local_addr()?.port();
            Ok((l, actual))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            // Unprivileged lab: serve a privileged container port on a free port, remembered in `bound`.
            let l = place.listen(SocketAddr::new(ip, 0))?;
            let p = l.local_addr()?.port();
            Ok((l, p))
        }
        Err(e) => Err(e),
    }
}

/// Binds UDP `ip:port` in `place`, remapping a privileged port as [`bind`] does.
pub(crate) fn bind_udp(place: &Place, ip: IpAddr, port: u16) -> std::io::Result<(UdpSocket, u16)> {
    let sock = match place.udp(SocketAddr::new(ip, port)) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            place.udp(SocketAddr::new(ip, 0))?
        }
        other => other?,
    };
    let actual = sock.local_addr()?.port();
    Ok((sock, actual))
}

/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// Whether a UDP socket error is about one peer (an ICMP error reported late), not the socket.
pub fn udp_error_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | Interrupted
            | WouldBlock
            | HostUnreachable
            | NetworkUnreachable
    )
}

/// The echo image's UDP server: every datagram goes back unchanged to its sender.
async fn udp_echo(sock: Arc<UdpSocket>, delay: Duration, stop: CancellationToken) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) if udp_error_is_transient(&e) => continue,
                Err(_) => return,
            },
            _ = stop.cancelled() => return,
        };
        if delay.is_zero() {
            let _ = sock.send_to(&buf[..n], from).await;
            continue;
        }
        // Each datagram is its own request: delay its answer without holding up the others.
        let (sock, stop, data) = (sock.clone(), stop.clone(), buf[..n].to_vec());
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => { let _ = sock.send_to(&data, from).await; }
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// Starts a container's servers on `addrs` × `ports`; its connections count in `life` and end
/// when `life.kill` fires.
pub async fn start(
    place: &Place,
    image: Image,
    sw: &Switches,
    id: Identity,
    addrs: &[IpAddr],
    ports: &[u16],
    life: &PodLife,
) -> std::io::Result<Running> {
    let accept = CancellationToken::new();
    let conns = life.kill.child_token();
    let started = Instant::now();
    let mut bound = Vec::new();
    let shared = Arc::new(Shared {
        id,
        sw: sw.clone(),
        started,
        accepted: AtomicU64::new(0),
    });
    for &ip in addrs {
        for &port in ports {
            let (listener, actual) = bind(place, ip, port)?;
            bound.push((ip, port, actual));
            let cancel = accept.clone();
            let conns = conns.clone();
            let shared = shared.clone();
            let life = life.clone();
            tokio::spawn(async move {
                loop {
                    let conn = tokio::select! {
                        c = listener.accept() => c,
                        _ = cancel.cancelled() => break,
                    };
                    let Ok((tcp, _)) = conn else { continue };
                    let _ = tcp.set_nodelay(true);
                    let n = shared.accepted.fetch_add(1, Ordering::Relaxed) + 1;
                    if shared
                        .sw
                        .reset_every
                        .is_some_and(|every| n.is_multiple_of(every))
                    {
                        reset(tcp);
                        continue;
                    }
                    let shared = shared.clone();
                    let conns = conns.clone();
                    let open = life.open_guard();
                    tokio::spawn(async move {
                        let _open = open;
                        tokio::select! {
                            _ = serve(image, shared, tcp) => {}
                            _ = conns.cancelled() => {}
                        }
                    });
                }
            });
        }
    }
    Ok(Running {
        accept,
        conns,
        started,
        bound,
        bound_udp: Vec::new(),
    })
}

struct Shared {
    id: Identity,
    sw: Switches,
    started: Instant,
    accepted: AtomicU64,
}

/// Closes a connection with RST instead of FIN.
pub fn reset(tcp: TcpStream) {
    let sock = socket2::SockRef::from(&tcp);
    let _ = sock.set_linger(Some(Duration::ZERO));
    drop(tcp);
}

async fn serve(image: Image, shared: Arc<Shared>, tcp: TcpStream) {
    match image {
        Image::Http => serve_http(shared, tcp).await,
        Image::Echo => serve_echo(shared, tcp).await,
        Image::Blob => serve_blob(tcp).await,
    }
}

type HttpBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn text(code: u16, body: String) -> Response<HttpBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
    *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::OK);
    r
}

async fn serve_http(shared: Arc<Shared>, tcp: TcpStream) {
    // A clone of the socket lets `/reset` end the connection with RST.
    let std = match tcp.into_std() {
        Ok(s) => s,
        Err(_) => return,
    };
    let keep = socket2::Socket::from(std);
    let Ok(clone) = keep.try_clone() else { return };
    let Ok(tcp) = TcpStream::from_std(std::net::TcpStream::from(clone)) else {
        return;
    };
    let keep = Arc::new(keep);
    let svc = {
        let keep = keep.clone();
        service_fn(move |req: Request<Incoming>| {
            let shared = shared.clone();
            let keep = keep.clone();
            async move { http_answer(shared, keep, req).await }
        })
    };
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), svc)
        .await;
}

async fn http_answer(
    shared: Arc<Shared>,
    keep: Arc<socket2::Socket>,
    req: Request<Incoming>,
) -> Result<Response<HttpBody>, std::io::Error> {
    let id = &shared.id;
    let path = req.uri().path().to_string();
    if !shared.sw.delay.is_zero() && path != "/healthz" {
        tokio::time::sleep(shared.sw.delay).await;
    }
    let method = req.method().clone();
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let resp = match path.as_str() {
        "/healthz" | "/readyz" => {
            let ready = !shared.sw.never_ready
                && shared.sw.ready_after.is_none_or(|d| shared.started.elapsed() >= d);
            if ready {
                text(200, "ok\n".into())
            } else {
                text(503, "not ready\n".into())
            }
        }
        "/reset" => {
            let _ = keep.set_linger(Some(Duration::ZERO));
            let _ = keep.shutdown(std::net::Shutdown::Both);
            return Err(std::io::Error::other("reset on request"));
        }
        "/json" => text(
            200,
            serde_json::json!({"pod": id.pod, "namespace": id.namespace, "podIP": id.pod_ip.to_string(),
                "node": id.node, "container": id.container, "method": method.as_str(), "path": path, "host": host})
            .to_string(),
        ),
        "/echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut r = Response::new(Full::new(body).map_err(|n| match n {}).boxed());
            *r.status_mut() = hyper::StatusCode::OK;
            r
        }
        p if p.starts_with("/bytes/") => {
            let n: usize = p["/bytes/".len()..].parse().unwrap_or(0).min(64 << 20);
            let mut r = Response::new(
                Full::new(Bytes::from(pattern(0, n)))
                    .map_err(|n| match n {})
                    .boxed(),
            );
            *r.status_mut() = hyper::StatusCode::OK;
            r
        }
        _ => text(
            200,
            format!(
                "Hello from {pod} (namespace {ns}, pod IP {ip}, node {node})\n{method} {path} {version:?}\nhost: {host}\n",
                pod = id.pod,
                ns = id.namespace,
                ip = id.pod_ip,
                node = id.node,
                version = req.version(),
            ),
        ),
    };
    let mut resp = resp;
    if let Ok(v) = hyper::header::HeaderValue::from_str(&id.pod) {
        resp.headers_mut().insert("x-pod-name", v);
    }
    Ok(resp)
}

/// Deterministic bytes for the source (position-dependent, so reordering is detected).
pub fn pattern(offset: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    pattern_into(offset, &mut v);
    v
}

/// Fills `buf` with the `source` stream's bytes from `offset` on, without allocating.
pub fn pattern_into(offset: u64, buf: &mut [u8]) {
    let mut x = offset.wrapping_mul(PATTERN_MUL);
    for b in buf.iter_mut() {
        *b = (x >> 56) as u8;
        x = x.wrapping_add(PATTERN_MUL);
    }
}

const PATTERN_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

async fn serve_echo(shared: Arc<Shared>, tcp: TcpStream) {
    let (mut rd, mut wr) = tcp.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = true;
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if first {
            first = false;
            if buf[..n].starts_with(b"RESET") {
                if let Ok(tcp) = rd.reunite(wr) {
                    reset(tcp);
                }
                return;
            }
            if !shared.sw.delay.is_zero() {
                tokio::time::sleep(shared.sw.delay).await;
            }
        }
        if wr.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn serve_blob(tcp: TcpStream) {
    let mut rd = BufReader::new(tcp);
    let mut line = String::new();
    if rd.read_line(&mut line).await.is_err() {
        return;
    }
    let cmd = line.trim();
    if let Some(n) = cmd.strip_prefix("source ") {
        let Ok(total) = n.trim().parse::<u64>() else {
            let _ = rd
                .get_mut()
                .write_all(b"error: source needs a byte count\n")
                .await;
            return;
        };
        let mut sent = 0u64;
        // One buffer, refilled in place: the source must never be what limits a benchmark.
        let mut buf = vec![0u8; 256 * 1024];
        while sent < total {
            let n = usize::try_from(total - sent)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            pattern_into(sent, &mut buf[..n]);
            if rd.get_mut().write_all(&buf[..n]).await.is_err() {
                return;
            }
            sent += n as u64;
        }
        let _ = rd.get_mut().shutdown().await;
    } else if cmd == "sink" || cmd.starts_with("sink ") {
        // `sink N`: read N bytes, then answer; `sink`: read to EOF (needs a half-close the way
        // there carries to the app, which a container runtime's port-forward does not).
        let want = match cmd.strip_prefix("sink ").map(|n| n.trim().parse::<u64>()) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                let _ = rd
                    .get_mut()
                    .write_all(b"error: sink N needs a byte count\n")
                    .await;
                return;
            }
        };
        let mut hasher = sha2::Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let room = match want {
                Some(w) if total >= w => break,
                Some(w) => usize::try_from(w - total)
                    .unwrap_or(usize::MAX)
                    .min(buf.len()),
                None => buf.len(),
            };
            match rd.read(&mut buf[..room]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    total += n as u64;
                }
            }
        }
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let _ = rd
            .get_mut()
            .write_all(format!("{total} {hex}\n").as_bytes())
            .await;
        let _ = rd.get_mut().shutdown().await;
    } else {
        let _ = rd
            .get_mut()
            .write_all(b"error: send \"source N\\n\", \"sink N\\n\" or \"sink\\n\"\n")
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs() {
        assert_eq!(Image::from_ref("kubeway.local/http"), Some(Image::Http));
        assert_eq!(Image::from_ref("kubeway.local/echo:1.0"), Some(Image::Echo));
        assert_eq!(Image::from_ref("nginx"), None);
    }

    #[test]
    fn switches_parse_and_reject_unknowns() {
        let s = Switches::parse(&[
            "--listen=pod-ip".into(),
            "--crash-after=2s".into(),
            "--delay=150ms".into(),
            "--reset-every=3".into(),
        ])
        .expect("valid");
        assert_eq!(s.listen, Listen::PodIp);
        assert_eq!(s.crash_after, Some(Duration::from_secs(2)));
        assert_eq!(s.delay, Duration::from_millis(150));
        assert_eq!(s.reset_every, Some(3));
        assert!(Switches::parse(&["--bogus".into()]).is_err());
        assert!(Switches::parse(&["--listen=moon".into()]).is_err());
        assert!(
            Switches::parse(&["--ready-after=never".into()])
                .expect("never")
                .never_ready
        );
    }

    /// Sends `msg` from `c` and waits for one answer (polling: the first datagram may race the
    /// server's start).
    async fn udp_round_trip(c: &UdpSocket, msg: &[u8]) -> std::io::Result<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut last = None;
        for _ in 0..50 {
            c.send(msg).await?;
            match tokio::time::timeout(Duration::from_millis(200), c.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) => return Ok((buf[..n].to_vec(), from)),
                Ok(Err(e)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer: {last:?}"),
        ))
    }

    #[tokio::test]
    async fn udp_echo_answers_each_sender_and_stops_with_the_container() {
        let id = Identity {
            pod: "p".into(),
            namespace: "default".into(),
            pod_ip: "127.0.0.1".parse().expect("ip"),
            node: "n".into(),
            container: "c".into(),
        };
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let sw = Switches::default();
        let mut echo = start(
            &Place::Here,
            Image::Echo,
            &sw,
            id.clone(),
            &[ip],
            &[0],
            &PodLife::default(),
        )
        .await
        .expect("start");
        echo.serve_udp(&Place::Here, Image::Echo, &sw, &[ip], &[0])
            .expect("udp");
        let (_, declared, actual) = echo.bound_udp[0];
        assert_eq!(declared, 0);
        let server = SocketAddr::new(ip, actual);

        // Two senders at once, interleaved: each gets its own datagrams back, from the server.
        let a = Place::Here.udp(SocketAddr::new(ip, 0)).expect("a");
        let b = Place::Here.udp(SocketAddr::new(ip, 0)).expect("b");
        a.connect(server).await.expect("connect a");
        b.connect(server).await.expect("connect b");
        let (back, from) = udp_round_trip(&a, b"first from a")
            .await
            .expect("a answered");
        assert_eq!((back.as_slice(), from), (&b"first from a"[..], server));
        for i in 0..20u8 {
            a.send(&[b'a', i]).await.expect("send a");
            b.send(&[b'b', i, 0xff]).await.expect("send b");
        }
        let mut buf = [0u8; 16];
        for i in 0..20u8 {
            let n = a.recv(&mut buf).await.expect("recv a");
            assert_eq!(&buf[..n], &[b'a', i], "a's answers in order, only a's");
            let n = b.recv(&mut buf).await.expect("recv b");
            assert_eq!(&buf[..n], &[b'b', i, 0xff], "b's answers, only b's");
        }
        // An empty datagram is a datagram too.
        a.send(b"").await.expect("send empty");
        assert_eq!(a.recv(&mut buf).await.expect("recv empty"), 0);

        // The HTTP image has no UDP server: nothing is bound.
        let mut http = start(
            &Place::Here,
            Image::Http,
            &sw,
            id,
            &[ip],
            &[0],
            &PodLife::default(),
        )
        .await
        .expect("http");
        http.serve_udp(&Place::Here, Image::Http, &sw, &[ip], &[0])
            .expect("no udp");
        assert!(http.bound_udp.is_empty());

        // A stopped container's socket is closed: the kernel answers "port unreachable".
        echo.stop();
        let mut refused = false;
        for _ in 0..100 {
            match udp_round_trip(&a, b"still there?").await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    refused = true;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        assert!(refused, "the UDP socket outlived its container");
    }

    #[tokio::test]
    async fn echo_and_blob_servers_answer() {
        let id = Identity {
            pod: "p".into(),
            namespace: "default".into(),
            pod_ip: "127.0.0.1".parse().expect("ip"),
            node: "n".into(),
            container: "c".into(),
        };
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let echo = start(
            &Place::Here,
            Image::Echo,
            &Switches::default(),
            id.clone(),
            &[ip],
            &[0],
            &PodLife::default(),
        )
        .await
        .expect("start");
        let port = echo.bound[0].2;
        let mut c = TcpStream::connect((ip, port)).await.expect("connect");
        c.write_all(b"hello").await.expect("write");
        c.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"hello");

        let blob = start(
            &Place::Here,
            Image::Blob,
            &Switches::default(),
            id,
            &[ip],
            &[0],
            &PodLife::default(),
        )
        .await
        .expect("start");
        let port = blob.bound[0].2;
        let mut c = TcpStream::connect((ip, port)).await.expect("connect");
        c.write_all(b"source 1000\n").await.expect("write");
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, pattern(0, 1000));
    }
}
