//! One forwarded connection as a byte stream ([`PfStream`]), watching the server's per-connection
//! error report so that a failure fails this connection only.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Transport;
use super::pool::Counters;
use super::v4::V4Stream;

/// The largest error report kept; the rest is dropped.
const MAX_ERROR_TEXT: usize = 64 * 1024;

/// Why one forwarded connection failed while the session carrying it stayed up. Returned inside
/// the `io::Error`s of [`PfStream`] (reach it with `io::Error::get_ref` and `downcast_ref`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The kubelet or container runtime reported a failure on this connection's error stream,
    /// for example `error forwarding port 9000 to pod echo-1, uid …: … connection refused`.
    #[error("{message}")]
    Remote {
        /// The server's text, as sent.
        message: String,
    },
    /// The error stream broke before it reported anything, so the connection's outcome is
    /// unknown.
    #[error("the port-forward error stream failed ({reason}); treat the connection as broken")]
    ErrorStream {
        /// Why it broke.
        reason: String,
    },
}

impl ConnectionError {
    fn to_io(&self) -> io::Error {
        io::Error::other(self.clone())
    }

    /// Whether the server says it could not connect to the port inside the pod at all, so the
    /// app never saw this connection (nothing is listening there, or the pod is going away and
    /// stopped accepting). Such a connection may be retried on another pod without the app
    /// seeing it twice. Recognises containerd's, CRI-O's and socat's texts.
    pub fn is_dial_failure(&self) -> bool {
        let ConnectionError::Remote { message } = self else {
            return false;
        };
        let m = message.to_ascii_lowercase();
        [
            "failed to connect to localhost",
            "connect: connection refused",
            "e connect(",
            "unable to do port forwarding",
            "no running sandbox",
            "network namespace for sandbox",
        ]
        .iter()
        .any(|needle| m.contains(needle))
    }

    /// The `ConnectionError` inside an `io::Error` from a [`PfStream`], if there is one.
    pub fn of(e: &io::Error) -> Option<&ConnectionError> {
        e.get_ref()?.downcast_ref::<ConnectionError>()
    }
}

/// Wakes both the reading and the writing task when the error report arrives.
#[derive(Default)]
struct FanOut {
    read: AtomicWaker,
    write: AtomicWaker,
}

impl Wake for FanOut {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.read.wake();
        self.write.wake();
    }
}

#[derive(Clone, Copy)]
enum Side {
    Read,
    Write,
}

enum Source {
    /// The SPDY error stream and the text read from it so far.
    Spdy {
        stream: kubeway_spdy::Stream,
        text: Vec<u8>,
    },
    /// The transport reports errors in the data path itself (v4's error channel).
    Inline,
}

/// Follows a connection's error report without blocking the data path.
struct ErrorWatch {
    source: Source,
    fan_out: Arc<FanOut>,
    waker: Waker,
    /// `Some` once the report is complete: `Some(None)` for a clean end.
    resolved: Option<Option<ConnectionError>>,
}

impl ErrorWatch {
    fn new(source: Source) -> Self {
        let fan_out = Arc::new(FanOut::default());
        let waker = Waker::from(Arc::clone(&fan_out));
        Self {
            source,
            fan_out,
            waker,
            resolved: None,
        }
    }

