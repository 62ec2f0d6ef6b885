//! Fuzz the backend message decoder and signature verifier with hostile
//! multipart messages from a ZeroMQ peer.
//!
//! Guards against: panics (slicing, arithmetic, unwraps) in `decode`,
//! `parse_head` and `Verifier::verify` on any frames; unbounded work or
//! allocation from counts and lengths in the frames; and codec asymmetry:
//! whatever `decode` accepts, `encode` must accept, and for an unsigned
//! message re-encoding must give back the very same frames (one encoding
//! per value), while signing it and verifying it again must give back the
//! same value.
//!
//! Input layout: byte 0 picks the frame length prefix, 1, 2 or 4 bytes
//! big-endian (`byte0 % 3`); the rest is `prefix, frame bytes` repeated
//! (a length past the end takes what is left).
#![no_main]

use averyws::backend::codec::parse_head;
use averyws::backend::signing::{KeyRing, ReplayPolicy, Verifier};
use averyws::backend::{decode, encode_in, Frames, MAX_FRAMES};
use libfuzzer_sys::fuzz_target;

/// The key, ids and clock the seeds were signed with.
const KEYS: &[u8] = b"k1:0123456789abcdef0123456789abcdef";
const ME: u64 = 0x1112_1314_1516_1718;
const SENDER: u64 = 0x0102_0304_0506_0708;
const NOW: u64 = 1_700_000_000_000;

/// Enough to reach the too-many-frames check, and no more.
const MAX_SPLIT: usize = MAX_FRAMES + 8;

fn split(data: &[u8]) -> Vec<&[u8]> {
    let Some((&scheme, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let width = [1, 2, 4][usize::from(scheme % 3)];
    let mut frames = Vec::new();
    while frames.len() < MAX_SPLIT && rest.len() >= width {
        let (prefix, tail) = rest.split_at(width);
        let len = prefix
            .iter()
            .fold(0usize, |len, &byte| len << 8 | usize::from(byte));
        let (frame, tail) = tail.split_at(len.min(tail.len()));
        frames.push(frame);
        rest = tail;
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    let frames = split(data);
    let ring = KeyRing::parse(KEYS).expect("valid key file");
    let mut verifier = Verifier::new(ring.clone(), ME, ReplayPolicy::default());
    let _ = verifier.verify(&frames, NOW);
    let head = parse_head(&frames);
    let Ok(message) = decode(&frames) else {
        return;
    };
    let signed = head.is_ok_and(|head| head.signed);
    // `decode` accepted it, so the version is one it speaks.
    let version = head.map_or(0, |head| head.version);

    let mut out = Frames::new();
    encode_in(version, &message, &mut out).expect("what decodes encodes");
    let encoded: Vec<&[u8]> = out.iter().collect();
    assert_eq!(decode(&encoded), Ok(message));
    if !signed {
        assert_eq!(encoded, frames, "one encoding per value");
    }

    let mut signer = ring.signer(SENDER);
    let mut signed_out = Frames::new();
    signer
        .encode(version, &message, ME, NOW, &mut signed_out)
        .expect("what encodes signs");
    let signed_frames: Vec<&[u8]> = signed_out.iter().collect();
    let mut fresh = Verifier::new(ring, ME, ReplayPolicy::default());
    assert!(fresh.verify(&signed_frames, NOW).is_ok());
    assert_eq!(decode(&signed_frames), Ok(message));
});
