//! A WebSocket carried as a byte stream: binary messages read back to back (their boundaries
//! mean nothing), each write sent as one binary message. This is how SPDY is tunnelled over
//! WebSocket: the session writes one frame (or a batch of whole frames) per write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A [`WebSocketStream`] as `AsyncRead + AsyncWrite` over binary messages.
///
/// A text message is a protocol error (`InvalidData`); a Close frame, or the end of the
/// WebSocket, reads as EOF. `poll_shutdown` sends a normal Close.
pub struct MessageTunnel<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
    closing: bool,
}

impl<S> MessageTunnel<S> {
    /// Wraps an open WebSocket.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
            closing: false,
        }
    }
}

fn ws_err(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Io(e) => e,
        E::ConnectionClosed | E::AlreadyClosed => io::Error::new(io::ErrorKind::BrokenPipe, e),
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MessageTunnel<S> {
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
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => {
                    return match e {
                        tokio_tungstenite::tungstenite::Error::ConnectionClosed => {
                            Poll::Ready(Ok(()))
                        }
                        other => Poll::Ready(Err(ws_err(other))),
                    };
                }
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "invalid message type received: text on a binary tunnel",
                    )));
                }
                Some(Ok(_)) => {} // ping/pong are answered by tungstenite
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MessageTunnel<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_err)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(ws_err)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_err)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_err)?;
            let close = Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }));
            Pin::new(&mut self.ws).start_send(close).map_err(ws_err)?;
            self.closing = true;
        }
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(ws_err(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;

    #[tokio::test]
    async fn messages_read_as_one_byte_stream_and_writes_are_one_message_each() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let mut tunnel = MessageTunnel::new(client);
        let (mut tx, mut rx) = server.split();
        for part in [&b"hel"[..], b"lo ", b"world"] {
            tx.send(Message::Binary(Bytes::copy_from_slice(part)))
                .await
                .expect("send");
        }
        let mut got = [0u8; 11];
        tunnel.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello world");
        tunnel.write_all(b"frame-1").await.expect("write");
        tunnel.flush().await.expect("flush");
        match rx.next().await {
            Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], b"frame-1"),
            other => panic!("expected one binary message, got {other:?}"),
        }
        tx.send(Message::Text("no".into()))
            .await
            .expect("send text");
        let err = tunnel.read(&mut got).await.expect_err("text is an error");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        tx.send(Message::Close(None)).await.expect("close");
        assert_eq!(tunnel.read(&mut got).await.expect("eof"), 0);
    }
}
