//! Accept-and-carry through a router: each local connection is routed to a ready endpoint,
//! carried with [`kubeway_net::carry`], and its end classified (completed, failed before it
//! reached the app, cut, aborted by the client), counted and reported.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kubeway_kube::ConnectionError;
use kubeway_net::{Accepted, CarryOptions, Ending, Stats};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::conn::RoutedConn;
use crate::event::{ConnectionReport, End, Event};
use crate::router::{Router, error_chain};

/// How long open connections may finish after the accept loop is stopped.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Accepts on `listener` until `cancel` and carries each connection through `router`; counts
/// in `stats`, reports every connection that did not complete. Open connections get [`DRAIN`]
/// after `cancel`, then are reset.
pub fn serve_routed(
    listener: TcpListener,
    router: Arc<Router>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let live = stats.clone();
    tokio::spawn(kubeway_net::serve(
        listener,
        cancel,
        stats,
        DRAIN,
        move |a: Accepted| {
            let router = router.clone();
            let live = live.clone();
            async move { carry_one(router, a, local, &live).await.outcome() }
        },
    ))
}

/// Routes and carries one accepted connection; returns how it ended.
pub async fn carry_one(router: Arc<Router>, a: Accepted, local: SocketAddr, live: &Stats) -> End {
    let report = |end: End, pod: Option<String>, retried: Vec<String>, up, down, error| {
        if end != End::Completed {
            router.emit(Event::Connection(ConnectionReport {
                local,
                peer: a.peer,
                target: router.resolved().target.clone(),
                remote: router.resolved().remote(),
                pod,
                retried,
                end,
                up,
                down,
                error,
            }));
        }
    };
    let opened = tokio::select! {
        c = RoutedConn::open(router.clone()) => c,
        _ = a.kill.cancelled() => {
            kubeway_net::reset(a.tcp);
            report(End::Failed, None, Vec::new(), 0, 0, Some("kubeway stopped before a pod was reached".into()));
            return End::Failed;
        }
    };
    let mut conn = match opened {
        Ok(c) => c,
        Err(e) => {
            kubeway_net::reset(a.tcp);
            report(End::Failed, None, Vec::new(), 0, 0, Some(e.to_string()));
            return End::Failed;
        }
    };
    let options = CarryOptions {
        idle_after_local_eof: (!conn.can_half_close()).then_some(router.half_close_idle),
        ..CarryOptions::default()
    };
    let kill = a.kill.clone();
    let stop = async move {
        kill.cancelled().await;
        "kubeway stopped while the connection was open".to_string()
    };
    let done = kubeway_net::carry(a.tcp, &mut conn, options, stop, Some(live)).await;
    let pod = conn.endpoint().pod.clone();
    router.counted(&pod);
    let retried = conn.retried().to_vec();
    let (end, error) = match &done.ending {
        Ending::Complete => (End::Completed, None),
        Ending::LocalFailed(e) => (
            End::Aborted,
            Some(format!(
                "the local client ended the connection abnormally: {e}"
            )),
        ),
        Ending::Stopped(why) => (End::Cut, Some(why.clone())),
        Ending::RemoteFailed(e) => {
            let refused = !conn.answered()
                && ConnectionError::of(e).is_some_and(ConnectionError::is_dial_failure);
            (
                if refused { End::Failed } else { End::Cut },
                Some(error_chain(e)),
            )
        }
    };
    drop(conn);
    report(end, Some(pod), retried, done.up, done.down, error);
    end
}
