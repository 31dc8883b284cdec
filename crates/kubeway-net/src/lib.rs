//! kubeway's host side: accept loops that hand each local connection to a connector,
//! byte-exact bidirectional copies that carry half-close, reachability probes, and host
//! addresses for Services ([`loopback`]), and kernel routes for `tunnel --route` ([`route`]).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod carry;
// User-given ports and addresses are computed with here: no arithmetic that can overflow.
#[cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]
pub mod loopback;
#[cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]
pub mod route;

pub use carry::{Carried, CarryOptions, Ending, carry, reset};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Counters of one accept loop.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections that ended cleanly on both sides.
    pub completed: AtomicU64,
    /// Connections that never reached the far side (no way could be opened for them).
    pub failed: AtomicU64,
    /// Connections that reached the far side and then ended abnormally (the local client was
    /// reset).
    pub cut: AtomicU64,
    /// Connections the local client itself reset or abandoned.
    pub aborted: AtomicU64,
    /// Bytes from local clients to the remote side.
    pub bytes_up: AtomicU64,
    /// Bytes from the remote side to local clients.
    pub bytes_down: AtomicU64,
}

/// How one served connection ended, for [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both sides ended cleanly.
    Completed,
    /// No way to the far side could be opened.
    Failed,
    /// Ended abnormally after reaching the far side.
    Cut,
    /// The local client reset or left.
    Aborted,
}

impl Outcome {
    /// The outcome of a carry that reached the far side.
    pub fn of(ending: &Ending) -> Self {
        match ending {
            Ending::Complete => Outcome::Completed,
            Ending::LocalFailed(_) => Outcome::Aborted,
            Ending::RemoteFailed(_) | Ending::Stopped(_) => Outcome::Cut,
        }
    }
}

impl Stats {
    /// Counts one ended connection.
    pub fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Completed => &self.completed,
            Outcome::Failed => &self.failed,
            Outcome::Cut => &self.cut,
            Outcome::Aborted => &self.aborted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Copies both ways until both directions are done; an EOF on one side becomes a half-close
/// (`shutdown`) on the other. Returns (bytes a→b, bytes b→a). For carrying a local client,
/// prefer [`carry`], which also tells how the connection ended and resets the client when the
/// far side failed.
pub async fn splice<A, B>(a: &mut A, b: &mut B) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional(a, b).await
}

/// One accepted connection, handed to the handler of [`serve`].
pub struct Accepted {
    /// The local client.
    pub tcp: TcpStream,
    /// Its address.
    pub peer: SocketAddr,
    /// Cancelled when the connection must end now: the accept loop was stopped and the drain
    /// time is over. A handler passes it to [`carry`] as its stop.
    pub kill: CancellationToken,
}

/// Accepts on `listener` until `cancel`, handing each connection to `handle` and counting what
/// it returns in `stats`. After `cancel`, open connections get `drain` to finish, then their
/// `kill` token fires; `serve` returns once every handler has returned.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    cancel: CancellationToken,
    stats: Arc<Stats>,
    drain: std::time::Duration,
    handle: F,
) where
    F: Fn(Accepted) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let tracker = TaskTracker::new();
    let kill = CancellationToken::new();
    let handle = Arc::new(handle);
    loop {
        let (tcp, peer) = tokio::select! {
            c = listener.accept() => match c {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // EMFILE and friends: give the system a moment instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let handle = handle.clone();
        let stats = stats.clone();
        let kill = kill.clone();
        tracker.spawn(async move {
            let _open = OpenGuard::new(&stats);
            let outcome = handle(Accepted { tcp, peer, kill }).await;
            stats.count(outcome);
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        kill.cancel();
        tracker.wait().await;
    }
}

/// [`serve`] with a `connect` that opens the far side for each connection, carried with
/// [`carry`]: a failed `connect` resets that one local connection and is logged.
pub async fn serve_connect<F, Fut, S, E>(
    listener: TcpListener,
    cancel: CancellationToken,
    stats: Arc<Stats>,
    drain: std::time::Duration,
    connect: F,
) where
    F: Fn(SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S, E>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let connect = Arc::new(connect);
    let live = stats.clone();
    serve(listener, cancel, stats, drain, move |a: Accepted| {
        let connect = connect.clone();
        let live = live.clone();
        async move {
            let remote = match connect(a.peer).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(peer = %a.peer, error = %e, "could not open the way for this connection");
                    reset(a.tcp);
                    return Outcome::Failed;
                }
            };
            let kill = a.kill.clone();
            let stop = async move {
                kill.cancelled().await;
                "stopped".to_string()
            };
            let done = carry(a.tcp, remote, CarryOptions::default(), stop, Some(&live)).await;
            match &done.ending {
                Ending::RemoteFailed(e) => {
                    tracing::warn!(peer = %a.peer, error = %e, "connection cut by the far side");
                }
                Ending::Stopped(why) => tracing::warn!(peer = %a.peer, %why, "connection cut"),
                Ending::Complete | Ending::LocalFailed(_) => {}
            }
            Outcome::of(&done.ending)
        }
    })
    .await
}

/// Counts one connection in [`Stats::open`] while it lives.
struct OpenGuard<'a>(&'a Stats);

