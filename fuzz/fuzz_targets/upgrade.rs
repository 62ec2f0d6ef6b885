//! Fuzz target for the opening-handshake parser, `ws::upgrade`.
//!
//! Bug class: panics, unbounded allocation and prefix inconsistency on
//! hostile request heads. The reactor calls `parse` on its growing buffer
//! after every read, so the answer must not depend on how the bytes were
//! split: every prefix must either ask for more bytes or give exactly the
//! answer the whole input gives. Whatever `parse` returns must be writable
//! as a response without panicking, and an accepted head must not smuggle
//! an extra header line or an early end of head into the 101 response.
//!
//! A head `parse_scrape` takes as `GET /metrics` must be one `parse`
//! refuses: no request is both.
//!
//! Input: byte 0 picks the policy, byte 1 seeds the split points, the rest
//! is the bytes the client sent.
#![no_main]

use averyws::metrics::scrape_request::parse_scrape;
use averyws::ws::upgrade::{self, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [knobs, seed, input @ ..] = data else {
        return;
    };
    let origins = ["https://example.com".to_owned()];
    let subprotocols = ["chat".to_owned(), "superchat".to_owned()];
    let policy = Policy {
        // Small caps reach the 431 boundary with short inputs.
        max_header_bytes: [8192, 512, 64, 0][usize::from(knobs & 3)],
        allowed_origins: if knobs & 4 == 0 { &[] } else { &origins },
        subprotocols: if knobs & 8 == 0 { &[] } else { &subprotocols },
    };

    let whole = upgrade::parse(input, &policy);
    // A scrape asks for no upgrade, so it is never a valid handshake.
    if parse_scrape(input, policy.max_header_bytes).is_some() {
        assert!(whole.is_err(), "both a scrape and an upgrade");
    }
    match &whole {
        Ok(None) => assert!(input.len() < policy.max_header_bytes),
        Ok(Some(req)) => {
            assert!(req.head_len <= input.len() && req.head_len <= policy.max_header_bytes);
            assert_eq!(req.accept.len(), 28);
            // The head alone gives the same request.
            assert_eq!(
                upgrade::parse(&input[..req.head_len], &policy),
                Ok(Some(req.clone()))
            );
            let mut out = Vec::new();
            upgrade::write_accept(&mut out, req, None);
            assert_eq!(ends_of_head(&out), [out.len() - 4]);
            assert_eq!(
                count_lines(&out),
                5 + usize::from(req.subprotocol.is_some())
            );
        }
        Err(rejection) => {
            let mut out = Vec::new();
            rejection.write_response(&mut out);
            assert!(out.starts_with(b"HTTP/1.1 "));
            assert_eq!(ends_of_head(&out), [out.len() - 4]);
        }
    }

    // Feed the input as a reactor would, in chunks of 1 to 64 bytes.
    let mut state = u32::from(*seed) << 8 | 0x5a;
    let mut end = 0;
    while end < input.len() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        end = input.len().min(end + 1 + (state % 64) as usize);
        let part = upgrade::parse(&input[..end], &policy);
        if part != Ok(None) {
            assert_eq!(part, whole, "prefix of {end} bytes");
            break;
        }
    }
});

/// Offsets of every CRLFCRLF in `out`.
fn ends_of_head(out: &[u8]) -> Vec<usize> {
    out.windows(4)
        .enumerate()
        .filter(|(_, window)| window == b"\r\n\r\n")
        .map(|(at, _)| at)
        .collect()
}

/// Number of CRLF-terminated lines in `out`.
fn count_lines(out: &[u8]) -> usize {
    out.windows(2).filter(|window| window == b"\r\n").count()
}
