//! Streams: the state one stream shares between the session tasks and the application, and the
//! application-facing [`Stream`] and [`IncomingStream`] handles.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio_util::sync::PollSemaphore;

use super::{Handle, Outgoing, Session, Shared, lock};
use crate::codec::encode_data_frame;
use crate::error::{CloseReason, SessionError, StreamError};
use crate::frame::{Frame, Headers, RstStatus, RstStream, SynReply};
use crate::header_block::validate_headers;

/// Why opening a stream failed, as reported by the reader task.
pub(crate) enum OpenFailure {
    Reset(RstStatus),
    GoneAway,
    Closed(CloseReason),
}

type ReplySender = oneshot::Sender<Result<Headers, OpenFailure>>;

/// How a stream ended abnormally.
#[derive(Clone, Copy, Debug)]
enum Termination {
    ResetByPeer(RstStatus),
    ResetLocally(RstStatus),
    Overflow,
    /// The peer's GOAWAY says it never processed the stream.
    GoneAway,
}

impl Termination {
    fn to_error(self) -> StreamError {
        match self {
            Termination::ResetByPeer(status) => StreamError::ResetByPeer { status },
            Termination::ResetLocally(status) => StreamError::ResetLocally { status },
            Termination::Overflow => StreamError::InboundOverflow,
            Termination::GoneAway => StreamError::ResetByPeer {
                status: RstStatus::REFUSED_STREAM,
            },
        }
    }

    fn is_local(self) -> bool {
        matches!(self, Termination::ResetLocally(_) | Termination::Overflow)
    }
}

struct StreamState {
    recv: VecDeque<Bytes>,
    recv_len: usize,
    peer_fin: bool,
    local_fin: bool,
    termination: Option<Termination>,
    session_closed: Option<CloseReason>,
    read_waker: Option<Waker>,
    reply: Option<ReplySender>,
}

impl StreamState {
    fn wake_reader(&mut self) {
        if let Some(waker) = self.read_waker.take() {
            waker.wake();
        }
    }

    fn finished(&self) -> bool {
        self.local_fin && self.peer_fin
    }

    /// Whether the session can forget the stream: finished both ways and fully read. Streams with
    /// unread data stay in the table so back-pressure can see (and, if stalled, reset) them.
    fn retired(&self) -> bool {
        self.finished() && self.recv_len == 0
    }

    /// Whether this side may still send RST_STREAM for the stream.
    fn resettable(&self) -> bool {
        self.termination.is_none() && self.session_closed.is_none() && !self.finished()
    }

    fn take_recv(&mut self) -> usize {
        self.recv.clear();
        std::mem::take(&mut self.recv_len)
    }
}

/// What the reader did with a DATA frame.
pub(crate) enum DataOutcome {
    /// Queued for the application; `retired` if the session can forget the stream.
    Queued { retired: bool },
    /// The stream was already reset or closed; the data was dropped.
    Dropped,
    /// DATA after the peer's FIN.
    AfterFin,
}

/// State of one stream, shared by the session tasks and the stream handle.
pub(crate) struct StreamShared {
    id: u32,
    state: Mutex<StreamState>,
}

impl StreamShared {
    fn new(id: u32, peer_fin: bool, local_fin: bool, reply: Option<ReplySender>) -> Arc<Self> {
        Arc::new(Self {
            id,
            state: Mutex::new(StreamState {
                recv: VecDeque::new(),
                recv_len: 0,
                peer_fin,
                local_fin,
                termination: None,
                session_closed: None,
                read_waker: None,
                reply,
            }),
        })
    }

    pub(crate) fn new_outgoing(id: u32, fin: bool, reply: ReplySender) -> Arc<Self> {
        Self::new(id, false, fin, Some(reply))
    }

