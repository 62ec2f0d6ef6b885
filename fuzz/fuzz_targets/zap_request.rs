//! Fuzz target for the backend allowlist parsers: ZAP requests
//! (`backend::zap`) and CIDR blocks (`backend::cidr`).
//!
//! Bug class: panics and unbounded allocation on hostile ZAP requests (a
//! peer controls the address and credential frames) and on hostile
//! `--backend-allow` values; and inconsistency: a CIDR that parses must
//! print back to a string that parses to the same block, and contain its
//! own network address.
//!
//! Input: split on 0xFF bytes into frames for `parse_request`; the first
//! frame is also tried as a CIDR block.
#![no_main]

use averyws::backend::cidr::{Allowlist, Cidr};
use averyws::backend::zap::{decide, parse_request, reply_verdict, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let frames: Vec<&[u8]> = data.split(|&b| b == 0xFF).take(64).collect();
    if let Ok(request) = parse_request(&frames) {
        let null = Policy::null(Allowlist::default());
        let curve = Policy {
            allowlist: Allowlist::default(),
            curve_clients: Some(vec![[0x42; 32]]),
        };
        for policy in [null, curve] {
            let verdict = decide(&policy, &request);
            let mut out = Vec::new();
            reply_verdict(request.request_id, verdict, &mut out);
            assert_eq!(out.len(), 6);
        }
    }
    if let Some(text) = frames.first().and_then(|f| std::str::from_utf8(f).ok()) {
        if let Ok(cidr) = text.parse::<Cidr>() {
            let again: Cidr = cidr.to_string().parse().expect("a printed CIDR parses");
            assert_eq!(again, cidr);
            assert!(cidr.contains(cidr.network()));
        }
    }
});
