//! The multiplexed SPDY/3 session: stream lifecycle, PING, GOAWAY, keepalive and back-pressure.
//!
//! [`Session::new`] takes any `AsyncRead + AsyncWrite` transport and spawns two tasks on the
//! current tokio runtime: a **reader** that decodes frames and dispatches them, and a **writer**
//! that owns the header compressor and is the only thing writing to the transport. A third task
//! runs only when [`Config::keepalive`] is set.
//!
//! # Outbound path
//!
//! [`Stream`] writes are cut into DATA frames of at most [`Config::max_data_frame_size`] bytes.
//! Each frame is encoded into one buffer in `poll_write` (one allocation and one copy) and queued
//! for the writer; the write completes as soon as the frame is queued. Queued DATA bytes are
//! bounded by [`Config::write_buffer`] (a byte semaphore whose permits travel with each frame and
//! are released once the writer has written it), so a fast writer is slowed to the speed of the
//! socket. The writer coalesces small frames into one write, writes large frames directly, and
//! never splits a frame across two write calls of its own. Session-level frames (SYN_STREAM,
//! PING, PING answers, GOAWAY, explicit RST_STREAM) use a separate unbounded priority queue so
//! they overtake queued data; frames whose order matters relative to a stream's data (SYN_REPLY,
//! the FIN, the RST_STREAM sent when a stream is dropped) share the data queue.
//!
//! # Inbound back-pressure (without WINDOW_UPDATE)
//!
//! Widely deployed peers (the Go moby/spdystream package) ignore SPDY flow control: they never
//! send WINDOW_UPDATE and never wait for one, so the only way to slow a peer is to stop reading
//! the socket, which stalls every stream of the session (head-of-line blocking). The design balances memory against that
//! stall:
//!
//! 1. The reader never blocks on a stream: DATA is appended to the stream's queue at once (the
//!    payload is a zero-copy slice of the read buffer) and its bytes are accounted per stream and
//!    per session. A slow consumer therefore never delays frames for other streams, PING answers
//!    or SYN_REPLYs, as long as it stays within its budget.
//! 2. When one stream holds more than [`Config::stream_recv_buffer`] unread bytes, or the session
//!    holds more than [`Config::session_recv_buffer`], the reader pauses reading the socket
//!    until the backlog has drained to half of the limit. This is real TCP back-pressure on the
//!    peer, at the cost of briefly stalling the other streams.
//! 3. A pause lasts as long as the consumer keeps the backlog above half the limit: that is
//!    back-pressure, and it never loses data (the peer's TCP send buffer fills and the peer
//!    waits, as spdystream's own blocking reader makes it wait). What it costs is that every
//!    stream of the session waits meanwhile, so callers that care route new streams away from a
//!    paused session ([`Session::paused_for`]) and cap the streams per session. Only when
//!    [`Config::stall_timeout`] is set (it is not by default) is a pause bounded: if no consumer
//!    makes any progress for that long, the stalled stream (or, for the session limit, the
//!    stream with the largest backlog) is reset with `FLOW_CONTROL_ERROR`, its buffer dropped,
//!    and reading resumes; its reader sees [`crate::StreamError::InboundOverflow`], never EOF.
//!
//! So memory is bounded by roughly the session limit plus one frame, a slow consumer throttles
//! the whole session (spread heavy streams over several sessions if that matters), and nothing
//! is dropped unless the caller asked for a stall limit. The keepalive watchdog treats a paused
//! reader as alive.
//!
//! # Other frames
//!
//! HEADERS frames are accepted; their FIN flag is honoured, their headers are not surfaced.
//! SETTINGS, WINDOW_UPDATE, NOOP, CREDENTIAL and unknown control frames are ignored, and this
//! side sends none of them. DATA for unknown or closed streams is dropped. Unlike spdystream,
//! DATA that arrives before the application accepted a stream (or before SYN_REPLY) is kept.
//!
//! # Lifecycle
//!
//! The session closes when [`Session::close`] is called, when every [`Session`], [`Incoming`],
//! [`Stream`] and [`IncomingStream`] handle is dropped, when the transport fails or reaches EOF,
//! on undecodable input (GOAWAY PROTOCOL_ERROR is sent), when the keepalive gets no answer, or
//! after a GOAWAY (sent or received) once the last stream has finished.

