//! Tests of the session over in-memory transports: session against session, and session against
//! a scripted raw peer built from the frame codec.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::*;
use crate::codec::{FrameDecoder, FrameEncoder};
use crate::error::StreamError;
use crate::frame::{DataFrame, RstStatus, RstStream, Settings, SynReply, UnknownControl};

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// xorshift32 for reproducible payloads.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Log-uniform size in `1..=max`.
    fn size(&mut self, max: usize) -> usize {
        let bits = (self.next() % (max.ilog2() + 1)) as usize;
        let base = 1usize << bits;
        (base + self.next() as usize % base).min(max)
    }
}

fn pair(client: Config, server: Config) -> (Session, Incoming, Session, Incoming) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let (client, client_incoming) = Session::new(a, Role::Client, client);
    let (server, server_incoming) = Session::new(b, Role::Server, server);
    (client, client_incoming, server, server_incoming)
}

/// Accepts every stream and echoes it, half-closing after the peer's FIN.
fn spawn_echo_server(mut incoming: Incoming) {
    tokio::spawn(async move {
        while let Some(stream) = incoming.next().await {
            let Ok(stream) = stream.accept(h(&[("status", "ok")]), false) else {
                continue;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(stream);
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
}

/// Sends `payload` on a new stream and returns what comes back.
async fn echo(client: &Session, name: &str, payload: &[u8]) -> Vec<u8> {
    let stream = client
        .open_stream(h(&[("name", name)]), false)
        .await
        .expect("open stream");
    assert_eq!(stream.headers().get("status"), Some("ok"));
    let (mut r, mut w) = tokio::io::split(stream);
    let write = async {
        w.write_all(payload).await.expect("write");
        w.shutdown().await.expect("shutdown");
    };
    let read = async {
        let mut got = Vec::with_capacity(payload.len());
        r.read_to_end(&mut got).await.expect("read");
        got
    };
    tokio::join!(write, read).1
}

fn stream_error(e: &io::Error) -> &StreamError {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<StreamError>())
        .unwrap_or_else(|| panic!("not a StreamError: {e:?}"))
}

async fn concurrent_echo(client: &Session, streams: usize, max_size: usize, seed: u32) {
    let mut rng = Rng(seed);
    let mut tasks = JoinSet::new();
    for i in 0..streams {
        let size = match i {
            0 => 1,
            1 => max_size,
            _ => rng.size(max_size),
        };
        let payload = rng.bytes(size);
        let client = client.clone();
        tasks.spawn(async move {
            let got = echo(&client, &i.to_string(), &payload).await;
            assert!(
                got == payload,
                "stream {i}: echoed {} bytes, sent {}",
                got.len(),
                payload.len()
            );
            payload.len()
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.expect("echo task");
    }
    assert!(total >= streams);
    eprintln!("echoed {total} bytes over {streams} streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_streams_echo_byte_exact() {
    let (client, _ci, server, si) = pair(Config::default(), Config::default());
    spawn_echo_server(si);
    concurrent_echo(&client, 100, 1 << 20, 7).await;
    assert_eq!(client.active_streams(), 0);
    assert_eq!(server.active_streams(), 0);
    assert!(!client.is_closed());
}

/// Tiny buffers force constant reader pauses, writer back-pressure and many small frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_is_byte_exact_under_tight_buffers() {
    let tight = Config {
        stream_recv_buffer: 16 * 1024,
        session_recv_buffer: 64 * 1024,
        write_buffer: 32 * 1024,
        max_data_frame_size: 4096,
        ..Config::default()
    };
    let (client, _ci, _server, si) = pair(tight.clone(), tight);
    spawn_echo_server(si);
    concurrent_echo(&client, 32, 512 * 1024, 11).await;
    assert!(!client.is_closed());
}

#[tokio::test]
async fn half_close_lets_the_server_answer_after_reading_eof() {
    let (client, _ci, _server, mut si) = pair(Config::default(), Config::default());
    let response = Rng(3).bytes(300 * 1024);
    let expected = response.clone();
    let server_task = tokio::spawn(async move {
        let incoming = si.next().await.expect("incoming stream");
        assert_eq!(incoming.headers().get("kind"), Some("request"));
        let mut stream = incoming.accept(vec![], false).unwrap();
        let mut request = Vec::new();
        stream.read_to_end(&mut request).await.unwrap();
        assert_eq!(request, b"request body");
        stream.write_all(&response).await.unwrap();
        stream.shutdown().await.unwrap();
    });
    let mut stream = client
        .open_stream(h(&[("Kind", "request")]), false)
        .await
        .unwrap();
    stream.write_all(b"request body").await.unwrap();
    stream.shutdown().await.unwrap();
    let err = stream.write_all(b"more").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    assert!(matches!(stream_error(&err), StreamError::WriteAfterClose));
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert!(got == expected, "response differs");
    server_task.await.unwrap();
}

#[tokio::test]
async fn reset_from_server_fails_only_that_stream() {
    let (client, _ci, _server, mut si) = pair(Config::default(), Config::default());
    tokio::spawn(async move {
        while let Some(incoming) = si.next().await {
            let doomed = incoming.headers().get("name") == Some("doomed");
            let stream = incoming.accept(vec![], false).unwrap();
            tokio::spawn(async move {
                if doomed {
                    stream.reset(RstStatus::INTERNAL_ERROR);
                    return;
                }
                let (mut r, mut w) = tokio::io::split(stream);
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
        }
    });
    let mut a = client
        .open_stream(h(&[("name", "a")]), false)
        .await
        .unwrap();
    let mut doomed = client
        .open_stream(h(&[("name", "doomed")]), false)
        .await
        .unwrap();
    let mut b = client
        .open_stream(h(&[("name", "b")]), false)
        .await
        .unwrap();

    let mut buf = [0u8; 16];
    let err = doomed.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(matches!(
        stream_error(&err),
        StreamError::ResetByPeer {
            status: RstStatus::INTERNAL_ERROR
        }
    ));
    let err = doomed.write_all(b"x").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);

    for (stream, data) in [(&mut a, &b"first"[..]), (&mut b, &b"second"[..])] {
        stream.write_all(data).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
    }
    assert!(!client.is_closed());
}

#[tokio::test]
async fn local_reset_reaches_the_peer() {
    let (client, _ci, _server, mut si) = pair(Config::default(), Config::default());
    let opener = tokio::spawn(async move { client.open_stream(vec![], false).await });
    let mut server_stream = si.next().await.unwrap().accept(vec![], false).unwrap();
    let mut client_stream = opener.await.unwrap().unwrap();
    client_stream.reset(RstStatus::CANCEL);
    let mut buf = [0u8; 8];
    let err = server_stream.read(&mut buf).await.unwrap_err();
    assert!(matches!(
        stream_error(&err),
        StreamError::ResetByPeer {
            status: RstStatus::CANCEL
        }
    ));
    let err = client_stream.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    assert!(matches!(
        stream_error(&err),
        StreamError::ResetLocally { .. }
    ));
}

#[tokio::test]
async fn rejected_and_unaccepted_streams_fail_to_open() {
    let (client, _ci, _server, mut si) = pair(Config::default(), Config::default());
    let server = tokio::spawn(async move {
        let first = si.next().await.unwrap();
        first.reject(RstStatus::REFUSED_STREAM);
        // Dropping the queue refuses everything after.
        drop(si);
    });
    let err = client.open_stream(vec![], false).await.unwrap_err();
    assert!(matches!(
        err,
        SessionError::OpenStreamReset {
            stream_id: 1,
            status: RstStatus::REFUSED_STREAM
        }
    ));
    server.await.unwrap();
    let err = client.open_stream(vec![], false).await.unwrap_err();
    assert!(matches!(
        err,
        SessionError::OpenStreamReset {
            stream_id: 3,
            status: RstStatus::REFUSED_STREAM
        }
    ));
}

#[tokio::test]
async fn ping_round_trips_in_both_directions() {
    let (client, _ci, server, _si) = pair(Config::default(), Config::default());
    client.ping().await.expect("client ping");
    server.ping().await.expect("server ping");
    client.ping().await.expect("second client ping");
}

#[tokio::test(start_paused = true)]
async fn keepalive_declares_a_silent_peer_dead() {
    let (a, mut b) = tokio::io::duplex(64 * 1024);
    // The peer swallows everything and never answers.
    tokio::spawn(async move {
        let mut sink = vec![0u8; 4096];
        while matches!(b.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let start = Instant::now();
    let config = Config::default().with_keepalive(Duration::from_secs(5), Duration::from_secs(10));
    let (session, _incoming) = Session::new(a, Role::Client, config);
    let reason = session.closed().await;
    assert!(matches!(reason, CloseReason::PingTimeout), "{reason}");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(15) && elapsed < Duration::from_secs(16),
        "declared dead after {elapsed:?}"
    );
    let err = session.open_stream(vec![], false).await.unwrap_err();
    assert!(matches!(
        err,
        SessionError::Closed(CloseReason::PingTimeout)
    ));
}

#[tokio::test(start_paused = true)]
async fn keepalive_keeps_an_answering_session_alive() {
    let config = Config::default().with_keepalive(Duration::from_secs(5), Duration::from_secs(10));
    let (client, _ci, server, _si) = pair(config.clone(), config);
    // Simulated time: a dozen keepalive rounds on both sides.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!client.is_closed());
    assert!(!server.is_closed());
    client.ping().await.unwrap();
}

#[tokio::test]
async fn goaway_stops_new_streams_and_lets_open_ones_finish() {
    let (client, _ci, server, mut si) = pair(Config::default(), Config::default());
    let opener = {
        let client = client.clone();
        tokio::spawn(async move { client.open_stream(vec![], false).await })
    };
    let mut server_stream = si.next().await.unwrap().accept(vec![], false).unwrap();
    let mut client_stream = opener.await.unwrap().unwrap();

    server.go_away();
    // The PING answer is queued after the GOAWAY, so it proves the GOAWAY was processed.
    client.ping().await.unwrap();
    assert!(client.peer_went_away());
    assert!(matches!(
        client.open_stream(vec![], false).await,
        Err(SessionError::GoingAway)
    ));
    assert!(matches!(
        server.open_stream(vec![], false).await,
        Err(SessionError::GoingAway)
    ));

    client_stream.write_all(b"still here").await.unwrap();
    client_stream.shutdown().await.unwrap();
    let mut got = Vec::new();
    server_stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"still here");
    server_stream.write_all(b"bye").await.unwrap();
    let mut got = [0u8; 3];
    client_stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"bye");
    // The server's FIN finishes the last stream: both sessions close, the client because the
    // drained stream was the last one after the peer's GOAWAY.
    server_stream.shutdown().await.unwrap();
    assert_eq!(client_stream.read(&mut got).await.unwrap(), 0);

    assert!(matches!(server.closed().await, CloseReason::Local));
    assert!(matches!(
        client.closed().await,
        CloseReason::GoAway {
            status: GoAwayStatus::OK
        }
    ));
    assert!(si.next().await.is_none());
}

#[tokio::test]
async fn close_fails_open_streams_on_both_sides() {
    let (client, _ci, server, mut si) = pair(Config::default(), Config::default());
    let opener = {
        let client = client.clone();
        tokio::spawn(async move { client.open_stream(vec![], false).await })
    };
    let mut server_stream = si.next().await.unwrap().accept(vec![], false).unwrap();
    let mut client_stream = opener.await.unwrap().unwrap();

    client.close().await;
    assert!(client.is_closed());
    assert!(matches!(client.close_reason(), Some(CloseReason::Local)));
    let mut buf = [0u8; 4];
    let err = client_stream.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    let err = client_stream.write_all(b"x").await.unwrap_err();
    assert!(matches!(stream_error(&err), StreamError::SessionClosed(_)));

    let err = server_stream.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    let reason = server.closed().await;
    assert!(matches!(reason, CloseReason::PeerClosed), "{reason}");
    assert!(server.peer_went_away());
    assert!(si.next().await.is_none());
}

#[tokio::test]
async fn dropping_every_handle_closes_the_session() {
    let (client, ci, server, _si) = pair(Config::default(), Config::default());
    drop(client);
    drop(ci);
    let reason = server.closed().await;
    assert!(
        matches!(
            reason,
            CloseReason::GoAway {
                status: GoAwayStatus::OK
            }
        ),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn unread_stream_within_its_budget_does_not_delay_others() {
    let (client, _ci, _server, mut si) = pair(Config::default(), Config::default());
    let server = tokio::spawn(async move {
        // First stream: push 1 MiB the client will not read yet.
        let mut idle = si.next().await.unwrap().accept(vec![], false).unwrap();
        idle.write_all(&[7u8; 1 << 20]).await.unwrap();
        idle.shutdown().await.unwrap();
        // Second stream: echo.
        let stream = si.next().await.unwrap().accept(vec![], false).unwrap();
        let (mut r, mut w) = tokio::io::split(stream);
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
        idle
    });
    let start = Instant::now();
    let mut idle = client.open_stream(vec![], false).await.unwrap();
    let mut active = client.open_stream(vec![], false).await.unwrap();
    active.write_all(b"ping-pong").await.unwrap();
    active.shutdown().await.unwrap();
    let mut got = Vec::new();
    active.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping-pong");
    // No timer was involved: the simulated clock did not move.
    assert!(start.elapsed() < Duration::from_millis(1));
    let _server_idle = server.await.unwrap();
    let mut idle_data = Vec::new();
    idle.read_to_end(&mut idle_data).await.unwrap();
    assert_eq!(idle_data.len(), 1 << 20);
    assert!(idle_data.iter().all(|b| *b == 7));
}

#[tokio::test(start_paused = true)]
async fn stalled_consumer_is_reset_after_the_stall_timeout() {
    let config = Config {
        stream_recv_buffer: 64 * 1024,
        stall_timeout: Some(Duration::from_secs(2)),
        ..Config::default()
    };
    let (client, _ci, _server, mut si) = pair(config, Config::default());
    let server = tokio::spawn(async move {
        let mut flood = si.next().await.unwrap().accept(vec![], false).unwrap();
        let echo = si.next().await.unwrap().accept(vec![], false).unwrap();
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(echo);
            tokio::io::copy(&mut r, &mut w).await.unwrap();
            w.shutdown().await.unwrap();
        });
        // Push far more than the client's per-stream budget until the reset arrives.
        let chunk = vec![1u8; 64 * 1024];
        loop {
            if let Err(e) = flood.write_all(&chunk).await {
                return e;
            }
        }
    });
    let start = Instant::now();
    let mut flood = client.open_stream(vec![], false).await.unwrap();
    let mut active = client.open_stream(vec![], false).await.unwrap();
    active.write_all(b"after the stall").await.unwrap();
    active.shutdown().await.unwrap();
    let mut got = Vec::new();
    active.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"after the stall");
    assert!(start.elapsed() >= Duration::from_secs(2));

    let server_err = server.await.unwrap();
    assert!(matches!(
        stream_error(&server_err),
        StreamError::ResetByPeer {
            status: RstStatus::FLOW_CONTROL_ERROR
        }
    ));
    let mut buf = [0u8; 16];
    let err = flood.read(&mut buf).await.unwrap_err();
    assert!(matches!(stream_error(&err), StreamError::InboundOverflow));
    assert!(!client.is_closed());
    assert_eq!(client.shared().buffered.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_paused_consumer_loses_nothing_and_the_pause_is_visible() {
    // No stall limit (the default): a consumer that stops reading for a long time holds the
    // session back, and once it reads again it gets every byte, in order.
    let config = Config {
        stream_recv_buffer: 64 * 1024,
        ..Config::default()
    };
    assert!(config.stall_timeout.is_none());
    let (client, _ci, _server, mut si) = pair(config, Config::default());
    let total = 4 << 20;
    let server = tokio::spawn(async move {
        let mut s = si.next().await.unwrap().accept(vec![], false).unwrap();
        let mut rng = Rng(7);
        let payload = rng.bytes(total);
        s.write_all(&payload).await.unwrap();
        s.shutdown().await.unwrap();
        payload
    });
    let mut s = client.open_stream(vec![], false).await.unwrap();
    let mut first = vec![0u8; 1000];
    s.read_exact(&mut first).await.unwrap();
    // Stop reading for a minute (virtual time): the reader pauses and says so.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let paused = client
        .paused_for()
        .expect("the reader is paused on the full buffer");
    assert!(paused >= Duration::from_secs(30), "paused for {paused:?}");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .await
        .expect("a clean end, not a reset");
    first.extend_from_slice(&rest);
    let sent = server.await.unwrap();
    assert_eq!(first.len(), sent.len());
    assert!(first == sent, "every byte arrives, in order");
    assert!(client.paused_for().is_none(), "reading again");
}

/// The other end of a session, driven frame by frame with the codec.
struct RawPeer {
    io: DuplexStream,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
}

impl RawPeer {
    fn new(role: Role, config: Config) -> (Session, Incoming, RawPeer) {
        Self::with_buffer(role, config, 256 * 1024)
    }

    fn with_buffer(role: Role, config: Config, buffer: usize) -> (Session, Incoming, RawPeer) {
        let (a, b) = tokio::io::duplex(buffer);
        let (session, incoming) = Session::new(a, role, config);
        let peer = RawPeer {
            io: b,
            encoder: FrameEncoder::new(),
            decoder: FrameDecoder::new(),
        };
        (session, incoming, peer)
    }

    async fn send(&mut self, frame: impl Into<Frame>) {
        let mut buf = BytesMut::new();
        self.encoder.encode(&frame.into(), &mut buf).unwrap();
        self.io.write_all(&buf).await.unwrap();
    }

    /// The next frame, or `None` at EOF.
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode().unwrap() {
                return Some(frame);
            }
            if self.io.read_buf(self.decoder.buffer_mut()).await.unwrap() == 0 {
                return None;
            }
        }
    }

    /// The next frame that is not a PING, answering pings on the way.
    async fn recv_skip_pings(&mut self) -> Frame {
        loop {
            match self.recv().await.expect("frame before EOF") {
                Frame::Ping(p) => self.send(p).await,
                other => return other,
            }
        }
    }
}

#[tokio::test]
async fn unknown_streams_and_uninterpreted_frames_are_ignored() {
    let (session, _incoming, mut peer) = RawPeer::new(Role::Client, Config::default());
    peer.send(DataFrame {
        stream_id: 99,
        fin: true,
        data: Bytes::from_static(b"nobody listens"),
    })
    .await;
    peer.send(Settings {
        clear_previous: false,
        entries: vec![crate::frame::Setting {
            flags: 0,
            id: 7,
            value: 1,
        }],
    })
    .await;
    peer.send(crate::frame::WindowUpdate {
        stream_id: 0,
        delta: 1000,
    })
    .await;
    peer.send(UnknownControl {
        frame_type: crate::frame::frame_type::CREDENTIAL,
        flags: 0,
        payload: Bytes::from_static(b"cred"),
    })
    .await;
    peer.send(Ping { id: 2 }).await;
    assert_eq!(peer.recv().await, Some(Frame::Ping(Ping { id: 2 })));
    assert!(!session.is_closed());
}

#[tokio::test]
async fn data_split_across_writes_is_reassembled() {
    let (session, _incoming, mut peer) = RawPeer::new(Role::Client, Config::default());
    let opener = tokio::spawn(async move {
        let stream = session
            .open_stream(h(&[("Content-Kind", "data"), ("x-channel", "80")]), false)
            .await;
        (session, stream)
    });
    let Frame::SynStream(syn) = peer.recv().await.unwrap() else {
        panic!("expected SYN_STREAM");
    };
    assert_eq!(syn.stream_id, 1);
    assert_eq!(syn.headers.get("content-kind"), Some("data"));
    assert!(syn.headers.iter().all(|(n, _)| n == n.to_ascii_lowercase()));
    peer.send(SynReply {
        stream_id: 1,
        fin: false,
        headers: Headers::new(),
    })
    .await;
    let (_session, stream) = opener.await.unwrap();
    let mut stream = stream.unwrap();

    // Like spdystream: stream id, then flags+length, then payload, in separate writes.
    let mut frame = BytesMut::new();
    crate::codec::encode_data_header(1, true, 11, &mut frame).unwrap();
    peer.io.write_all(&frame[..4]).await.unwrap();
    peer.io.flush().await.unwrap();
    peer.io.write_all(&frame[4..]).await.unwrap();
    peer.io.write_all(b"hello ").await.unwrap();
    peer.io.write_all(b"world").await.unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hello world");
}

#[tokio::test]
async fn large_writes_become_bounded_data_frames_then_fin() {
    let (session, _incoming, mut peer) = RawPeer::new(Role::Client, Config::default());
    let payload = Rng(5).bytes(100 * 1024 + 5);
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        let mut stream = session.open_stream(vec![], false).await.unwrap();
        stream.write_all(&sent).await.unwrap();
        stream.shutdown().await.unwrap();
        // Dropping now would reset; keep the stream until the peer finishes.
        (session, stream)
    });
    let Frame::SynStream(syn) = peer.recv().await.unwrap() else {
        panic!("expected SYN_STREAM");
    };
    peer.send(SynReply {
        stream_id: syn.stream_id,
        fin: true,
        headers: Headers::new(),
    })
    .await;
    let mut got = Vec::new();
    loop {
        let Frame::Data(data) = peer.recv_skip_pings().await else {
            panic!("expected DATA");
        };
        assert_eq!(data.stream_id, syn.stream_id);
        assert!(data.data.len() <= 32 * 1024);
        got.extend_from_slice(&data.data);
        if data.fin {
            assert!(data.data.is_empty());
            break;
        }
    }
    assert!(got == payload);
    let (_session, _stream) = writer.await.unwrap();
}

#[tokio::test]
async fn dropping_an_unfinished_stream_resets_it_after_its_data() {
    let (session, _incoming, mut peer) = RawPeer::new(Role::Client, Config::default());
    let writer = tokio::spawn(async move {
        let mut stream = session.open_stream(vec![], false).await.unwrap();
        stream.write_all(b"last words").await.unwrap();
        drop(stream);
        session
    });
    let Frame::SynStream(syn) = peer.recv().await.unwrap() else {
        panic!("expected SYN_STREAM");
    };
    peer.send(SynReply {
        stream_id: syn.stream_id,
        fin: false,
        headers: Headers::new(),
    })
    .await;
    let _session = writer.await.unwrap();
    assert_eq!(
        peer.recv().await,
        Some(Frame::Data(DataFrame {
            stream_id: syn.stream_id,
            fin: false,
            data: Bytes::from_static(b"last words"),
        }))
    );
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream(RstStream {
            stream_id: syn.stream_id,
            status: RstStatus::CANCEL,
        }))
    );
}

#[tokio::test(start_paused = true)]
async fn open_stream_times_out_and_cancels() {
    let (session, _incoming, mut peer) = RawPeer::new(Role::Client, Config::default());
    let start = Instant::now();
    let opener = tokio::spawn(async move {
        let result = session.open_stream(vec![], true).await;
        (session, result)
    });
    let Frame::SynStream(syn) = peer.recv().await.unwrap() else {
        panic!("expected SYN_STREAM");
    };
    assert!(syn.fin);
    let (session, result) = opener.await.unwrap();
    assert!(matches!(
        result,
        Err(SessionError::OpenStreamTimeout { stream_id: 1 })
    ));
    assert!(start.elapsed() >= Duration::from_secs(30));
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream(RstStream {
            stream_id: 1,
            status: RstStatus::CANCEL,
        }))
    );
    assert_eq!(session.active_streams(), 0);
}

