//! SPDY/3 header blocks: the name/value layout and the per-direction zlib contexts.
//!
//! A header block is `u32 count` followed by `count` times `u32 len, name, u32 len, value`, then
//! zlib-compressed with the SPDY/3 dictionary. Each direction of a connection uses ONE zlib stream
//! for its whole life: [`HeaderCompressor`] keeps its deflate state across frames and ends every
//! block with a sync flush; [`HeaderDecompressor`] is created once and fed each block in order.
//! Compressing blocks independently would not interoperate.

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::dictionary::{SPDY3_DICTIONARY, SPDY3_DICTIONARY_ID};
use crate::error::{DecodeError, EncodeError};
use crate::frame::Headers;

/// Default cap on an inflated header block.
pub const DEFAULT_MAX_HEADER_BLOCK: usize = 1 << 20;

/// Largest uncompressed header block this crate sends: well below the 24-bit frame length, so
/// the compressed block always fits in one frame.
pub const MAX_ENCODED_HEADER_BLOCK: usize = 8 << 20;

/// Checks that `headers` can be serialised. Used before queueing frames so the writer never
/// meets an unencodable block.
pub(crate) fn validate_headers(headers: &Headers) -> Result<(), EncodeError> {
    for (name, _) in headers.iter() {
        if name.is_empty() {
            return Err(EncodeError::EmptyHeaderName);
        }
    }
    let size = headers.iter().fold(4usize, |acc, (n, v)| {
        acc.saturating_add(8)
            .saturating_add(n.len())
            .saturating_add(v.len())
    });
    if size > MAX_ENCODED_HEADER_BLOCK {
        return Err(EncodeError::FrameTooLarge {
            frame: "header block",
            length: size,
        });
    }
    Ok(())
}

/// Serialises `headers` (uncompressed) into `out`, lowercasing ASCII names.
pub(crate) fn serialize_headers(headers: &Headers, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    validate_headers(headers)?;
    out.clear();
    // validate_headers bounded the whole block (so every count and length) well below u32::MAX.
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers.iter() {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    Ok(())
}

fn read_u32(block: &[u8], pos: &mut usize) -> Option<u32> {
    let bytes = block.get(*pos..pos.checked_add(4)?)?;
    *pos += 4;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn read_str<'a>(block: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(read_u32(block, pos)?).ok()?;
    let bytes = block.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    Some(bytes)
}

/// Parses an uncompressed name/value block, enforcing SPDY/3 rules: non-empty lowercase names,
/// no duplicate names, no trailing bytes, UTF-8 text.
pub(crate) fn parse_headers(stream_id: u32, block: &[u8]) -> Result<Headers, DecodeError> {
    let malformed = |reason| DecodeError::MalformedHeaderBlock { stream_id, reason };
    let mut pos = 0;
    let count = read_u32(block, &mut pos).ok_or_else(|| malformed("truncated pair count"))?;
    // Every pair needs at least 8 bytes of lengths, which bounds the allocation below.
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count > (block.len() - pos) / 8 {
        return Err(malformed("pair count exceeds block size"));
    }
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(count);
    for _ in 0..count {
        let name = read_str(block, &mut pos).ok_or_else(|| malformed("truncated name"))?;
        let value = read_str(block, &mut pos).ok_or_else(|| malformed("truncated value"))?;
        if name.is_empty() {
            return Err(malformed("empty header name"));
        }
        let name =
            std::str::from_utf8(name).map_err(|_| DecodeError::NonUtf8Header { stream_id })?;
        let value =
            std::str::from_utf8(value).map_err(|_| DecodeError::NonUtf8Header { stream_id })?;
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(DecodeError::UppercaseHeaderName {
                stream_id,
                name: name.to_owned(),
            });
        }
        if pairs.iter().any(|(n, _)| n == name) {
            return Err(DecodeError::DuplicateHeaderName {
                stream_id,
                name: name.to_owned(),
            });
        }
        pairs.push((name.to_owned(), value.to_owned()));
    }
    if pos != block.len() {
        return Err(malformed("trailing bytes after the last pair"));
    }
    Ok(Headers::from(pairs))
}

