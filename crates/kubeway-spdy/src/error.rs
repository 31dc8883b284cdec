//! Error types of the crate: framing (decode/encode), sessions, and per-stream I/O failures.
//!
//! Variants are named for the operation that failed. Decode errors say whether the byte stream
//! can still be decoded afterwards ([`DecodeError::is_fatal`]).

use std::sync::Arc;
use std::{fmt, io};

use crate::frame::{GoAwayStatus, RstStatus};

/// Why decoding a frame failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A control frame carried a version other than 3 (fatal).
    #[error("control frame has unsupported SPDY version {version} (expected 3)")]
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// The frame's length field exceeds the configured limit (fatal).
    #[error("frame length {length} exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The announced payload length.
        length: u32,
        /// The configured limit.
        limit: u32,
    },
    /// A fixed-size control frame has the wrong length, or a variable one is too short.
    #[error("{frame} frame has invalid length {length}")]
    InvalidFrameLength {
        /// The frame type name.
        frame: &'static str,
        /// The payload length found.
        length: u32,
    },
    /// A frame that must name a stream carried stream id 0.
    #[error("{frame} frame carries stream id 0")]
    ZeroStreamId {
        /// The frame type name.
        frame: &'static str,
    },
    /// SETTINGS announced more entries than its payload holds.
    #[error("SETTINGS frame announces {count} entries but its payload has {length} bytes")]
    SettingsCountMismatch {
        /// The announced count.
        count: u32,
        /// The payload length.
        length: u32,
    },
    /// zlib rejected a header block (fatal: the shared inflate context is lost).
    #[error("inflating the header block of stream {stream_id} failed")]
    InflateHeaderBlock {
        /// The stream the block belongs to.
        stream_id: u32,
        /// The zlib error.
        #[source]
        source: flate2::DecompressError,
    },
    /// The peer compressed its header blocks with another dictionary (fatal).
    #[error("header block uses zlib dictionary {found:#010x}, not the SPDY/3 dictionary")]
    HeaderDictionaryMismatch {
        /// The dictionary id from the zlib header.
        found: u32,
    },
    /// A header block inflated beyond the configured limit (fatal).
    #[error("header block of stream {stream_id} inflates beyond {limit} bytes")]
    HeaderBlockTooLarge {
        /// The stream the block belongs to.
        stream_id: u32,
        /// The configured limit.
        limit: usize,
    },
    /// The inflated header block does not follow the name/value layout.
    #[error("malformed header block on stream {stream_id}: {reason}")]
    MalformedHeaderBlock {
        /// The stream the block belongs to.
        stream_id: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// A header name contains uppercase ASCII, which SPDY/3 forbids.
    #[error("header name {name:?} on stream {stream_id} is not lowercase")]
    UppercaseHeaderName {
        /// The stream the block belongs to.
        stream_id: u32,
        /// The offending name.
        name: String,
    },
    /// A header name appears twice in one block.
    #[error("header name {name:?} appears twice on stream {stream_id}")]
    DuplicateHeaderName {
        /// The stream the block belongs to.
        stream_id: u32,
        /// The repeated name.
        name: String,
    },
    /// A header name or value is not UTF-8.
    #[error("header block of stream {stream_id} is not valid UTF-8")]
    NonUtf8Header {
        /// The stream the block belongs to.
        stream_id: u32,
    },
    /// An earlier fatal error left the decoder unable to find frame boundaries.
    #[error("decoder stopped after an earlier fatal error")]
    DecoderFailed,
}

impl DecodeError {
    /// Whether the decoder is unusable after this error. Non-fatal errors consumed exactly the
    /// offending frame (and kept the header inflate context in step), so decoding can continue.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            DecodeError::UnsupportedVersion { .. }
                | DecodeError::FrameTooLarge { .. }
                | DecodeError::InflateHeaderBlock { .. }
                | DecodeError::HeaderDictionaryMismatch { .. }
                | DecodeError::HeaderBlockTooLarge { .. }
                | DecodeError::DecoderFailed
        )
    }

    /// The stream a non-fatal header error belongs to, if any.
    pub fn stream_id(&self) -> Option<u32> {
        match self {
            DecodeError::MalformedHeaderBlock { stream_id, .. }
            | DecodeError::UppercaseHeaderName { stream_id, .. }
            | DecodeError::DuplicateHeaderName { stream_id, .. }
            | DecodeError::NonUtf8Header { stream_id }
            | DecodeError::InflateHeaderBlock { stream_id, .. }
            | DecodeError::HeaderBlockTooLarge { stream_id, .. } => Some(*stream_id),
            _ => None,
        }
    }
}

