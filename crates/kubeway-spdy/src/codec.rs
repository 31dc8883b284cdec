//! Byte layout of SPDY/3 frames: an incremental decoder and a one-buffer-per-frame encoder.
//!
//! [`FrameDecoder`] treats its input as a byte stream: bytes may arrive in any chunking (one frame
//! split over many reads, or many frames in one read), as happens when SPDY is tunnelled through
//! WebSocket messages or re-chunked by proxies. It never panics on malformed input and reports
//! typed [`DecodeError`]s. [`FrameEncoder`] appends each frame as one contiguous run of bytes, so
//! a frame can always be handed to the transport in a single write.
//!
//! Both sides own the connection-long zlib context of their direction (see
//! [`crate::header_block`]), so one encoder and one decoder must be used per connection and fed
//! frames in wire order.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::frame::{
    DataFrame, FRAME_HEADER_LENGTH, Frame, GoAway, GoAwayStatus, Headers, HeadersFrame,
    MAX_FRAME_LENGTH, MAX_STREAM_ID, Ping, RstStatus, RstStream, Setting, Settings, SynReply,
    SynStream, UnknownControl, VERSION, WindowUpdate, flags, frame_type,
};
use crate::header_block::{DEFAULT_MAX_HEADER_BLOCK, HeaderCompressor, HeaderDecompressor};

/// Limits the decoder enforces on untrusted input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecoderLimits {
    /// Largest accepted frame payload; at most [`MAX_FRAME_LENGTH`].
    pub max_frame_length: u32,
    /// Largest accepted inflated header block.
    pub max_header_block: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self {
            max_frame_length: MAX_FRAME_LENGTH,
            max_header_block: DEFAULT_MAX_HEADER_BLOCK,
        }
    }
}

impl DecoderLimits {
    /// Sets [`DecoderLimits::max_frame_length`] (clamped to [`MAX_FRAME_LENGTH`]).
    pub fn with_max_frame_length(mut self, length: u32) -> Self {
        self.max_frame_length = length.min(MAX_FRAME_LENGTH);
        self
    }

    /// Sets [`DecoderLimits::max_header_block`].
    pub fn with_max_header_block(mut self, bytes: usize) -> Self {
        self.max_header_block = bytes;
        self
    }
}