    pub(crate) fn new_incoming(id: u32, peer_fin: bool, unidirectional: bool) -> Arc<Self> {
        Self::new(id, peer_fin, unidirectional, None)
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn recv_len(&self) -> usize {
        lock(&self.state).recv_len
    }

    /// Queues inbound data; `buffered` (the session total) is raised under the stream lock so a
    /// concurrent reader can never release bytes before they were counted.
    pub(crate) fn push_data(&self, data: Bytes, fin: bool, buffered: &AtomicUsize) -> DataOutcome {
        let mut st = lock(&self.state);
        if st.termination.is_some() || st.session_closed.is_some() {
            return DataOutcome::Dropped;
        }
        if st.peer_fin {
            return DataOutcome::AfterFin;
        }
        if !data.is_empty() {
            buffered.fetch_add(data.len(), Ordering::SeqCst);
            st.recv_len += data.len();
            st.recv.push_back(data);
        }
        st.peer_fin |= fin;
        st.wake_reader();
        DataOutcome::Queued {
            retired: st.retired(),
        }
    }

    /// Delivers SYN_REPLY to the opener. Returns `None` if no reply was expected, else whether the
    /// stream is now retired.
    pub(crate) fn on_reply(&self, headers: Headers, fin: bool) -> Option<bool> {
        let mut st = lock(&self.state);
        let tx = st.reply.take()?;
        st.peer_fin |= fin;
        let _ = tx.send(Ok(headers));
        st.wake_reader();
        Some(st.retired())
    }

    /// Applies a FIN carried by HEADERS. Returns whether the stream is now retired.
    pub(crate) fn on_peer_fin(&self) -> bool {
        let mut st = lock(&self.state);
        st.peer_fin = true;
        st.wake_reader();
        st.retired()
    }

    pub(crate) fn on_peer_reset(&self, status: RstStatus) {
        self.terminate(Termination::ResetByPeer(status), OpenFailure::Reset(status));
    }

    pub(crate) fn on_gone_away(&self) {
        self.terminate(Termination::GoneAway, OpenFailure::GoneAway);
    }

    fn terminate(&self, termination: Termination, failure: OpenFailure) {
        let mut st = lock(&self.state);
        if st.termination.is_none() {
            st.termination = Some(termination);
        }
        if let Some(tx) = st.reply.take() {
            let _ = tx.send(Err(failure));
        }
        st.wake_reader();
    }

    pub(crate) fn on_session_closed(&self, reason: &CloseReason) {
        let mut st = lock(&self.state);
        st.session_closed = Some(reason.clone());
        if let Some(tx) = st.reply.take() {
            let _ = tx.send(Err(OpenFailure::Closed(reason.clone())));
        }
        st.wake_reader();
    }

    /// Resets the stream from this side. Returns the unread bytes it dropped, or `None` if the
    /// stream was already reset, finished or its session closed (nothing to send).
    fn reset_locally(&self, termination: Termination) -> Option<usize> {
        let mut st = lock(&self.state);
        if !st.resettable() {
            return None;
        }
        st.termination = Some(termination);
        if let Some(tx) = st.reply.take() {
            let status = match termination {
                Termination::ResetLocally(status) | Termination::ResetByPeer(status) => status,
                Termination::Overflow => RstStatus::FLOW_CONTROL_ERROR,
                Termination::GoneAway => RstStatus::REFUSED_STREAM,
            };
            let _ = tx.send(Err(OpenFailure::Reset(status)));
        }
        let freed = st.take_recv();
        st.wake_reader();
        Some(freed)
    }

    /// Resets the stream because its consumer stalled with a full buffer. Returns whether an
    /// RST_STREAM must be sent.
    pub(crate) fn reset_for_overflow(&self, shared: &Shared) -> bool {
        self.reset_from_session(shared, Termination::Overflow)
    }

    /// Resets the stream because the peer broke a protocol rule on it. Returns whether an
    /// RST_STREAM must be sent.
    pub(crate) fn reset_for_protocol_error(&self, shared: &Shared) -> bool {
        self.reset_from_session(shared, Termination::ResetLocally(RstStatus::PROTOCOL_ERROR))
    }

    fn reset_from_session(&self, shared: &Shared, termination: Termination) -> bool {
        match self.reset_locally(termination) {
            Some(freed) => {
                shared.release_buffered(freed);
                true
            }
            None => false,
        }
    }
}

/// Resets a stream whose [`Session::open_stream`] did not complete.
pub(crate) struct OpenGuard {
    shared: Arc<Shared>,
    stream: Arc<StreamShared>,
    armed: bool,
}

impl OpenGuard {
    pub(crate) fn new(shared: Arc<Shared>, stream: Arc<StreamShared>) -> Self {
        Self {
            shared,
            stream,
            armed: true,
        }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let status = RstStatus::CANCEL;
        if let Some(freed) = self.stream.reset_locally(Termination::ResetLocally(status)) {
            self.shared.release_buffered(freed);
            self.shared.send_prio(Frame::RstStream(RstStream {
                stream_id: self.stream.id,
                status,
            }));
        }
        self.shared.remove_stream(self.stream.id);
    }
}

/// One bidirectional SPDY stream: `AsyncRead` yields the peer's DATA, `AsyncWrite` sends DATA.
///
/// - Reading returns EOF after the peer's FIN and fails with `io::ErrorKind::ConnectionReset`
///   ([`StreamError::ResetByPeer`]) after the peer's RST_STREAM (data that arrived before the
///   reset is still returned first).
/// - Writing completes once the DATA frame is queued; `poll_flush` is a no-op;
///   `poll_shutdown` half-closes (empty DATA with FLAG_FIN) and keeps reading possible.
/// - Dropping a stream that is not finished in both directions resets it with CANCEL, after
///   any data already written. Call `shutdown` and read to EOF for a clean close.
pub struct Stream {
    handle: Arc<Handle>,
    inner: Arc<StreamShared>,
    headers: Headers,
    permits: PollSemaphore,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.inner.id)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Stream {
    pub(crate) fn new(handle: Arc<Handle>, inner: Arc<StreamShared>, headers: Headers) -> Self {
        let permits = PollSemaphore::new(Arc::clone(&handle.shared.write_budget));
        Self {
            handle,
            inner,
            headers,
            permits,
        }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// The peer's headers: its SYN_REPLY for streams this side opened, its SYN_STREAM for
    /// accepted ones.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The session this stream belongs to.
    pub fn session(&self) -> Session {
        Session {
            handle: Arc::clone(&self.handle),
        }
    }

    /// Aborts the stream with RST_STREAM `status`, ahead of any queued data. Unread data is
    /// dropped; later reads and writes fail with [`StreamError::ResetLocally`]. Does nothing if
    /// the stream already finished or was reset.
    pub fn reset(&self, status: RstStatus) {
        let shared = &self.handle.shared;
        if let Some(freed) = self.inner.reset_locally(Termination::ResetLocally(status)) {
            shared.release_buffered(freed);
            shared.send_prio(Frame::RstStream(RstStream {
                stream_id: self.inner.id,
                status,
            }));
            shared.remove_stream(self.inner.id);
        }
    }

    fn write_error(&self) -> Option<io::Error> {
        let st = lock(&self.inner.state);
        if let Some(t) = st.termination {
            return Some(t.to_error().into_io());
        }
        if let Some(reason) = &st.session_closed {
            return Some(StreamError::SessionClosed(reason.clone()).into_io());
        }
        if st.local_fin {
            return Some(StreamError::WriteAfterClose.into_io());
        }
        None
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = lock(&this.inner.state);
        if st.recv_len > 0 {
            let mut copied = 0;
            while buf.remaining() > 0 {
                let Some(front) = st.recv.front_mut() else {
                    break;
                };
                let n = front.len().min(buf.remaining());
                buf.put_slice(&front[..n]);
                front.advance(n);
                if front.is_empty() {
                    st.recv.pop_front();
                }
                copied += n;
            }
            st.recv_len -= copied;
            let retired = st.retired();
            drop(st);
            let shared = &this.handle.shared;
            shared.release_buffered(copied);
            if retired {
                shared.remove_stream(this.inner.id);
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match st.termination {
            Some(t) if t.is_local() => return Poll::Ready(Err(t.to_error().into_io())),
            _ => {}
        }
        if st.peer_fin {
            return Poll::Ready(Ok(()));
        }
        if let Some(t) = st.termination {
            return Poll::Ready(Err(t.to_error().into_io()));
        }
        if let Some(reason) = &st.session_closed {
            return Poll::Ready(Err(StreamError::SessionClosed(reason.clone()).into_io()));
        }
        match &st.read_waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => st.read_waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        if let Some(e) = this.write_error() {
            return Poll::Ready(Err(e));
        }
        let shared = &this.handle.shared;
        let n = buf.len().min(shared.config.max_data_frame_size);
        // `max_data_frame_size` is clamped to fit u32 and the write budget.
        let permits = u32::try_from(n).unwrap_or(u32::MAX);
        let permit = match this.permits.poll_acquire_many(cx, permits) {
            Poll::Ready(Some(permit)) => permit,
            Poll::Ready(None) => {
                let reason = shared.close_reason().unwrap_or(CloseReason::Local);
                return Poll::Ready(Err(StreamError::SessionClosed(reason).into_io()));
            }
            Poll::Pending => return Poll::Pending,
        };
        if let Some(e) = this.write_error() {
            return Poll::Ready(Err(e));
        }
        let bytes = encode_data_frame(this.inner.id, false, &buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        shared.send_ordered(Outgoing::Data {
            bytes,
            _permit: Some(permit),
        });
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let shared = &this.handle.shared;
        let retired = {
            let mut st = lock(&this.inner.state);
            if st.local_fin {
                return Poll::Ready(Ok(()));
            }
            if let Some(t) = st.termination {
                return Poll::Ready(Err(t.to_error().into_io()));
            }
            if let Some(reason) = &st.session_closed {
                return Poll::Ready(Err(StreamError::SessionClosed(reason.clone()).into_io()));
            }
            st.local_fin = true;
            let bytes = encode_data_frame(this.inner.id, true, &[])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            shared.send_ordered(Outgoing::Data {
                bytes,
                _permit: None,
            });
            st.retired()
        };
        if retired {
            shared.remove_stream(this.inner.id);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let shared = &self.handle.shared;
        let (freed, send_rst) = {
            let mut st = lock(&self.inner.state);
            let send_rst = st.resettable();
            if send_rst {
                st.termination = Some(Termination::ResetLocally(RstStatus::CANCEL));
            }
            (st.take_recv(), send_rst)
        };
        shared.release_buffered(freed);
        if send_rst {
            // On the ordered queue, so data written before the drop still goes out first.
            shared.send_ordered(Outgoing::Frame(Frame::RstStream(RstStream {
                stream_id: self.inner.id,
                status: RstStatus::CANCEL,
            })));
        }
        shared.remove_stream(self.inner.id);
    }
}

/// A stream the peer opened, waiting for [`IncomingStream::accept`] or
/// [`IncomingStream::reject`]. Dropping it rejects it with REFUSED_STREAM.
pub struct IncomingStream {
    handle: Arc<Handle>,
    inner: Arc<StreamShared>,
    headers: Headers,
    priority: u8,
    fin: bool,
    unidirectional: bool,
    answered: bool,
}

impl std::fmt::Debug for IncomingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingStream")
            .field("id", &self.inner.id)
            .field("headers", &self.headers)
            .field("fin", &self.fin)
            .finish_non_exhaustive()
    }
}

impl IncomingStream {
    pub(crate) fn new(
        handle: Arc<Handle>,
        inner: Arc<StreamShared>,
        headers: Headers,
        priority: u8,
        fin: bool,
        unidirectional: bool,
    ) -> Self {
        Self {
            handle,
            inner,
            headers,
            priority,
            fin,
            unidirectional,
            answered: false,
        }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// The headers of the peer's SYN_STREAM.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The SYN_STREAM priority (0 highest, 7 lowest).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Whether the peer half-closed the stream in its SYN_STREAM (it will send no data).
    pub fn is_fin(&self) -> bool {
        self.fin
    }

    /// Whether the peer forbade this side from sending (FLAG_UNIDIRECTIONAL; no SYN_REPLY).
    pub fn is_unidirectional(&self) -> bool {
        self.unidirectional
    }

    /// Accepts the stream by sending SYN_REPLY with `headers` (names are lowercased). With `fin`,
    /// this side sends no data. If the headers are invalid the stream is refused.
    pub fn accept(
        mut self,
        headers: Vec<(String, String)>,
        fin: bool,
    ) -> Result<Stream, SessionError> {
        let headers = Headers::from(headers);
        validate_headers(&headers).map_err(SessionError::InvalidHeaders)?;
        self.answered = true;
        let shared = &self.handle.shared;
        let retired = {
            let mut st = lock(&self.inner.state);
            if let Some(reason) = &st.session_closed {
                return Err(SessionError::Closed(reason.clone()));
            }
            if !self.unidirectional && st.termination.is_none() {
                // Ordered queue: the reply leaves before any DATA the application writes.
                shared.send_ordered(Outgoing::Frame(Frame::SynReply(SynReply {
                    stream_id: self.inner.id,
                    fin,
                    headers,
                })));
                st.local_fin |= fin;
            }
            st.retired()
        };
        if retired {
            shared.remove_stream(self.inner.id);
        }
        Ok(Stream::new(
            Arc::clone(&self.handle),
            Arc::clone(&self.inner),
            std::mem::take(&mut self.headers),
        ))
    }

    /// Refuses the stream with RST_STREAM `status`.
    pub fn reject(mut self, status: RstStatus) {
        self.answered = true;
        self.refuse(status);
    }

    fn refuse(&self, status: RstStatus) {
        let shared = &self.handle.shared;
        if let Some(freed) = self.inner.reset_locally(Termination::ResetLocally(status)) {
            shared.release_buffered(freed);
            shared.send_prio(Frame::RstStream(RstStream {
                stream_id: self.inner.id,
                status,
            }));
        }
        shared.remove_stream(self.inner.id);
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        if !self.answered {
            self.refuse(RstStatus::REFUSED_STREAM);
        }
    }
}
