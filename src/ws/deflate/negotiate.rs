//! The permessage-deflate offer in `Sec-WebSocket-Extensions`, judged
//! (RFC 7692 section 7.1): the first offer the server can accept wins;
//! an offer with an unknown parameter, a duplicate one or an invalid
//! value is declined (section 5), as is one the policy cannot meet; an
//! unparseable header declines them all. A declined offer costs nothing:
//! the session runs uncompressed.
//!
//! averyws never keeps a compression context between messages, so every
//! accepted offer is answered with `server_no_context_takeover` and
//! `client_no_context_takeover` (sections 7.1.1.1 and 7.1.1.2 allow both
//! in a response to any offer).

/// The extension's registered name.
pub const EXTENSION: &str = "permessage-deflate";

/// The window sizes the server accepts, as base-2 logarithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The largest window the server compresses with (9 to 15).
    pub server_max_window_bits: u8,
    /// The largest window the client may compress with (8 to 15); below
    /// 15, only offers that say the client can be limited are accepted.
    pub client_max_window_bits: u8,
}

/// An accepted offer: what both sides compress with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The window the server compresses with.
    pub server_window_bits: u8,
    /// `server_max_window_bits` in the response, when the offer asked or
    /// the policy is below 15.
    announce_server_bits: bool,
    /// `client_max_window_bits` in the response, when the client is
    /// limited.
    client_window_bits: Option<u8>,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value of the response.
    pub fn response(&self) -> String {
        let mut value =
            format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
        if self.announce_server_bits {
            value.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_window_bits
            ));
        }
        if let Some(bits) = self.client_window_bits {
            value.push_str(&format!("; client_max_window_bits={bits}"));
        }
        value
    }
}

/// One permessage-deflate offer's window parameters (its context
/// takeover flags are accepted whatever they say: we take over none).
#[derive(Debug, Default)]
struct Offer {
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// Judges the `Sec-WebSocket-Extensions` value (several header lines
/// joined with `,`) under `policy`.
pub fn negotiate(header: &str, policy: &Policy) -> Option<Agreed> {
    let offers = split(header, b',')?;
    offers.iter().find_map(|offer| {
        let mut parts = split(offer, b';')?.into_iter();
        let name = parts.next()?;
        if !name.eq_ignore_ascii_case(EXTENSION) {
            return None;
        }
        accept(&parse_offer(parts)?, policy)
    })
}

/// The offer's parameters; `None` for one RFC 7692 section 5 declines.
fn parse_offer<'a>(params: impl Iterator<Item = &'a str>) -> Option<Offer> {
    let mut offer = Offer::default();
    let (mut server_no_takeover, mut client_no_takeover) = (false, false);
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param, None),
        };
        if !is_token(name) {
            return None;
        }
        let fresh = match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) => {
                !std::mem::replace(&mut server_no_takeover, true)
            }
            ("client_no_context_takeover", None) => {
                !std::mem::replace(&mut client_no_takeover, true)
            }
            ("server_max_window_bits", Some(value)) => offer
                .server_max_window_bits
                .replace(window_bits(value)?)
                .is_none(),
            ("client_max_window_bits", value) => {
                let bits = match value {
                    Some(value) => Some(window_bits(value)?),
                    None => None,
                };
                offer.client_max_window_bits.replace(bits).is_none()
            }
            _ => false,
        };
        if !fresh {
            return None;
        }
    }
    Some(offer)
}

/// What the server answers to a valid `offer`, if it can meet it.
fn accept(offer: &Offer, policy: &Policy) -> Option<Agreed> {
    // zlib's raw deflate has no 256-byte window (it makes 8 a 9), so a
    // client that allows the server only that is declined.
    let asked = offer.server_max_window_bits;
    if asked.is_some_and(|bits| bits < 9) {
        return None;
    }
    let server_window_bits = asked.map_or(policy.server_max_window_bits, |bits| {
        bits.min(policy.server_max_window_bits)
    });
    let client_window_bits = match offer.client_max_window_bits {
        _ if policy.client_max_window_bits >= 15 => None,
        // The client did not say it can be limited.
        None => return None,
        Some(value) => Some(value.map_or(policy.client_max_window_bits, |bits| {
            bits.min(policy.client_max_window_bits)
        })),
    };
    Some(Agreed {
        server_window_bits,
        announce_server_bits: asked.is_some() || server_window_bits < 15,
        client_window_bits,
    })
}

/// `8` to `15` with no leading zero (RFC 7692 section 7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// A parameter value: a token, or a quoted string whose content is a
/// token (RFC 7692 section 7.1: no escapes needed, none accepted).
fn unquote(value: &str) -> Option<&str> {
    let inner = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    is_token(inner).then_some(inner)
}

