//! Fuzz permessage-deflate: the offer parser and the inflater.
//!
//! Byte 0 picks the half. For offers (even): bytes 1 and 2 set the policy's
//! windows, the rest is a `Sec-WebSocket-Extensions` value; an agreement
//! must stay within the policy and the offer (RFC 7692 section 7.1), and
//! the server's own answer, offered back, must be accepted with the same
//! windows. For inflating (odd): byte 1 sets the limit, the rest is a
//! compressed message; it inflates within the limit or fails cleanly,
//! never allocating past it, and what inflates also round-trips through
//! the server's deflater.
#![no_main]

use averyws::ws::deflate::{negotiate, Codec, InflateError, Policy};
use averyws::ws::OpCode;
use libfuzzer_sys::fuzz_target;

fn offers(data: &[u8]) {
    let [server, client, rest @ ..] = data else {
        return;
    };
    let policy = Policy {
        server_max_window_bits: 9 + server % 7,
        client_max_window_bits: 8 + client % 8,
    };
    let Ok(header) = std::str::from_utf8(rest) else {
        return;
    };
    let Some(agreed) = negotiate(header, &policy) else {
        return;
    };
    assert!((9..=policy.server_max_window_bits).contains(&agreed.server_window_bits));
    let response = agreed.response();
    let again = negotiate(&response, &policy).expect("our answer is a valid offer");
    assert_eq!(again.server_window_bits, agreed.server_window_bits);
}

fn inflate(data: &[u8]) {
    let [limit, compressed @ ..] = data else {
        return;
    };
    let limit = usize::from(*limit) << 8;
    let mut codec = Codec::default();
    match codec.inflate(compressed, limit) {
        Ok(message) => {
            assert!(message.len() <= limit);
            assert!(message.capacity() <= limit + 1 || message.capacity() <= 64 << 10);
            let mut frame = Vec::new();
            codec.encode_message(&mut frame, OpCode::Binary, &message, Some(15), 0);
            // A compressed frame's payload inflates back to the message.
            if frame[0] & 0x40 != 0 {
                let header = if frame[1] == 126 { 4 } else { 2 };
                let back = codec.inflate(&frame[header..], limit).expect("round trip");
                assert_eq!(back, message);
            }
        }
        Err(InflateError::TooBig | InflateError::Corrupt) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((selector, rest)) if selector % 2 == 0 => offers(rest),
        Some((_, rest)) => inflate(rest),
        None => {}
    }
});
