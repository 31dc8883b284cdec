//! The dialer against a fake API server on loopback that serves, refuses or half-accepts each
//! transport on demand: automatic fallback and its memory, error mapping (403 names the verb,
//! 404 the pod), the kubelet's stream protocol (`requestid` from 0, error stream half-closed at
//! once), per-connection error reports, and redialing a dead session.

mod common;

use std::io;

use common::echo_exchange;
use common::fake_api::{Answer, Behaviour, FAILING_PORT, FakeApi};
use kubeway_kube::{
    ConnectionError, ForwardError, ForwardOptions, KubeError, PortForwarder, Transport,
};
use tokio::io::AsyncReadExt;

const ECHO: u16 = 9000;

fn forwarder(fake: &FakeApi, pod: &str, options: ForwardOptions) -> PortForwarder {
    PortForwarder::new(&fake.cluster(), "default", pod, options)
}

fn auto() -> ForwardOptions {
    ForwardOptions::default()
}

fn forced(t: Transport) -> ForwardOptions {
    ForwardOptions::default().with_transport(t)
}

fn attempts(fake: &FakeApi, kind: &str) -> Vec<u16> {
    fake.upgrades()
        .into_iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, s)| s)
        .collect()
}

async fn echo_ok(fwd: &PortForwarder, seed: u64, len: usize, half_close: bool) {
    let s = fwd.connect(ECHO).await.expect("connects");
    let e = echo_exchange(s, seed, len, half_close)
        .await
        .expect("echo exchange");
    assert!(e.exact(), "echo is byte-exact: {e:?}");
}

#[tokio::test]
async fn auto_falls_back_to_legacy_spdy_when_the_tunnel_is_refused_and_remembers_it() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Refuse(400),
        spdy: Answer::Serve,
        v4: Answer::Serve,
    })
    .await;
    let fwd = forwarder(&fake, "p", auto());
    for i in 0..5 {
        echo_ok(&fwd, i, 10_000, true).await;
    }
    assert_eq!(
        attempts(&fake, "ws-spdy"),
        vec![400],
        "the tunnel is tried once"
    );
    assert!(attempts(&fake, "spdy").iter().all(|s| *s == 101));
    assert_eq!(fwd.stats().transport, Some(Transport::Spdy));
    // A forwarder to another pod of the same cluster starts from what was learnt.
    let sibling = fwd.for_pod("q");
    echo_ok(&sibling, 9, 100, true).await;
    assert_eq!(attempts(&fake, "ws-spdy").len(), 1);
}

#[tokio::test]
async fn auto_falls_back_when_the_tunnel_selects_no_protocol() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::NoProtocol,
        spdy: Answer::Serve,
        v4: Answer::Serve,
    })
    .await;
    let fwd = forwarder(&fake, "p", auto());
    echo_ok(&fwd, 1, 1000, true).await;
    assert_eq!(attempts(&fake, "ws-spdy"), vec![101]);
    assert_eq!(fwd.stats().transport, Some(Transport::Spdy));
}

#[tokio::test]
async fn auto_ends_on_v4_when_both_spdy_transports_are_refused() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Refuse(400),
        spdy: Answer::Refuse(500),
        v4: Answer::Serve,
    })
    .await;
    let fwd = forwarder(&fake, "p", auto());
    for i in 0..3 {
        echo_ok(&fwd, i, 50_000, false).await;
    }
    assert_eq!(attempts(&fake, "ws-spdy"), vec![400]);
    assert_eq!(attempts(&fake, "spdy"), vec![500]);
    assert_eq!(attempts(&fake, "v4"), vec![101, 101, 101]);
    let stats = fwd.stats();
    assert_eq!(stats.transport, Some(Transport::V4));
    assert_eq!(stats.sessions_opened, 0);
}

