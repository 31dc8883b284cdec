//! One forwarded connection over `v4.channel.k8s.io`: a WebSocket for one port, channel 0
//! carrying data both ways and channel 1 the server's error text, each opened by a two-byte
//! little-endian port number. There is no way to pass a half-close on (see the module docs of
//! [`super`]), so a local EOF stays local.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

use super::conn::ConnectionError;
use super::upgrade::Upgraded;

/// The largest error text kept.
const MAX_ERROR_TEXT: usize = 64 * 1024;
/// The data channel of the first (only) port.
const DATA: u8 = 0;
/// Its error channel.
const ERROR: u8 = 1;

/// A `v4.channel.k8s.io` WebSocket as a byte stream for one port.
///
/// Reads yield channel 0's bytes; EOF when the server closes the WebSocket with nothing on the
/// error channel; an `io::Error` carrying [`ConnectionError::Remote`] when it wrote an error.
/// Writes send channel 0 messages. `poll_shutdown` only flushes.
pub struct V4Stream<S = Upgraded> {
    ws: WebSocketStream<S>,
    port: u16,
    pending: Bytes,
    /// Whether each channel's port frame has been seen.
    opened: [bool; 2],
    error: BytesMut,
    ended: bool,
    out: BytesMut,
}

impl<S> V4Stream<S> {
    /// Wraps a WebSocket opened for `?ports=PORT`.
    pub(crate) fn new(ws: WebSocketStream<S>, port: u16) -> Self {
        Self {
            ws,
            port,
            pending: Bytes::new(),
            opened: [false; 2],
            error: BytesMut::new(),
            ended: false,
            out: BytesMut::new(),
        }
    }

    fn remote_error(&self) -> Option<io::Error> {
        let text = String::from_utf8_lossy(&self.error).trim().to_string();
        (!text.is_empty()).then(|| io::Error::other(ConnectionError::Remote { message: text }))
    }

    /// Takes one message's payload for `channel`; the first one must be the port number.
    fn take(&mut self, channel: u8, payload: Bytes) -> io::Result<Option<Bytes>> {
        let i = usize::from(channel);
        if !self.opened[i] {
            self.opened[i] = true;
            let le = self.port.to_le_bytes();
            if payload.len() != 2 || payload[..] != le {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the v4 port-forward's first frame on channel {channel} is {payload:?}, \
                         not port {} (2 bytes, little-endian)",
                        self.port
                    ),
                ));
            }
            return Ok(None);
        }
        Ok(Some(payload))
    }
}

fn ws_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::new(io::ErrorKind::ConnectionAborted, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for V4Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = self.remote_error() {
                return Poll::Ready(Err(e));
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            let message = match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Err(tungstenite::Error::ConnectionClosed)) => {
                    self.ended = true;
                    continue;
                }
                Some(Err(e)) => return Poll::Ready(Err(ws_error(e))),
                Some(Ok(m)) => m,
            };
            let data = match message {
                Message::Binary(b) if !b.is_empty() => b,
                // Ping/pong are answered by tungstenite; empty messages mean nothing.
                Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                    continue;
                }
                Message::Text(_) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message on the binary v4.channel.k8s.io protocol",
                    )));
                }
                Message::Close(_) => {
                    self.ended = true;
                    continue;
                }
            };
            let channel = data[0];
            let payload = data.slice(1..);
            match channel {
                DATA | ERROR => {
                    let Some(payload) = self.take(channel, payload)? else {
                        continue;
                    };
                    if channel == DATA {
                        self.pending = payload;
                    } else {
                        let room = MAX_ERROR_TEXT.saturating_sub(self.error.len());
                        let n = payload.len().min(room);
                        self.error.extend_from_slice(&payload[..n]);
                    }
                }
                other => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("message on channel {other}; one port has channels 0 and 1"),
                    )));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for V4Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_error)?;
        let this = &mut *self;
        this.out.reserve(buf.len() + 1);
        this.out.extend_from_slice(&[DATA]);
        this.out.extend_from_slice(buf);
        let message = Message::Binary(this.out.split().freeze());
        Pin::new(&mut this.ws)
            .start_send(message)
            .map_err(ws_error)?;
        // Start sending at once; a pending flush completes on a later poll.
        if let Poll::Ready(Err(e)) = Pin::new(&mut this.ws).poll_flush(cx) {
            return Poll::Ready(Err(ws_error(e)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // v4.channel.k8s.io cannot say "no more data from me": the local EOF stays local.
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;

    async fn pair() -> (
        V4Stream<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
        let server = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
        (V4Stream::new(client, 8080), server)
    }

    fn frame(ch: u8, payload: &[u8]) -> Message {
        let mut v = vec![ch];
        v.extend_from_slice(payload);
        Message::Binary(v.into())
    }

    #[tokio::test]
    async fn data_flows_after_the_port_frames_and_a_close_is_eof() {
        let (mut client, mut server) = pair().await;
        let port = 8080u16.to_le_bytes();
        server.send(frame(0, &port)).await.expect("send");
        server.send(frame(1, &port)).await.expect("send");
        server.send(frame(0, b"hello")).await.expect("send");
        client.write_all(b"ping").await.expect("write");
        client.shutdown().await.expect("no-op");
        match server.next().await {
            Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], b"\x00ping"),
            other => panic!("expected data on channel 0, got {other:?}"),
        }
        server.close(None).await.expect("close");
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("clean EOF");
        assert_eq!(got, b"hello");
    }

    #[tokio::test]
    async fn the_error_channel_fails_the_stream() {
        let (mut client, mut server) = pair().await;
        let port = 8080u16.to_le_bytes();
        server.send(frame(0, &port)).await.expect("send");
        server.send(frame(1, &port)).await.expect("send");
        server
            .send(frame(
                1,
                b"error forwarding port 8080 to pod p, uid u: refused",
            ))
            .await
            .expect("send");
        server.close(None).await.expect("close");
        let mut got = Vec::new();
        let err = client.read_to_end(&mut got).await.expect_err("fails");
        let remote = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<ConnectionError>())
            .expect("a ConnectionError");
        assert!(remote.is_dial_failure() || remote.to_string().contains("refused"));
    }

    #[tokio::test]
    async fn a_wrong_port_frame_is_refused() {
        let (mut client, mut server) = pair().await;
        server.send(frame(0, &[1, 2])).await.expect("send");
        let mut buf = [0u8; 4];
        let err = client.read(&mut buf).await.expect_err("bad frame");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
