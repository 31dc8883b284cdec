//! The SPDY/3 frame model: one Rust type per frame, plus status codes, flags and header lists.
//!
//! These types carry decoded values only; the byte layout lives in [`crate::codec`]. Header blocks
//! appear here uncompressed, as [`Headers`].

use std::fmt;

use bytes::Bytes;

/// The protocol version written into (and required from) every control frame.
pub const VERSION: u16 = 3;

/// The largest payload a frame can carry: the length field has 24 bits.
pub const MAX_FRAME_LENGTH: u32 = (1 << 24) - 1;

/// The largest stream id: stream ids have 31 bits.
pub const MAX_STREAM_ID: u32 = 0x7fff_ffff;

/// Length of the fixed header shared by data and control frames.
pub const FRAME_HEADER_LENGTH: usize = 8;

/// Frame flag bits.
pub mod flags {
    /// DATA, SYN_STREAM, SYN_REPLY, HEADERS: the sender will send nothing more on the stream.
    pub const FIN: u8 = 0x01;
    /// SYN_STREAM: the recipient must not send on the stream.
    pub const UNIDIRECTIONAL: u8 = 0x02;
    /// SETTINGS: the recipient should forget previously persisted settings.
    pub const CLEAR_SETTINGS: u8 = 0x01;
}

/// Control frame type codes.
pub mod frame_type {
    /// SYN_STREAM.
    pub const SYN_STREAM: u16 = 1;
    /// SYN_REPLY.
    pub const SYN_REPLY: u16 = 2;
    /// RST_STREAM.
    pub const RST_STREAM: u16 = 3;
    /// SETTINGS.
    pub const SETTINGS: u16 = 4;
    /// NOOP: a SPDY/2 leftover, decoded as an unknown frame.
    pub const NOOP: u16 = 5;
    /// PING.
    pub const PING: u16 = 6;
    /// GOAWAY.
    pub const GOAWAY: u16 = 7;
    /// HEADERS.
    pub const HEADERS: u16 = 8;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u16 = 9;
    /// CREDENTIAL: never implemented by common peers, decoded as an unknown frame.
    pub const CREDENTIAL: u16 = 10;
}

/// An ordered list of header name/value pairs, as carried by SYN_STREAM, SYN_REPLY and HEADERS.
///
/// Names are lowercase on the wire. Several values for one name travel as a single value joined
/// with NUL bytes; this type keeps such values as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Appends a pair.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// The value of the first pair named `name` (compared ASCII case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Iterates over the pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs as a slice.
    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    /// The pairs as a vector.
    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

impl From<Vec<(String, String)>> for Headers {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (N, V)>>(iter: T) -> Self {
        Self(
            iter.into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        )
    }
}

/// The status code of a RST_STREAM frame. Any 32-bit value round-trips; the known codes are
/// associated constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RstStatus(pub u32);

impl RstStatus {
    /// Generic protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// A frame arrived for a stream that is not active.
    pub const INVALID_STREAM: Self = Self(2);
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: Self = Self(3);
    /// The recipient does not support the SPDY version.
    pub const UNSUPPORTED_VERSION: Self = Self(4);
    /// The stream is no longer needed.
    pub const CANCEL: Self = Self(5);
    /// An internal error unrelated to the protocol.
    pub const INTERNAL_ERROR: Self = Self(6);
    /// The peer violated flow control (also used here when a stream's inbound buffer overflows).
    pub const FLOW_CONTROL_ERROR: Self = Self(7);
    /// A SYN_REPLY arrived for a stream that already has one.
    pub const STREAM_IN_USE: Self = Self(8);
    /// Data or SYN_REPLY arrived for a half-closed stream.
    pub const STREAM_ALREADY_CLOSED: Self = Self(9);
    /// The credentials are invalid.
    pub const INVALID_CREDENTIALS: Self = Self(10);
    /// A frame was too large to process.
    pub const FRAME_TOO_LARGE: Self = Self(11);

    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "PROTOCOL_ERROR",
            2 => "INVALID_STREAM",
            3 => "REFUSED_STREAM",
            4 => "UNSUPPORTED_VERSION",
            5 => "CANCEL",
            6 => "INTERNAL_ERROR",
            7 => "FLOW_CONTROL_ERROR",
            8 => "STREAM_IN_USE",
            9 => "STREAM_ALREADY_CLOSED",
            10 => "INVALID_CREDENTIALS",
            11 => "FRAME_TOO_LARGE",
            _ => return None,
        })
    }
}

impl fmt::Display for RstStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "status {}", self.0),
        }
    }
}

/// The status code of a GOAWAY frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GoAwayStatus(pub u32);

impl GoAwayStatus {
    /// Normal session teardown.
    pub const OK: Self = Self(0);
    /// The session ends because of a protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// The session ends because of an internal error.
    pub const INTERNAL_ERROR: Self = Self(2);
}

impl fmt::Display for GoAwayStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("OK"),
            1 => f.write_str("PROTOCOL_ERROR"),
            2 => f.write_str("INTERNAL_ERROR"),
            other => write!(f, "status {other}"),
        }
    }
}

/// A DATA frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFrame {
    /// The stream the data belongs to.
    pub stream_id: u32,
    /// FLAG_FIN: the sender half-closes the stream after this frame.
    pub fin: bool,
    /// The payload (at most [`MAX_FRAME_LENGTH`] bytes).
    pub data: Bytes,
}

