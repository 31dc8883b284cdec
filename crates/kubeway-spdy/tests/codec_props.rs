//! Property and robustness tests of the frame codec through its public API.

use bytes::{Bytes, BytesMut};
use kubeway_spdy::codec::{FrameDecoder, FrameEncoder};
use kubeway_spdy::frame::{
    DataFrame, Frame, GoAway, GoAwayStatus, Headers, HeadersFrame, MAX_STREAM_ID, Ping, RstStatus,
    RstStream, Setting, Settings, SynReply, SynStream, UnknownControl, WindowUpdate,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn stream_id() -> impl Strategy<Value = u32> {
    prop_oneof![1..=16u32, 1..=MAX_STREAM_ID]
}

fn headers() -> impl Strategy<Value = Headers> {
    // Unique lowercase names (a map), arbitrary UTF-8 values including NUL separators.
    btree_map("[a-z0-9:_-]{1,12}", "[ -~\u{0}\u{e9}]{0,40}", 0..6)
        .prop_map(|m| m.into_iter().collect::<Headers>())
}

fn payload(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        3 => (stream_id(), any::<bool>(), payload(2048))
            .prop_map(|(stream_id, fin, data)| Frame::Data(DataFrame { stream_id, fin, data })),
        1 => (stream_id(), 0..=MAX_STREAM_ID, 0..=7u8, any::<u8>(), any::<bool>(), any::<bool>(), headers())
            .prop_map(|(stream_id, associated_stream_id, priority, slot, fin, unidirectional, headers)| {
                Frame::SynStream(SynStream {
                    stream_id,
                    associated_stream_id,
                    priority,
                    slot,
                    fin,
                    unidirectional,
                    headers,
                })
            }),
        1 => (stream_id(), any::<bool>(), headers())
            .prop_map(|(stream_id, fin, headers)| Frame::SynReply(SynReply { stream_id, fin, headers })),
        1 => (stream_id(), any::<u32>()).prop_map(|(stream_id, status)| {
            Frame::RstStream(RstStream { stream_id, status: RstStatus(status) })
        }),
        1 => (any::<bool>(), vec((any::<u8>(), 0..=0x00ff_ffffu32, any::<u32>()), 0..5)).prop_map(
            |(clear_previous, entries)| {
                Frame::Settings(Settings {
                    clear_previous,
                    entries: entries
                        .into_iter()
                        .map(|(flags, id, value)| Setting { flags, id, value })
                        .collect(),
                })
            }
        ),
        1 => any::<u32>().prop_map(|id| Frame::Ping(Ping { id })),
        1 => (0..=MAX_STREAM_ID, any::<u32>()).prop_map(|(last_good_stream_id, status)| {
            Frame::GoAway(GoAway { last_good_stream_id, status: GoAwayStatus(status) })
        }),
        1 => (stream_id(), any::<bool>(), headers())
            .prop_map(|(stream_id, fin, headers)| Frame::Headers(HeadersFrame { stream_id, fin, headers })),
        1 => (0..=MAX_STREAM_ID, 0..=0x7fff_ffffu32)
            .prop_map(|(stream_id, delta)| Frame::WindowUpdate(WindowUpdate { stream_id, delta })),
        1 => (prop_oneof![Just(0u16), Just(5), Just(10), 11..=u16::MAX], any::<u8>(), payload(64))
            .prop_map(|(frame_type, flags, payload)| {
                Frame::Unknown(UnknownControl { frame_type, flags, payload })
            }),
    ]
}

fn encode_all(frames: &[Frame]) -> BytesMut {
    let mut encoder = FrameEncoder::new();
    let mut wire = BytesMut::new();
    for f in frames {
        encoder
            .encode(f, &mut wire)
            .expect("generated frames are valid");
    }
    wire
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Frames encoded back to back, then re-split at arbitrary points, decode to the same frames
    /// in the same order (header blocks share one zlib context per direction).
    #[test]
    fn frames_survive_arbitrary_resplitting(
        frames in vec(frame(), 1..24),
        cuts in vec(any::<prop::sample::Index>(), 0..32),
    ) {
        let wire = encode_all(&frames);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        points.dedup();

        let mut decoder = FrameDecoder::new();
        let mut decoded = Vec::new();
        for pair in points.windows(2) {
            decoder.feed(&wire[pair[0]..pair[1]]);
            while let Some(f) = decoder.decode().expect("valid stream decodes") {
                decoded.push(f);
            }
        }
        prop_assert_eq!(decoder.buffered_len(), 0);
        prop_assert_eq!(decoded, frames);
    }

    /// Each encoded frame is one contiguous run whose length field matches its size.
    #[test]
    fn each_frame_is_one_contiguous_buffer(frames in vec(frame(), 1..8)) {
        let mut encoder = FrameEncoder::new();
        for f in &frames {
            let mut one = BytesMut::new();
            encoder.encode(f, &mut one).unwrap();
            let length = u32::from_be_bytes([0, one[5], one[6], one[7]]) as usize;
            prop_assert_eq!(one.len(), 8 + length);
        }
    }

    /// The decoder harness (also used by the cargo-fuzz target) accepts anything without
    /// panicking and is chunking-invariant.
    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..2048)) {
        kubeway_spdy::fuzzing::decode_chunked(&data);
    }
}