#[tokio::test]
async fn server_role_uses_even_ids_and_checks_peer_parity() {
    let (session, mut incoming, mut peer) = RawPeer::new(Role::Server, Config::default());
    // An even (server-parity) id from the client is a protocol error for that stream only.
    peer.send(SynStream {
        stream_id: 2,
        associated_stream_id: 0,
        priority: 0,
        slot: 0,
        fin: false,
        unidirectional: false,
        headers: Headers::new(),
    })
    .await;
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream(RstStream {
            stream_id: 2,
            status: RstStatus::PROTOCOL_ERROR,
        }))
    );
    peer.send(SynStream {
        stream_id: 1,
        associated_stream_id: 0,
        priority: 3,
        slot: 0,
        fin: true,
        unidirectional: false,
        headers: [("a", "b")].into_iter().collect(),
    })
    .await;
    let stream = incoming.next().await.unwrap();
    assert_eq!(
        (stream.id(), stream.priority(), stream.is_fin()),
        (1, 3, true)
    );
    let _stream = stream.accept(h(&[("Reply", "yes")]), false).unwrap();
    assert_eq!(
        peer.recv().await,
        Some(Frame::SynReply(SynReply {
            stream_id: 1,
            fin: false,
            headers: [("reply", "yes")].into_iter().collect(),
        }))
    );
    let opener = tokio::spawn(async move { session.open_stream(vec![], false).await });
    let Some(Frame::SynStream(syn)) = peer.recv().await else {
        panic!("expected SYN_STREAM");
    };
    assert_eq!(syn.stream_id, 2);
    // An even PING id is the server's own parity: an unsolicited "answer", not echoed.
    peer.send(Ping { id: 4 }).await;
    peer.send(Ping { id: 5 }).await;
    assert_eq!(peer.recv().await, Some(Frame::Ping(Ping { id: 5 })));
    peer.send(crate::frame::RstStream {
        stream_id: 2,
        status: RstStatus::REFUSED_STREAM,
    })
    .await;
    assert!(matches!(
        opener.await.unwrap(),
        Err(SessionError::OpenStreamReset { stream_id: 2, .. })
    ));
}