mod driver;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::codec::DecoderLimits;
use crate::error::{CloseReason, SessionError};
use crate::frame::{Frame, GoAway, GoAwayStatus, Headers, MAX_STREAM_ID, Ping, SynStream};
use crate::header_block::validate_headers;

pub use stream::{IncomingStream, Stream};
use stream::{OpenFailure, StreamShared};

/// Which end of the connection this session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The connection initiator: odd stream and ping ids, starting at 1.
    Client,
    /// The acceptor: even stream and ping ids, starting at 2.
    Server,
}

impl Role {
    fn first_id(self) -> u32 {
        match self {
            Role::Client => 1,
            Role::Server => 2,
        }
    }

    /// Whether `id` has this role's parity.
    fn owns(self, id: u32) -> bool {
        (id % 2 == 1) == (self == Role::Client)
    }
}

/// Keepalive watchdog settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Time between PINGs.
    pub interval: Duration,
    /// How long to wait for the answer (or any other frame) before declaring the session dead.
    pub timeout: Duration,
}

/// Session tunables. Start from [`Config::default`] and adjust fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// How long [`Session::open_stream`] waits for SYN_REPLY (default 30 s, the common Go client default).
    pub syn_reply_timeout: Duration,
    /// How long [`Session::ping`] waits for the answer (default 30 s).
    pub ping_timeout: Duration,
    /// Optional keepalive watchdog (default off).
    pub keepalive: Option<Keepalive>,
    /// Largest DATA payload written per frame (default 32 KiB).
    pub max_data_frame_size: usize,
    /// DATA bytes that may wait in the outbound queue before writers block (default 4 MiB).
    pub write_buffer: usize,
    /// Unread inbound bytes per stream before the reader pauses (default 8 MiB).
    pub stream_recv_buffer: usize,
    /// Unread inbound bytes per session before the reader pauses (default 64 MiB).
    pub session_recv_buffer: usize,
    /// How long a paused reader waits for any consumer progress before resetting the stalled
    /// stream; `None` (the default) waits as long as it takes, which is lossless back-pressure.
    pub stall_timeout: Option<Duration>,
    /// Incoming streams that may wait for the application before further ones are refused
    /// (default 256).
    pub accept_backlog: usize,
    /// Limits for decoding peer frames.
    pub decoder_limits: DecoderLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            syn_reply_timeout: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(30),
            keepalive: None,
            max_data_frame_size: 32 * 1024,
            write_buffer: 4 << 20,
            stream_recv_buffer: 8 << 20,
            session_recv_buffer: 64 << 20,
            stall_timeout: None,
            accept_backlog: 256,
            decoder_limits: DecoderLimits::default(),
        }
    }
}

impl Config {
    /// Sets [`Config::keepalive`].
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Some(Keepalive { interval, timeout });
        self
    }

    /// Sets [`Config::syn_reply_timeout`].
    pub fn with_syn_reply_timeout(mut self, timeout: Duration) -> Self {
        self.syn_reply_timeout = timeout;
        self
    }

    /// Normalises values that would otherwise deadlock or misbehave.
    fn sanitized(mut self) -> Self {
        let max_frame = crate::frame::MAX_FRAME_LENGTH as usize;
        self.write_buffer = self.write_buffer.clamp(1, Semaphore::MAX_PERMITS);
        self.max_data_frame_size = self
            .max_data_frame_size
            .clamp(1, max_frame)
            .min(self.write_buffer)
            .min(u32::MAX as usize);
        self.stream_recv_buffer = self.stream_recv_buffer.max(1);
        self.session_recv_buffer = self.session_recv_buffer.max(1);
        self.accept_backlog = self.accept_backlog.max(1);
        self
    }
}

