//! Frame header layout (RFC 6455 section 5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```

use super::Error;

/// The longest possible header: 2 fixed bytes, a 64-bit length, a masking key.
pub const MAX_HEADER_LEN: usize = 2 + 8 + 4;

/// The largest payload a control frame may carry (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode: how to interpret its payload (RFC 6455 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: a further fragment of the message in progress.
    Continuation,
    /// 0x1: the first frame of a UTF-8 text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: the closing handshake.
    Close,
    /// 0x9: a keep-alive or liveness probe; answered with a Pong.
    Ping,
    /// 0xA: the answer to a Ping, or an unsolicited heartbeat.
    Pong,
}

impl OpCode {
    /// The opcode for the 4-bit value `bits`, or `None` for the reserved
    /// values 0x3-0x7 and 0xB-0xF (and anything wider than 4 bits).
    pub fn from_u8(bits: u8) -> Option<OpCode> {
        match bits {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Control frames have the most significant opcode bit set
    /// (RFC 6455 section 5.5).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }

    /// The opcode's 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// This is the final fragment of a message.
    pub fin: bool,
    /// The three RSV bits, RSV1 as the most significant (0..=7).
    pub rsv: u8,
    /// How to interpret the payload.
    pub opcode: OpCode,
    /// The masking key, present iff the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

/// Parse a header from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed (nothing is consumed) and
/// `Ok(Some((header, header_len)))` once the header is complete. Only rules
/// visible in the header bytes alone are enforced: reserved opcodes and 64-bit
/// lengths with the most significant bit set (RFC 6455 section 5.2). Both are
/// reported as soon as the byte that carries them arrives. Non-minimal length
/// encodings are accepted: minimality binds the sender only. Rules that need
/// connection state (masking, RSV, fragmentation, limits) live in the decoder.
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, Error> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(Error::Protocol("reserved opcode"))?;
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let (payload_len, mut header_len) = match b1 & 0x7F {
        126 => match bytes_at::<2>(buf, 2) {
            Some(len) => (u64::from(u16::from_be_bytes(len)), 4),
            None => return Ok(None),
        },
        127 => match bytes_at::<8>(buf, 2) {
            // "the most significant bit MUST be 0" (RFC 6455 section 5.2)
            Some(len) if len[0] & 0x80 != 0 => {
                return Err(Error::Protocol("64-bit payload length has its top bit set"))
            }
            Some(len) => (u64::from_be_bytes(len), 10),
            None => return Ok(None),
        },
        len => (u64::from(len), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        match bytes_at::<4>(buf, header_len) {
            Some(key) => {
                header_len += 4;
                Some(key)
            }
            None => return Ok(None),
        }
    } else {
        None
    };
    let header = FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x07,
        opcode,
        mask,
        payload_len,
    };
    Ok(Some((header, header_len)))
}

/// The `N` bytes of `buf` starting at `at`, if all are there.
fn bytes_at<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: len,
        }
    }

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// RFC 6455 section 5.7 examples, plus the length-encoding edges.
    #[test]
    fn parses_rfc_examples_and_length_encodings() {
        let table: &[(&str, &[u8], FrameHeader, usize)] = &[
            (
                "single-frame unmasked text",
                &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                header(true, OpCode::Text, None, 5),
                2,
            ),
            (
                "single-frame masked text",
                &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d],
                header(true, OpCode::Text, Some(KEY), 5),
                6,
            ),
            (
                "first fragment, unmasked",
                &[0x01, 0x03, 0x48, 0x65, 0x6c],
                header(false, OpCode::Text, None, 3),
                2,
            ),
            (
                "last fragment, unmasked",
                &[0x80, 0x02, 0x6c, 0x6f],
                header(true, OpCode::Continuation, None, 2),
                2,
            ),
            (
                "unmasked ping",
                &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                header(true, OpCode::Ping, None, 5),
                2,
            ),
            (
                "masked pong",
                &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f],
                header(true, OpCode::Pong, Some(KEY), 5),
                6,
            ),
            (
                "256-byte binary",
                &[0x82, 0x7E, 0x01, 0x00],
                header(true, OpCode::Binary, None, 256),
                4,
            ),
            (
                "65536-byte binary",
                &[0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
                header(true, OpCode::Binary, None, 65536),
                10,
            ),
            (
                "largest 64-bit length, masked",
                &[
                    0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4,
                ],
                header(true, OpCode::Binary, Some([1, 2, 3, 4]), i64::MAX as u64),
                14,
            ),
            (
                "non-minimal 16-bit length accepted",
                &[0x82, 0x7E, 0x00, 0x05],
                header(true, OpCode::Binary, None, 5),
                4,
            ),
            (
                "non-minimal 64-bit length accepted",
                &[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0x05],
                header(true, OpCode::Binary, None, 5),
                10,
            ),
            (
                "zero length",
                &[0x82, 0x00],
                header(true, OpCode::Binary, None, 0),
                2,
            ),
            (
                "close",
                &[0x88, 0x00],
                header(true, OpCode::Close, None, 0),
                2,
            ),
        ];
        for (name, bytes, want, want_len) in table {
            let got = parse_header(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, Some((*want, *want_len)), "{name}");
            for cut in 0..*want_len {
                assert_eq!(parse_header(&bytes[..cut]), Ok(None), "{name} cut at {cut}");
            }
        }
    }

    #[test]
    fn reads_rsv_bits() {
        for rsv in 0..8u8 {
            let (got, _) = parse_header(&[0x81 | rsv << 4, 0x00]).unwrap().unwrap();
            assert_eq!(got.rsv, rsv);
        }
    }

    #[test]
    fn rejects_reserved_opcodes_from_the_first_byte() {
        for bits in (0x3..=0x7).chain(0xB..=0xF) {
            assert_eq!(
                parse_header(&[0x80 | bits]),
                Err(Error::Protocol("reserved opcode")),
                "opcode {bits:#x}"
            );
        }
    }

    #[test]
    fn rejects_64_bit_length_with_top_bit() {
        let bytes = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(parse_header(&bytes), Err(Error::Protocol(_))));
    }

    #[test]
    fn opcode_round_trips() {
        for bits in 0..=0xFFu8 {
            if let Some(op) = OpCode::from_u8(bits) {
                assert_eq!(op.as_u8(), bits);
                assert_eq!(op.is_control(), bits >= 0x8);
            }
        }
    }
}