#[tokio::test]
async fn uppercase_header_names_refuse_the_stream_not_the_session() {
    let (session, mut incoming, mut peer) = RawPeer::new(Role::Server, Config::default());
    // Hand-built block: the codec would lowercase the name.
    let mut block = Vec::new();
    block.extend_from_slice(&1u32.to_be_bytes());
    for s in [&b"Port"[..], b"80"] {
        block.extend_from_slice(&(s.len() as u32).to_be_bytes());
        block.extend_from_slice(s);
    }
    let mut deflate = flate2::Compress::new(flate2::Compression::default(), true);
    deflate
        .set_dictionary(crate::dictionary::SPDY3_DICTIONARY)
        .unwrap();
    let mut compressed = vec![0u8; 256];
    deflate
        .compress(&block, &mut compressed, flate2::FlushCompress::Sync)
        .unwrap();
    compressed.truncate(deflate.total_out() as usize);
    let mut frame = vec![0x80, 3, 0, 1, 0, 0, 0, (10 + compressed.len()) as u8];
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(&compressed);
    peer.io.write_all(&frame).await.unwrap();
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream(RstStream {
            stream_id: 1,
            status: RstStatus::PROTOCOL_ERROR,
        }))
    );
    peer.send(Ping { id: 1 }).await;
    assert_eq!(peer.recv().await, Some(Frame::Ping(Ping { id: 1 })));
    assert!(!session.is_closed());
    session.go_away();
    assert!(incoming.next().await.is_none());
}