/// Incremental SPDY/3 frame decoder for one direction of one connection.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    headers: HeaderDecompressor,
    limits: DecoderLimits,
    failed: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder with default limits.
    pub fn new() -> Self {
        Self::with_limits(DecoderLimits::default())
    }

    /// A decoder with the given limits.
    pub fn with_limits(limits: DecoderLimits) -> Self {
        let limits = limits.with_max_frame_length(limits.max_frame_length);
        Self {
            buf: BytesMut::new(),
            headers: HeaderDecompressor::new(limits.max_header_block),
            limits,
            failed: false,
        }
    }

    /// Appends received bytes (any chunk size).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The internal buffer, for reading from a transport straight into it (no extra copy).
    /// Only append to it.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received but not yet decoded.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Decodes the next complete frame, or returns `Ok(None)` if more bytes are needed.
    ///
    /// After a non-fatal error the offending frame has been consumed and decoding can continue;
    /// after a fatal one (see [`DecodeError::is_fatal`]) every later call fails.
    pub fn decode(&mut self) -> Result<Option<Frame>, DecodeError> {
        if self.failed {
            return Err(DecodeError::DecoderFailed);
        }
        let result = self.decode_inner();
        if let Err(e) = &result
            && e.is_fatal()
        {
            self.failed = true;
            self.buf = BytesMut::new();
        }
        result
    }

    fn decode_inner(&mut self) -> Result<Option<Frame>, DecodeError> {
        let Some(header) = self.buf.get(..FRAME_HEADER_LENGTH) else {
            return Ok(None);
        };
        let word = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let frame_flags = header[4];
        let length = u32::from_be_bytes([0, header[5], header[6], header[7]]);
        let is_control = word & 0x8000_0000 != 0;
        if is_control {
            let version = ((word >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(DecodeError::UnsupportedVersion { version });
            }
        }
        if length > self.limits.max_frame_length {
            return Err(DecodeError::FrameTooLarge {
                length,
                limit: self.limits.max_frame_length,
            });
        }
        let total = FRAME_HEADER_LENGTH + length as usize;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        frame.advance(FRAME_HEADER_LENGTH);
        let payload = frame.freeze();
        if !is_control {
            let stream_id = word & MAX_STREAM_ID;
            if stream_id == 0 {
                return Err(DecodeError::ZeroStreamId { frame: "DATA" });
            }
            return Ok(Some(Frame::Data(DataFrame {
                stream_id,
                fin: frame_flags & flags::FIN != 0,
                data: payload,
            })));
        }
        let kind = (word & 0xffff) as u16;
        self.decode_control(kind, frame_flags, payload).map(Some)
    }

    fn decode_control(
        &mut self,
        kind: u16,
        frame_flags: u8,
        mut p: Bytes,
    ) -> Result<Frame, DecodeError> {
        let length = p.len() as u32;
        let fin = frame_flags & flags::FIN != 0;
        let invalid = |frame| DecodeError::InvalidFrameLength { frame, length };
        let frame = match kind {
            frame_type::SYN_STREAM => {
                if p.len() < 10 {
                    return Err(invalid("SYN_STREAM"));
                }
                let stream_id = p.get_u32() & MAX_STREAM_ID;
                let associated_stream_id = p.get_u32() & MAX_STREAM_ID;
                let priority = p.get_u8() >> 5;
                let slot = p.get_u8();
                // Inflate before validating anything else so the shared context stays in step.
                let headers = self.headers.decompress(stream_id, &p)?;
                nonzero(stream_id, "SYN_STREAM")?;
                Frame::SynStream(SynStream {
                    stream_id,
                    associated_stream_id,
                    priority,
                    slot,
                    fin,
                    unidirectional: frame_flags & flags::UNIDIRECTIONAL != 0,
                    headers,
                })
            }
            frame_type::SYN_REPLY => {
                if p.len() < 4 {
                    return Err(invalid("SYN_REPLY"));
                }
                let stream_id = p.get_u32() & MAX_STREAM_ID;
                let headers = self.headers.decompress(stream_id, &p)?;
                nonzero(stream_id, "SYN_REPLY")?;
                Frame::SynReply(SynReply {
                    stream_id,
                    fin,
                    headers,
                })
            }
            frame_type::HEADERS => {
                if p.len() < 4 {
                    return Err(invalid("HEADERS"));
                }
                let stream_id = p.get_u32() & MAX_STREAM_ID;
                let headers = self.headers.decompress(stream_id, &p)?;
                nonzero(stream_id, "HEADERS")?;
                Frame::Headers(HeadersFrame {
                    stream_id,
                    fin,
                    headers,
                })
            }
            frame_type::RST_STREAM => {
                if p.len() != 8 {
                    return Err(invalid("RST_STREAM"));
                }
                let stream_id = nonzero(p.get_u32() & MAX_STREAM_ID, "RST_STREAM")?;
                Frame::RstStream(RstStream {
                    stream_id,
                    status: RstStatus(p.get_u32()),
                })
            }
            frame_type::SETTINGS => {
                if p.len() < 4 {
                    return Err(invalid("SETTINGS"));
                }
                let count = p.get_u32();
                if u64::from(count) * 8 != p.len() as u64 {
                    return Err(DecodeError::SettingsCountMismatch { count, length });
                }
                let entries = (0..count)
                    .map(|_| {
                        let id_word = p.get_u32();
                        Setting {
                            flags: (id_word >> 24) as u8,
                            id: id_word & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings(Settings {
                    clear_previous: frame_flags & flags::CLEAR_SETTINGS != 0,
                    entries,
                })
            }
            frame_type::PING => {
                if p.len() != 4 {
                    return Err(invalid("PING"));
                }
                Frame::Ping(Ping { id: p.get_u32() })
            }
            frame_type::GOAWAY => {
                if p.len() != 8 {
                    return Err(invalid("GOAWAY"));
                }
                Frame::GoAway(GoAway {
                    last_good_stream_id: p.get_u32() & MAX_STREAM_ID,
                    status: GoAwayStatus(p.get_u32()),
                })
            }
            frame_type::WINDOW_UPDATE => {
                if p.len() != 8 {
                    return Err(invalid("WINDOW_UPDATE"));
                }
                Frame::WindowUpdate(WindowUpdate {
                    stream_id: p.get_u32() & MAX_STREAM_ID,
                    delta: p.get_u32() & 0x7fff_ffff,
                })
            }
            other => Frame::Unknown(UnknownControl {
                frame_type: other,
                flags: frame_flags,
                payload: p,
            }),
        };
        Ok(frame)
    }
}

fn nonzero(stream_id: u32, frame: &'static str) -> Result<u32, DecodeError> {
    if stream_id == 0 {
        Err(DecodeError::ZeroStreamId { frame })
    } else {
        Ok(stream_id)
    }
}

fn check_stream_id(stream_id: u32, frame: &'static str) -> Result<u32, EncodeError> {
    if stream_id > MAX_STREAM_ID {
        return Err(EncodeError::StreamIdOutOfRange { stream_id });
    }
    if stream_id == 0 {
        return Err(EncodeError::ZeroStreamId { frame });
    }
    Ok(stream_id)
}

fn check_id_field(id: u32) -> Result<u32, EncodeError> {
    if id > MAX_STREAM_ID {
        Err(EncodeError::StreamIdOutOfRange { stream_id: id })
    } else {
        Ok(id)
    }
}

fn put_control_header(dst: &mut BytesMut, kind: u16, frame_flags: u8, length: u32) {
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    dst.put_u32((u32::from(frame_flags) << 24) | length);
}

/// Appends a DATA frame header for a payload of `length` bytes. The caller appends the payload.
///
/// # Errors
/// Fails if `stream_id` is 0 or above 31 bits, or `length` exceeds [`MAX_FRAME_LENGTH`].
pub fn encode_data_header(
    stream_id: u32,
    fin: bool,
    length: usize,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    check_stream_id(stream_id, "DATA")?;
    let length = u32::try_from(length)
        .ok()
        .filter(|l| *l <= MAX_FRAME_LENGTH)
        .ok_or(EncodeError::FrameTooLarge {
            frame: "DATA",
            length,
        })?;
    dst.reserve(FRAME_HEADER_LENGTH);
    dst.put_u32(stream_id);
    dst.put_u32((u32::from(if fin { flags::FIN } else { 0 }) << 24) | length);
    Ok(())
}

/// Encodes a whole DATA frame (header and payload) into a fresh buffer: one allocation, one copy.
///
/// # Errors
/// See [`encode_data_header`].
pub fn encode_data_frame(stream_id: u32, fin: bool, payload: &[u8]) -> Result<Bytes, EncodeError> {
    let mut dst = BytesMut::with_capacity(FRAME_HEADER_LENGTH + payload.len());
    encode_data_header(stream_id, fin, payload.len(), &mut dst)?;
    dst.extend_from_slice(payload);
    Ok(dst.freeze())
}

/// SPDY/3 frame encoder for one direction of one connection.
#[derive(Debug, Default)]
pub struct FrameEncoder {
    headers: HeaderCompressor,
}

impl FrameEncoder {
    /// An encoder with a fresh header compression context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `frame` to `dst` as one contiguous frame. Header names are lowercased.
    ///
    /// On error nothing is appended. The compression context is unchanged too, except after
    /// [`EncodeError::DeflateHeaderBlock`], after which the connection must be dropped. Header
    /// blocks are limited to [`crate::header_block::MAX_ENCODED_HEADER_BLOCK`] bytes before
    /// compression, so they always fit in one frame.
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match frame {
            Frame::Data(f) => {
                encode_data_header(f.stream_id, f.fin, f.data.len(), dst)?;
                dst.extend_from_slice(&f.data);
            }
            Frame::SynStream(f) => {
                check_stream_id(f.stream_id, "SYN_STREAM")?;
                check_id_field(f.associated_stream_id)?;
                if f.priority > 7 {
                    return Err(EncodeError::PriorityOutOfRange {
                        priority: f.priority,
                    });
                }
                let mut frame_flags = if f.fin { flags::FIN } else { 0 };
                if f.unidirectional {
                    frame_flags |= flags::UNIDIRECTIONAL;
                }
                let mut fixed = [0u8; 10];
                fixed[..4].copy_from_slice(&f.stream_id.to_be_bytes());
                fixed[4..8].copy_from_slice(&f.associated_stream_id.to_be_bytes());
                fixed[8] = f.priority << 5;
                fixed[9] = f.slot;
                self.encode_with_headers(
                    frame_type::SYN_STREAM,
                    frame_flags,
                    &fixed,
                    &f.headers,
                    dst,
                )?;
            }
            Frame::SynReply(f) => {
                check_stream_id(f.stream_id, "SYN_REPLY")?;
                self.encode_with_headers(
                    frame_type::SYN_REPLY,
                    if f.fin { flags::FIN } else { 0 },
                    &f.stream_id.to_be_bytes(),
                    &f.headers,
                    dst,
                )?;
            }
            Frame::Headers(f) => {
                check_stream_id(f.stream_id, "HEADERS")?;
                self.encode_with_headers(
                    frame_type::HEADERS,
                    if f.fin { flags::FIN } else { 0 },
                    &f.stream_id.to_be_bytes(),
                    &f.headers,
                    dst,
                )?;
            }
            Frame::RstStream(f) => {
                check_stream_id(f.stream_id, "RST_STREAM")?;
                put_control_header(dst, frame_type::RST_STREAM, 0, 8);
                dst.put_u32(f.stream_id);
                dst.put_u32(f.status.0);
            }
            Frame::Settings(f) => {
                let length = 4 + 8 * f.entries.len();
                if length > MAX_FRAME_LENGTH as usize {
                    return Err(EncodeError::FrameTooLarge {
                        frame: "SETTINGS",
                        length,
                    });
                }
                if let Some(bad) = f.entries.iter().find(|s| s.id > 0x00ff_ffff) {
                    return Err(EncodeError::SettingIdOutOfRange { id: bad.id });
                }
                let frame_flags = if f.clear_previous {
                    flags::CLEAR_SETTINGS
                } else {
                    0
                };
                dst.reserve(FRAME_HEADER_LENGTH + length);
                put_control_header(dst, frame_type::SETTINGS, frame_flags, length as u32);
                dst.put_u32(f.entries.len() as u32);
                for s in &f.entries {
                    dst.put_u32((u32::from(s.flags) << 24) | s.id);
                    dst.put_u32(s.value);
                }
            }
            Frame::Ping(f) => {
                put_control_header(dst, frame_type::PING, 0, 4);
                dst.put_u32(f.id);
            }
            Frame::GoAway(f) => {
                let last = check_id_field(f.last_good_stream_id)?;
                put_control_header(dst, frame_type::GOAWAY, 0, 8);
                dst.put_u32(last);
                dst.put_u32(f.status.0);
            }
            Frame::WindowUpdate(f) => {
                let stream_id = check_id_field(f.stream_id)?;
                put_control_header(dst, frame_type::WINDOW_UPDATE, 0, 8);
                dst.put_u32(stream_id);
                dst.put_u32(f.delta & 0x7fff_ffff);
            }
            Frame::Unknown(f) => {
                let length = f.payload.len();
                if length > MAX_FRAME_LENGTH as usize {
                    return Err(EncodeError::FrameTooLarge {
                        frame: "UNKNOWN",
                        length,
                    });
                }
                dst.reserve(FRAME_HEADER_LENGTH + length);
                put_control_header(dst, f.frame_type, f.flags, length as u32);
                dst.extend_from_slice(&f.payload);
            }
        }
        Ok(())
    }

    fn encode_with_headers(
        &mut self,
        kind: u16,
        frame_flags: u8,
        fixed: &[u8],
        headers: &Headers,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        crate::header_block::validate_headers(headers)?;
        let start = dst.len();
        put_control_header(dst, kind, frame_flags, 0);
        dst.extend_from_slice(fixed);
        if let Err(e) = self.headers.compress(headers, dst) {
            dst.truncate(start);
            return Err(e);
        }
        let length = dst.len() - start - FRAME_HEADER_LENGTH;
        if length > MAX_FRAME_LENGTH as usize {
            // Unreachable given the block size cap; the context already advanced, so the caller
            // must treat this like a deflate failure.
            dst.truncate(start);
            return Err(EncodeError::FrameTooLarge {
                frame: "header block",
                length,
            });
        }
        let word = (u32::from(frame_flags) << 24) | length as u32;
        dst[start + 4..start + 8].copy_from_slice(&word.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let mut enc = FrameEncoder::new();
        let mut wire = BytesMut::new();
        for f in frames {
            enc.encode(f, &mut wire).unwrap();
        }
        let mut dec = FrameDecoder::new();
        dec.feed(&wire);
        let mut out = Vec::new();
        while let Some(f) = dec.decode().unwrap() {
            out.push(f);
        }
        assert_eq!(dec.buffered_len(), 0);
        out
    }

    fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::Data(DataFrame {
                stream_id: 1,
                fin: false,
                data: Bytes::from_static(b"hello"),
            }),
            Frame::Data(DataFrame {
                stream_id: MAX_STREAM_ID,
                fin: true,
                data: Bytes::new(),
            }),
            Frame::SynStream(SynStream {
                stream_id: 3,
                associated_stream_id: 1,
                priority: 7,
                slot: 2,
                fin: true,
                unidirectional: true,
                headers: h(&[("content-kind", "error"), ("x-channel", "80")]),
            }),
            Frame::SynReply(SynReply {
                stream_id: 3,
                fin: false,
                headers: h(&[]),
            }),
            Frame::RstStream(RstStream {
                stream_id: 5,
                status: RstStatus::CANCEL,
            }),
            Frame::Settings(Settings {
                clear_previous: true,
                entries: vec![
                    Setting {
                        flags: 1,
                        id: 7,
                        value: 0x7fff_ffff,
                    },
                    Setting {
                        flags: 0,
                        id: 0x00ff_ffff,
                        value: 0,
                    },
                ],
            }),
            Frame::Settings(Settings::default()),
            Frame::Ping(Ping { id: u32::MAX }),
            Frame::GoAway(GoAway {
                last_good_stream_id: 9,
                status: GoAwayStatus::PROTOCOL_ERROR,
            }),
            Frame::Headers(HeadersFrame {
                stream_id: 3,
                fin: true,
                headers: h(&[("x", "y\0z")]),
            }),
            Frame::WindowUpdate(WindowUpdate {
                stream_id: 0,
                delta: 0x7fff_ffff,
            }),
            Frame::Unknown(UnknownControl {
                frame_type: frame_type::CREDENTIAL,
                flags: 0xab,
                payload: Bytes::from_static(b"\x00\x01opaque"),
            }),
        ]
    }

    #[test]
    fn every_frame_type_round_trips() {
        let frames = sample_frames();
        for f in &frames {
            assert_eq!(round_trip(std::slice::from_ref(f)), vec![f.clone()]);
        }
        assert_eq!(round_trip(&frames), frames);
    }

    #[test]
    fn frames_decode_when_fed_one_byte_at_a_time() {
        let frames = sample_frames();
        let mut enc = FrameEncoder::new();
        let mut wire = BytesMut::new();
        for f in &frames {
            enc.encode(f, &mut wire).unwrap();
        }
        let mut dec = FrameDecoder::new();
        let mut out = Vec::new();
        for byte in wire.iter() {
            dec.feed(&[*byte]);
            while let Some(f) = dec.decode().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
    }

    #[test]
    fn encoder_lowercases_header_names() {
        let frame = Frame::SynReply(SynReply {
            stream_id: 1,
            fin: false,
            headers: h(&[("Content-Kind", "Data")]),
        });
        let out = round_trip(&[frame]);
        let Frame::SynReply(reply) = &out[0] else {
            panic!("expected SYN_REPLY, got {out:?}");
        };
        assert_eq!(reply.headers, h(&[("content-kind", "Data")]));
    }

    #[test]
    fn exact_wire_layout_of_simple_frames() {
        let mut enc = FrameEncoder::new();
        let mut wire = BytesMut::new();
        enc.encode(&Frame::Ping(Ping { id: 1 }), &mut wire).unwrap();
        assert_eq!(&wire[..], &[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
        wire.clear();
        enc.encode(
            &Frame::RstStream(RstStream {
                stream_id: 3,
                status: RstStatus::CANCEL,
            }),
            &mut wire,
        )
        .unwrap();
        assert_eq!(
            &wire[..],
            &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5]
        );
        wire.clear();
        enc.encode(
            &Frame::Data(DataFrame {
                stream_id: 5,
                fin: true,
                data: Bytes::from_static(b"ab"),
            }),
            &mut wire,
        )
        .unwrap();
        assert_eq!(&wire[..], &[0, 0, 0, 5, 1, 0, 0, 2, b'a', b'b']);
        assert_eq!(
            encode_data_frame(5, true, b"ab").unwrap(),
            Bytes::copy_from_slice(&wire)
        );
    }

    #[test]
    fn encoder_rejects_invalid_frames_without_writing() {
        let mut enc = FrameEncoder::new();
        let mut wire = BytesMut::new();
        let bad: Vec<Frame> = vec![
            Frame::Data(DataFrame {
                stream_id: 0,
                fin: false,
                data: Bytes::new(),
            }),
            Frame::RstStream(RstStream {
                stream_id: 0x8000_0000,
                status: RstStatus::CANCEL,
            }),
            Frame::SynStream(SynStream {
                stream_id: 1,
                associated_stream_id: 0,
                priority: 8,
                slot: 0,
                fin: false,
                unidirectional: false,
                headers: Headers::new(),
            }),
            Frame::SynReply(SynReply {
                stream_id: 1,
                fin: false,
                headers: h(&[("", "x")]),
            }),
            Frame::Settings(Settings {
                clear_previous: false,
                entries: vec![Setting {
                    flags: 0,
                    id: 1 << 24,
                    value: 0,
                }],
            }),
        ];
        for f in &bad {
            assert!(enc.encode(f, &mut wire).is_err(), "{f:?} should not encode");
            assert!(wire.is_empty());
        }
        assert!(encode_data_header(1, false, 1 << 24, &mut wire).is_err());
    }

    #[test]
    fn decoder_rejects_zero_stream_ids_and_bad_lengths_but_continues() {
        let mut dec = FrameDecoder::new();
        // DATA on stream 0, then a valid PING.
        dec.feed(&[0, 0, 0, 0, 0, 0, 0, 1, 0xaa]);
        dec.feed(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]);
        assert!(matches!(
            dec.decode(),
            Err(DecodeError::ZeroStreamId { frame: "DATA" })
        ));
        assert_eq!(dec.decode().unwrap(), Some(Frame::Ping(Ping { id: 7 })));
        // PING with 5 bytes, RST_STREAM on stream 0, GOAWAY with SPDY/2 length 4.
        dec.feed(&[0x80, 3, 0, 6, 0, 0, 0, 5, 0, 0, 0, 7, 0]);
        dec.feed(&[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        dec.feed(&[0x80, 3, 0, 7, 0, 0, 0, 4, 0, 0, 0, 1]);
        let e = dec.decode().unwrap_err();
        assert!(matches!(
            e,
            DecodeError::InvalidFrameLength {
                frame: "PING",
                length: 5
            }
        ));
        assert!(!e.is_fatal());
        assert!(matches!(
            dec.decode(),
            Err(DecodeError::ZeroStreamId {
                frame: "RST_STREAM"
            })
        ));
        assert!(matches!(
            dec.decode(),
            Err(DecodeError::InvalidFrameLength {
                frame: "GOAWAY",
                ..
            })
        ));
        assert_eq!(dec.decode().unwrap(), None);
    }

    #[test]
    fn decoder_rejects_other_versions_and_oversized_frames_fatally() {
        let mut dec = FrameDecoder::new();
        dec.feed(&[0x80, 2, 0, 6, 0, 0, 0, 4]);
        let e = dec.decode().unwrap_err();
        assert!(matches!(e, DecodeError::UnsupportedVersion { version: 2 }));
        assert!(e.is_fatal());
        dec.feed(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
        assert!(matches!(dec.decode(), Err(DecodeError::DecoderFailed)));

        let mut dec = FrameDecoder::with_limits(DecoderLimits::default().with_max_frame_length(16));
        dec.feed(&[0, 0, 0, 1, 0, 0, 0, 17]);
        assert!(matches!(
            dec.decode(),
            Err(DecodeError::FrameTooLarge {
                length: 17,
                limit: 16
            })
        ));
    }

    #[test]
    fn unknown_control_types_are_surfaced_not_fatal() {
        let mut dec = FrameDecoder::new();
        dec.feed(&[0x80, 3, 0, 0x0b, 0, 0, 0, 2, 0xd4, 0x74]);
        dec.feed(&[0x80, 3, 0, 5, 0, 0, 0, 0]);
        assert_eq!(
            dec.decode().unwrap(),
            Some(Frame::Unknown(UnknownControl {
                frame_type: 11,
                flags: 0,
                payload: Bytes::from_static(&[0xd4, 0x74]),
            }))
        );
        assert!(matches!(
            dec.decode().unwrap(),
            Some(Frame::Unknown(UnknownControl {
                frame_type: frame_type::NOOP,
                ..
            }))
        ));
    }

    #[test]
    fn settings_count_must_match_payload() {
        let mut dec = FrameDecoder::new();
        dec.feed(&[0x80, 3, 0, 4, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            dec.decode(),
            Err(DecodeError::SettingsCountMismatch { .. })
        ));
    }

    #[test]
    fn header_frame_with_zero_stream_id_keeps_the_inflate_context_in_step() {
        let mut enc = FrameEncoder::new();
        let mut wire = BytesMut::new();
        let headers = h(&[("a", "b")]);
        enc.encode(
            &Frame::SynReply(SynReply {
                stream_id: 1,
                fin: false,
                headers: headers.clone(),
            }),
            &mut wire,
        )
        .unwrap();
        // Patch the stream id to 0: the block must still be inflated.
        wire[8..12].copy_from_slice(&[0, 0, 0, 0]);
        enc.encode(
            &Frame::SynReply(SynReply {
                stream_id: 3,
                fin: false,
                headers: headers.clone(),
            }),
            &mut wire,
        )
        .unwrap();
        let mut dec = FrameDecoder::new();
        dec.feed(&wire);
        assert!(matches!(
            dec.decode(),
            Err(DecodeError::ZeroStreamId { frame: "SYN_REPLY" })
        ));
        assert_eq!(
            dec.decode().unwrap(),
            Some(Frame::SynReply(SynReply {
                stream_id: 3,
                fin: false,
                headers,
            }))
        );
    }

    /// A SYN_STREAM captured from a real SPDY/3 browser (see `testdata/README.md`): its header
    /// block was compressed by an independent implementation with the SPDY/3 dictionary.
    #[test]
    fn decodes_a_captured_syn_stream_from_another_implementation() {
        let wire = include_bytes!("../testdata/syn_stream_spdy3_captured.bin");
        // zlib header (window 2^11, FDICT) followed by the SPDY/3 dictionary id.
        assert_eq!(&wire[18..24], &[0x38, 0xea, 0xe3, 0xc6, 0xa7, 0xc2]);
        let mut dec = FrameDecoder::new();
        for chunk in wire.chunks(7) {
            dec.feed(chunk);
        }
        let Some(Frame::SynStream(syn)) = dec.decode().unwrap() else {
            panic!("expected a SYN_STREAM");
        };
        assert_eq!(syn.stream_id, 1);
        assert!(syn.fin);
        assert_eq!(syn.headers.len(), 13);
        assert_eq!(syn.headers.get(":method"), Some("GET"));
        assert_eq!(syn.headers.get(":host"), Some("www.afrind.sb.facebook.com"));
        assert_eq!(syn.headers.get(":path"), Some("/status.php"));
        assert_eq!(
            syn.headers.get("accept-encoding"),
            Some("gzip, deflate, sdch")
        );
        assert_eq!(dec.decode().unwrap(), None);
    }
}