/// An item on the ordered outbound queue.
pub(crate) enum Outgoing {
    /// A control frame that must stay in order with stream data.
    Frame(Frame),
    /// An encoded DATA frame and the write-budget permits it holds.
    Data {
        bytes: Bytes,
        _permit: Option<OwnedSemaphorePermit>,
    },
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct State {
    streams: HashMap<u32, Arc<StreamShared>>,
    /// Next id for a stream we open; 0 once exhausted.
    next_stream_id: u32,
    next_ping_id: u32,
    pings: HashMap<u32, oneshot::Sender<()>>,
    goaway_sent: bool,
    goaway_received: Option<GoAwayStatus>,
    last_peer_stream_id: u32,
    closed: Option<CloseReason>,
}

pub(crate) struct Shared {
    role: Role,
    config: Config,
    state: Mutex<State>,
    prio_tx: mpsc::UnboundedSender<Frame>,
    ordered_tx: mpsc::UnboundedSender<Outgoing>,
    write_budget: Arc<Semaphore>,
    shutdown: CancellationToken,
    terminated: watch::Sender<bool>,
    tasks_alive: AtomicUsize,
    /// Unread inbound DATA bytes across all streams.
    buffered: AtomicUsize,
    reader_paused: AtomicBool,
    /// Milliseconds since `epoch` when the current pause began (meaningful while paused).
    paused_since_ms: AtomicU64,
    progress: Notify,
    epoch: Instant,
    /// Milliseconds since `epoch` at the last successful transport read.
    last_rx_ms: AtomicU64,
}

impl Shared {
    fn send_prio(&self, frame: Frame) {
        // Fails only once the writer is gone, when nothing can be sent anyway.
        let _ = self.prio_tx.send(frame);
    }

    fn send_ordered(&self, item: Outgoing) {
        let _ = self.ordered_tx.send(item);
    }

    fn close_reason(&self) -> Option<CloseReason> {
        lock(&self.state).closed.clone()
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Releases `bytes` of inbound accounting and wakes a paused reader.
    fn release_buffered(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.buffered.fetch_sub(bytes, Ordering::SeqCst);
        if self.reader_paused.load(Ordering::SeqCst) {
            self.progress.notify_one();
        }
    }

    /// Removes a finished or reset stream from the table and closes the session if it is
    /// draining after GOAWAY and this was the last stream.
    fn remove_stream(&self, id: u32) {
        let mut st = lock(&self.state);
        st.streams.remove(&id);
        self.maybe_finish_draining(st);
    }

    fn maybe_finish_draining(&self, st: MutexGuard<'_, State>) {
        if st.closed.is_some() || !st.streams.is_empty() {
            return;
        }
        let reason = if let Some(status) = st.goaway_received {
            CloseReason::GoAway { status }
        } else if st.goaway_sent {
            CloseReason::Local
        } else {
            return;
        };
        drop(st);
        self.begin_close(reason, None);
    }

    /// Starts closing the session: optionally queues GOAWAY, fails every pending operation and
    /// stream, and tells the tasks to stop. Idempotent.
    fn begin_close(&self, reason: CloseReason, goaway: Option<GoAwayStatus>) {
        let streams = {
            let mut st = lock(&self.state);
            if st.closed.is_some() {
                return;
            }
            debug!(role = ?self.role, %reason, "closing SPDY session");
            st.closed = Some(reason.clone());
            if let Some(status) = goaway
                && !st.goaway_sent
            {
                st.goaway_sent = true;
                self.send_prio(Frame::GoAway(GoAway {
                    last_good_stream_id: st.last_peer_stream_id,
                    status,
                }));
            }
            st.pings.clear();
            st.streams.drain().map(|(_, s)| s).collect::<Vec<_>>()
        };
        for stream in streams {
            stream.on_session_closed(&reason);
        }
        self.write_budget.close();
        self.shutdown.cancel();
    }

    fn task_finished(&self) {
        if self.tasks_alive.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.terminated.send_replace(true);
        }
    }

    async fn ping(&self, timeout: Duration) -> Result<Duration, SessionError> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = lock(&self.state);
            if let Some(reason) = &st.closed {
                return Err(SessionError::Closed(reason.clone()));
            }
            let id = st.next_ping_id;
            st.next_ping_id = if id >= 0x7fff_fffd {
                self.role.first_id()
            } else {
                id + 2
            };
            st.pings.insert(id, tx);
            self.send_prio(Frame::Ping(Ping { id }));
            id
        };
        let start = Instant::now();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(start.elapsed()),
            Ok(Err(_)) => Err(SessionError::Closed(
                self.close_reason().unwrap_or(CloseReason::Local),
            )),
            Err(_) => {
                lock(&self.state).pings.remove(&id);
                Err(SessionError::PingTimeout)
            }
        }
    }
}

