//! kubeway's host side: accept loops that hand each local connection to a connector,
//! byte-exact bidirectional copies that carry half-close, reachability probes, and host
//! addresses for Services ([`loopback`]), and kernel routes for `tunnel --route` ([`route`]).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

pub mod loopback;
pub mod route;

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
    /// Connections whose upstream could not be opened.
    pub failed: AtomicU64,
    /// Bytes from local clients to the remote side.
    pub bytes_up: AtomicU64,
    /// Bytes from the remote side to local clients.
    pub bytes_down: AtomicU64,
}

/// Copies both ways until both directions are done; an EOF on one side becomes a half-close
/// (`shutdown`) on the other. Returns (bytes a→b, bytes b→a).
pub async fn splice<A, B>(a: &mut A, b: &mut B) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    // tokio's 8 KiB buffers: measured against 64 KiB with pf-bench (2026-11-26), uploads through
    // SPDY-in-WebSocket were at kubectl's level with 8 KiB and 0.88–1.03× with 64 KiB.
    tokio::io::copy_bidirectional(a, b).await
}

/// Accepts on `listener` until `cancel`, calling `connect` for each connection and splicing the
/// two. A failed `connect` closes that one local connection only.
pub async fn serve<F, Fut, S, E>(
    listener: TcpListener,
    cancel: CancellationToken,
    stats: Arc<Stats>,
    connect: F,
) where
    F: Fn(SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S, E>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let tracker = TaskTracker::new();
    let connect = Arc::new(connect);
    loop {
        let (mut local, peer) = tokio::select! {
            c = listener.accept() => match c {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let _ = local.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let connect = connect.clone();
        let stats = stats.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _open = OpenGuard::new(&stats);
            let mut remote = match connect(peer).await {
                Ok(r) => r,
                Err(e) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, error = %e, "could not open the way for this connection");
                    return;
                }
            };
            tokio::select! {
                r = splice(&mut local, &mut remote) => {
                    if let Ok((up, down)) = r {
                        stats.bytes_up.fetch_add(up, Ordering::Relaxed);
                        stats.bytes_down.fetch_add(down, Ordering::Relaxed);
                    }
                }
                _ = cancel.cancelled() => {}
            }
        });
    }
    tracker.close();
    tracker.wait().await;
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
        let server = tokio::spawn(serve(front, cancel.clone(), stats.clone(), move |_| {
            TcpStream::connect(up_addr)
        }));
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
        assert_eq!(stats.open.load(Ordering::Relaxed), 0, "closed again");
        assert_eq!(stats.bytes_up.load(Ordering::Relaxed), 100_000);
        assert!(
            TcpStream::connect(front_addr).await.is_err(),
            "nothing left listening"
        );
    }
}