/// RFC 9110 section 5.6.2.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `s` split at `sep` outside quoted strings, each part trimmed of
/// whitespace, empty list elements dropped (RFC 9110 section 5.6.1);
/// `None` when a quote is left open or a part is empty where a
/// parameter must be.
fn split(s: &str, sep: u8) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'\\' if quoted => return None,
            _ if b == sep && !quoted => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(s[start..].trim());
    match sep {
        // An empty list element is allowed; an empty parameter is not.
        b',' => parts.retain(|part| !part.is_empty()),
        _ if parts.iter().any(|part| part.is_empty()) => return None,
        _ => {}
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Policy = Policy {
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn answer(header: &str, policy: &Policy) -> Option<String> {
        negotiate(header, policy).map(|agreed| agreed.response())
    }

    #[test]
    fn each_offer_gets_the_answer_rfc_7692_gives_it() {
        let table: &[(&str, Option<String>)] = &[
            ("permessage-deflate", Some(BOTH.into())),
            // What browsers send.
            (
                "permessage-deflate; client_max_window_bits",
                Some(BOTH.into()),
            ),
            ("PerMessage-Deflate", Some(BOTH.into())),
            (
                "permessage-deflate; server_no_context_takeover",
                Some(BOTH.into()),
            ),
            (
                "permessage-deflate; client_no_context_takeover",
                Some(BOTH.into()),
            ),
            (
                "permessage-deflate; server_max_window_bits=10",
                Some(format!("{BOTH}; server_max_window_bits=10")),
            ),
            (
                "permessage-deflate; server_max_window_bits=\"12\"",
                Some(format!("{BOTH}; server_max_window_bits=12")),
            ),
            (
                "permessage-deflate; client_max_window_bits=9",
                Some(BOTH.into()),
            ),
            (
                "permessage-deflate;client_max_window_bits = 9",
                Some(BOTH.into()),
            ),
            // Invalid offers are declined, and the next one is tried.
            ("permessage-deflate; server_max_window_bits", None),
            ("permessage-deflate; server_max_window_bits=16", None),
            ("permessage-deflate; server_max_window_bits=7", None),
            ("permessage-deflate; server_max_window_bits=08", None),
            ("permessage-deflate; server_max_window_bits=1a", None),
            ("permessage-deflate; client_max_window_bits=0", None),
            ("permessage-deflate; server_no_context_takeover=1", None),
            ("permessage-deflate; x_unknown", None),
            (
                "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                None,
            ),
            (
                "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
                None,
            ),
            ("permessage-deflate; ; client_max_window_bits", None),
            ("permessage-deflate; server_max_window_bits=\"1\\0\"", None),
            ("permessage-deflate; server_max_window_bits=\"10", None),
            // zlib cannot compress with a 256-byte window.
            ("permessage-deflate; server_max_window_bits=8", None),
            (
                "permessage-deflate; server_max_window_bits=8, permessage-deflate",
                Some(BOTH.into()),
            ),
            (
                "permessage-deflate; foo, permessage-deflate; server_max_window_bits=11",
                Some(format!("{BOTH}; server_max_window_bits=11")),
            ),
            (
                "x-webkit-deflate-frame, permessage-deflate",
                Some(BOTH.into()),
            ),
            (" , permessage-deflate ,", Some(BOTH.into())),
            ("x-webkit-deflate-frame", None),
            ("", None),
            ("permessage-deflate, \"", None),
        ];
        for (header, want) in table {
            assert_eq!(&answer(header, &OPEN), want, "{header:?}");
        }
    }

    #[test]
    fn a_smaller_policy_limits_both_windows() {
        let policy = Policy {
            server_max_window_bits: 12,
            client_max_window_bits: 10,
        };
        let table: &[(&str, Option<String>)] = &[
            // The client cannot be limited unless it says so.
            ("permessage-deflate", None),
            (
                "permessage-deflate; client_max_window_bits",
                Some(format!(
                    "{BOTH}; server_max_window_bits=12; client_max_window_bits=10"
                )),
            ),
            (
                "permessage-deflate; client_max_window_bits=9; server_max_window_bits=14",
                Some(format!(
                    "{BOTH}; server_max_window_bits=12; client_max_window_bits=9"
                )),
            ),
            (
                "permessage-deflate; client_max_window_bits=15; server_max_window_bits=9",
                Some(format!(
                    "{BOTH}; server_max_window_bits=9; client_max_window_bits=10"
                )),
            ),
        ];
        for (header, want) in table {
            assert_eq!(&answer(header, &policy), want, "{header:?}");
        }
        let agreed = negotiate("permessage-deflate; client_max_window_bits", &policy).unwrap();
        assert_eq!(agreed.server_window_bits, 12);
    }
}
