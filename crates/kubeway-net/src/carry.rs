//! Carrying one local TCP connection to a remote byte stream and back, and telling the truth
//! about how it ended: only a clean end of the remote side reaches the local client as a FIN;
//! a remote failure, a limit of kubeway's own or a stop reaches it as a reset (RST), so a client
//! can never mistake a cut transfer for a complete one.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::Stats;

/// How [`carry`] behaves.
#[derive(Debug, Clone, Copy)]
pub struct CarryOptions {
    /// After the local client's half-close, end the connection (with a reset, reported as
    /// [`Ending::Stopped`]) once the remote side has sent nothing for this long. For transports
    /// that cannot pass a half-close on, where a remote that waits for the EOF would otherwise
    /// wait forever. `None`: wait as long as it takes.
    pub idle_after_local_eof: Option<Duration>,
    /// Copy buffer per direction, in bytes.
    pub buffer: usize,
}

impl Default for CarryOptions {
    fn default() -> Self {
        Self {
            idle_after_local_eof: None,
            buffer: 64 * 1024,
        }
    }
}

/// How a carried connection ended.
#[derive(Debug)]
pub enum Ending {
    /// Both sides ended cleanly: each direction's end was passed on as a FIN.
    Complete,
    /// Reading from or writing to the remote side failed; the local client was reset.
    RemoteFailed(io::Error),
    /// The local client reset the connection or stopped taking data; the remote side was
    /// abandoned (dropped unfinished, which resets it).
    LocalFailed(io::Error),
    /// kubeway ended the connection itself (a limit, a stop, the pod going away): the local
    /// client was reset. The text says why.
    Stopped(String),
}

impl Ending {
    /// Whether both sides ended cleanly.
    pub fn is_complete(&self) -> bool {
        matches!(self, Ending::Complete)
    }
}

/// The result of [`carry`].
#[derive(Debug)]
pub struct Carried {
    /// Bytes from the local client to the remote side.
    pub up: u64,
    /// Bytes from the remote side to the local client.
    pub down: u64,
    /// How it ended.
    pub ending: Ending,
}

/// Ends `tcp` with a reset (RST) instead of a FIN: `SO_LINGER` 0, then close.
pub fn reset(tcp: TcpStream) {
    let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    drop(tcp);
}

/// Which side of one direction failed.
enum Fail {
    Read(io::Error),
    Write(io::Error),
}

/// One direction of the copy.
struct Half {
    buf: Box<[u8]>,
    pos: usize,
    cap: usize,
    eof: bool,
    done: bool,
    unflushed: bool,
    moved: u64,
}

impl Half {
    fn new(size: usize) -> Self {
        Self {
            buf: vec![0u8; size.max(1)].into_boxed_slice(),
            pos: 0,
            cap: 0,
            eof: false,
            done: false,
            unflushed: false,
            moved: 0,
        }
    }

