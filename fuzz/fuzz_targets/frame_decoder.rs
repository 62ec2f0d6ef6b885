//! Fuzz the WebSocket frame decoder with hostile client bytes.
//!
//! Guards against: panics (slicing, arithmetic, unwraps) on any input;
//! unbounded allocation from untrusted length fields (the limits are small,
//! so any allocation past them is a bug the RSS limit catches); and
//! split-dependence: the events and the error must be the same whether the
//! stream arrives whole or in arbitrary reads, and `decode` must consume
//! every byte whenever it returns no event.
//!
//! Input layout: byte 0 seeds the read sizes, and its low bit says whether
//! permessage-deflate was agreed (RSV1 marks compressed messages); the
//! rest is the client stream.
#![no_main]

use averyws::ws::{Decoder, Error, Event, Limits};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_frame_size: 64 << 10,
    max_message_size: 64 << 10,
};

/// What a run produced: each event's debug form, then the error if any,
/// else the bytes still buffered.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<String>,
    end: Result<usize, Error>,
}

fn run(stream: &[u8], compression: bool, mut read_size: impl FnMut() -> usize) -> Outcome {
    let mut dec = Decoder::new(LIMITS);
    if compression {
        dec.accept_compressed();
    }
    let mut events = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let size = read_size().clamp(1, stream.len() - at);
        let mut read = stream[at..at + size].to_vec();
        at += size;
        let mut pos = 0;
        while pos < read.len() {
            let remaining = read.len() - pos;
            match dec.decode(&mut read[pos..]) {
                Ok((n, event)) => {
                    assert!(n <= remaining);
                    match event {
                        Some(event) => events.push(describe(event)),
                        None => assert_eq!(n, remaining, "no event but input left over"),
                    }
                    pos += n;
                }
                Err(e) => {
                    return Outcome {
                        events,
                        end: Err(e),
                    }
                }
            }
        }
    }
    let end = Ok(dec.buffered());
    Outcome { events, end }
}

fn describe(event: Event<'_>) -> String {
    format!("{event:?}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let compression = seed & 1 == 1;
    let whole = run(stream, compression, || usize::MAX);
    // Seed 0: one byte at a time. Otherwise xorshift-chosen sizes up to the
    // seed, so small seeds split headers and large ones split payloads.
    let mut state = u32::from(seed) | 0x100;
    let max = usize::from(seed).max(1);
    let split = run(stream, compression, || {
        if seed == 0 {
            return 1;
        }
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as usize % max + 1
    });
    assert_eq!(whole, split);
});
