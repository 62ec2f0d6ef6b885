//! Send side: server frames are never masked (RFC 6455 section 5.1) and
//! never fragmented here, so every frame has FIN set.

use super::close::CloseCode;
use super::frame::{OpCode, MAX_CONTROL_PAYLOAD};

/// The first RSV bit of a frame's first byte.
const RSV1: u8 = 0x40;

/// Append one complete frame (FIN set) with the minimal length encoding
/// (RFC 6455 section 5.2).
pub fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    encode_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Append one complete data frame whose payload is compressed with
/// permessage-deflate: RSV1 set (RFC 7692 section 6).
pub fn encode_compressed_frame(out: &mut Vec<u8>, opcode: OpCode, compressed: &[u8]) {
    let start = out.len();
    encode_header(out, opcode, compressed.len());
    out[start] |= RSV1;
    out.extend_from_slice(compressed);
}

/// Append a Close frame.
///
/// `None` sends an empty payload. `Some((code, reason))` sends the code and
/// the reason, truncated at a char boundary so the payload fits the 125 bytes
/// of a control frame (RFC 6455 section 5.5). A code that must not be sent
/// (1005, 1006, 1015, reserved ranges: [`CloseCode::is_valid_on_wire`] is
/// false) becomes an empty payload, the one close that is always valid
/// (RFC 6455 section 7.4.1).
pub fn encode_close(out: &mut Vec<u8>, close: Option<(CloseCode, &str)>) {
    let Some((code, reason)) = close.filter(|(code, _)| code.is_valid_on_wire()) else {
        encode_frame(out, OpCode::Close, &[]);
        return;
    };
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.as_bytes().get(..end).unwrap_or_default();
    encode_header(out, OpCode::Close, 2 + reason.len());
    out.extend_from_slice(&code.0.to_be_bytes());
    out.extend_from_slice(reason);
}

/// Append FIN + opcode and the shortest length encoding; no mask.
fn encode_header(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    let b0 = 0x80 | opcode.as_u8();
    match len {
        0..=125 => out.extend_from_slice(&[b0, len as u8]),
        126..=0xFFFF => {
            out.extend_from_slice(&[b0, 126]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.extend_from_slice(&[b0, 127]);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::parse_header;

    #[test]
    fn uses_minimal_length_encoding() {
        let table: &[(usize, &[u8])] = &[
            (0, &[0x82, 0]),
            (125, &[0x82, 125]),
            (126, &[0x82, 126, 0x00, 0x7E]),
            (127, &[0x82, 126, 0x00, 0x7F]),
            (256, &[0x82, 0x7E, 0x01, 0x00]),
            (65535, &[0x82, 126, 0xFF, 0xFF]),
            (
                65536,
                &[0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
            ),
        ];
        for &(len, header) in table {
            let payload = vec![0xA5; len];
            let mut out = Vec::new();
            encode_frame(&mut out, OpCode::Binary, &payload);
            assert_eq!(&out[..header.len()], header, "len {len}");
            assert_eq!(&out[header.len()..], &payload[..], "len {len}");
            let (parsed, header_len) = parse_header(&out).unwrap().unwrap();
            assert_eq!(header_len, header.len());
            assert_eq!(parsed.payload_len, len as u64);
            assert!(parsed.fin && parsed.mask.is_none() && parsed.rsv == 0);
        }
    }

    /// RFC 6455 section 5.7: single-frame unmasked "Hello" and unmasked ping.
    #[test]
    fn encodes_rfc_examples() {
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Text, b"Hello");
        encode_frame(&mut out, OpCode::Ping, b"Hello");
        assert_eq!(
            out,
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
    }

    #[test]
    fn encodes_close_frames() {
        let long = "\u{20ac}".repeat(50); // 150 bytes, 3 per char
        type Row<'a> = (Option<(CloseCode, &'a str)>, &'a [u8]);
        let table: &[Row] = &[
            (None, &[0x88, 0x00]),
            (Some((CloseCode::NORMAL, "")), &[0x88, 0x02, 0x03, 0xE8]),
            (
                Some((CloseCode(4000), "bye")),
                &[0x88, 0x05, 0x0F, 0xA0, b'b', b'y', b'e'],
            ),
            (Some((CloseCode::NO_STATUS, "never sent")), &[0x88, 0x00]),
            (Some((CloseCode::ABNORMAL, "")), &[0x88, 0x00]),
            (Some((CloseCode(1015), "")), &[0x88, 0x00]),
        ];
        for (close, want) in table {
            let mut out = Vec::new();
            encode_close(&mut out, *close);
            assert_eq!(&out, want, "{close:?}");
        }
        let mut out = Vec::new();
        encode_close(&mut out, Some((CloseCode::GOING_AWAY, &long)));
        // 123 bytes of reason would split a char: 41 chars = 123 bytes fit exactly.
        assert_eq!(out[1] as usize, 2 + 123);
        let mut out = Vec::new();
        let reason = format!("a{long}");
        encode_close(&mut out, Some((CloseCode::GOING_AWAY, &reason)));
        // "a" + 40 chars = 121 bytes; one more char would need 124.
        assert_eq!(out[1] as usize, 2 + 121);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
