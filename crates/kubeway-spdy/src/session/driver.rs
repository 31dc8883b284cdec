//! The session's background tasks: the frame reader/dispatcher, the single transport writer and
//! the keepalive watchdog.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tracing::{debug, trace, warn};

use super::stream::{DataOutcome, IncomingStream, StreamShared};
use super::{Handle, Keepalive, Outgoing, Shared, lock};
use crate::codec::{FrameDecoder, FrameEncoder};
use crate::error::{CloseReason, DecodeError, EncodeError, SessionError};
use crate::frame::{
    DataFrame, Frame, GoAway, GoAwayStatus, HeadersFrame, Ping, RstStatus, RstStream, SynReply,
    SynStream,
};

/// Spare capacity kept in the read buffer before each transport read.
const READ_RESERVE: usize = 64 * 1024;
/// The writer stops gathering queued frames into one write at this size.
const WRITE_BATCH: usize = 64 * 1024;
/// Frames at least this large are written straight from their own buffer.
const DIRECT_WRITE: usize = 16 * 1024;
/// How long a closing writer may spend flushing what was queued.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Sleeps for the stall limit, or forever when there is none.
async fn stall_limit(limit: Option<Duration>) {
    match limit {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

/// The reader stopped because the session is shutting down.
struct Shutdown;

pub(super) async fn run_reader<R>(
    shared: Arc<Shared>,
    io: R,
    handle: Weak<Handle>,
    incoming: mpsc::Sender<IncomingStream>,
) where
    R: AsyncRead + Unpin,
{
    let mut reader = Reader {
        decoder: FrameDecoder::with_limits(shared.config.decoder_limits),
        shared: Arc::clone(&shared),
        handle,
        incoming,
    };
    reader.run(io).await;
    // Release the incoming queue so `Incoming::next` ends.
    drop(reader);
    shared.task_finished();
}

struct Reader {
    shared: Arc<Shared>,
    decoder: FrameDecoder,
    handle: Weak<Handle>,
    incoming: mpsc::Sender<IncomingStream>,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(&mut self, mut io: R) {
        loop {
            loop {
                match self.decoder.decode() {
                    Ok(Some(frame)) => {
                        if self.dispatch(frame).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) if e.is_fatal() => {
                        warn!(
                            error = &e as &dyn std::error::Error,
                            "undecodable SPDY input"
                        );
                        self.shared.begin_close(
                            CloseReason::Protocol(Arc::new(e)),
                            Some(GoAwayStatus::PROTOCOL_ERROR),
                        );
                        return;
                    }
                    Err(e) => self.on_frame_error(e),
                }
            }
            let buf = self.decoder.buffer_mut();
            if buf.capacity() - buf.len() < READ_RESERVE / 2 {
                buf.reserve(READ_RESERVE);
            }
            let read = tokio::select! {
                biased;
                () = self.shared.shutdown.cancelled() => return,
                read = io.read_buf(self.decoder.buffer_mut()) => read,
            };
            match read {
                Ok(0) => {
                    debug!("SPDY peer closed the transport");
                    self.shared.begin_close(CloseReason::PeerClosed, None);
                    return;
                }
                Ok(_) => {
                    let now = self.shared.elapsed_ms();
                    self.shared.last_rx_ms.store(now, Ordering::Relaxed);
                }
                Err(e) => {
                    self.shared.begin_close(CloseReason::Io(Arc::new(e)), None);
                    return;
                }
            }
        }
    }

    fn lookup(&self, id: u32) -> Option<Arc<StreamShared>> {
        lock(&self.shared.state).streams.get(&id).cloned()
    }

    fn send_rst(&self, stream_id: u32, status: RstStatus) {
        self.shared
            .send_prio(Frame::RstStream(RstStream { stream_id, status }));
    }

    /// A frame that decoded but broke a rule; the byte stream is still in sync.
    fn on_frame_error(&self, e: DecodeError) {
        debug!(error = &e as &dyn std::error::Error, "rejected SPDY frame");
        let Some(id) = e.stream_id().filter(|id| *id != 0) else {
            return;
        };
        match self.lookup(id) {
            Some(stream) => {
                if stream.reset_for_protocol_error(&self.shared) {
                    self.send_rst(id, RstStatus::PROTOCOL_ERROR);
                }
                self.shared.remove_stream(id);
            }
            // A SYN_STREAM with a bad header block: refuse the stream it tried to open.
            None => self.send_rst(id, RstStatus::PROTOCOL_ERROR),
        }
    }

    async fn dispatch(&mut self, frame: Frame) -> Result<(), Shutdown> {
        match frame {
            Frame::Data(data) => return self.on_data(data).await,
            Frame::SynStream(syn) => self.on_syn_stream(syn),
            Frame::SynReply(reply) => self.on_syn_reply(reply),
            Frame::RstStream(rst) => self.on_rst_stream(rst),
            Frame::Headers(headers) => self.on_headers(headers),
            Frame::Ping(ping) => self.on_ping(ping),
            Frame::GoAway(goaway) => self.on_goaway(goaway),
            Frame::Settings(_) | Frame::WindowUpdate(_) | Frame::Unknown(_) => {
                trace!(frame = frame.name(), "ignoring SPDY frame");
            }
        }
        Ok(())
    }

    async fn on_data(&mut self, data: DataFrame) -> Result<(), Shutdown> {
        let Some(stream) = self.lookup(data.stream_id) else {
            trace!(
                stream_id = data.stream_id,
                "DATA for unknown stream dropped"
            );
            return Ok(());
        };
        match stream.push_data(data.data, data.fin, &self.shared.buffered) {
            DataOutcome::Queued { retired } => {
                if retired {
                    self.shared.remove_stream(stream.id());
                }
                self.apply_backpressure(&stream).await
            }
            DataOutcome::Dropped => Ok(()),
            DataOutcome::AfterFin => {
                debug!(stream_id = stream.id(), "DATA after FIN dropped");
                Ok(())
            }
        }
    }

    /// Pauses reading while `stream` or the session holds too much unread data; see the module
    /// docs for the policy.
    async fn apply_backpressure(&self, stream: &Arc<StreamShared>) -> Result<(), Shutdown> {
        let config = &self.shared.config;
        let stream_limit = config.stream_recv_buffer;
        let session_limit = config.session_recv_buffer;
        if stream.recv_len() <= stream_limit
            && self.shared.buffered.load(Ordering::SeqCst) <= session_limit
        {
            return Ok(());
        }
        debug!(
            stream_id = stream.id(),
            "inbound buffer full; pausing transport reads"
        );
        let now = self.shared.elapsed_ms();
        self.shared.paused_since_ms.store(now, Ordering::SeqCst);
        self.shared.reader_paused.store(true, Ordering::SeqCst);
        let result = loop {
            let notified = self.shared.progress.notified();
            let stream_len = stream.recv_len();
            let total = self.shared.buffered.load(Ordering::SeqCst);
            if stream_len <= stream_limit / 2 && total <= session_limit / 2 {
                break Ok(());
            }
            tokio::select! {
                biased;
                () = self.shared.shutdown.cancelled() => break Err(Shutdown),
                () = notified => {}
                // A stall limit, when one is set, counts from the last progress.
                () = stall_limit(config.stall_timeout) => {
                    let culprit = if stream_len > stream_limit / 2 {
                        Some(Arc::clone(stream))
                    } else {
                        self.largest_backlog()
                    };
                    match culprit {
                        Some(culprit) => self.reset_stalled(&culprit),
                        // The backlog belongs to streams already dropped or reset.
                        None => break Ok(()),
                    }
                }
            }
        };
        self.shared.reader_paused.store(false, Ordering::SeqCst);
        result
    }

    fn largest_backlog(&self) -> Option<Arc<StreamShared>> {
        let st = lock(&self.shared.state);
        st.streams
            .values()
            .map(|s| (s.recv_len(), s))
            .filter(|(len, _)| *len > 0)
            .max_by_key(|(len, _)| *len)
            .map(|(_, s)| Arc::clone(s))
    }

    fn reset_stalled(&self, stream: &Arc<StreamShared>) {
        warn!(
            stream_id = stream.id(),
            "stream consumer stalled with a full buffer; resetting it"
        );
        if stream.reset_for_overflow(&self.shared) {
            self.send_rst(stream.id(), RstStatus::FLOW_CONTROL_ERROR);
        }
        self.shared.remove_stream(stream.id());
    }

    fn on_syn_stream(&mut self, syn: SynStream) {
        let id = syn.stream_id;
        let stream = {
            let mut st = lock(&self.shared.state);
            if self.shared.role.owns(id) || id <= st.last_peer_stream_id {
                drop(st);
                debug!(stream_id = id, "SYN_STREAM with invalid stream id");
                self.send_rst(id, RstStatus::PROTOCOL_ERROR);
                return;
            }
            st.last_peer_stream_id = id;
            if st.closed.is_some() || st.goaway_sent {
                drop(st);
                self.send_rst(id, RstStatus::REFUSED_STREAM);
                return;
            }
            let stream = StreamShared::new_incoming(id, syn.fin, syn.unidirectional);
            st.streams.insert(id, Arc::clone(&stream));
            stream
        };
        let Some(handle) = self.handle.upgrade() else {
            self.send_rst(id, RstStatus::REFUSED_STREAM);
            self.shared.remove_stream(id);
            return;
        };
        let incoming = IncomingStream::new(
            handle,
            stream,
            syn.headers,
            syn.priority,
            syn.fin,
            syn.unidirectional,
        );
        if let Err(e) = self.incoming.try_send(incoming) {
            debug!(
                stream_id = id,
                "incoming stream not accepted (backlog full or closed)"
            );
            // Dropping the stream refuses it.
            drop(e);
        }
    }

    fn on_syn_reply(&self, reply: SynReply) {
        let Some(stream) = self.lookup(reply.stream_id) else {
            trace!(stream_id = reply.stream_id, "SYN_REPLY for unknown stream");
            return;
        };
        match stream.on_reply(reply.headers, reply.fin) {
            Some(true) => self.shared.remove_stream(stream.id()),
            Some(false) => {}
            None => debug!(stream_id = stream.id(), "unexpected SYN_REPLY ignored"),
        }
    }

    fn on_rst_stream(&self, rst: RstStream) {
        let Some(stream) = self.lookup(rst.stream_id) else {
            return;
        };
        debug!(stream_id = rst.stream_id, status = %rst.status, "stream reset by peer");
        stream.on_peer_reset(rst.status);
        self.shared.remove_stream(rst.stream_id);
    }

    fn on_headers(&self, headers: HeadersFrame) {
        if !headers.fin {
            trace!(stream_id = headers.stream_id, "HEADERS ignored");
            return;
        }
        if let Some(stream) = self.lookup(headers.stream_id)
            && stream.on_peer_fin()
        {
            self.shared.remove_stream(stream.id());
        }
    }

    fn on_ping(&self, ping: Ping) {
        if self.shared.role.owns(ping.id) {
            if let Some(tx) = lock(&self.shared.state).pings.remove(&ping.id) {
                let _ = tx.send(());
            }
        } else {
            self.shared.send_prio(Frame::Ping(ping));
        }
    }

    fn on_goaway(&self, goaway: GoAway) {
        debug!(
            last_good_stream_id = goaway.last_good_stream_id,
            status = %goaway.status,
            "peer sent GOAWAY"
        );
        let unprocessed: Vec<_> = {
            let mut st = lock(&self.shared.state);
            st.goaway_received = Some(goaway.status);
            let role = self.shared.role;
            let ids: Vec<u32> = st
                .streams
                .keys()
                .copied()
                .filter(|id| role.owns(*id) && *id > goaway.last_good_stream_id)
                .collect();
            ids.iter().filter_map(|id| st.streams.remove(id)).collect()
        };
        for stream in unprocessed {
            stream.on_gone_away();
        }
        let st = lock(&self.shared.state);
        self.shared.maybe_finish_draining(st);
    }
}

enum Item {
    Frame(Frame),
    Data(bytes::Bytes, Option<OwnedSemaphorePermit>),
}

impl From<Outgoing> for Item {
    fn from(item: Outgoing) -> Self {
        match item {
            Outgoing::Frame(frame) => Item::Frame(frame),
            Outgoing::Data { bytes, _permit } => Item::Data(bytes, _permit),
        }
    }
}

struct Writer<W> {
    io: W,
    encoder: FrameEncoder,
    out: BytesMut,
    permits: Vec<OwnedSemaphorePermit>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    /// Adds an item to the pending batch, writing directly when it is large.
    async fn push(&mut self, item: Item) -> Result<(), WriteFailure> {
        match item {
            Item::Frame(frame) => {
                trace!(frame = frame.name(), stream_id = ?frame.stream_id(), "writing frame");
                if let Err(e) = self.encoder.encode(&frame, &mut self.out) {
                    return Err(WriteFailure::Encode(e));
                }
            }
            Item::Data(bytes, permit) => {
                if bytes.len() >= DIRECT_WRITE {
                    self.write_out().await?;
                    self.io.write_all(&bytes).await.map_err(WriteFailure::Io)?;
                } else {
                    self.out.extend_from_slice(&bytes);
                }
                self.permits.extend(permit);
            }
        }
        Ok(())
    }

    async fn write_out(&mut self) -> Result<(), WriteFailure> {
        if !self.out.is_empty() {
            self.io
                .write_all(&self.out)
                .await
                .map_err(WriteFailure::Io)?;
            self.out.clear();
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), WriteFailure> {
        self.write_out().await?;
        self.io.flush().await.map_err(WriteFailure::Io)?;
        self.permits.clear();
        Ok(())
    }
}

enum WriteFailure {
    Io(io::Error),
    Encode(EncodeError),
}

/// How the writer's main loop ended.
enum WriterExit {
    /// The session is closing; drain the queues until `deadline`.
    Closing {
        deadline: Instant,
    },
    /// The session is closing but the transport did not take the last batch in time.
    Stuck,
    Failed(WriteFailure),
}

/// Writes one batch: `first`, plus whatever else is already queued (up to [`WRITE_BATCH`]),
/// then flushes.
async fn write_batch<W: AsyncWrite + Unpin>(
    writer: &mut Writer<W>,
    first: Item,
    prio: &mut mpsc::UnboundedReceiver<Frame>,
    ordered: &mut mpsc::UnboundedReceiver<Outgoing>,
) -> Result<(), WriteFailure> {
    writer.push(first).await?;
    while writer.out.len() < WRITE_BATCH {
        if let Ok(frame) = prio.try_recv() {
            writer.push(Item::Frame(frame)).await?;
        } else if let Ok(item) = ordered.try_recv() {
            writer.push(item.into()).await?;
        } else {
            break;
        }
    }
    writer.flush().await
}

pub(super) async fn run_writer<W>(
    shared: Arc<Shared>,
    io: W,
    mut prio: mpsc::UnboundedReceiver<Frame>,
    mut ordered: mpsc::UnboundedReceiver<Outgoing>,
) where
    W: AsyncWrite + Unpin,
{
    let mut writer = Writer {
        io,
        encoder: FrameEncoder::new(),
        out: BytesMut::with_capacity(WRITE_BATCH),
        permits: Vec::new(),
    };
    let exit = loop {
        let first = tokio::select! {
            biased;
            Some(frame) = prio.recv() => Item::Frame(frame),
            Some(item) = ordered.recv() => item.into(),
            () = shared.shutdown.cancelled() => {
                break WriterExit::Closing { deadline: Instant::now() + CLOSE_FLUSH_TIMEOUT };
            }
        };
        let batch = write_batch(&mut writer, first, &mut prio, &mut ordered);
        tokio::pin!(batch);
        let result = tokio::select! {
            biased;
            result = &mut batch => result,
            () = shared.shutdown.cancelled() => {
                // Never abandon a half-written frame while the peer may still be reading:
                // finish the batch within the close deadline, then drain.
                let deadline = Instant::now() + CLOSE_FLUSH_TIMEOUT;
                match tokio::time::timeout_at(deadline, &mut batch).await {
                    Ok(Ok(())) => break WriterExit::Closing { deadline },
                    Ok(Err(e)) => Err(e),
                    Err(_) => break WriterExit::Stuck,
                }
            }
        };
        if let Err(e) = result {
            break WriterExit::Failed(e);
        }
    };
    match exit {
        WriterExit::Closing { deadline } => {
            // Send what is already queued (GOAWAY included), then shut the transport down.
            let drain = async {
                while let Ok(frame) = prio.try_recv() {
                    writer.push(Item::Frame(frame)).await?;
                }
                while let Ok(item) = ordered.try_recv() {
                    writer.push(item.into()).await?;
                }
                writer.flush().await?;
                writer.io.shutdown().await.map_err(WriteFailure::Io)
            };
            match tokio::time::timeout_at(deadline, drain).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => debug!("transport failed while flushing the closing SPDY session"),
                Err(_) => debug!("timed out flushing the closing SPDY session"),
            }
        }
        WriterExit::Stuck => debug!("transport stopped accepting data; closing without flush"),
        WriterExit::Failed(WriteFailure::Io(e)) => {
            debug!(
                error = &e as &dyn std::error::Error,
                "SPDY transport write failed"
            );
            shared.begin_close(CloseReason::Io(Arc::new(e)), None);
        }
        WriterExit::Failed(WriteFailure::Encode(e)) => {
            warn!(
                error = &e as &dyn std::error::Error,
                "cannot encode SPDY frame"
            );
            shared.begin_close(CloseReason::Encode(Arc::new(e)), None);
        }
    }
    drop(writer);
    shared.task_finished();
}

pub(super) async fn run_keepalive(shared: Arc<Shared>, keepalive: Keepalive) {
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(keepalive.interval) => {}
        }
        let sent_ms = shared.elapsed_ms();
        let sent_at = Instant::now();
        match shared.ping(keepalive.timeout).await {
            Ok(rtt) => trace!(?rtt, "keepalive PING answered"),
            Err(SessionError::PingTimeout) => {
                let heard_since = shared.last_rx_ms.load(Ordering::Relaxed) > sent_ms;
                let paused = shared.reader_paused.load(Ordering::SeqCst);
                if heard_since || paused {
                    debug!(waited = ?sent_at.elapsed(), "PING unanswered but the peer is alive");
                    continue;
                }
                warn!(timeout = ?keepalive.timeout, "keepalive PING unanswered; closing session");
                shared.begin_close(CloseReason::PingTimeout, Some(GoAwayStatus::OK));
                return;
            }
            Err(_) => return,
        }
    }
}
