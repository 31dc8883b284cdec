//! Decoder harness shared by the cargo-fuzz target and the deterministic fuzz test; not a stable
//! API.
//!
//! The harness decodes the input twice, once in a single chunk and once in a chunking derived
//! from the input itself, and panics if the two runs disagree. Any other panic (index out of
//! bounds, overflow, allocation blow-up) is a decoder bug the fuzzer will report.

use crate::codec::{DecoderLimits, FrameDecoder};

/// What one harness run saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Frames decoded.
    pub frames: usize,
    /// Non-fatal errors reported.
    pub errors: usize,
    /// Whether the run ended in a fatal error.
    pub fatal: bool,
}

/// Decodes `data` whole and in pieces and checks both runs yield the same frames and errors.
///
/// The first two bytes pick the chunk sizes; the rest is the SPDY byte stream.
pub fn decode_chunked(data: &[u8]) -> Outcome {
    let Some((&[a, b], stream)) = data.split_first_chunk::<2>() else {
        return Outcome::default();
    };
    let whole = run(stream, &[stream.len().max(1)]);
    // Chunk sizes between 1 and 64 (or up to 4 KiB when the top bit of `a` is set).
    let spread = if a & 0x80 != 0 { 4096 } else { 64 };
    let mut seed = u32::from_be_bytes([a, b, 0x5a, 0xa5]) | 1;
    let mut sizes = Vec::with_capacity(64);
    for _ in 0..64 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        sizes.push(1 + (seed as usize % spread));
    }
    let split = run(stream, &sizes);
    assert_eq!(whole, split, "chunking changed the decoding result");
    let mut outcome = Outcome::default();
    for entry in &whole {
        if entry.starts_with("fatal: ") {
            outcome.fatal = true;
        } else if entry.starts_with("error: ") {
            outcome.errors += 1;
        } else {
            outcome.frames += 1;
        }
    }
    outcome
}

/// Feeds `stream` in chunks cycling through `sizes`; returns a trace of frames and errors.
fn run(stream: &[u8], sizes: &[usize]) -> Vec<String> {
    // Small header-block cap so bombs are cheap to detect.
    let limits = DecoderLimits::default()
        .with_max_header_block(64 * 1024)
        .with_max_frame_length(1 << 20);
    let mut decoder = FrameDecoder::with_limits(limits);
    let mut trace = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        decoder.feed(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decoder.decode() {
                Ok(Some(frame)) => trace.push(format!("{frame:?}")),
                Ok(None) => break,
                Err(e) if e.is_fatal() => {
                    trace.push(format!("fatal: {e:?}"));
                    return trace;
                }
                Err(e) => trace.push(format!("error: {e:?}")),
            }
        }
    }
    trace
}