/// The outbound zlib context of one connection.
pub struct HeaderCompressor {
    deflate: Compress,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for HeaderCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderCompressor")
            .field("total_in", &self.deflate.total_in())
            .field("total_out", &self.deflate.total_out())
            .finish()
    }
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCompressor {
    /// A fresh context primed with the SPDY/3 dictionary.
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::best(), true);
        // Setting a dictionary on a fresh zlib stream cannot fail.
        let id = deflate.set_dictionary(SPDY3_DICTIONARY).ok();
        debug_assert_eq!(id, Some(SPDY3_DICTIONARY_ID));
        Self {
            deflate,
            scratch: Vec::with_capacity(256),
        }
    }

    /// Serialises and compresses `headers`, appending the compressed block (ending in a sync
    /// flush) to `dst`. On error `dst` is left as it was.
    pub fn compress(&mut self, headers: &Headers, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = serialize_headers(headers, &mut scratch)
            .and_then(|()| self.deflate_block(&scratch, dst));
        self.scratch = scratch;
        result
    }

    fn deflate_block(&mut self, input: &[u8], dst: &mut BytesMut) -> Result<(), EncodeError> {
        let start = dst.len();
        let mut consumed = 0;
        loop {
            let base = dst.len();
            let room = (input.len() - consumed) + 64;
            dst.resize(base + room, 0);
            let (in_before, out_before) = (self.deflate.total_in(), self.deflate.total_out());
            let res =
                self.deflate
                    .compress(&input[consumed..], &mut dst[base..], FlushCompress::Sync);
            let used_in = (self.deflate.total_in() - in_before) as usize;
            let used_out = (self.deflate.total_out() - out_before) as usize;
            dst.truncate(base + used_out);
            consumed += used_in;
            if let Err(e) = res {
                dst.truncate(start);
                return Err(EncodeError::DeflateHeaderBlock(e));
            }
            // A sync flush is complete once all input is taken and output space was left over.
            if consumed == input.len() && used_out < room {
                return Ok(());
            }
        }
    }
}

/// The inbound zlib context of one connection.
pub struct HeaderDecompressor {
    inflate: Decompress,
    out: Vec<u8>,
    max_block: usize,
}

impl std::fmt::Debug for HeaderDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecompressor")
            .field("total_in", &self.inflate.total_in())
            .field("total_out", &self.inflate.total_out())
            .field("max_block", &self.max_block)
            .finish()
    }
}

impl HeaderDecompressor {
    /// A fresh context that refuses blocks inflating beyond `max_block` bytes.
    pub fn new(max_block: usize) -> Self {
        Self {
            inflate: Decompress::new(true),
            out: Vec::new(),
            max_block,
        }
    }

    /// Inflates one frame's compressed block and parses it.
    pub fn decompress(&mut self, stream_id: u32, block: &[u8]) -> Result<Headers, DecodeError> {
        self.inflate_block(stream_id, block)?;
        parse_headers(stream_id, &self.out)
    }

