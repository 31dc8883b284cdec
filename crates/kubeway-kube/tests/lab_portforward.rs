//! The dialer against the lab on loopback (a real HTTPS API server with bearer auth, pods that
//! are real local servers), over each transport: 200 concurrent hash-checked echoes from 1 byte
//! to 8 MiB, half-closed requests, per-connection failures that leave the session and the other
//! connections alone, session replacement after the API server cuts every upgraded connection,
//! auto negotiation, and RBAC refusals naming the verb.

mod common;

use std::time::{Duration, Instant};

use common::{BLOB_PORT, ECHO_PORT, Fixture, echo_exchange, sizes};
use kubeway_kube::{
    ConnectionError, ForwardError, ForwardOptions, KubeError, PortForwarder, Transport,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bound on the bytes one bulk run sends (each comes back too).
const BULK_BUDGET: usize = 400 << 20;
/// How long any one scenario may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(240);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {HANG:?}"))
}

/// Opens `sizes.len()` connections at once and echoes one payload on each, every byte hashed
/// both ways. Returns the results in order.
async fn echo_many(
    fwd: &PortForwarder,
    seed: u64,
    sizes: &[usize],
    half_close: bool,
) -> Vec<std::io::Result<common::Echoed>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, &len) in sizes.iter().enumerate() {
        let fwd = fwd.clone();
        set.spawn(async move {
            let s = fwd
                .connect(ECHO_PORT)
                .await
                .map_err(std::io::Error::other)?;
            echo_exchange(s, seed.wrapping_mul(1000) + i as u64, len, half_close)
                .await
                .map(|e| (i, e))
        });
    }
    let mut out: Vec<Option<std::io::Result<common::Echoed>>> =
        (0..sizes.len()).map(|_| None).collect();
    let mut failed = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.expect("task does not panic") {
            Ok((i, e)) => out[i] = Some(Ok(e)),
            Err(e) => failed.push(e),
        }
    }
    let mut failed = failed.into_iter();
    out.into_iter()
        .map(|o| o.unwrap_or_else(|| Err(failed.next().expect("one error per missing result"))))
        .collect()
}

