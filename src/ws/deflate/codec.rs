//! Compressing and inflating whole messages (RFC 7692 section 7.2), with
//! no context kept between messages: one reactor's sessions share one
//! inflater and one deflater per window size, reset for each message, so
//! an idle connection holds no zlib state at all.
//!
//! Inflating is streamed into a buffer that stops at a limit: the message
//! size cap, or the ratio cap (a small frame that would inflate to a huge
//! message is cut off as soon as it passes either), never a full
//! allocation up front.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::ws::encoder::{encode_compressed_frame, encode_frame};
use crate::ws::OpCode;

/// The empty stored block a sync flush ends with: the sender strips it,
/// the receiver appends it (RFC 7692 sections 7.2.1 and 7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// The first output allocation of an inflate.
const STEP: usize = 64 << 10;
/// A message inflates to this much whatever the ratio cap says: short
/// messages of repeated text compress far beyond any sane ratio.
pub const RATIO_FLOOR: usize = 64 << 10;
/// zlib level 1, its fastest: a gateway compresses every message it
/// sends, and level 6 cost about twice the CPU per message here.
const LEVEL: u32 = 1;
/// Buffers kept between messages are dropped above this capacity: one big
/// message must not pin its memory to the reactor.
const RETAINED_CAPACITY: usize = 64 << 10;

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the limit (close 1009).
    TooBig,
    /// It is not a valid DEFLATE stream (close 1007).
    Corrupt,
}

/// A reactor's compression state, allocated on first use.
#[derive(Default)]
pub struct Codec {
    /// Boxed: zlib state is large and most reactors may never need it.
    inflater: Option<Box<Decompress>>,
    /// One per server window size, 9 to 15.
    deflaters: [Option<Box<Compress>>; 7],
    /// The last inflated message's buffer, for the next one.
    inflated: Vec<u8>,
    /// Where an outgoing message is compressed before it is framed.
    scratch: Vec<u8>,
    /// Messages inflated, and messages sent compressed, so far.
    counts: [u64; 2],
}

impl Codec {
    /// One message's `compressed` payload inflated, stopping with
    /// [`InflateError::TooBig`] once it would exceed `limit` bytes. Hand
    /// the buffer back with [`Codec::recycle`] once served.
    pub fn inflate(&mut self, compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = std::mem::take(&mut self.inflated);
        match self.inflate_into(compressed, &mut out, limit) {
            Ok(()) => {
                self.counts[0] += 1;
                Ok(out)
            }
            Err(e) => {
                self.recycle(out);
                Err(e)
            }
        }
    }

    /// Messages inflated so far.
    pub fn inflated(&self) -> u64 {
        self.counts[0]
    }

    /// Messages sent compressed so far.
    pub fn deflated(&self) -> u64 {
        self.counts[1]
    }

    /// Takes back a buffer [`Codec::inflate`] gave out.
    pub fn recycle(&mut self, mut buffer: Vec<u8>) {
        buffer.clear();
        if buffer.capacity() <= RETAINED_CAPACITY {
            self.inflated = buffer;
        }
    }