/// A SYN_STREAM frame: opens a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynStream {
    /// The new stream's id (odd from the client, even from the server, never 0).
    pub stream_id: u32,
    /// The stream this one is associated with, or 0.
    pub associated_stream_id: u32,
    /// Priority, 0 (highest) to 7.
    pub priority: u8,
    /// CREDENTIAL slot, normally 0.
    pub slot: u8,
    /// FLAG_FIN: the opener sends nothing more.
    pub fin: bool,
    /// FLAG_UNIDIRECTIONAL: the recipient must not send.
    pub unidirectional: bool,
    /// The header block.
    pub headers: Headers,
}

/// A SYN_REPLY frame: accepts a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynReply {
    /// The stream being accepted.
    pub stream_id: u32,
    /// FLAG_FIN: the replier sends nothing more.
    pub fin: bool,
    /// The header block.
    pub headers: Headers,
}

/// A RST_STREAM frame: aborts a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RstStream {
    /// The stream being reset.
    pub stream_id: u32,
    /// Why.
    pub status: RstStatus,
}

/// One entry of a SETTINGS frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Entry flags (PERSIST_VALUE 0x1, PERSISTED 0x2).
    pub flags: u8,
    /// The setting id (24 bits; 7 is INITIAL_WINDOW_SIZE).
    pub id: u32,
    /// The value.
    pub value: u32,
}

/// A SETTINGS frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// FLAG_SETTINGS_CLEAR_SETTINGS.
    pub clear_previous: bool,
    /// The entries, in wire order.
    pub entries: Vec<Setting>,
}

/// A PING frame. The recipient echoes it unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    /// The ping id: odd when the client started it, even when the server did.
    pub id: u32,
}

/// A GOAWAY frame: the sender accepts no new streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoAway {
    /// The last stream id the sender processed; higher streams the recipient opened were not.
    pub last_good_stream_id: u32,
    /// Why.
    pub status: GoAwayStatus,
}

/// A HEADERS frame: more headers for an open stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadersFrame {
    /// The stream.
    pub stream_id: u32,
    /// FLAG_FIN: the sender half-closes the stream.
    pub fin: bool,
    /// The header block.
    pub headers: Headers,
}

/// A WINDOW_UPDATE frame. Decoded for completeness; flow control is not enforced here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowUpdate {
    /// The stream, or 0 for the session window (SPDY/3.1).
    pub stream_id: u32,
    /// Window increment (31 bits).
    pub delta: u32,
}

/// A version-3 control frame of a type this crate does not interpret (NOOP, CREDENTIAL, or a
/// type from the future). The spec says to ignore such frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownControl {
    /// The control frame type.
    pub frame_type: u16,
    /// The flags byte.
    pub flags: u8,
    /// The raw payload.
    pub payload: Bytes,
}

/// Any SPDY/3 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// DATA.
    Data(DataFrame),
    /// SYN_STREAM.
    SynStream(SynStream),
    /// SYN_REPLY.
    SynReply(SynReply),
    /// RST_STREAM.
    RstStream(RstStream),
    /// SETTINGS.
    Settings(Settings),
    /// PING.
    Ping(Ping),
    /// GOAWAY.
    GoAway(GoAway),
    /// HEADERS.
    Headers(HeadersFrame),
    /// WINDOW_UPDATE.
    WindowUpdate(WindowUpdate),
    /// A control frame of an uninterpreted type.
    Unknown(UnknownControl),
}

impl Frame {
    /// The stream the frame refers to, for stream-scoped frames.
    pub fn stream_id(&self) -> Option<u32> {
        match self {
            Frame::Data(f) => Some(f.stream_id),
            Frame::SynStream(f) => Some(f.stream_id),
            Frame::SynReply(f) => Some(f.stream_id),
            Frame::RstStream(f) => Some(f.stream_id),
            Frame::Headers(f) => Some(f.stream_id),
            Frame::WindowUpdate(f) => Some(f.stream_id),
            Frame::Settings(_) | Frame::Ping(_) | Frame::GoAway(_) | Frame::Unknown(_) => None,
        }
    }

    /// A short name for logs and errors, e.g. `"SYN_STREAM"`.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Data(_) => "DATA",
            Frame::SynStream(_) => "SYN_STREAM",
            Frame::SynReply(_) => "SYN_REPLY",
            Frame::RstStream(_) => "RST_STREAM",
            Frame::Settings(_) => "SETTINGS",
            Frame::Ping(_) => "PING",
            Frame::GoAway(_) => "GOAWAY",
            Frame::Headers(_) => "HEADERS",
            Frame::WindowUpdate(_) => "WINDOW_UPDATE",
            Frame::Unknown(_) => "UNKNOWN",
        }
    }
}

macro_rules! impl_from_for_frame {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for Frame {
            fn from(frame: $ty) -> Self {
                Frame::$variant(frame)
            }
        })*
    };
}

impl_from_for_frame!(
    Data(DataFrame),
    SynStream(SynStream),
    SynReply(SynReply),
    RstStream(RstStream),
    Settings(Settings),
    Ping(Ping),
    GoAway(GoAway),
    Headers(HeadersFrame),
    WindowUpdate(WindowUpdate),
    Unknown(UnknownControl),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_lookup_is_case_insensitive_and_ordered() {
        let headers: Headers = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        assert_eq!(headers.get("A"), Some("1"));
        assert_eq!(headers.get("b"), Some("2"));
        assert_eq!(headers.get("c"), None);
        assert_eq!(headers.len(), 3);
        let names: Vec<_> = headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "a"]);
    }

    #[test]
    fn status_codes_display_their_names() {
        assert_eq!(RstStatus::CANCEL.to_string(), "CANCEL");
        assert_eq!(RstStatus(99).to_string(), "status 99");
        assert_eq!(GoAwayStatus::OK.to_string(), "OK");
        assert_eq!(GoAwayStatus(7).to_string(), "status 7");
    }
}