    fn inflate_block(&mut self, stream_id: u32, input: &[u8]) -> Result<(), DecodeError> {
        self.out.clear();
        let mut consumed = 0;
        loop {
            if self.out.capacity() - self.out.len() < 256 {
                let want = (self.out.capacity().max(512)).min(self.max_block + 1);
                self.out.reserve(want);
            }
            let spare_before = self.out.capacity() - self.out.len();
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let res = self.inflate.decompress_vec(
                &input[consumed..],
                &mut self.out,
                FlushDecompress::Sync,
            );
            let used_in = (self.inflate.total_in() - in_before) as usize;
            let used_out = (self.inflate.total_out() - out_before) as usize;
            consumed += used_in;
            if self.out.len() > self.max_block {
                return Err(DecodeError::HeaderBlockTooLarge {
                    stream_id,
                    limit: self.max_block,
                });
            }
            match res {
                Ok(Status::StreamEnd) => return Ok(()),
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(SPDY3_DICTIONARY_ID) => {
                        self.inflate
                            .set_dictionary(SPDY3_DICTIONARY)
                            .map_err(|source| DecodeError::InflateHeaderBlock {
                                stream_id,
                                source,
                            })?;
                        continue;
                    }
                    Some(found) => return Err(DecodeError::HeaderDictionaryMismatch { found }),
                    None => {
                        return Err(DecodeError::InflateHeaderBlock {
                            stream_id,
                            source: e,
                        });
                    }
                },
            }
            if consumed == input.len() && used_out < spare_before {
                return Ok(());
            }
            if used_in == 0 && used_out == 0 {
                // No progress with output space available: the block is truncated; the parser
                // reports it.
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    #[test]
    fn serialize_lowercases_names_and_parse_round_trips() {
        let mut out = Vec::new();
        serialize_headers(
            &headers(&[("Content-Kind", "data"), ("x-channel", "80")]),
            &mut out,
        )
        .unwrap();
        let parsed = parse_headers(1, &out).unwrap();
        assert_eq!(
            parsed,
            headers(&[("content-kind", "data"), ("x-channel", "80")])
        );
    }

    #[test]
    fn parse_rejects_uppercase_duplicates_and_garbage() {
        let raw = |pairs: &[(&[u8], &[u8])], extra: &[u8]| {
            let mut v = (pairs.len() as u32).to_be_bytes().to_vec();
            for (n, val) in pairs {
                v.extend_from_slice(&(n.len() as u32).to_be_bytes());
                v.extend_from_slice(n);
                v.extend_from_slice(&(val.len() as u32).to_be_bytes());
                v.extend_from_slice(val);
            }
            v.extend_from_slice(extra);
            v
        };
        assert!(matches!(
            parse_headers(3, &raw(&[(b"Port", b"1")], b"")),
            Err(DecodeError::UppercaseHeaderName { stream_id: 3, .. })
        ));
        assert!(matches!(
            parse_headers(3, &raw(&[(b"a", b"1"), (b"a", b"2")], b"")),
            Err(DecodeError::DuplicateHeaderName { .. })
        ));
        assert!(matches!(
            parse_headers(3, &raw(&[(b"", b"1")], b"")),
            Err(DecodeError::MalformedHeaderBlock { .. })
        ));
        assert!(matches!(
            parse_headers(3, &raw(&[(b"a", b"1")], b"x")),
            Err(DecodeError::MalformedHeaderBlock { .. })
        ));
        assert!(matches!(
            parse_headers(3, &raw(&[(b"a", &[0xff])], b"")),
            Err(DecodeError::NonUtf8Header { .. })
        ));
        assert!(matches!(
            parse_headers(3, &[0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::MalformedHeaderBlock { .. })
        ));
        assert!(matches!(
            parse_headers(3, &[0, 0]),
            Err(DecodeError::MalformedHeaderBlock { .. })
        ));
        // Empty values are legal in SPDY/3; NUL-joined multi-values are kept verbatim.
        assert_eq!(
            parse_headers(3, &raw(&[(b"a", b""), (b"b", b"x\0y")], b"")).unwrap(),
            headers(&[("a", ""), ("b", "x\0y")])
        );
    }

    #[test]
    fn shared_context_compresses_later_blocks_smaller_and_decodes_in_order() {
        let block = headers(&[
            ("content-kind", "data"),
            ("x-channel", "8080"),
            ("x-sequence", "0"),
            (
                "x-some-longer-header-name",
                "a fairly long value that repeats",
            ),
        ]);
        let mut compressor = HeaderCompressor::new();
        let mut first = BytesMut::new();
        compressor.compress(&block, &mut first).unwrap();
        let mut second = BytesMut::new();
        compressor.compress(&block, &mut second).unwrap();
        assert!(
            second.len() < first.len(),
            "second block ({}) should be smaller than the first ({})",
            second.len(),
            first.len()
        );
        // The first block carries the zlib header with the SPDY/3 dictionary id.
        assert_eq!(&first[2..6], &SPDY3_DICTIONARY_ID.to_be_bytes());
        // Every block ends with the sync-flush marker.
        assert!(first.ends_with(&[0, 0, 0xff, 0xff]));
        assert!(second.ends_with(&[0, 0, 0xff, 0xff]));

        let mut decompressor = HeaderDecompressor::new(DEFAULT_MAX_HEADER_BLOCK);
        assert_eq!(decompressor.decompress(1, &first).unwrap(), block);
        assert_eq!(decompressor.decompress(3, &second).unwrap(), block);

        // Out of order, the second block alone means nothing to a fresh context.
        let mut fresh = HeaderDecompressor::new(DEFAULT_MAX_HEADER_BLOCK);
        assert!(fresh.decompress(3, &second).is_err());
    }

    #[test]
    fn decompressor_enforces_the_size_cap() {
        let big = "v".repeat(10_000);
        let block = headers(&[("a", big.as_str())]);
        let mut compressor = HeaderCompressor::new();
        let mut out = BytesMut::new();
        compressor.compress(&block, &mut out).unwrap();
        let mut decompressor = HeaderDecompressor::new(4096);
        assert!(matches!(
            decompressor.decompress(1, &out),
            Err(DecodeError::HeaderBlockTooLarge { limit: 4096, .. })
        ));
    }

    #[test]
    fn decompressor_rejects_a_foreign_dictionary() {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(b"not the spdy dictionary").unwrap();
        let mut out = vec![0u8; 256];
        deflate
            .compress(&[0, 0, 0, 0], &mut out, FlushCompress::Sync)
            .unwrap();
        out.truncate(deflate.total_out() as usize);
        let mut decompressor = HeaderDecompressor::new(DEFAULT_MAX_HEADER_BLOCK);
        assert!(matches!(
            decompressor.decompress(1, &out),
            Err(DecodeError::HeaderDictionaryMismatch { .. })
        ));
    }

    #[test]
    fn large_blocks_compress_and_inflate_completely() {
        // Incompressible-ish values force several compress/inflate rounds.
        let mut seed = 0x1234_5678u32;
        let mut value = String::new();
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            value.push(char::from(b'a' + (seed % 26) as u8));
        }
        let block = headers(&[("big", value.as_str()), ("small", "x")]);
        let mut compressor = HeaderCompressor::new();
        let mut out = BytesMut::new();
        compressor.compress(&block, &mut out).unwrap();
        let mut decompressor = HeaderDecompressor::new(DEFAULT_MAX_HEADER_BLOCK);
        assert_eq!(decompressor.decompress(1, &out).unwrap(), block);
    }
}