    /// Appends a data message to `out` as one frame: compressed (RSV1)
    /// with a window of `window_bits` when the session agreed to
    /// permessage-deflate, the payload has at least `min_bytes` and
    /// compressing makes it smaller; else as it is.
    pub fn encode_message(
        &mut self,
        out: &mut Vec<u8>,
        opcode: OpCode,
        payload: &[u8],
        window_bits: Option<u8>,
        min_bytes: usize,
    ) {
        let Some(bits) = window_bits.filter(|_| payload.len() >= min_bytes) else {
            return encode_frame(out, opcode, payload);
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.deflate(payload, bits, &mut scratch);
        if scratch.len() < payload.len() {
            encode_compressed_frame(out, opcode, &scratch);
            self.counts[1] += 1;
        } else {
            encode_frame(out, opcode, payload);
        }
        if scratch.capacity() <= RETAINED_CAPACITY {
            self.scratch = scratch;
        }
    }

    fn inflate_into(
        &mut self,
        compressed: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, 15)));
        inflater.reset(false);
        out.clear();
        for input in [compressed, &TAIL[..]] {
            let mut used = 0;
            loop {
                if out.len() == out.capacity() {
                    if out.len() > limit {
                        return Err(InflateError::TooBig);
                    }
                    // Doubling, from STEP, but one byte past the limit at
                    // most: that is enough to know it is over.
                    let grow = out.capacity().max(STEP).min(limit + 1 - out.len());
                    out.reserve_exact(grow);
                }
                let before = (inflater.total_in(), out.len());
                let status = inflater
                    .decompress_vec(&input[used..], out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                used += (inflater.total_in() - before.0) as usize;
                if out.len() > limit {
                    return Err(InflateError::TooBig);
                }
                let stalled = (inflater.total_in(), out.len()) == before;
                let room_left = out.len() < out.capacity();
                match status {
                    // A final block ends the message; what follows it is
                    // ignored, as zlib does.
                    Status::StreamEnd => return Ok(()),
                    _ if used == input.len() && room_left => break,
                    _ if stalled && room_left => return Err(InflateError::Corrupt),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Appends `payload` compressed with a window of `window_bits` (9 to
    /// 15) to `out`, the sync flush's empty block removed.
    fn deflate(&mut self, payload: &[u8], window_bits: u8, out: &mut Vec<u8>) {
        let bits = window_bits.clamp(9, 15);
        let deflater = self.deflaters[usize::from(bits - 9)].get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(
                Compression::new(LEVEL),
                false,
                bits,
            ))
        });
        deflater.reset();
        let start = out.len();
        let mut used = 0;
        loop {
            // Incompressible input grows by a few bytes per block.
            out.reserve(payload.len() - used + 64);
            let before = deflater.total_in();
            // Only a caller's bug makes deflate fail: a fresh stream, any
            // input, room to write.
            if deflater
                .compress_vec(&payload[used..], out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            used += (deflater.total_in() - before) as usize;
            if used == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    }
}

/// How much `compressed` bytes may inflate to: `max_message` at most, and
/// `ratio` times their size, but never less than [`RATIO_FLOOR`].
pub fn inflate_limit(compressed: usize, max_message: usize, ratio: usize) -> usize {
    compressed
        .saturating_mul(ratio)
        .max(RATIO_FLOOR)
        .min(max_message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(payload: &[u8], bits: u8) {
        let mut codec = Codec::default();
        let mut compressed = Vec::new();
        codec.deflate(payload, bits, &mut compressed);
        assert!(!compressed.ends_with(&TAIL));
        let back = codec.inflate(&compressed, payload.len().max(1)).unwrap();
        assert_eq!(back, payload, "window {bits}");
        codec.recycle(back);
    }

    #[test]
    fn messages_round_trip_at_every_window() {
        let text = b"the same words again and again, ".repeat(500);
        let noise: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for bits in 9..=15 {
            round_trip(b"", bits);
            round_trip(b"hi", bits);
            round_trip(&text, bits);
            round_trip(&noise, bits);
        }
    }

    #[test]
    fn the_rfc_7692_example_inflates() {
        // Section 7.2.3.1: "Hello" compressed, tail removed.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(Codec::default().inflate(&hello, 100).unwrap(), b"Hello");
        // Section 7.2.3.3: a BFINAL block.
        let final_block = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(
            Codec::default().inflate(&final_block, 100).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit_with_bounded_memory() {
        // Made as an attacker would, at zlib's best level: our level 1
        // squeezes zeros only about 100 times.
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), Compression::best());
        std::io::Write::write_all(&mut encoder, &vec![0; 64 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 128 << 10, "{}", bomb.len());
        let mut codec = Codec::default();
        let limit = 1 << 20;
        let mut out = Vec::new();
        assert_eq!(
            codec.inflate_into(&bomb, &mut out, limit),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= limit + 1, "{}", out.capacity());
        // Exactly at the limit is fine.
        let mut exact = Vec::new();
        codec.deflate(&vec![7; limit], 15, &mut exact);
        assert_eq!(codec.inflate(&exact, limit).unwrap().len(), limit);
    }

    #[test]
    fn garbage_is_corrupt_not_a_hang() {
        let table: &[&[u8]] = &[&[0xff; 10], &[0x07], &[0x06]];
        for input in table {
            let got = Codec::default().inflate(input, 1 << 20);
            assert_eq!(got, Err(InflateError::Corrupt), "{input:?}");
        }
    }

    #[test]
    fn the_ratio_cap_has_a_floor_and_a_ceiling() {
        assert_eq!(inflate_limit(10, 1 << 30, 100), RATIO_FLOOR);
        assert_eq!(inflate_limit(10 << 10, 1 << 30, 100), 1000 << 10);
        assert_eq!(inflate_limit(10 << 20, 16 << 20, 100), 16 << 20);
        assert_eq!(inflate_limit(100, 1000, 100), 1000);
    }
}
