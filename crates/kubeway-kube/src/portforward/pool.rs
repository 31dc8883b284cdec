//! [`PortForwarder`]: the per-pod pool of SPDY sessions, transport negotiation and memory, and
//! the opening of each connection's stream pair.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use kubeway_spdy::{Config, Role, Session, SessionError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::conn::{ConnGuard, PfStream};
use super::upgrade::{self, UpgradeError};
use super::{ForwardError, ForwardOptions, Transport};
use crate::{Cluster, KubeError};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counters behind [`ForwardStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) sessions_opened: AtomicU64,
    pub(crate) sessions_lost: AtomicU64,
    pub(crate) sessions_replaced: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_failed: AtomicU64,
    pub(crate) connections_active: AtomicUsize,
}

/// A snapshot of a [`PortForwarder`]'s pool, for status displays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwardStats {
    /// The transport that last worked (`None` before the first success).
    pub transport: Option<Transport>,
    /// SPDY sessions currently open in the pool.
    pub sessions_alive: usize,
    /// SPDY sessions opened so far.
    pub sessions_opened: u64,
    /// Sessions that died (closed, went away, stopped answering PINGs) and left the pool.
    pub sessions_lost: u64,
    /// Lost sessions that a new session has replaced.
    pub sessions_replaced: u64,
    /// Connections opened so far.
    pub connections_opened: u64,
    /// Connections open now.
    pub connections_active: usize,
    /// Connections the server failed with an error report.
    pub connections_failed: u64,
}

/// One SPDY session of the pool.
pub(crate) struct PooledSession {
    id: u64,
    session: Session,
    transport: Transport,
    /// The `requestid` of the next connection (per session, from 0, as client-go).
    next_request_id: AtomicU64,
}

/// What a dial produced.
#[derive(Clone)]
enum Dialed {
    Session(Arc<PooledSession>),
    /// Both SPDY transports were refused: use `v4.channel.k8s.io` per connection.
    V4,
}

type DialOutcome = Result<Dialed, ForwardError>;

struct DialInFlight {
    id: u64,
    rx: watch::Receiver<Option<DialOutcome>>,
    /// Connections waiting for this session.
    waiters: usize,
}

#[derive(Default)]
struct PoolState {
    sessions: Vec<Arc<PooledSession>>,
    dials: Vec<DialInFlight>,
    /// Lost sessions not yet replaced.
    lost_unreplaced: u64,
}

/// The transport that worked, shared by the forwarders of one cluster (see
/// [`PortForwarder::for_pod`]).
type Memory = Arc<Mutex<Option<Transport>>>;

struct Inner {
    client: kube::Client,
    namespace: String,
    pod: String,
    options: ForwardOptions,
    memory: Memory,
    state: Mutex<PoolState>,
    counters: Arc<Counters>,
    next_id: AtomicU64,
    /// Cancelled when the forwarder is dropped: stops the session watchers.
    cancel: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Opens port-forward connections to one pod, over a small pool of SPDY sessions (or one
/// `v4.channel.k8s.io` WebSocket per connection). Cheap to clone; clones share the pool.
///
/// Dropping the last clone stops taking new connections; connections already open keep their
/// session until they finish.
#[derive(Clone)]
pub struct PortForwarder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PortForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortForwarder")
            .field("namespace", &self.inner.namespace)
            .field("pod", &self.inner.pod)
            .field("transport", &self.inner.options.transport)
            .finish_non_exhaustive()
    }
}

/// Where a connection goes.
enum Route {
    Session(Arc<PooledSession>),
    V4,
}

/// Why opening a connection's streams failed.
enum OpenFailure {
    /// The session cannot open streams any more: take another.
    SessionDead(SessionError),
    /// The server refused the stream unprocessed (REFUSED_STREAM): safe to retry. A busy server
    /// does this under a burst; one that stopped taking streams does it every time.
    Refused(SessionError),
    /// This connection only.
    Connection(SessionError),
}

impl PortForwarder {
    /// A forwarder to `pod` in `namespace` of `cluster`. Nothing is dialed until
    /// [`PortForwarder::connect`].
    pub fn new(cluster: &Cluster, namespace: &str, pod: &str, options: ForwardOptions) -> Self {
        Self::build(
            cluster.client.clone(),
            namespace,
            pod,
            options,
            Arc::default(),
        )
    }

    fn build(
        client: kube::Client,
        namespace: &str,
        pod: &str,
        mut options: ForwardOptions,
        memory: Memory,
    ) -> Self {
        options.sessions = options.sessions.max(1);
        options.max_sessions = options.max_sessions.max(options.sessions);
        Self {
            inner: Arc::new(Inner {
                client,
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                options,
                memory,
                state: Mutex::default(),
                counters: Arc::default(),
                next_id: AtomicU64::new(0),
                cancel: CancellationToken::new(),
            }),
        }
    }

    /// A forwarder to another pod of the same cluster and namespace, with the same options,
    /// sharing what was learnt about which transport works (its pool is its own).
    pub fn for_pod(&self, pod: &str) -> Self {
        let i = &self.inner;
        Self::build(
            i.client.clone(),
            &i.namespace,
            pod,
            i.options.clone(),
            Arc::clone(&i.memory),
        )
    }

    /// The pod.
    pub fn pod(&self) -> &str {
        &self.inner.pod
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The options in use.
    pub fn options(&self) -> &ForwardOptions {
        &self.inner.options
    }

    /// Opens one connection to `localhost:port` in the pod.
    ///
    /// On a SPDY transport this opens two streams on the least busy live session of the pool
    /// (dialing one if the pool is not full yet); if that session turns out to be dead, a new
    /// one is dialed and the connection retried once. A stream the server refuses unprocessed
    /// is retried once as is; a session that refuses it twice is treated as dead. Errors name
    /// what to do: a 403 names the RBAC verb the transport needs, a 404 the missing pod.
    pub async fn connect(&self, port: u16) -> Result<PfStream, KubeError> {
        if port == 0 {
            return Err(ForwardError::InvalidPort.into());
        }
        let inner = &self.inner;
        let mut redialed = false;
        let mut refused_by: Option<u64> = None;
        loop {
            let session = match inner.acquire().await? {
                Route::V4 => return inner.connect_v4(port).await,
                Route::Session(s) => s,
            };
            match open_pair(&session, port).await {
                Ok((data, error)) => {
                    let guard = ConnGuard::new(Arc::clone(&inner.counters));
                    return Ok(PfStream::spdy(data, error, session.transport, guard));
                }
                Err(OpenFailure::SessionDead(e)) if !redialed => {
                    tracing::debug!(error = %e, pod = %inner.pod, "session dead; redialing once");
                    inner.discard(session.id);
                    redialed = true;
                }
                Err(OpenFailure::Refused(e)) if refused_by.is_none() => {
                    tracing::debug!(error = %e, pod = %inner.pod, "stream refused; retrying once");
                    refused_by = Some(session.id);
                }
                Err(OpenFailure::Refused(e)) if refused_by == Some(session.id) && !redialed => {
                    tracing::debug!(error = %e, pod = %inner.pod, "session refuses streams; redialing once");
                    inner.discard(session.id);
                    redialed = true;
                }
                Err(
                    OpenFailure::SessionDead(e)
                    | OpenFailure::Refused(e)
                    | OpenFailure::Connection(e),
                ) => {
                    return Err(ForwardError::OpenStreams {
                        pod: inner.pod.clone(),
                        port,
                        source: Arc::new(e),
                    }
                    .into());
                }
            }
        }
    }

    /// A snapshot of the pool.
    pub fn stats(&self) -> ForwardStats {
        let inner = &self.inner;
        let c = &inner.counters;
        let sessions_alive = lock(&inner.state)
            .sessions
            .iter()
            .filter(|s| !s.session.is_closed())
            .count();
        ForwardStats {
            transport: *lock(&inner.memory),
            sessions_alive,
            sessions_opened: c.sessions_opened.load(Ordering::Relaxed),
            sessions_lost: c.sessions_lost.load(Ordering::Relaxed),
            sessions_replaced: c.sessions_replaced.load(Ordering::Relaxed),
            connections_opened: c.connections_opened.load(Ordering::Relaxed),
            connections_active: c.connections_active.load(Ordering::Relaxed),
            connections_failed: c.connections_failed.load(Ordering::Relaxed),
        }
    }

    /// Closes every pooled session at once (their connections fail), as a dead network would.
    /// For tests of session replacement.
    #[doc(hidden)]
    pub async fn kill_sessions_for_test(&self) {
        let sessions = lock(&self.inner.state).sessions.clone();
        for s in sessions {
            s.session.close().await;
        }
    }
}

/// Opens the error stream (half-closed at once: this side never writes on it) and the data
/// stream of one connection, under the session's next request id.
async fn open_pair(
    s: &PooledSession,
    port: u16,
) -> Result<(kubeway_spdy::Stream, kubeway_spdy::Stream), OpenFailure> {
    let request_id = s
        .next_request_id
        .fetch_add(1, Ordering::Relaxed)
        .to_string();
    let port = port.to_string();
    let headers = |stream_type: &str| {
        vec![
            ("streamtype".to_string(), stream_type.to_string()),
            ("port".to_string(), port.clone()),
            ("requestid".to_string(), request_id.clone()),
        ]
    };
    // Both SYN_STREAMs leave at once; the server pairs them by request id.
    let (error, data) = futures::future::join(
        s.session.open_stream(headers("error"), true),
        s.session.open_stream(headers("data"), false),
    )
    .await;
    match (error, data) {
        (Ok(error), Ok(data)) => Ok((data, error)),
        (Err(e), _) | (_, Err(e)) => Err(classify(e)),
    }
}

fn classify(e: SessionError) -> OpenFailure {
    match e {
        SessionError::Closed(_)
        | SessionError::GoingAway
        | SessionError::StreamIdsExhausted
        | SessionError::OpenStreamGoneAway { .. }
        | SessionError::OpenStreamTimeout { .. }
        | SessionError::PingTimeout => OpenFailure::SessionDead(e),
        SessionError::OpenStreamReset { status, .. }
            if status == kubeway_spdy::RstStatus::REFUSED_STREAM =>
        {
            OpenFailure::Refused(e)
        }
        _ => OpenFailure::Connection(e),
    }
}

impl Inner {
    /// The transport to use without dialing, when it is already decided.
    fn fixed_route(&self) -> Option<Route> {
        match self.options.transport {
            Transport::V4 => Some(Route::V4),
            Transport::Auto if *lock(&self.memory) == Some(Transport::V4) => Some(Route::V4),
            _ => None,
        }
    }

    /// A live session (the least busy), dialing to fill the pool, or the v4 route.
    async fn acquire(self: &Arc<Self>) -> Result<Route, ForwardError> {
        if let Some(route) = self.fixed_route() {
            return Ok(route);
        }
        let mut rx = {
            let mut st = lock(&self.state);
            self.prune(&mut st);
            let cap = 2 * self.options.connections_per_session.max(1);
            // A session is free when it takes more streams and its reader is not held up by a
            // consumer that stopped reading (everything on it would wait behind that one).
            let free = |s: &PooledSession| {
                s.session.active_streams() < cap
                    && s.session
                        .paused_for()
                        .is_none_or(|p| p < self.options.stalled_after)
            };
            let pooled = st.sessions.len() + st.dials.len();
            let below_minimum = pooled < self.options.sessions;
            let all_busy = st.dials.is_empty()
                && !st.sessions.iter().any(|s| free(s))
                && pooled < self.options.max_sessions;
            if below_minimum || all_busy {
                self.start_dial(&mut st);
            }
            // The least loaded of the free sessions and the sessions being dialed (two streams
            // per connection, waiting or open), so a burst spreads over the pool as it fills.
            let st = &mut *st;
            let session = st
                .sessions
                .iter()
                .filter(|s| free(s))
                .map(|s| (s.session.active_streams(), s))
                .min_by_key(|(load, _)| *load)
                .or_else(|| {
                    // Nothing free and no room to dial: the least loaded anyway, unless a
                    // dial is on its way.
                    if st.dials.is_empty() {
                        st.sessions
                            .iter()
                            .map(|s| (s.session.active_streams(), s))
                            .min_by_key(|(load, _)| *load)
                    } else {
                        None
                    }
                });
            let dial = st.dials.iter_mut().min_by_key(|d| d.waiters);
            match (session, dial) {
                (Some((load, _)), Some(d)) if 2 * d.waiters < load => {
                    d.waiters += 1;
                    d.rx.clone()
                }
                (Some((_, s)), _) => return Ok(Route::Session(Arc::clone(s))),
                (None, Some(d)) => {
                    d.waiters += 1;
                    d.rx.clone()
                }
                (None, None) => {
                    return Err(ForwardError::DialAbandoned {
                        pod: self.pod.clone(),
                    });
                }
            }
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(Dialed::Session(s))) => Ok(Route::Session(s)),
            Some(Ok(Dialed::V4)) => Ok(Route::V4),
            Some(Err(e)) => {
                // Another session may have come up meanwhile.
                let st = lock(&self.state);
                match st
                    .sessions
                    .iter()
                    .filter(|s| !s.session.is_closed())
                    .min_by_key(|s| s.session.active_streams())
                {
                    Some(s) => Ok(Route::Session(Arc::clone(s))),
                    None => Err(e),
                }
            }
            None => Err(ForwardError::DialAbandoned {
                pod: self.pod.clone(),
            }),
        }
    }

    /// Drops dead sessions from the pool.
    fn prune(&self, st: &mut PoolState) {
        let before = st.sessions.len();
        st.sessions
            .retain(|s| !s.session.is_closed() && !s.session.peer_went_away());
        let lost = (before - st.sessions.len()) as u64;
        if lost > 0 {
            st.lost_unreplaced += lost;
            self.counters
                .sessions_lost
                .fetch_add(lost, Ordering::Relaxed);
        }
    }

    /// Drops one session from the pool (it stays open for the connections it carries).
    fn discard(&self, id: u64) {
        let mut st = lock(&self.state);
        let before = st.sessions.len();
        st.sessions.retain(|s| s.id != id);
        if st.sessions.len() < before {
            st.lost_unreplaced += 1;
            self.counters.sessions_lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts dialing one session in the background; the result joins the pool.
    fn start_dial(self: &Arc<Self>, st: &mut PoolState) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        st.dials.push(DialInFlight { id, rx, waiters: 0 });
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = inner.dial(id).await;
            {
                let mut st = lock(&inner.state);
                st.dials.retain(|d| d.id != id);
                if let Ok(Dialed::Session(s)) = &outcome {
                    st.sessions.push(Arc::clone(s));
                    inner
                        .counters
                        .sessions_opened
                        .fetch_add(1, Ordering::Relaxed);
                    if st.lost_unreplaced > 0 {
                        st.lost_unreplaced -= 1;
                        inner
                            .counters
                            .sessions_replaced
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    inner.watch(Arc::clone(s));
                }
            }
            tx.send_replace(Some(outcome));
        });
    }

    /// Removes the session from the pool as soon as it closes.
    fn watch(self: &Arc<Self>, s: Arc<PooledSession>) {
        let weak: Weak<Inner> = Arc::downgrade(self);
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                reason = s.session.closed() => {
                    tracing::debug!(%reason, session = s.id, "port-forward session closed");
                }
                () = cancel.cancelled() => return,
            }
            if let Some(inner) = weak.upgrade() {
                inner.discard(s.id);
            }
        });
    }

    /// Dials one session with the configured transport, or negotiates one for `auto`.
    async fn dial(&self, id: u64) -> DialOutcome {
        let chain: &[Transport] = match self.options.transport {
            Transport::WsSpdy => &[Transport::WsSpdy],
            Transport::Spdy => &[Transport::Spdy],
            Transport::V4 => return Ok(Dialed::V4),
            Transport::Auto => match *lock(&self.memory) {
                Some(Transport::Spdy) => &[Transport::Spdy],
                Some(Transport::V4) => return Ok(Dialed::V4),
                _ => &[Transport::WsSpdy, Transport::Spdy],
            },
        };
        for &transport in chain {
            match self.upgrade(transport).await {
                Ok(session) => {
                    *lock(&self.memory) = Some(transport);
                    tracing::debug!(%transport, pod = %self.pod, session = id, "port-forward session open");
                    return Ok(Dialed::Session(Arc::new(PooledSession {
                        id,
                        session,
                        transport,
                        next_request_id: AtomicU64::new(0),
                    })));
                }
                Err(e) if self.options.transport == Transport::Auto && e.falls_back() => {
                    tracing::debug!(%transport, error = ?e, "port-forward transport refused; falling back");
                    let mut memory = lock(&self.memory);
                    if *memory == Some(transport) {
                        *memory = None;
                    }
                }
                Err(e) => return Err(self.forward_error(transport, e)),
            }
        }
        Ok(Dialed::V4)
    }

    /// Upgrades one HTTP connection and starts a SPDY session on it.
    async fn upgrade(&self, transport: Transport) -> Result<Session, UpgradeError> {
        let config = {
            let mut c = Config::default()
                .with_keepalive(
                    self.options.keepalive_interval,
                    self.options.keepalive_timeout,
                )
                .with_syn_reply_timeout(self.options.open_timeout);
            c.ping_timeout = self.options.keepalive_timeout;
            // A stream may hold 4 MiB unread before the session waits for its reader, and a
            // session 16 MiB: memory per pod stays bounded by max_sessions × 16 MiB, and a
            // reader that stops reading is waited for, never cut (no stall limit).
            c.stream_recv_buffer = 4 << 20;
            c.session_recv_buffer = 16 << 20;
            c.stall_timeout = None;
            c
        };
        let (session, incoming) = match transport {
            Transport::WsSpdy => {
                let io = upgrade::ws_spdy(&self.client, &self.namespace, &self.pod).await?;
                Session::new(io, Role::Client, config)
            }
            _ => {
                let io = upgrade::spdy(&self.client, &self.namespace, &self.pod).await?;
                Session::new(io, Role::Client, config)
            }
        };
        // The server never opens streams toward the client in port-forward.
        drop(incoming);
        Ok(session)
    }

    /// Opens one `v4.channel.k8s.io` WebSocket for one connection.
    async fn connect_v4(&self, port: u16) -> Result<PfStream, KubeError> {
        let ws = upgrade::v4(&self.client, &self.namespace, &self.pod, port)
            .await
            .map_err(|e| self.forward_error(Transport::V4, e))?;
        *lock(&self.memory) = Some(Transport::V4);
        let guard = ConnGuard::new(Arc::clone(&self.counters));
        Ok(PfStream::v4(super::v4::V4Stream::new(ws, port), guard))
    }

    fn forward_error(&self, transport: Transport, e: UpgradeError) -> ForwardError {
        let namespace = self.namespace.clone();
        let pod = self.pod.clone();
        match e {
            UpgradeError::Refused { status, message } => ForwardError::UpgradeRefused {
                namespace,
                pod,
                transport,
                status,
                message,
            },
            UpgradeError::NotSelected { detail } => {
                ForwardError::ProtocolNotSelected { transport, detail }
            }
            UpgradeError::Unauthorized { message } => {
                ForwardError::Unauthorized { transport, message }
            }
            UpgradeError::Forbidden { message } => {
                let (verb, note) = match transport {
                    Transport::Spdy => ("create", ""),
                    _ => (
                        "get",
                        " (API servers 1.35 and later also need `create` for WebSocket upgrades)",
                    ),
                };
                ForwardError::Forbidden {
                    namespace,
                    pod,
                    transport,
                    verb,
                    message,
                    note,
                }
            }
            UpgradeError::NotFound => ForwardError::PodNotFound { namespace, pod },
            UpgradeError::InvalidName { what, name } => ForwardError::InvalidName { what, name },
            UpgradeError::Request(source) => ForwardError::Request {
                pod,
                transport,
                source: Arc::new(source),
            },
            UpgradeError::TakeOver(source) => ForwardError::TakeOver {
                transport,
                source: Arc::new(source),
            },
            UpgradeError::Handshake { detail } => ForwardError::Handshake { transport, detail },
        }
    }
}