/// xorshift32, for reproducible pseudo-random inputs without extra dependencies.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n.max(1)
    }
}

/// A valid multi-frame stream to mutate, so mutations reach deep decoder paths (header blocks,
/// settings, fixed-length checks) instead of failing at the first version check.
fn seed_stream() -> Vec<u8> {
    let h: Headers = [
        ("content-kind", "data"),
        ("x-channel", "8080"),
        ("x-sequence", "7"),
    ]
    .into_iter()
    .collect();
    let frames = vec![
        Frame::SynStream(SynStream {
            stream_id: 1,
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: h.clone(),
        }),
        Frame::SynReply(SynReply {
            stream_id: 1,
            fin: false,
            headers: h.clone(),
        }),
        Frame::Data(DataFrame {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"payload bytes"),
        }),
        Frame::Settings(Settings {
            clear_previous: false,
            entries: vec![Setting {
                flags: 0,
                id: 7,
                value: 65536,
            }],
        }),
        Frame::Headers(HeadersFrame {
            stream_id: 1,
            fin: true,
            headers: h,
        }),
        Frame::Ping(Ping { id: 1 }),
        Frame::RstStream(RstStream {
            stream_id: 1,
            status: RstStatus::CANCEL,
        }),
        Frame::WindowUpdate(WindowUpdate {
            stream_id: 1,
            delta: 1,
        }),
        Frame::GoAway(GoAway {
            last_good_stream_id: 1,
            status: GoAwayStatus::OK,
        }),
    ];
    encode_all(&frames).to_vec()
}

/// Runs the fuzz harness over a few thousand deterministic inputs: pure noise, noise behind a
/// valid prefix, and mutated valid streams. CI runs this on stable without cargo-fuzz.
#[test]
fn decoder_survives_deterministic_garbage() {
    let seed = seed_stream();
    let mut rng = Rng(0x9e37_79b9);
    let (mut frames, mut errors, mut fatal) = (0, 0, 0);
    for round in 0..4000 {
        let mut input = vec![rng.next() as u8, rng.next() as u8];
        match round % 4 {
            0 => {
                let len = rng.below(512);
                input.extend((0..len).map(|_| rng.next() as u8));
            }
            1 => {
                let cut = rng.below(seed.len());
                input.extend_from_slice(&seed[..cut]);
                let len = rng.below(64);
                input.extend((0..len).map(|_| rng.next() as u8));
            }
            _ => {
                let mut mutated = seed.clone();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(mutated.len());
                    match rng.below(4) {
                        0 => mutated[at] ^= 1 << rng.below(8),
                        1 => mutated[at] = rng.next() as u8,
                        2 => mutated.truncate(at),
                        _ => mutated.insert(at, rng.next() as u8),
                    }
                    if mutated.is_empty() {
                        break;
                    }
                }
                input.extend_from_slice(&mutated);
            }
        }
        let outcome = kubeway_spdy::fuzzing::decode_chunked(&input);
        frames += outcome.frames;
        errors += outcome.errors;
        fatal += usize::from(outcome.fatal);
    }
    // The inputs must exercise every outcome, not just bounce off the first header.
    assert!(frames > 3000, "only {frames} frames decoded");
    assert!(errors > 100, "only {errors} non-fatal errors");
    assert!(fatal > 500, "only {fatal} fatal errors");
    eprintln!("frames {frames}, non-fatal errors {errors}, fatal runs {fatal}");
}

/// Garbage gives typed errors, and a fatal error is sticky.
#[test]
fn garbage_yields_errors_not_panics() {
    let mut decoder = FrameDecoder::new();
    decoder.feed(&[0xff; 64]);
    let first = decoder.decode().unwrap_err();
    assert!(first.is_fatal(), "{first}");
    assert!(decoder.decode().is_err());

    // A SYN_STREAM whose "compressed" block is noise.
    let mut decoder = FrameDecoder::new();
    let mut frame = vec![0x80, 3, 0, 1, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    frame.extend_from_slice(&[0x13; 10]);
    decoder.feed(&frame);
    let e = decoder.decode().unwrap_err();
    assert!(e.is_fatal(), "{e}");
}