#[tokio::test]
async fn a_forced_transport_never_falls_back() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Refuse(400),
        spdy: Answer::Serve,
        v4: Answer::Serve,
    })
    .await;
    let fwd = forwarder(&fake, "p", forced(Transport::WsSpdy));
    let err = fwd.connect(ECHO).await.expect_err("refused");
    match &err {
        KubeError::Forward(ForwardError::UpgradeRefused {
            status, message, ..
        }) => {
            assert_eq!(*status, 400);
            assert!(message.contains("the fake refuses ws-spdy"), "{message}");
        }
        other => panic!("expected UpgradeRefused, got {other:?}"),
    }
    assert!(attempts(&fake, "spdy").is_empty());
}

#[tokio::test]
async fn forbidden_names_the_verb() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Refuse(403),
        spdy: Answer::Refuse(403),
        v4: Answer::Refuse(403),
    })
    .await;
    for (t, verb) in [
        (Transport::Auto, "get"),
        (Transport::WsSpdy, "get"),
        (Transport::V4, "get"),
        (Transport::Spdy, "create"),
    ] {
        let err = forwarder(&fake, "p", forced(t))
            .connect(ECHO)
            .await
            .expect_err("forbidden");
        let KubeError::Forward(fe) = &err else {
            panic!("{t}: expected a forward error, got {err:?}");
        };
        assert_eq!(fe.forbidden_verb(), Some(verb), "{t}: {fe}");
        let text = err.to_string();
        assert!(text.contains(&format!("`{verb}`")), "{t}: {text}");
        assert!(text.contains("pods/portforward"), "{t}: {text}");
    }
    // Auto, like kubectl, moved on after the tunnel's 403 and tried legacy SPDY too.
    assert_eq!(attempts(&fake, "ws-spdy").len(), 2);
    assert_eq!(attempts(&fake, "spdy").len(), 2);
}

#[tokio::test]
async fn a_missing_pod_is_named() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Serve,
        spdy: Answer::Serve,
        v4: Answer::Serve,
    })
    .await;
    for t in [Transport::Auto, Transport::Spdy, Transport::V4] {
        let err = forwarder(&fake, "missing", forced(t))
            .connect(ECHO)
            .await
            .expect_err("404");
        assert!(
            matches!(
                &err,
                KubeError::Forward(ForwardError::PodNotFound { pod, .. }) if pod == "missing"
            ),
            "{t}: {err:?}"
        );
    }
}

#[tokio::test]
async fn bad_input_is_refused_before_dialing() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Serve,
        spdy: Answer::Serve,
        v4: Answer::Serve,
    })
    .await;
    let err = forwarder(&fake, "p", auto())
        .connect(0)
        .await
        .expect_err("port 0");
    assert!(matches!(err, KubeError::Forward(ForwardError::InvalidPort)));
    for t in [Transport::Auto, Transport::V4] {
        let err = forwarder(&fake, "../etc", forced(t))
            .connect(ECHO)
            .await
            .expect_err("bad name");
        assert!(
            matches!(
                err,
                KubeError::Forward(ForwardError::InvalidName { what: "pod", .. })
            ),
            "{t}: {err:?}"
        );
    }
    assert!(fake.upgrades().is_empty());
}

#[tokio::test]
async fn streams_follow_the_kubelet_protocol() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Serve,
        spdy: Answer::Serve,
        v4: Answer::Serve,
    })
    .await;
    for t in [Transport::WsSpdy, Transport::Spdy] {
        let fwd = forwarder(&fake, "p", forced(t).with_sessions(1));
        for i in 0..3 {
            echo_ok(&fwd, i, 100, true).await;
        }
        assert_eq!(fwd.stats().sessions_opened, 1, "{t}");
    }
    let streams = fake.streams();
    for session in [1, 2] {
        let mine: Vec<_> = streams.iter().filter(|s| s.session == session).collect();
        assert_eq!(mine.len(), 6, "{mine:?}");
        for id in 0..3 {
            let rid = id.to_string();
            let pair: Vec<_> = mine.iter().filter(|s| s.request_id == rid).collect();
            assert_eq!(pair.len(), 2, "request {rid}: {pair:?}");
            let error = pair
                .iter()
                .find(|s| s.stream_type == "error")
                .expect("error stream");
            let data = pair
                .iter()
                .find(|s| s.stream_type == "data")
                .expect("data stream");
            assert!(error.fin, "the error stream is half-closed at once");
            assert!(!data.fin);
            assert!(error.stream_id < data.stream_id, "error stream first");
            assert_eq!((error.port.as_str(), data.port.as_str()), ("9000", "9000"));
            assert_eq!(error.stream_id % 2, 1, "client stream ids are odd");
        }
    }
}