    /// The failure, once the report says so; registers the caller for wake-up otherwise.
    fn poll(&mut self, side: Side, cx: &Context<'_>) -> Option<ConnectionError> {
        if let Some(r) = &self.resolved {
            return r.clone();
        }
        match side {
            Side::Read => self.fan_out.read.register(cx.waker()),
            Side::Write => self.fan_out.write.register(cx.waker()),
        }
        let mut ecx = Context::from_waker(&self.waker);
        let resolved = match &mut self.source {
            Source::Spdy { stream, text } => loop {
                let mut chunk = [0u8; 1024];
                let mut buf = ReadBuf::new(&mut chunk);
                match Pin::new(&mut *stream).poll_read(&mut ecx, &mut buf) {
                    Poll::Pending => return None,
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                        break remote(text);
                    }
                    Poll::Ready(Ok(())) => {
                        let room = MAX_ERROR_TEXT.saturating_sub(text.len());
                        let n = buf.filled().len().min(room);
                        text.extend_from_slice(&buf.filled()[..n]);
                    }
                    Poll::Ready(Err(e)) => {
                        break remote(text).or_else(|| {
                            Some(ConnectionError::ErrorStream {
                                reason: e.to_string(),
                            })
                        });
                    }
                }
            },
            Source::Inline => return None,
        };
        self.resolved = Some(resolved.clone());
        resolved
    }

    /// The failure known so far, for when the data stream has ended: text that arrived without
    /// its end counts.
    fn settle(&mut self, side: Side, cx: &Context<'_>) -> Option<ConnectionError> {
        if let Some(e) = self.poll(side, cx) {
            return Some(e);
        }
        match &self.source {
            Source::Spdy { text, .. } if self.resolved.is_none() => remote(text),
            _ => None,
        }
    }
}

fn remote(text: &[u8]) -> Option<ConnectionError> {
    let message = String::from_utf8_lossy(text).trim().to_string();
    (!message.is_empty()).then_some(ConnectionError::Remote { message })
}

/// Counts a connection as active until dropped.
pub(crate) struct ConnGuard {
    counters: Arc<Counters>,
}

impl ConnGuard {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        counters.connections_opened.fetch_add(1, Ordering::Relaxed);
        counters.connections_active.fetch_add(1, Ordering::Relaxed);
        Self { counters }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.counters
            .connections_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

enum Io {
    Spdy(kubeway_spdy::Stream),
    V4(Box<V4Stream>),
}

/// One forwarded connection to `localhost:PORT` in the pod: `AsyncRead + AsyncWrite`.
///
/// - Reading returns the pod's bytes; EOF when the pod closed its side. If the server reports a
///   failure for this connection (the kubelet's `error forwarding port …` text), reads and writes
///   fail with an `io::Error` carrying a [`ConnectionError`] and, on SPDY, the data stream is
///   reset. Other connections and the session are not affected.
/// - `shutdown` half-closes on the SPDY transports (the pod reads EOF and may still answer). On
///   `v4.channel.k8s.io` there is no way to say so: `shutdown` does nothing and the connection
///   ends when the pod closes it or the stream is dropped.
/// - Dropping the stream before both directions finished resets it.
pub struct PfStream {
    io: Io,
    watch: ErrorWatch,
    failed: Option<ConnectionError>,
    transport: Transport,
    guard: ConnGuard,
}

impl std::fmt::Debug for PfStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PfStream")
            .field("transport", &self.transport)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl PfStream {
    /// A connection carried by the SPDY streams of one request id.
    pub(crate) fn spdy(
        data: kubeway_spdy::Stream,
        error: kubeway_spdy::Stream,
        transport: Transport,
        guard: ConnGuard,
    ) -> Self {
        Self {
            io: Io::Spdy(data),
            watch: ErrorWatch::new(Source::Spdy {
                stream: error,
                text: Vec::new(),
            }),
            failed: None,
            transport,
            guard,
        }
    }

    /// A connection carried by its own `v4.channel.k8s.io` WebSocket.
    pub(crate) fn v4(data: V4Stream, guard: ConnGuard) -> Self {
        Self {
            io: Io::V4(Box::new(data)),
            watch: ErrorWatch::new(Source::Inline),
            failed: None,
            transport: Transport::V4,
            guard,
        }
    }

    /// The transport carrying this connection.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether a local half-close reaches the pod (SPDY: yes; v4: no, it stays local).
    pub fn can_half_close(&self) -> bool {
        self.transport != Transport::V4
    }

    /// The failure the server reported for this connection, if any so far.
    pub fn failure(&self) -> Option<&ConnectionError> {
        self.failed.as_ref()
    }

    /// Records the failure, resets the data stream and returns the error for the caller.
    fn fail(&mut self, e: ConnectionError) -> io::Error {
        if self.failed.is_none() {
            tracing::debug!(error = %e, "port-forward connection failed");
            self.guard
                .counters
                .connections_failed
                .fetch_add(1, Ordering::Relaxed);
            if let Io::Spdy(data) = &self.io {
                data.reset(kubeway_spdy::RstStatus::CANCEL);
            }
            self.failed = Some(e);
        }
        self.failed
            .as_ref()
            .map(ConnectionError::to_io)
            .unwrap_or_else(|| io::Error::other("port-forward connection failed"))
    }

    /// The error to return before touching the data path, if the connection already failed.
    fn check(&mut self, side: Side, cx: &Context<'_>) -> Option<io::Error> {
        if let Some(e) = &self.failed {
            return Some(e.to_io());
        }
        self.watch.poll(side, cx).map(|e| self.fail(e))
    }
}

impl AsyncRead for PfStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.check(Side::Read, cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let result = match &mut this.io {
            Io::Spdy(s) => Pin::new(s).poll_read(cx, buf),
            Io::V4(s) => Pin::new(s).poll_read(cx, buf),
        };
        match result {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                // The pod side ended: a failure report, if any, arrived before the end.
                match this.watch.settle(Side::Read, cx) {
                    Some(e) => Poll::Ready(Err(this.fail(e))),
                    None => Poll::Ready(Ok(())),
                }
            }
            Poll::Ready(Err(err)) => match this.watch.settle(Side::Read, cx) {
                Some(e) => Poll::Ready(Err(this.fail(e))),
                None => match ConnectionError::of(&err).cloned() {
                    Some(e) => Poll::Ready(Err(this.fail(e))),
                    None => Poll::Ready(Err(err)),
                },
            },
            other => other,
        }
    }
}

