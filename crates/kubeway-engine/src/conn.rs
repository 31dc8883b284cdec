//! One routed connection as a byte stream ([`RoutedConn`]). It hides two things a bare
//! port-forward stream cannot: when the kubelet reports that it could not connect to the port in
//! the pod before the app sent anything (a pod that stopped accepting during a roll-out, an app
//! not listening), the connection moves to another ready pod and replays what the client sent;
//! and when the stream ends cleanly on a pod the watch shows deleted or past its grace period,
//! the end is reported as the cut it is, never as a complete transfer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::BytesMut;
use kubeway_kube::backends::Endpoint;
use kubeway_kube::{ConnectionError, PfStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::router::{DialError, Router};

/// What the client sent is kept for a replay up to this size, until the app answers.
pub const REPLAY_LIMIT: usize = 256 * 1024;
/// Endpoints tried per connection, the first included.
const MAX_ATTEMPTS: usize = 5;

type Redial = Pin<Box<dyn Future<Output = Result<(Endpoint, PfStream), DialError>> + Send>>;

enum State {
    Carrying,
    Redialing(Redial),
    /// Writing the kept bytes to the new stream (this many written so far).
    Replaying(usize),
}

/// Why a routed connection was cut without an error from the stream itself.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Killed(pub String);

/// A connection routed to a ready endpoint: `AsyncRead + AsyncWrite`.
pub struct RoutedConn {
    router: Arc<Router>,
    inner: PfStream,
    endpoint: Endpoint,
    replay: Option<BytesMut>,
    state: State,
    local_eof: bool,
    answered: bool,
    tried: Vec<String>,
    first_refusal: Option<String>,
}

impl RoutedConn {
    pub(crate) async fn open(router: Arc<Router>) -> Result<Self, DialError> {
        let (endpoint, inner) = router.open(&[]).await?;
        Ok(Self {
            router,
            inner,
            endpoint,
            replay: Some(BytesMut::new()),
            state: State::Carrying,
            local_eof: false,
            answered: false,
            tried: Vec::new(),
            first_refusal: None,
        })
    }

    /// The endpoint carrying the connection now.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Pods whose app refused this connection before it moved on.
    pub fn retried(&self) -> &[String] {
        &self.tried
    }

    /// Whether the app sent anything.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Whether a local half-close reaches the pod.
    pub fn can_half_close(&self) -> bool {
        self.inner.can_half_close()
    }

    /// Either starts a move to another pod (returns `None`) or gives the error back.
    fn on_error(&mut self, e: io::Error) -> Option<io::Error> {
        let refusal = ConnectionError::of(&e)
            .filter(|c| c.is_dial_failure())
            .cloned();
        match refusal {
            Some(c) if self.replay.is_some() && self.tried.len() + 1 < MAX_ATTEMPTS => {
                tracing::debug!(pod = %self.endpoint.pod, error = %c, "the app refused; moving the connection to another pod");
                self.first_refusal.get_or_insert_with(|| c.to_string());
                self.tried.push(self.endpoint.pod.clone());
                let router = self.router.clone();
                let avoid = self.tried.clone();
                self.state = State::Redialing(Box::pin(async move { router.open(&avoid).await }));
                None
            }
            _ => Some(e),
        }
    }

    /// Drives a move to another pod until the connection carries again.
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Carrying => return Poll::Ready(Ok(())),
                State::Redialing(fut) => match ready!(fut.as_mut().poll(cx)) {
                    Ok((endpoint, stream)) => {
                        self.endpoint = endpoint;
                        self.inner = stream;
                        self.state = State::Replaying(0);
                    }
                    Err(e) => {
                        self.state = State::Carrying;
                        let why = match &self.first_refusal {
                            Some(first) => format!("{first}; moving to another pod failed: {e}"),
                            None => e.to_string(),
                        };
                        return Poll::Ready(Err(io::Error::other(ConnectionError::Remote {
                            message: why,
                        })));
                    }
                },
                State::Replaying(done) => {
                    let kept = self.replay.as_ref().map(|b| b.len()).unwrap_or(0);
                    if *done < kept {
                        let Some(buf) = self.replay.as_ref() else {
                            self.state = State::Carrying;
                            continue;
                        };
                        let n = match Pin::new(&mut self.inner).poll_write(cx, &buf[*done..]) {
                            Poll::Ready(Ok(n)) => n,
                            Poll::Ready(Err(e)) => {
                                self.state = State::Carrying;
                                match self.on_error(e) {
                                    None => continue,
                                    Some(e) => return Poll::Ready(Err(e)),
                                }
                            }
                            Poll::Pending => return Poll::Pending,
                        };
                        if let State::Replaying(done) = &mut self.state {
                            *done += n;
                        }
                        continue;
                    }
                    if self.local_eof
                        && let Err(e) = ready!(Pin::new(&mut self.inner).poll_shutdown(cx))
                    {
                        self.state = State::Carrying;
                        match self.on_error(e) {
                            None => continue,
                            Some(e) => return Poll::Ready(Err(e)),
                        }
                    }
                    self.state = State::Carrying;
                }
            }
        }
    }

    /// A clean end on a pod the watch shows killed is a cut.
    fn check_clean_end(&self) -> io::Result<()> {
        let fate = self.router.backends.borrow().fate(&self.endpoint.pod);
        if fate.killed_by(SystemTime::now()) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                Killed(format!(
                    "pod {} was being killed when its side of the connection ended \
                     (deleted, or its termination grace period was over), so the transfer may be \
                     incomplete",
                    self.endpoint.pod
                )),
            ));
        }
        Ok(())
    }
}

impl AsyncRead for RoutedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_settle(cx))?;
            let before = buf.filled().len();
            match ready!(Pin::new(&mut this.inner).poll_read(cx, buf)) {
                Ok(()) if buf.filled().len() > before => {
                    if !this.answered {
                        this.answered = true;
                        this.replay = None;
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(()) => {
                    if buf.remaining() > 0 {
                        this.check_clean_end()?;
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) => match this.on_error(e) {
                    None => continue,
                    Some(e) => return Poll::Ready(Err(e)),
                },
            }
        }
    }
}

impl AsyncWrite for RoutedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_settle(cx))?;
            match ready!(Pin::new(&mut this.inner).poll_write(cx, data)) {
                Ok(n) => {
                    if let Some(kept) = &mut this.replay {
                        if kept.len() + n > REPLAY_LIMIT {
                            this.replay = None;
                        } else {
                            kept.extend_from_slice(&data[..n]);
                        }
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) => match this.on_error(e) {
                    None => continue,
                    Some(e) => return Poll::Ready(Err(e)),
                },
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_settle(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_settle(cx))?;
            this.local_eof = true;
            match ready!(Pin::new(&mut this.inner).poll_shutdown(cx)) {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(e) => match this.on_error(e) {
                    None => continue,
                    Some(e) => return Poll::Ready(Err(e)),
                },
            }
        }
    }
}