#[tokio::test]
async fn an_error_report_fails_one_connection_and_keeps_the_session() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Serve,
        spdy: Answer::Serve,
        v4: Answer::Serve,
    })
    .await;
    for t in [Transport::WsSpdy, Transport::Spdy] {
        let fwd = forwarder(&fake, "p", forced(t).with_sessions(1));
        let healthy = fwd.connect(ECHO).await.expect("connects");
        let mut failing = fwd.connect(FAILING_PORT).await.expect("streams open");
        let mut buf = Vec::new();
        let err = failing
            .read_to_end(&mut buf)
            .await
            .expect_err("the connection fails");
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<ConnectionError>())
            .unwrap_or_else(|| panic!("{t}: a ConnectionError inside, got {err:?}"));
        match inner {
            ConnectionError::Remote { message } => assert!(
                message.starts_with("error forwarding port 9999 to pod fake"),
                "{message}"
            ),
            other => panic!("{t}: expected the remote text, got {other:?}"),
        }
        assert_eq!(err.kind(), io::ErrorKind::Other);
        // Later reads keep failing the same way.
        let again = failing.read(&mut [0u8; 8]).await.expect_err("still failed");
        assert!(again.to_string().contains("error forwarding port 9999"));
        // The other connection, opened before, and a new one, after, both work.
        let e = echo_exchange(healthy, 5, 200_000, true)
            .await
            .expect("echo");
        assert!(e.exact());
        echo_ok(&fwd, 6, 1000, true).await;
        let stats = fwd.stats();
        assert_eq!(stats.sessions_opened, 1, "{t}: {stats:?}");
        assert_eq!(stats.sessions_lost, 0, "{t}: {stats:?}");
        assert_eq!(stats.connections_failed, 1, "{t}: {stats:?}");
    }
}

#[tokio::test]
async fn a_dead_session_is_redialed_transparently() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Serve,
        spdy: Answer::Serve,
        v4: Answer::Serve,
    })
    .await;
    for t in [Transport::WsSpdy, Transport::Spdy] {
        let fwd = forwarder(&fake, "p", forced(t).with_sessions(1));
        echo_ok(&fwd, 1, 1000, true).await;
        fwd.kill_sessions_for_test().await;
        echo_ok(&fwd, 2, 1000, true).await;
        let stats = fwd.stats();
        assert_eq!(stats.sessions_opened, 2, "{t}: {stats:?}");
        assert_eq!(stats.sessions_lost, 1, "{t}: {stats:?}");
        assert_eq!(stats.sessions_replaced, 1, "{t}: {stats:?}");
        assert_eq!(stats.sessions_alive, 1, "{t}: {stats:?}");
    }
}

/// Opens `n` connections that echo 4 KiB rounds until they fail; returns once each has done a
/// few rounds.
async fn endless_load(
    fwd: &PortForwarder,
    seed: u64,
    n: u64,
) -> tokio::task::JoinSet<io::Result<()>> {
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(n as usize);
    let mut load = tokio::task::JoinSet::new();
    for k in 0..n {
        let fwd = fwd.clone();
        let started = started_tx.clone();
        load.spawn(async move {
            let mut s = fwd.connect(ECHO).await.map_err(io::Error::other)?;
            let mut rng = common::Prng::new(seed * 1000 + k);
            let (mut buf, mut back) = (vec![0u8; 4096], vec![0u8; 4096]);
            for round in 0u64.. {
                rng.fill(&mut buf);
                tokio::io::AsyncWriteExt::write_all(&mut s, &buf).await?;
                s.read_exact(&mut back).await?;
                assert_eq!(buf, back, "echo is exact until the cut");
                if round == 2 {
                    let _ = started.send(()).await;
                }
            }
            Ok(())
        });
    }
    for _ in 0..n {
        started_rx.recv().await.expect("every connection runs");
    }
    load
}