async fn bulk(transport: Transport, seed: u64) {
    let f = Fixture::sample().await;
    let fwd = f.forwarder(&f.echo, transport);
    let sizes = sizes(seed, 200, BULK_BUDGET);
    let total: usize = sizes.iter().sum();
    // No half-close: like containerd, the lab cuts a connection a second after the client's
    // side ended, so a large echo still in flight after a half-close may be cut (tested on its
    // own in `half_closed_requests_get_what_a_container_runtime_gives`).
    let start = Instant::now();
    let results = within("200 echoes", echo_many(&fwd, seed, &sizes, false)).await;
    let took = start.elapsed();
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(e) => assert!(
                e.exact(),
                "{transport} connection {i} ({} B): {e:?}",
                sizes[i]
            ),
            Err(e) => panic!("{transport} connection {i} ({} B) failed: {e}", sizes[i]),
        }
    }
    let stats = fwd.stats();
    eprintln!(
        "MEASURED {transport}: 200 concurrent echoes, {:.1} MiB each way, in {:.2} s ({:.1} MiB/s each way); {stats:?}",
        total as f64 / f64::from(1 << 20),
        took.as_secs_f64(),
        total as f64 / f64::from(1 << 20) / took.as_secs_f64()
    );
    assert_eq!(stats.connections_opened, 200);
    assert_eq!(stats.connections_failed, 0);
    match transport {
        Transport::V4 => {
            assert_eq!(stats.transport, Some(Transport::V4));
            assert_eq!(stats.sessions_opened, 0);
        }
        _ => {
            assert_eq!(stats.transport, Some(transport));
            let most = ForwardOptions::default().max_sessions as u64;
            assert!(
                (1..=most).contains(&stats.sessions_opened),
                "200 connections share a pool of at most {most} sessions: {stats:?}"
            );
            assert_eq!(stats.sessions_lost, 0, "{stats:?}");
        }
    }
    f.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_spdy_carries_200_concurrent_echoes_byte_exact() {
    bulk(Transport::WsSpdy, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_carries_200_concurrent_echoes_byte_exact() {
    bulk(Transport::Spdy, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_carries_200_concurrent_echoes_byte_exact() {
    bulk(Transport::V4, 3).await;
}

/// Writes everything and half-closes before reading a single byte.
async fn write_then_read(
    fwd: &PortForwarder,
    port: u16,
    head: &[u8],
    body: &[u8],
    read_len: Option<usize>,
) -> Vec<u8> {
    let mut s = fwd.connect(port).await.expect("connects");
    s.write_all(head).await.expect("write head");
    s.write_all(body).await.expect("write body");
    s.shutdown().await.expect("half-close");
    let mut back = Vec::new();
    match read_len {
        Some(n) => {
            back.resize(n, 0);
            s.read_exact(&mut back).await.expect("read the answer");
        }
        None => {
            s.read_to_end(&mut back).await.expect("read to EOF");
        }
    }
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_requests_get_what_a_container_runtime_gives() {
    let f = Fixture::sample().await;
    let blob = f.blob_pod().await;
    let mut payload = vec![0u8; 5 << 20];
    common::Prng::new(42).fill(&mut payload);
    let digest = hex(&Sha256::digest(&payload));
    for t in [Transport::WsSpdy, Transport::Spdy] {
        // A length-prefixed upload needs no half-close and gets its answer.
        let fwd = f.forwarder(&blob, t);
        let head = format!("sink {}\n", payload.len());
        let answer = within(
            "sink N",
            write_then_read(&fwd, BLOB_PORT, head.as_bytes(), &payload, None),
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!("{} {digest}\n", payload.len()),
            "{t}"
        );
        // As containerd: the half-close is not passed to the app, and a second after the
        // client's side ended the runtime closes the connection. A sink that waits for the EOF
        // never answers; the stream ends cleanly (the runtime reports nothing).
        let answer = within(
            "sink to EOF",
            write_then_read(&fwd, BLOB_PORT, b"sink\n", &payload[..1 << 20], None),
        )
        .await;
        assert!(
            answer.is_empty(),
            "{t}: {:?}",
            String::from_utf8_lossy(&answer)
        );
        // An echo answers as it reads: what it sent before the runtime closed arrives (a small
        // request, so its echo is back well within the runtime's second).
        let fwd = f.forwarder(&f.echo, t);
        let echoed = within(
            "echo",
            write_then_read(&fwd, ECHO_PORT, b"", &payload[..64 << 10], None),
        )
        .await;
        assert!(
            echoed == payload[..64 << 10],
            "{t}: the full echo came back"
        );
    }
    // v4.channel.k8s.io cannot carry the half-close: shutdown must not cut the answer short.
    let fwd = f.forwarder(&f.echo, Transport::V4);
    let n = 512 << 10;
    let echoed = within(
        "v4 echo",
        write_then_read(&fwd, ECHO_PORT, b"", &payload[..n], Some(n)),
    )
    .await;
    assert!(echoed == payload[..n], "v4: the full echo came back");
    f.lab.shutdown().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_connection_leaves_the_session_and_the_others_alone() {
    let f = Fixture::sample().await;
    for (i, t) in [Transport::WsSpdy, Transport::Spdy].into_iter().enumerate() {
        let fwd = f.forwarder(&f.echo, t);
        let seed = 100 + i as u64;
        let sizes: Vec<usize> = (0..50).map(|k| 64 * 1024 + k * 40_000).collect();
        let others = {
            let fwd = fwd.clone();
            let sizes = sizes.clone();
            tokio::spawn(async move { echo_many(&fwd, seed, &sizes, true).await })
        };
        // A port nothing listens on: the server reports it on that connection's error stream.
        let refused = async {
            let mut s = fwd.connect(9999).await.expect("streams open");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await
        };
        // The pod resets this connection when it reads "RESET" first.
        let reset = async {
            let mut s = fwd.connect(ECHO_PORT).await.expect("streams open");
            let sent = b"RESET and more bytes that must not come back";
            let w = s.write_all(sent).await;
            let _ = s.shutdown().await;
            let mut buf = Vec::new();
            let r = s.read_to_end(&mut buf).await;
            (w, r, buf, sent.len())
        };
        let (refused, (w, r, echoed, sent)) =
            within("failures", async { tokio::join!(refused, reset) }).await;
        let err = refused.expect_err("the refused port fails its connection");
        match err
            .get_ref()
            .and_then(|e| e.downcast_ref::<ConnectionError>())
        {
            Some(ConnectionError::Remote { message }) => assert!(
                message.starts_with(&format!("error forwarding port 9999 to pod {}", f.echo)),
                "{t}: {message}"
            ),
            other => panic!("{t}: expected the server's report, got {other:?} ({err})"),
        }
        assert!(
            w.is_err() || r.is_err() || echoed.len() < sent,
            "{t}: the reset connection did not complete: write {w:?}, read {r:?}, {} bytes back",
            echoed.len()
        );
        let others = within("50 echoes", others).await.expect("no panic");
        for (k, r) in others.iter().enumerate() {
            match r {
                Ok(e) => assert!(e.exact(), "{t} connection {k}: {e:?}"),
                Err(e) => panic!("{t} connection {k} failed: {e}"),
            }
        }
        // The sessions survived: a new connection works on them.
        let again = echo_many(&fwd, seed + 50, &[10_000], true).await;
        assert!(again[0].as_ref().is_ok_and(common::Echoed::exact), "{t}");
        let stats = fwd.stats();
        assert_eq!(stats.sessions_lost, 0, "{t}: {stats:?}");
        assert!(stats.sessions_opened <= 2, "{t}: {stats:?}");
        assert!(stats.connections_failed >= 1, "{t}: {stats:?}");
    }
    f.lab.shutdown().await;
}

/// The API server restarts while connections are busy. Whether the restart cuts them (as a
/// real API server's does) or lets them finish, none may hang or return wrong bytes, and new
/// connections after the restart must work on fresh sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_after_an_api_server_restart_get_fresh_sessions() {
    let f = Fixture::sample().await;
    for (i, t) in [Transport::WsSpdy, Transport::Spdy].into_iter().enumerate() {
        let fwd = f.forwarder(&f.echo, t);
        let seed = 200 + i as u64;
        let stopped = std::sync::Arc::new(tokio::sync::Notify::new());
        let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(32);
        let mut load = tokio::task::JoinSet::new();
        for k in 0..20u64 {
            let fwd = fwd.clone();
            let started = started_tx.clone();
            let stopped = std::sync::Arc::clone(&stopped);
            load.spawn(async move {
                let mut s = fwd
                    .connect(ECHO_PORT)
                    .await
                    .map_err(std::io::Error::other)?;
                let mut rng = common::Prng::new(seed * 1000 + k);
                let (mut buf, mut back) = (vec![0u8; 4096], vec![0u8; 4096]);
                let mut stop = std::pin::pin!(stopped.notified());
                for round in 0u64.. {
                    rng.fill(&mut buf);
                    s.write_all(&buf).await?;
                    s.read_exact(&mut back).await?;
                    assert_eq!(buf, back, "echo is exact");
                    if round == 2 {
                        let _ = started.send(()).await;
                        stop.as_mut().await;
                    }
                    if round == 5 {
                        break;
                    }
                }
                s.shutdown().await?;
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).await?;
                assert!(rest.is_empty());
                std::io::Result::Ok(())
            });
        }
        drop(started_tx);
        within("load starts", async {
            for _ in 0..20 {
                started_rx.recv().await.expect("every connection runs");
            }
        })
        .await;
        let before = fwd.stats();
        assert!(before.sessions_alive >= 1, "{t}: {before:?}");
        f.lab.stop_api().await;
        stopped.notify_waiters();
        let (mut cut, mut finished) = (0, 0);
        within("load ends", async {
            while let Some(r) = load.join_next().await {
                match r.expect("no panic") {
                    Ok(()) => finished += 1,
                    Err(_) => cut += 1,
                }
            }
        })
        .await;
        f.lab.start_api().await.expect("API server restarts");
        let sizes: Vec<usize> = (0..20).map(|k| 1000 + k * 5000).collect();
        let results = within("after the restart", echo_many(&fwd, seed + 7, &sizes, true)).await;
        for (k, r) in results.iter().enumerate() {
            match r {
                Ok(e) => assert!(e.exact(), "{t} connection {k}: {e:?}"),
                Err(e) => panic!("{t} connection {k} after the restart failed: {e}"),
            }
        }
        let after = fwd.stats();
        eprintln!(
            "MEASURED {t}: API restart under load: {cut} connections cut, {finished} finished; before {before:?}; after {after:?}"
        );
        assert!(after.sessions_lost >= 1, "{t}: {after:?}");
        assert!(after.sessions_replaced >= 1, "{t}: {after:?}");
        assert!(after.sessions_alive >= 1, "{t}: {after:?}");
    }
    f.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_negotiates_the_tunnel_and_remembers_it() {
    let f = Fixture::sample().await;
    let fwd = f.forwarder(&f.echo, Transport::Auto);
    let results = within(
        "auto echoes",
        echo_many(&fwd, 300, &[1, 1000, 100_000], true),
    )
    .await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(common::Echoed::exact))
    );
    let stats = fwd.stats();
    assert_eq!(stats.transport, Some(Transport::WsSpdy), "{stats:?}");
    f.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_port_forward_names_the_verb_each_transport_needs() {
    let f = Fixture::sample().await;
    f.lab
        .deny(kubeway_lab::Denial::new("get", "pods/portforward"));
    // Auto moves on to legacy SPDY (a POST: `create`, still allowed), as kubectl does.
    let auto = f.forwarder(&f.echo, Transport::Auto);
    let ok = echo_many(&auto, 399, &[1000], true).await;
    assert!(ok[0].as_ref().is_ok_and(common::Echoed::exact));
    assert_eq!(auto.stats().transport, Some(Transport::Spdy));
    for t in [Transport::WsSpdy, Transport::V4] {
        let err = f
            .forwarder(&f.echo, t)
            .connect(ECHO_PORT)
            .await
            .expect_err("get is denied");
        assert!(
            matches!(
                &err,
                KubeError::Forward(ForwardError::Forbidden { verb: "get", .. })
            ),
            "{t}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("`get`") && text.contains("create"),
            "{t}: names get, and create for 1.35+: {text}"
        );
    }
    // Legacy SPDY is a POST: `create`, which is still allowed.
    let spdy = f.forwarder(&f.echo, Transport::Spdy);
    let ok = echo_many(&spdy, 400, &[1000], true).await;
    assert!(ok[0].as_ref().is_ok_and(common::Echoed::exact));
    f.lab.allow_all();
    f.lab
        .deny(kubeway_lab::Denial::new("create", "pods/portforward"));
    let err = f
        .forwarder(&f.echo, Transport::Spdy)
        .connect(ECHO_PORT)
        .await
        .expect_err("create is denied");
    assert!(
        matches!(
            &err,
            KubeError::Forward(ForwardError::Forbidden { verb: "create", .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("`create`"), "{err}");
    // ...while the WebSocket transports, which are GETs, still work.
    let ws = f.forwarder(&f.echo, Transport::WsSpdy);
    let ok = echo_many(&ws, 401, &[1000], true).await;
    assert!(ok[0].as_ref().is_ok_and(common::Echoed::exact));
    f.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pod_is_named_on_every_transport() {
    let f = Fixture::sample().await;
    for t in Transport::ALL {
        let err = f
            .forwarder("no-such-pod", t)
            .connect(ECHO_PORT)
            .await
            .expect_err("404");
        assert!(
            matches!(&err, KubeError::Forward(ForwardError::PodNotFound { pod, .. }) if pod == "no-such-pod"),
            "{t}: {err:?}"
        );
    }
    f.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_reports_the_server_error_on_its_connection() {
    let f = Fixture::sample().await;
    let fwd = f.forwarder(&f.echo, Transport::V4);
    let mut s = fwd.connect(9999).await.expect("the WebSocket opens");
    let mut buf = Vec::new();
    let err = within("v4 error", s.read_to_end(&mut buf))
        .await
        .expect_err("the refused port fails its connection");
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<ConnectionError>())
    {
        Some(ConnectionError::Remote { message }) => assert!(
            message.starts_with(&format!("error forwarding port 9999 to pod {}", f.echo)),
            "{message}"
        ),
        other => panic!("expected the server's report, got {other:?} ({err})"),
    }
    let ok = echo_many(&fwd, 500, &[1000], false).await;
    assert!(ok[0].as_ref().is_ok_and(common::Echoed::exact));
    f.lab.shutdown().await;
}
