//! Fuzz the JWT verifier, `auth::token`, with hostile tokens and secrets
//! files.
//!
//! Guards against: panics (slicing the segments, base64 lengths, JSON
//! nesting, time arithmetic at `u64::MAX`) and unbounded allocation on any
//! input; accepting a token whose signature does not hold; and claims that
//! break their documented bounds. Hostile bytes rarely carry a valid
//! signature, so each input is also read as `HEADER-JSON\nCLAIMS-JSON`,
//! encoded and signed with the known key, which takes the header and
//! claims parsers through their whole depth.
//!
//! Input layout: byte 0 picks the mode (odd: the rest is a secrets file;
//! even: its value is the leeway), bytes 1..9 are `now` (little-endian),
//! the rest is the text.
#![no_main]

use averyws::auth::token::{Claims, TokenError, Verifier, MAX_ROLES, MAX_TOKEN_BYTES};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &str = "fuzzing-secret-of-at-least-32-bytes";

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, now @ ..], text)) = data.split_first_chunk::<9>() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if mode & 1 == 1 {
        if let Ok(verifier) = Verifier::from_secrets(text) {
            assert!(verifier.key_ids().count() > 0);
        }
        return;
    }
    let now = u64::from_le_bytes(now);
    let Ok(verifier) = Verifier::from_secrets(&format!("k1:{SECRET}")) else {
        return;
    };
    let verifier = verifier.with_leeway(u64::from(mode));
    check(verifier.verify(text, now), text.len());
    // `HEADER-JSON\nCLAIMS-JSON`, encoded and validly signed.
    let (header, claims) = text.split_once('\n').unwrap_or((text, ""));
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    let signed = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    check(verifier.verify(&signed, now), signed.len());
});

fn check(result: Result<Claims, TokenError>, len: usize) {
    match result {
        Ok(claims) => {
            assert!(len <= MAX_TOKEN_BYTES);
            assert!(!claims.sub.is_empty());
            assert!(claims.roles.len() <= MAX_ROLES);
        }
        Err(error) => {
            // Display must work for every error, and stay short.
            assert!(error.to_string().len() < 100);
        }
    }
}