#[tokio::test]
async fn sessions_cut_by_the_server_under_load_are_replaced() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Serve,
        spdy: Answer::Serve,
        v4: Answer::Serve,
    })
    .await;
    for (i, t) in [Transport::WsSpdy, Transport::Spdy].into_iter().enumerate() {
        let fwd = forwarder(&fake, "p", forced(t));
        let mut load = endless_load(&fwd, i as u64, 20).await;
        let before = fwd.stats();
        assert!(before.sessions_alive >= 1, "{t}: {before:?}");
        fake.cut_all();
        while let Some(r) = load.join_next().await {
            let err = r.expect("no panic").expect_err("a cut connection fails");
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::Other
                ),
                "{t}: {err:?}"
            );
        }
        for k in 0..20 {
            echo_ok(&fwd, 100 + k, 20_000, true).await;
        }
        let after = fwd.stats();
        assert!(
            after.sessions_lost >= before.sessions_alive as u64,
            "{t}: every session alive at the cut is lost: {before:?} {after:?}"
        );
        assert!(after.sessions_replaced >= 1, "{t}: {after:?}");
        assert!(after.sessions_alive >= 1, "{t}: {after:?}");
        assert_eq!(after.transport, Some(t));
    }
}

#[tokio::test]
async fn a_session_that_stops_answering_pings_is_replaced() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Serve,
        spdy: Answer::Serve,
        v4: Answer::Serve,
    })
    .await;
    for t in [Transport::WsSpdy, Transport::Spdy] {
        let options = forced(t).with_sessions(1).with_keepalive(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_millis(200),
        );
        let fwd = forwarder(&fake, "p", options);
        echo_ok(&fwd, 1, 1000, true).await;
        // The path goes silent without closing: only the keepalive can tell.
        fake.freeze_all();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while fwd.stats().sessions_lost == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{t}: the keepalive never declared the frozen session dead: {:?}",
                fwd.stats()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(fwd.stats().sessions_alive, 0, "{t}");
        echo_ok(&fwd, 2, 1000, true).await;
        let stats = fwd.stats();
        assert_eq!(stats.sessions_replaced, 1, "{t}: {stats:?}");
        assert_eq!(stats.sessions_alive, 1, "{t}: {stats:?}");
    }
}

#[tokio::test]
async fn a_burst_of_connections_spreads_over_the_pool() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Serve,
        spdy: Answer::Serve,
        v4: Answer::Serve,
    })
    .await;
    let fwd = forwarder(&fake, "p", forced(Transport::Spdy).with_sessions(2));
    let mut set = tokio::task::JoinSet::new();
    for k in 0..40 {
        let fwd = fwd.clone();
        set.spawn(async move { echo_ok(&fwd, k, 50_000, true).await });
    }
    while let Some(r) = set.join_next().await {
        r.expect("no panic");
    }
    let per_session = |n: usize| {
        fake.streams()
            .iter()
            .filter(|s| s.session == n && s.stream_type == "data")
            .count()
    };
    let (a, b) = (per_session(1), per_session(2));
    assert_eq!(a + b, 40);
    assert!(
        a >= 10 && b >= 10,
        "both sessions carry the burst: {a} + {b}"
    );
    assert_eq!(fwd.stats().sessions_opened, 2);
}

#[tokio::test]
async fn requests_name_kubeway_and_carry_tidy_queries() {
    let fake = FakeApi::start(Behaviour {
        ws_spdy: Answer::Refuse(400),
        spdy: Answer::Refuse(400),
        v4: Answer::Serve,
    })
    .await;
    let fwd = forwarder(&fake, "echo-1", forced(Transport::V4));
    echo_ok(&fwd, 5, 1000, false).await;
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for (path, agent) in &requests {
        assert!(!path.contains("?&"), "no `?&` in {path}");
        assert!(agent.starts_with("kubeway/"), "User-Agent {agent:?}");
    }
    assert!(
        requests
            .iter()
            .any(|(p, _)| p == "/api/v1/namespaces/default/pods/echo-1/portforward?ports=9000"),
        "{requests:?}"
    );
}
