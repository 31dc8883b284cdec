//! Fuzz target: arbitrary bytes into the SPDY/3 frame decoder, whole and in input-chosen chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Panics on any decoder crash and on any difference between the two chunkings.
    let _ = kubeway_spdy::fuzzing::decode_chunked(data);
});