#[tokio::test]
async fn garbage_closes_the_session_with_goaway_protocol_error() {
    let (session, _incoming, mut peer) = RawPeer::new(Role::Client, Config::default());
    peer.io.write_all(&[0xff; 32]).await.unwrap();
    assert_eq!(
        peer.recv().await,
        Some(Frame::GoAway(GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::PROTOCOL_ERROR,
        }))
    );
    assert_eq!(peer.recv().await, None);
    let reason = session.closed().await;
    assert!(
        matches!(&reason, CloseReason::Protocol(e) if matches!(**e, crate::DecodeError::UnsupportedVersion { .. })),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn close_completes_when_the_peer_stops_reading() {
    let (session, _incoming, mut peer) =
        RawPeer::with_buffer(Role::Client, Config::default(), 4096);
    let opener = {
        let session = session.clone();
        tokio::spawn(async move { session.open_stream(vec![], false).await })
    };
    let Frame::SynStream(syn) = peer.recv().await.unwrap() else {
        panic!("expected SYN_STREAM");
    };
    peer.send(SynReply {
        stream_id: syn.stream_id,
        fin: false,
        headers: Headers::new(),
    })
    .await;
    let mut stream = opener.await.unwrap().unwrap();
    // From now on the peer reads nothing: the writer blocks mid-batch, then writers block on
    // the write budget.
    let writer = tokio::spawn(async move {
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = stream.write_all(&chunk).await {
                return e;
            }
        }
    });
    // Simulated time only advances once every task is blocked.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    session.close().await;
    assert!(
        start.elapsed() <= Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    let err = writer.await.unwrap();
    assert!(matches!(stream_error(&err), StreamError::SessionClosed(_)));
    drop(peer);
}

#[tokio::test]
async fn finished_streams_stay_tracked_until_read() {
    let (client, _ci, server, mut si) = pair(Config::default(), Config::default());
    let opener = {
        let client = client.clone();
        tokio::spawn(async move { client.open_stream(vec![], true).await })
    };
    let mut server_stream = si.next().await.unwrap().accept(vec![], false).unwrap();
    let mut client_stream = opener.await.unwrap().unwrap();
    server_stream.write_all(b"unread answer").await.unwrap();
    server_stream.shutdown().await.unwrap();
    // The server is done with it; the client still holds unread data.
    assert_eq!(server.active_streams(), 0);
    client.ping().await.unwrap();
    assert_eq!(client.active_streams(), 1);
    assert_eq!(client.shared().buffered.load(Ordering::SeqCst), 13);
    let mut got = Vec::new();
    client_stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"unread answer");
    assert_eq!(client.active_streams(), 0);
    assert_eq!(client.shared().buffered.load(Ordering::SeqCst), 0);
}