impl AsyncWrite for PfStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.check(Side::Write, cx) {
            return Poll::Ready(Err(e));
        }
        let result = match &mut this.io {
            Io::Spdy(s) => Pin::new(s).poll_write(cx, buf),
            Io::V4(s) => Pin::new(s).poll_write(cx, buf),
        };
        match result {
            Poll::Ready(Err(err)) => match this.watch.settle(Side::Write, cx) {
                Some(e) => Poll::Ready(Err(this.fail(e))),
                None => Poll::Ready(Err(err)),
            },
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = &this.failed {
            return Poll::Ready(Err(e.to_io()));
        }
        match &mut this.io {
            Io::Spdy(s) => Pin::new(s).poll_flush(cx),
            Io::V4(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = &this.failed {
            return Poll::Ready(Err(e.to_io()));
        }
        match &mut this.io {
            Io::Spdy(s) => Pin::new(s).poll_shutdown(cx),
            // v4.channel.k8s.io cannot carry a half-close; kube-rs would tear the whole
            // connection down (dropping the pod's answer), so local EOF stays local.
            Io::V4(s) => Pin::new(s).poll_flush(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubeway_spdy::{Config, Role, Session};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn guard() -> ConnGuard {
        ConnGuard::new(Arc::default())
    }

    /// A client and a server session on an in-memory pipe, and one connection's stream pair:
    /// (the client's `PfStream`, the server's error stream, the server's data stream).
    async fn pair() -> (
        PfStream,
        kubeway_spdy::Stream,
        kubeway_spdy::Stream,
        Session,
        Session,
    ) {
        let (c, s) = tokio::io::duplex(1 << 20);
        let (client, _) = Session::new(c, Role::Client, Config::default());
        let (server, mut incoming) = Session::new(s, Role::Server, Config::default());
        let accept = async {
            let e = incoming.next().await.expect("error stream");
            let e = e.accept(Vec::new(), false).expect("accept");
            let d = incoming.next().await.expect("data stream");
            let d = d.accept(Vec::new(), false).expect("accept");
            (e, d)
        };
        let h = |t: &str| {
            vec![
                ("streamtype".to_string(), t.to_string()),
                ("port".to_string(), "80".to_string()),
                ("requestid".to_string(), "0".to_string()),
            ]
        };
        let open = async {
            let e = client.open_stream(h("error"), true).await.expect("open");
            let d = client.open_stream(h("data"), false).await.expect("open");
            (e, d)
        };
        let ((ce, cd), (se, sd)) = tokio::join!(open, accept);
        let pf = PfStream::spdy(cd, ce, Transport::Spdy, guard());
        (pf, se, sd, client, server)
    }

    fn remote_text(e: &io::Error) -> Option<String> {
        match e.get_ref()?.downcast_ref::<ConnectionError>()? {
            ConnectionError::Remote { message } => Some(message.clone()),
            ConnectionError::ErrorStream { .. } => None,
        }
    }

    #[tokio::test]
    async fn a_clean_end_reads_as_eof() {
        let (mut pf, mut se, mut sd, _c, _s) = pair().await;
        sd.write_all(b"hello").await.expect("write");
        sd.shutdown().await.expect("fin");
        se.shutdown().await.expect("fin");
        let mut got = Vec::new();
        pf.read_to_end(&mut got).await.expect("clean EOF");
        assert_eq!(got, b"hello");
        assert!(pf.failure().is_none());
    }

    #[tokio::test]
    async fn a_report_sent_before_the_data_end_fails_the_read() {
        let (mut pf, mut se, mut sd, _c, _s) = pair().await;
        sd.write_all(b"partial").await.expect("write");
        // The text, without its end, then the data stream's end: the report still counts.
        se.write_all(b"error forwarding port 80 to pod p, uid u: refused")
            .await
            .expect("write");
        sd.shutdown().await.expect("fin");
        let mut got = Vec::new();
        let err = pf.read_to_end(&mut got).await.expect_err("fails");
        assert_eq!(
            remote_text(&err).as_deref(),
            Some("error forwarding port 80 to pod p, uid u: refused")
        );
        let again = pf.write_all(b"x").await.expect_err("writes fail too");
        assert!(remote_text(&again).is_some());
    }

    #[tokio::test]
    async fn a_report_wakes_a_blocked_writer_and_resets_the_data_stream() {
        let (pf, mut se, mut sd, client, _s) = pair().await;
        let (_rd, mut wr) = tokio::io::split(pf);
        // The server never reads the data stream, so the writer ends up blocked on
        // back-pressure; only the report can wake it.
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            loop {
                if let Err(e) = wr.write_all(&chunk).await {
                    return e;
                }
            }
        });
        se.write_all(b"boom").await.expect("write");
        se.shutdown().await.expect("fin");
        let err = writer.await.expect("no panic");
        assert_eq!(remote_text(&err).as_deref(), Some("boom"));
        // The data stream was reset, so the server's reader fails after the buffered data.
        let mut sink = vec![0u8; 1 << 16];
        let reset = loop {
            match sd.read(&mut sink).await {
                Ok(0) => panic!("the data stream must be reset, not ended"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(reset.kind(), io::ErrorKind::ConnectionReset);
        assert!(!client.is_closed(), "the session stays up");
    }

    #[test]
    fn dial_failures_are_told_from_other_errors() {
        let dial = |m: &str| {
            ConnectionError::Remote {
                message: m.to_string(),
            }
            .is_dial_failure()
        };
        assert!(dial(
            "error forwarding port 80 to pod web-1, uid 1: failed to execute portforward in network namespace \"/var/run/netns/cni-1\": failed to connect to localhost:80 inside namespace \"abc\", IPv4: dial tcp4 127.0.0.1:80: connect: connection refused IPv6 dial tcp6: address localhost: no suitable address found"
        ));
        assert!(dial(
            "error forwarding port 6000 to pod x, uid y: exit status 1: 2019/10/01 socat[22] E connect(5, AF=2 127.0.0.1:6000, 16): Connection refused"
        ));
        assert!(!dial(
            "error forwarding port 80 to pod web-1, uid 1: read tcp 127.0.0.1:41234->127.0.0.1:80: read: connection reset by peer"
        ));
        assert!(!ConnectionError::ErrorStream { reason: "x".into() }.is_dial_failure());
    }
}