/// Keeps the session open while any user-facing handle exists.
pub(crate) struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared
            .begin_close(CloseReason::Local, Some(GoAwayStatus::OK));
    }
}

/// A handle to a SPDY/3 session. Cheap to clone; the session closes once every handle (and every
/// stream and [`Incoming`]) is dropped, or on [`Session::close`].
#[derive(Clone)]
pub struct Session {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.handle.shared.role)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Streams the peer opens, in arrival order. Dropping it makes the session refuse (RST_STREAM
/// REFUSED_STREAM) every further incoming stream.
pub struct Incoming {
    rx: mpsc::Receiver<IncomingStream>,
    _handle: Arc<Handle>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

impl Incoming {
    /// The next stream the peer opened, or `None` once the session has closed.
    pub async fn next(&mut self) -> Option<IncomingStream> {
        self.rx.recv().await
    }

    /// Poll form of [`Incoming::next`].
    pub fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<IncomingStream>> {
        self.rx.poll_recv(cx)
    }
}

impl Session {
    /// Starts a session over `io` and returns its handle and the queue of peer-opened streams.
    ///
    /// Must be called within a tokio runtime: the reader, writer (and keepalive) tasks are spawned
    /// onto it.
    pub fn new<T>(io: T, role: Role, config: Config) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = config.sanitized();
        let (prio_tx, prio_rx) = mpsc::unbounded_channel();
        let (ordered_tx, ordered_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming_rx) = mpsc::channel(config.accept_backlog);
        let shared = Arc::new(Shared {
            role,
            state: Mutex::new(State {
                streams: HashMap::new(),
                next_stream_id: role.first_id(),
                next_ping_id: role.first_id(),
                pings: HashMap::new(),
                goaway_sent: false,
                goaway_received: None,
                last_peer_stream_id: 0,
                closed: None,
            }),
            prio_tx,
            ordered_tx,
            write_budget: Arc::new(Semaphore::new(config.write_buffer)),
            shutdown: CancellationToken::new(),
            terminated: watch::Sender::new(false),
            tasks_alive: AtomicUsize::new(2),
            buffered: AtomicUsize::new(0),
            reader_paused: AtomicBool::new(false),
            paused_since_ms: AtomicU64::new(0),
            progress: Notify::new(),
            epoch: Instant::now(),
            last_rx_ms: AtomicU64::new(0),
            config,
        });
        let handle = Arc::new(Handle {
            shared: Arc::clone(&shared),
        });
        let (read_half, write_half) = tokio::io::split(io);
        tokio::spawn(driver::run_reader(
            Arc::clone(&shared),
            read_half,
            Arc::downgrade(&handle),
            incoming_tx,
        ));
        tokio::spawn(driver::run_writer(
            Arc::clone(&shared),
            write_half,
            prio_rx,
            ordered_rx,
        ));
        if let Some(keepalive) = shared.config.keepalive {
            tokio::spawn(driver::run_keepalive(Arc::clone(&shared), keepalive));
        }
        let incoming = Incoming {
            rx: incoming_rx,
            _handle: Arc::clone(&handle),
        };
        (Session { handle }, incoming)
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// This session's role.
    pub fn role(&self) -> Role {
        self.shared().role
    }

    /// Opens a stream: sends SYN_STREAM with `headers` (names are lowercased) and waits up to
    /// [`Config::syn_reply_timeout`] for the peer's SYN_REPLY. With `fin`, this side sends no
    /// data. Dropping the future before it completes resets the stream.
    pub async fn open_stream(
        &self,
        headers: Vec<(String, String)>,
        fin: bool,
    ) -> Result<Stream, SessionError> {
        let headers = Headers::from(headers);
        validate_headers(&headers).map_err(SessionError::InvalidHeaders)?;
        let shared = self.shared();
        let (tx, rx) = oneshot::channel();
        let stream = {
            let mut st = lock(&shared.state);
            if let Some(reason) = &st.closed {
                return Err(SessionError::Closed(reason.clone()));
            }
            if st.goaway_sent || st.goaway_received.is_some() {
                return Err(SessionError::GoingAway);
            }
            let id = st.next_stream_id;
            if id == 0 {
                return Err(SessionError::StreamIdsExhausted);
            }
            st.next_stream_id = id
                .checked_add(2)
                .filter(|n| *n <= MAX_STREAM_ID)
                .unwrap_or(0);
            let stream = StreamShared::new_outgoing(id, fin, tx);
            st.streams.insert(id, Arc::clone(&stream));
            // Queued under the lock so SYN_STREAMs leave in increasing id order.
            shared.send_prio(Frame::SynStream(SynStream {
                stream_id: id,
                associated_stream_id: 0,
                priority: 0,
                slot: 0,
                fin,
                unidirectional: false,
                headers,
            }));
            stream
        };
        let id = stream.id();
        let guard = stream::OpenGuard::new(Arc::clone(shared), Arc::clone(&stream));
        match tokio::time::timeout(shared.config.syn_reply_timeout, rx).await {
            Ok(Ok(Ok(reply_headers))) => {
                guard.disarm();
                Ok(Stream::new(Arc::clone(&self.handle), stream, reply_headers))
            }
            Ok(Ok(Err(OpenFailure::Reset(status)))) => Err(SessionError::OpenStreamReset {
                stream_id: id,
                status,
            }),
            Ok(Ok(Err(OpenFailure::GoneAway))) => {
                Err(SessionError::OpenStreamGoneAway { stream_id: id })
            }
            Ok(Ok(Err(OpenFailure::Closed(reason)))) => Err(SessionError::Closed(reason)),
            Ok(Err(_)) => Err(SessionError::Closed(
                shared.close_reason().unwrap_or(CloseReason::Local),
            )),
            Err(_) => Err(SessionError::OpenStreamTimeout { stream_id: id }),
        }
    }

    /// Sends a PING and returns the round-trip time once the peer echoes it, waiting at most
    /// [`Config::ping_timeout`].
    pub async fn ping(&self) -> Result<Duration, SessionError> {
        self.shared().ping(self.shared().config.ping_timeout).await
    }

    /// Sends GOAWAY and stops accepting new streams, but lets open streams finish; the session
    /// closes when the last one does.
    pub fn go_away(&self) {
        let shared = self.shared();
        let mut st = lock(&shared.state);
        if st.closed.is_some() || st.goaway_sent {
            return;
        }
        st.goaway_sent = true;
        shared.send_prio(Frame::GoAway(GoAway {
            last_good_stream_id: st.last_peer_stream_id,
            status: GoAwayStatus::OK,
        }));
        shared.maybe_finish_draining(st);
    }

    /// Closes the session now: sends GOAWAY, fails every stream, flushes what was queued, shuts
    /// the transport down, and returns once the tasks have stopped.
    pub async fn close(&self) {
        self.shared()
            .begin_close(CloseReason::Local, Some(GoAwayStatus::OK));
        self.closed().await;
    }

    /// Whether the session has started closing.
    pub fn is_closed(&self) -> bool {
        self.shared().shutdown.is_cancelled()
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared().close_reason()
    }

    /// Whether the peer sent GOAWAY.
    pub fn peer_went_away(&self) -> bool {
        lock(&self.shared().state).goaway_received.is_some()
    }

    /// Streams currently tracked: open, half-closed, awaiting reply or accept, or finished with
    /// data the application has not read yet.
    pub fn active_streams(&self) -> usize {
        lock(&self.shared().state).streams.len()
    }

    /// How long the reader has been paused on a full inbound buffer, or `None` while it reads.
    /// A session paused for long is held up by a slow consumer: every stream on it waits.
    pub fn paused_for(&self) -> Option<Duration> {
        let shared = self.shared();
        if !shared.reader_paused.load(Ordering::SeqCst) {
            return None;
        }
        let since = shared.paused_since_ms.load(Ordering::SeqCst);
        Some(Duration::from_millis(
            shared.elapsed_ms().saturating_sub(since),
        ))
    }

    /// Resolves once the session has closed and its tasks have stopped.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.shared().terminated.subscribe();
        // The sender lives in `Shared`, which `self` keeps alive, so this cannot fail.
        let _ = rx.wait_for(|done| *done).await;
        self.shared().close_reason().unwrap_or(CloseReason::Local)
    }
}

#[cfg(test)]
mod tests;