    /// Copies from `r` to `w` until `r` ends (then shuts `w` down) or something fails.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
        live: Option<&AtomicU64>,
    ) -> Poll<Result<(), Fail>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.pos == self.cap && !self.eof {
                let mut rb = ReadBuf::new(&mut self.buf);
                match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            self.eof = true;
                        } else {
                            self.pos = 0;
                            self.cap = n;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Read(e))),
                    Poll::Pending => {
                        if self.unflushed {
                            match Pin::new(&mut *w).poll_flush(cx) {
                                Poll::Ready(Ok(())) => self.unflushed = false,
                                Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Write(e))),
                                Poll::Pending => {}
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.cap {
                match Pin::new(&mut *w).poll_write(cx, &self.buf[self.pos..self.cap]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Fail::Write(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the other side took no bytes",
                        ))));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.pos += n;
                        self.moved += n as u64;
                        self.unflushed = true;
                        if let Some(live) = live {
                            live.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Write(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.eof {
                match Pin::new(&mut *w).poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => {
                        self.done = true;
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Write(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
    }
}

/// Copies between `local` and `remote` in both directions until both are done, passing each
/// side's EOF on as a half-close, or until something fails or `stop` resolves (its output says
/// why). A remote failure, a stop or the idle limit resets `local`; a local failure drops
/// `remote` unfinished. `live` counts bytes as they move (`bytes_up`, `bytes_down`).
pub async fn carry<R, S>(
    local: TcpStream,
    mut remote: R,
    options: CarryOptions,
    stop: S,
    live: Option<&Stats>,
) -> Carried
where
    R: AsyncRead + AsyncWrite + Unpin,
    S: Future<Output = String>,
{
    let mut local = local;
    let mut up = Half::new(options.buffer);
    let mut down = Half::new(options.buffer);
    let mut stop = std::pin::pin!(stop);
    let mut idle: Option<Pin<Box<Sleep>>> = None;
    let mut down_seen = 0u64;
    let ending = std::future::poll_fn(|cx| {
        if let Poll::Ready(why) = stop.as_mut().poll(cx) {
            return Poll::Ready(Ending::Stopped(why));
        }
        if !up.done {
            match up.poll_copy(cx, &mut local, &mut remote, live.map(|s| &s.bytes_up)) {
                Poll::Ready(Err(Fail::Read(e))) => return Poll::Ready(Ending::LocalFailed(e)),
                Poll::Ready(Err(Fail::Write(e))) => return Poll::Ready(Ending::RemoteFailed(e)),
                _ => {}
            }
        }
        if !down.done {
            match down.poll_copy(cx, &mut remote, &mut local, live.map(|s| &s.bytes_down)) {
                Poll::Ready(Err(Fail::Read(e))) => return Poll::Ready(Ending::RemoteFailed(e)),
                Poll::Ready(Err(Fail::Write(e))) => return Poll::Ready(Ending::LocalFailed(e)),
                _ => {}
            }
        }
        if up.done && down.done {
            return Poll::Ready(Ending::Complete);
        }
        if let (true, Some(limit)) = (up.done, options.idle_after_local_eof) {
            let timer = idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
            if down.moved != down_seen {
                down_seen = down.moved;
                timer.as_mut().reset(Instant::now() + limit);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ending::Stopped(format!(
                    "the remote side sent nothing for {}s after the local client's half-close, \
                     which this transport cannot pass on",
                    limit.as_secs_f32()
                )));
            }
        }
        Poll::Pending
    })
    .await;
    match &ending {
        Ending::Complete => drop(local),
        Ending::RemoteFailed(_) | Ending::Stopped(_) | Ending::LocalFailed(_) => reset(local),
    }
    drop(remote);
    Carried {
        up: up.moved,
        down: down.moved,
        ending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind_loopback;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A local client connected to a carry whose remote side is the returned duplex end.
    async fn setup(
        options: CarryOptions,
        stop: impl Future<Output = String> + Send + 'static,
    ) -> (
        TcpStream,
        tokio::io::DuplexStream,
        tokio::task::JoinHandle<Carried>,
    ) {
        let listener = bind_loopback(0).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(carry(accepted, ours, options, stop, None));
        (client, theirs, task)
    }

    fn never() -> impl Future<Output = String> + Send + 'static {
        std::future::pending()
    }

    #[tokio::test]
    async fn a_clean_remote_end_is_a_fin_and_half_close_passes_both_ways() {
        let (mut client, mut remote, task) = setup(CarryOptions::default(), never()).await;
        client.write_all(b"request").await.expect("write");
        client.shutdown().await.expect("half-close");
        let mut got = Vec::new();
        remote
            .read_to_end(&mut got)
            .await
            .expect("remote reads to EOF");
        assert_eq!(got, b"request");
        remote
            .write_all(b"answer after the EOF")
            .await
            .expect("write");
        drop(remote);
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.expect("a clean EOF");
        assert_eq!(back, b"answer after the EOF");
        let done = task.await.expect("carry");
        assert!(done.ending.is_complete(), "{:?}", done.ending);
        assert_eq!((done.up, done.down), (7, 20));
    }

    /// A remote whose reads fail after some bytes.
    struct Failing {
        sent: bool,
    }

    impl AsyncRead for Failing {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if !self.sent {
                self.sent = true;
                buf.put_slice(b"partial");
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "stream reset by peer",
            )))
        }
    }

    impl AsyncWrite for Failing {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn read_until_error(client: &mut TcpStream) -> (Vec<u8>, io::Result<usize>) {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match client.read(&mut buf).await {
                Ok(0) => return (got, Ok(0)),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return (got, Err(e)),
            }
        }
    }

    #[tokio::test]
    async fn a_remote_failure_resets_the_local_client() {
        let listener = bind_loopback(0).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        let task = tokio::spawn(carry(
            accepted,
            Failing { sent: false },
            CarryOptions::default(),
            never(),
            None,
        ));
        let done = task.await.expect("carry");
        assert!(
            matches!(done.ending, Ending::RemoteFailed(_)),
            "{:?}",
            done.ending
        );
        let (_, end) = read_until_error(&mut client).await;
        let err = end.expect_err("a reset, never a clean EOF");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn a_stop_resets_the_local_client_and_says_why() {
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let stop = async move { rx.await.unwrap_or_default() };
        let (mut client, _remote, task) = setup(CarryOptions::default(), stop).await;
        client.write_all(b"x").await.expect("write");
        tx.send("the pod went away".into()).expect("send");
        let done = task.await.expect("carry");
        match done.ending {
            Ending::Stopped(why) => assert_eq!(why, "the pod went away"),
            other => panic!("expected a stop, got {other:?}"),
        }
        let (_, end) = read_until_error(&mut client).await;
        assert_eq!(
            end.expect_err("reset").kind(),
            io::ErrorKind::ConnectionReset
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_half_close_the_answer_keeps_coming_until_the_idle_limit() {
        let options = CarryOptions {
            idle_after_local_eof: Some(Duration::from_secs(5)),
            ..CarryOptions::default()
        };
        let (mut client, mut remote, task) = setup(options, never()).await;
        client.write_all(b"q").await.expect("write");
        client.shutdown().await.expect("half-close");
        let mut q = [0u8; 1];
        remote.read_exact(&mut q).await.expect("request");
        // The answer trickles in, each piece within the limit: it all arrives.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            remote.write_all(b"part ").await.expect("write");
        }
        let mut got = vec![0u8; 20];
        client.read_exact(&mut got).await.expect("all four parts");
        // Then silence past the limit: the connection ends with a reset and a reason.
        let done = task.await.expect("carry");
        match &done.ending {
            Ending::Stopped(why) => assert!(why.contains("half-close"), "{why}"),
            other => panic!("expected the idle limit, got {other:?}"),
        }
        assert_eq!(done.down, 20);
        let (_, end) = read_until_error(&mut client).await;
        assert_eq!(
            end.expect_err("reset").kind(),
            io::ErrorKind::ConnectionReset
        );
    }

    #[tokio::test]
    async fn a_local_reset_is_a_local_failure() {
        let (client, mut remote, task) = setup(CarryOptions::default(), never()).await;
        reset(client);
        let done = task.await.expect("carry");
        assert!(
            matches!(done.ending, Ending::LocalFailed(_)),
            "{:?}",
            done.ending
        );
        let mut buf = Vec::new();
        // The remote end was dropped unfinished.
        let _ = remote.read_to_end(&mut buf).await;
    }
}