/// Why encoding a frame failed. Nothing is written to the output when this is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload does not fit in the 24-bit length field.
    #[error("{frame} payload of {length} bytes exceeds the maximum frame length")]
    FrameTooLarge {
        /// The frame type name.
        frame: &'static str,
        /// The payload length.
        length: usize,
    },
    /// A stream id does not fit in 31 bits.
    #[error("stream id {stream_id:#x} does not fit in 31 bits")]
    StreamIdOutOfRange {
        /// The offending id.
        stream_id: u32,
    },
    /// A frame that must name a stream was given stream id 0.
    #[error("{frame} frame needs a non-zero stream id")]
    ZeroStreamId {
        /// The frame type name.
        frame: &'static str,
    },
    /// SYN_STREAM priority above 7.
    #[error("priority {priority} is out of range 0..=7")]
    PriorityOutOfRange {
        /// The offending priority.
        priority: u8,
    },
    /// A SETTINGS id does not fit in 24 bits.
    #[error("settings id {id:#x} does not fit in 24 bits")]
    SettingIdOutOfRange {
        /// The offending id.
        id: u32,
    },
    /// A header name is empty, which SPDY/3 forbids.
    #[error("header names must not be empty")]
    EmptyHeaderName,
    /// zlib failed to compress a header block.
    #[error("deflating a header block failed")]
    DeflateHeaderBlock(#[source] flate2::CompressError),
}

/// Why a session ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The application closed it (or dropped every handle).
    Local,
    /// The peer sent GOAWAY and every remaining stream finished.
    GoAway {
        /// The status in the peer's GOAWAY.
        status: GoAwayStatus,
    },
    /// The peer closed the transport.
    PeerClosed,
    /// Reading or writing the transport failed.
    Io(Arc<io::Error>),
    /// The peer sent bytes that cannot be decoded.
    Protocol(Arc<DecodeError>),
    /// An outgoing header block could not be compressed.
    Encode(Arc<EncodeError>),
    /// The keepalive watchdog got no answer in time.
    PingTimeout,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::GoAway { status } => write!(f, "peer went away ({status})"),
            CloseReason::PeerClosed => f.write_str("peer closed the connection"),
            CloseReason::Io(e) => write!(f, "transport error: {e}"),
            CloseReason::Protocol(e) => write!(f, "protocol error: {e}"),
            CloseReason::Encode(e) => write!(f, "encode error: {e}"),
            CloseReason::PingTimeout => f.write_str("keepalive ping timed out"),
        }
    }
}

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session is closed.
    #[error("session closed: {0}")]
    Closed(CloseReason),
    /// GOAWAY was sent or received, so no new stream can be opened.
    #[error("session is going away; no new streams")]
    GoingAway,
    /// All 31-bit stream ids of this role are used up.
    #[error("stream ids exhausted")]
    StreamIdsExhausted,
    /// The headers cannot be encoded.
    #[error("invalid headers")]
    InvalidHeaders(#[source] EncodeError),
    /// The peer did not answer SYN_STREAM with SYN_REPLY in time.
    #[error("timeout occurred waiting for SYN_REPLY on stream {stream_id}")]
    OpenStreamTimeout {
        /// The stream that was being opened.
        stream_id: u32,
    },
    /// The peer reset the stream instead of replying.
    #[error("stream {stream_id} was reset by the peer ({status})")]
    OpenStreamReset {
        /// The stream that was being opened.
        stream_id: u32,
        /// The peer's RST_STREAM status.
        status: RstStatus,
    },
    /// The peer's GOAWAY says it never processed the stream.
    #[error("stream {stream_id} was not processed before the peer went away")]
    OpenStreamGoneAway {
        /// The stream that was being opened.
        stream_id: u32,
    },
    /// No PING answer arrived in time.
    #[error("timeout occurred waiting for the PING answer")]
    PingTimeout,
}

/// The error inside the `io::Error`s a [`crate::Stream`] returns; reach it with
/// `io::Error::get_ref` and `downcast_ref`.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The peer sent RST_STREAM (`io::ErrorKind::ConnectionReset`).
    #[error("stream reset by peer ({status})")]
    ResetByPeer {
        /// The peer's status.
        status: RstStatus,
    },
    /// This side reset the stream (`io::ErrorKind::ConnectionAborted`).
    #[error("stream reset locally ({status})")]
    ResetLocally {
        /// The status that was sent.
        status: RstStatus,
    },
    /// The stream's unread inbound data hit its limit and nothing was read for the configured
    /// stall timeout, so the session reset it with FLOW_CONTROL_ERROR
    /// (`io::ErrorKind::ConnectionAborted`).
    #[error(
        "stream reset by the stall limit: its inbound buffer was full and not read for too long"
    )]
    InboundOverflow,
    /// Write after `shutdown` (`io::ErrorKind::BrokenPipe`).
    #[error("write on closed stream")]
    WriteAfterClose,
    /// The session ended (`io::ErrorKind::ConnectionAborted`).
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
}

impl StreamError {
    pub(crate) fn into_io(self) -> io::Error {
        let kind = match self {
            StreamError::ResetByPeer { .. } => io::ErrorKind::ConnectionReset,
            StreamError::ResetLocally { .. }
            | StreamError::InboundOverflow
            | StreamError::SessionClosed(_) => io::ErrorKind::ConnectionAborted,
            StreamError::WriteAfterClose => io::ErrorKind::BrokenPipe,
        };
        io::Error::new(kind, self)
    }
}