#[test]
fn handles_are_send_and_sessions_are_shareable() {
    fn send<T: Send + 'static>() {}
    fn sync<T: Sync>() {}
    send::<Session>();
    sync::<Session>();
    send::<Stream>();
    send::<IncomingStream>();
    send::<Incoming>();
}

/// Rough throughput probe over an in-memory pipe; run with
/// `cargo test --release -p kubeway-spdy throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput probe, not a correctness test"]
async fn throughput_probe_over_duplex() {
    let (client, _ci, _server, mut si) = pair(Config::default(), Config::default());
    const TOTAL: usize = 1 << 30;
    let sink = tokio::spawn(async move {
        let mut stream = si.next().await.unwrap().accept(vec![], false).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0;
        loop {
            let got = stream.read(&mut buf).await.unwrap();
            if got == 0 {
                break n;
            }
            n += got;
        }
    });
    let mut stream = client.open_stream(vec![], false).await.unwrap();
    let chunk = vec![0x5au8; 256 * 1024];
    let start = std::time::Instant::now();
    for _ in 0..TOTAL / chunk.len() {
        stream.write_all(&chunk).await.unwrap();
    }
    stream.shutdown().await.unwrap();
    assert_eq!(sink.await.unwrap(), TOTAL);
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{} MiB in {secs:.2} s: {:.0} MiB/s",
        TOTAL >> 20,
        (TOTAL >> 20) as f64 / secs
    );
}