impl<'a> OpenGuard<'a> {
    fn new(stats: &'a Stats) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Pending connections a listener queues: as Go's listeners (kubectl), not tokio's 128, so a
/// burst of hundreds of connects is not dropped and retried a second later.
pub const BACKLOG: u32 = 4096;

/// Binds a listener on `addr` with a [`BACKLOG`]-deep accept queue.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Binds a loopback listener; port 0 picks a free one.
pub async fn bind_loopback(port: u16) -> std::io::Result<TcpListener> {
    listen(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// What a TCP reachability probe saw.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Probe {
    /// The connection was accepted.
    Answered {
        /// Time to connect, in milliseconds.
        millis: u64,
    },
    /// The address answered with a reset: reachable, but nothing listens on the port.
    Refused,
    /// Something accepted and then closed or reset at once: a proxy with nothing behind it
    /// (a userspace kube-proxy, Docker Desktop's vpnkit).
    ClosedAtOnce,
    /// No answer within the timeout: typically a boundary that drops packets.
    TimedOut,
    /// The OS refused to send (no route, network unreachable, …).
    Unreachable {
        /// The OS error.
        error: String,
    },
}

impl Probe {
    /// Whether something accepted the connection.
    pub fn answered(&self) -> bool {
        matches!(self, Probe::Answered { .. })
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Answered { millis } => write!(f, "answers ({millis} ms)"),
            Probe::Refused => f.write_str("refused (nothing listens there for the host)"),
            Probe::ClosedAtOnce => {
                f.write_str("accepted, then closed at once (a proxy with nothing behind it)")
            }
            Probe::TimedOut => f.write_str("no answer (timed out)"),
            Probe::Unreachable { error } => write!(f, "unreachable ({error})"),
        }
    }
}

/// Tries one TCP connection to `addr` and closes it at once.
pub async fn probe(addr: SocketAddr, timeout: std::time::Duration) -> Probe {
    let start = std::time::Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let millis = start.elapsed().as_millis() as u64;
            // A proxy accepts first and gives up when it cannot reach what is behind it:
            // watch the connection briefly for an immediate reset or close.
            let mut b = [0u8; 1];
            match tokio::time::timeout(std::time::Duration::from_millis(100), s.peek(&mut b)).await
            {
                Ok(Ok(0)) | Ok(Err(_)) => Probe::ClosedAtOnce,
                _ => Probe::Answered { millis },
            }
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
        Ok(Err(e)) => Probe::Unreachable {
            error: e.to_string(),
        },
        Err(_) => Probe::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serve_splices_with_half_close_and_counts() {
        // An upstream echo server.
        let up = bind_loopback(0).await.expect("bind");
        let up_addr = up.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = up.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let _ = s.read_to_end(&mut buf).await;
                    let _ = s.write_all(&buf).await;
                });
            }
        });
        let front = bind_loopback(0).await.expect("bind");
        let front_addr = front.local_addr().expect("addr");
        let cancel = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let server = tokio::spawn(serve_connect(
            front,
            cancel.clone(),
            stats.clone(),
            std::time::Duration::from_secs(5),
            move |_| TcpStream::connect(up_addr),
        ));
        let mut c = TcpStream::connect(front_addr).await.expect("connect");
        let payload = vec![7u8; 100_000];
        c.write_all(&payload).await.expect("write");
        // The connection is counted open while it lives.
        while stats.open.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(stats.open.load(Ordering::Relaxed), 1);
        c.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.expect("read");
        assert_eq!(
            back, payload,
            "the response after a half-close arrives whole"
        );
        cancel.cancel();
        server.await.expect("serve ends");
        assert_eq!(stats.accepted.load(Ordering::Relaxed), 1);
        assert_eq!(stats.completed.load(Ordering::Relaxed), 1);
        assert_eq!(stats.open.load(Ordering::Relaxed), 0, "closed again");
        assert_eq!(stats.bytes_up.load(Ordering::Relaxed), 100_000);
        assert!(
            TcpStream::connect(front_addr).await.is_err(),
            "nothing left listening"
        );
    }
}
