//! JSON Web Token verification (RFC 7519) for HS256 only (RFC 7518
//! section 3.2), sans-IO: the token text and the current time go in, the
//! claims or a [`TokenError`] come out.
//!
//! Checks run in a fixed order, cheapest and least trusting first, so the
//! claims are parsed only once the signature holds:
//!
//! 1. Size: at most [`MAX_TOKEN_BYTES`], so nothing after this allocates
//!    more than a few times that.
//! 2. Shape: exactly three `.`-separated segments, each base64url without
//!    padding and with zero trailing bits (RFC 7515 section 2), so one
//!    token has one spelling.
//! 3. Header: a JSON object whose `alg` is exactly `HS256`; `none`,
//!    `RS256` and everything else are refused, and so is a `crit` member
//!    (RFC 7515 section 4.1.11: extensions we do not understand must be
//!    rejected). The `kid` member picks the key; a header without `kid` is
//!    accepted only when exactly one key is configured.
//! 4. Signature: HMAC-SHA256 over `header.payload`, compared in constant
//!    time.
//! 5. Claims: a JSON object with `sub` (a non-empty string, required),
//!    `roles` (an array of at most [`MAX_ROLES`] strings, optional) and the
//!    optional NumericDates `exp`, `nbf` and `iat`, in whole seconds. Other
//!    claims are ignored; a claim given twice is refused.
//! 6. Time: `exp` and `nbf` with a leeway for clock skew
//!    ([`DEFAULT_LEEWAY_S`], see [`Verifier::with_leeway`]). `iat` is
//!    reported, not judged.
//!
//! Errors never carry the token or a secret, so they are safe to log.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::DecodeSliceError;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::error::Category;
use sha2::Sha256;

/// Longest token accepted, in bytes. Real tokens are a few hundred bytes;
/// 8 KiB is also the default cap on the whole upgrade request head.
pub const MAX_TOKEN_BYTES: usize = 8 << 10;

/// Most roles one token may carry. Each is looked up on every ACL check of
/// the connection, so the list is kept short.
pub const MAX_ROLES: usize = 64;

/// Default allowance for clock skew between the issuer and this server, in
/// seconds.
pub const DEFAULT_LEEWAY_S: u64 = 30;

/// Shortest secret accepted, in bytes. RFC 7518 section 3.2: "A key of the
/// same size as the hash output (for instance, 256 bits for "HS256") or
/// larger MUST be used with this algorithm."
pub const MIN_SECRET_BYTES: usize = 32;

/// Size of an HMAC-SHA256 tag.
const TAG_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The verified claims of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `sub`: the user id.
    pub sub: String,
    /// `roles`: roles granted for this connection on top of the user's
    /// stored roles; empty when the claim is absent.
    pub roles: Vec<String>,
    /// `exp`: expiry, in seconds since the Unix epoch.
    pub exp: Option<u64>,
    /// `nbf`: not valid before, in seconds since the Unix epoch.
    pub nbf: Option<u64>,
    /// `iat`: issue time, in seconds since the Unix epoch.
    pub iat: Option<u64>,
}

/// Why a token was refused. The server answers every one of them with the
/// same 401; the text is for logs and never includes the token or a
/// secret.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLong,
    /// Not three base64url segments, or a header that is not a JSON object
    /// as expected. The text says which.
    Malformed(&'static str),
    /// The header's `alg` is not `HS256`.
    UnsupportedAlgorithm,
    /// No configured key has the header's `kid`, or the header has no
    /// `kid` and several keys are configured.
    UnknownKeyId,
    /// The signature does not match.
    BadSignature,
    /// The signature holds but the claims are not as required. The text
    /// says which.
    BadClaims(&'static str),
    /// `exp` has passed, leeway included.
    Expired,
    /// `nbf` is still ahead, leeway included.
    NotYetValid,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::TooLong => write!(f, "token longer than {MAX_TOKEN_BYTES} bytes"),
            TokenError::Malformed(why) => write!(f, "malformed token: {why}"),
            TokenError::UnsupportedAlgorithm => f.write_str("token alg is not HS256"),
            TokenError::UnknownKeyId => f.write_str("no key for the token's kid"),
            TokenError::BadSignature => f.write_str("bad token signature"),
            TokenError::BadClaims(why) => write!(f, "bad token claims: {why}"),
            TokenError::Expired => f.write_str("token expired"),
            TokenError::NotYetValid => f.write_str("token not yet valid"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Why a secrets file was refused. Never includes a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretsError {
    /// The 1-based line at fault; `None` when the file as a whole is (it
    /// holds no key).
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: &'static str,
}

impl std::fmt::Display for SecretsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.reason),
            None => f.write_str(self.reason),
        }
    }
}

impl std::error::Error for SecretsError {}

/// Verifies HS256 tokens against the keys of a secrets file.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<Key>,
    leeway_s: u64,
}

/// One configured key, with the HMAC key schedule done once.
#[derive(Clone)]
struct Key {
    id: String,
    mac: HmacSha256,
}

impl Verifier {
    /// Reads a secrets file: one `KID:SECRET` per line. The key id is
    /// everything before the first `:` and may not be empty or hold
    /// whitespace; the secret is everything after it, as UTF-8 bytes (not
    /// decoded), at least [`MIN_SECRET_BYTES`] long. Whitespace around a
    /// line is ignored; blank lines and lines starting with `#` are
    /// skipped. Key ids must be unique, and there must be at least one.
    ///
    /// A token's `kid` header picks its key, so keys rotate by adding the
    /// new line, issuing tokens with the new id, and removing the old line
    /// once its tokens have expired. A token without `kid` is accepted only
    /// while the file holds exactly one key.
    pub fn from_secrets(text: &str) -> Result<Self, SecretsError> {
        let mut keys: Vec<Key> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let fail = |reason| SecretsError {
                line: Some(index + 1),
                reason,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, secret) = line.split_once(':').ok_or(fail("not KID:SECRET"))?;
            if id.is_empty() || id.contains(|c: char| c.is_whitespace() || c.is_control()) {
                return Err(fail("the key id is empty or holds whitespace"));
            }
            if secret.len() < MIN_SECRET_BYTES {
                return Err(fail("the secret is shorter than 32 bytes"));
            }
            if keys.iter().any(|key| key.id == id) {
                return Err(fail("the key id is given twice"));
            }
            let mac = HmacSha256::new_from_slice(secret.as_bytes())
                .map_err(|_| fail("the secret is not a usable HMAC key"))?;
            keys.push(Key {
                id: id.to_owned(),
                mac,
            });
        }
        if keys.is_empty() {
            return Err(SecretsError {
                line: None,
                reason: "no KID:SECRET line",
            });
        }
        Ok(Verifier {
            keys,
            leeway_s: DEFAULT_LEEWAY_S,
        })
    }

    /// Sets the clock-skew allowance for `exp` and `nbf`, in seconds
    /// (default [`DEFAULT_LEEWAY_S`]).
    pub fn with_leeway(self, leeway_s: u64) -> Self {
        Verifier { leeway_s, ..self }
    }

    /// The configured key ids, in file order.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|key| key.id.as_str())
    }

    /// Verifies `token` (the compact serialization, without any `Bearer `
    /// prefix) at `now_unix` seconds since the epoch, following the steps
    /// of the module docs.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(TokenError::Malformed("not three dot-separated segments"));
        };
        let header: Header = from_object(&decode(header)?)
            .map_err(|_| TokenError::Malformed("header is not the expected JSON object"))?;
        if header.alg != "HS256" {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        if header.crit.is_some() {
            return Err(TokenError::Malformed("crit header parameter"));
        }
        let key = self.key(header.kid.as_deref())?;
        // One byte of room more than a tag, so a long signature decodes to
        // a wrong length instead of failing as malformed.
        let mut tag = [0u8; TAG_BYTES + 1];
        let tag_len = URL_SAFE_NO_PAD
            .decode_slice(signature, &mut tag)
            .map_err(|e| match e {
                DecodeSliceError::OutputSliceTooSmall => TokenError::BadSignature,
                DecodeSliceError::DecodeError(_) => {
                    TokenError::Malformed("signature is not base64url")
                }
            })?;
        let mut mac = key.mac.clone();
        mac.update(&token.as_bytes()[..header_and_payload_len(token, signature)]);
        mac.verify_slice(&tag[..tag_len])
            .map_err(|_| TokenError::BadSignature)?;
        let claims = parse_claims(&decode(payload)?)?;
        if claims
            .exp
            .is_some_and(|exp| now_unix >= exp.saturating_add(self.leeway_s))
        {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| now_unix.saturating_add(self.leeway_s) < nbf)
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    /// The key for a header's `kid`.
    fn key(&self, kid: Option<&str>) -> Result<&Key, TokenError> {
        match (kid, self.keys.as_slice()) {
            (Some(kid), keys) => keys.iter().find(|key| key.id == kid),
            (None, [only]) => Some(only),
            (None, _) => None,
        }
        .ok_or(TokenError::UnknownKeyId)
    }
}

impl std::fmt::Debug for Verifier {
    /// Key ids and leeway only: the secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .field("leeway_s", &self.leeway_s)
            .finish()
    }
}

/// The JOSE header members we read.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// The claims as they appear in the JSON. The derive refuses a member
/// given twice, a wrong type, a fractional or negative NumericDate, and a
/// `null` where a value is expected: a date may be absent, never `null`
/// (serde alone would read `"exp": null` as no expiry at all).
#[derive(Deserialize)]
struct RawClaims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    iat: Option<u64>,
}

/// A NumericDate that is present: whole seconds, not `null`.
fn numeric_date<'de, D: serde::Deserializer<'de>>(dates: D) -> Result<Option<u64>, D::Error> {
    u64::deserialize(dates).map(Some)
}

/// Length of the signing input `header.payload`: all but the last segment
/// and its dot.
fn header_and_payload_len(token: &str, signature: &str) -> usize {
    token.len() - signature.len() - 1
}

/// Decodes one base64url segment. The token's size bounds the result.
fn decode(segment: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed("a segment is not base64url"))
}

/// Parses a JSON object into `T`. The derive alone would also take an
/// array, filling fields by position, which no JOSE header or claims set
/// is.
fn from_object<T: DeserializeOwned>(json: &[u8]) -> Result<T, Category> {
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(Category::Syntax);
    }
    serde_json::from_slice(json).map_err(|e| e.classify())
}

fn parse_claims(json: &[u8]) -> Result<Claims, TokenError> {
    let raw: RawClaims = from_object(json).map_err(|category| {
        TokenError::BadClaims(match category {
            Category::Data => "a claim is missing or of the wrong type",
            _ => "not a JSON object",
        })
    })?;
    if raw.sub.is_empty() {
        return Err(TokenError::BadClaims("sub is empty"));
    }
    if raw.roles.len() > MAX_ROLES {
        return Err(TokenError::BadClaims("more than 64 roles"));
    }
    Ok(Claims {
        sub: raw.sub,
        roles: raw.roles,
        exp: raw.exp,
        nbf: raw.nbf,
        iat: raw.iat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_A: &str = "a-secret-that-is-at-least-32-bytes-long";
    const SECRET_B: &str = "another-secret-of-32-bytes-or-more!!";
    const NOW: u64 = 1_700_000_000;

    fn verifier() -> Verifier {
        Verifier::from_secrets(&format!("# keys\n\nk1:{SECRET_A}\n  k2:{SECRET_B}  \n"))
            .expect("valid secrets")
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with these exact header and claims JSON texts, signed with
    /// `secret`.
    fn sign(header: &str, claims: &str, secret: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    }

    fn k1(claims: &str) -> String {
        sign(
            r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#,
            claims,
            SECRET_A,
        )
    }

    #[test]
    fn valid_token_yields_its_claims() {
        let token = k1(&format!(
            r#"{{"sub":"alice","roles":["admin","chat-user"],"exp":{},"nbf":{},"iat":{NOW},"extra":{{"x":[1]}}}}"#,
            NOW + 60,
            NOW - 60
        ));
        assert_eq!(
            verifier().verify(&token, NOW),
            Ok(Claims {
                sub: "alice".into(),
                roles: vec!["admin".into(), "chat-user".into()],
                exp: Some(NOW + 60),
                nbf: Some(NOW - 60),
                iat: Some(NOW),
            })
        );
    }

    #[test]
    fn kid_picks_the_key() {
        let token = sign(
            r#"{"alg":"HS256","kid":"k2"}"#,
            r#"{"sub":"bob"}"#,
            SECRET_B,
        );
        let claims = verifier().verify(&token, NOW).expect("valid");
        assert_eq!((claims.sub.as_str(), claims.roles.len()), ("bob", 0));
        // The right kid with the other key's signature.
        let swapped = sign(
            r#"{"alg":"HS256","kid":"k2"}"#,
            r#"{"sub":"bob"}"#,
            SECRET_A,
        );
        assert_eq!(
            verifier().verify(&swapped, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn missing_kid_needs_exactly_one_key() {
        let token = sign(r#"{"alg":"HS256"}"#, r#"{"sub":"carol"}"#, SECRET_A);
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(TokenError::UnknownKeyId)
        );
        let single = Verifier::from_secrets(&format!("only:{SECRET_A}")).unwrap();
        assert_eq!(
            single.verify(&token, NOW).map(|c| c.sub),
            Ok("carol".into())
        );
    }

    #[test]
    fn exp_and_nbf_with_leeway() {
        let v = verifier();
        let exp = |exp: u64| k1(&format!(r#"{{"sub":"a","exp":{exp}}}"#));
        let nbf = |nbf: u64| k1(&format!(r#"{{"sub":"a","nbf":{nbf}}}"#));
        // (token, now, expected) around both edges of the 30 s leeway.
        let table = [
            (exp(NOW), NOW, true),
            (exp(NOW - 29), NOW, true),
            (exp(NOW - 30), NOW, false),
            (exp(NOW - 3600), NOW, false),
            (nbf(NOW), NOW, true),
            (nbf(NOW + 30), NOW, true),
            (nbf(NOW + 31), NOW, false),
            (exp(u64::MAX), NOW, true),
            (nbf(0), u64::MAX, true),
        ];
        for (token, now, valid) in table {
            let got = v.verify(&token, now);
            assert_eq!(got.is_ok(), valid, "{got:?}");
        }
        assert_eq!(v.verify(&exp(NOW - 30), NOW), Err(TokenError::Expired));
        assert_eq!(v.verify(&nbf(NOW + 31), NOW), Err(TokenError::NotYetValid));
        let strict = verifier().with_leeway(0);
        assert_eq!(strict.verify(&exp(NOW), NOW), Err(TokenError::Expired));
        assert!(strict.verify(&exp(NOW + 1), NOW).is_ok());
        assert_eq!(
            strict.verify(&nbf(NOW + 1), NOW),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn algorithms_other_than_hs256_are_refused() {
        for header in [
            r#"{"alg":"none","kid":"k1"}"#,
            r#"{"alg":"RS256","kid":"k1"}"#,
            r#"{"alg":"HS512","kid":"k1"}"#,
            r#"{"alg":"hs256","kid":"k1"}"#,
            r#"{"alg":"HS256 ","kid":"k1"}"#,
        ] {
            let token = sign(header, r#"{"sub":"a"}"#, SECRET_A);
            assert_eq!(
                verifier().verify(&token, NOW),
                Err(TokenError::UnsupportedAlgorithm),
                "{header}"
            );
        }
        // The classic `alg: none` token has an empty signature.
        let unsigned = format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(br#"{"sub":"admin"}"#)
        );
        assert_eq!(
            verifier().verify(&unsigned, NOW),
            Err(TokenError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn malformed_headers() {
        let table = [
            r#"{"kid":"k1"}"#,
            r#"{"alg":"HS256","kid":"k1","alg":"none"}"#,
            r#"{"alg":"HS256","kid":1}"#,
            "not json",
            r#"{"alg":"HS256","kid":"k1","crit":["exp"]}"#,
        ];
        for header in table {
            let token = sign(header, r#"{"sub":"a"}"#, SECRET_A);
            assert!(
                matches!(
                    verifier().verify(&token, NOW),
                    Err(TokenError::Malformed(_))
                ),
                "{header}"
            );
        }
    }

    /// serde's derive fills a struct from a JSON array by position: before
    /// the object check, `["HS256"]` was a valid header and
    /// `["a",[],null,null,null]` valid claims for the user `a`.
    #[test]
    fn regression_json_arrays_are_not_objects() {
        let single = Verifier::from_secrets(&format!("only:{SECRET_A}")).unwrap();
        let header = sign(r#"["HS256"]"#, r#"{"sub":"a"}"#, SECRET_A);
        assert!(matches!(
            single.verify(&header, NOW),
            Err(TokenError::Malformed(_))
        ));
        let claims = sign(r#"{"alg":"HS256"}"#, r#"["a",[],null,null,null]"#, SECRET_A);
        assert_eq!(
            single.verify(&claims, NOW),
            Err(TokenError::BadClaims("not a JSON object"))
        );
    }

    #[test]
    fn unknown_kid() {
        let token = sign(r#"{"alg":"HS256","kid":"k9"}"#, r#"{"sub":"a"}"#, SECRET_A);
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(TokenError::UnknownKeyId)
        );
    }

    #[test]
    fn bad_signatures() {
        let token = k1(r#"{"sub":"alice"}"#);
        let (input, signature) = token.rsplit_once('.').unwrap();
        let other_claims = k1(r#"{"sub":"mallory"}"#);
        let forged = format!("{}.{}", other_claims.rsplit_once('.').unwrap().0, signature);
        let flipped = {
            let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
            bytes[31] ^= 1;
            format!("{input}.{}", b64(&bytes))
        };
        let short = format!("{input}.{}", b64(&[0u8; 31]));
        let long = format!("{input}.{}", b64(&[0u8; 64]));
        for token in [forged, flipped, short, long, format!("{input}.")] {
            assert_eq!(
                verifier().verify(&token, NOW),
                Err(TokenError::BadSignature),
                "{token}"
            );
        }
    }

    #[test]
    fn shape_errors() {
        let token = k1(r#"{"sub":"alice"}"#);
        let table: Vec<(String, TokenError)> = vec![
            (
                "".into(),
                TokenError::Malformed("not three dot-separated segments"),
            ),
            (
                token.replacen('.', "", 1),
                TokenError::Malformed("not three dot-separated segments"),
            ),
            (
                format!("{token}.x"),
                TokenError::Malformed("not three dot-separated segments"),
            ),
            (
                token.split('.').take(2).collect::<Vec<_>>().join("."),
                TokenError::Malformed("not three dot-separated segments"),
            ),
            (
                format!("{}=", token),
                TokenError::Malformed("signature is not base64url"),
            ),
            (
                format!("={token}"),
                TokenError::Malformed("a segment is not base64url"),
            ),
        ];
        for (token, error) in table {
            assert_eq!(verifier().verify(&token, NOW), Err(error), "{token}");
        }
    }

    #[test]
    fn non_canonical_base64_is_refused() {
        let token = k1(r#"{"sub":"alice"}"#);
        let (input, signature) = token.rsplit_once('.').unwrap();
        // 43 characters carry 258 bits; the last 2 must be zero.
        let last = signature.as_bytes()[42];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.iter().position(|&c| c == last).unwrap();
        let twin = alphabet[index ^ 1] as char;
        let tampered = format!("{input}.{}{twin}", &signature[..42]);
        assert!(matches!(
            verifier().verify(&tampered, NOW),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_token_at_the_edge() {
        let padded = |n: usize| k1(&format!(r#"{{"sub":"a","p":"{}"}}"#, "x".repeat(n)));
        let mut n = MAX_TOKEN_BYTES * 3 / 4;
        while padded(n).len() > MAX_TOKEN_BYTES {
            n -= 1;
        }
        assert!(padded(n).len() > MAX_TOKEN_BYTES - 4);
        assert!(verifier().verify(&padded(n), NOW).is_ok());
        assert_eq!(
            verifier().verify(&padded(n + 3), NOW),
            Err(TokenError::TooLong)
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let token = k1(r#"{"sub":"alice"}"#);
        let signature_at = token.rfind('.').expect("two dots") + 1;
        for end in 0..token.len() {
            let got = verifier().verify(&token[..end], NOW);
            let want = if end < signature_at {
                // Cut before the second dot: one or two segments.
                TokenError::Malformed("not three dot-separated segments")
            } else if URL_SAFE_NO_PAD.decode(&token[signature_at..end]).is_ok() {
                // A shorter tag: the MAC check fails, before the claims
                // are even read.
                TokenError::BadSignature
            } else {
                // A cut base64url quantum (length 1 mod 4, or stray bits).
                TokenError::Malformed("signature is not base64url")
            };
            assert_eq!(got, Err(want), "cut at {end}");
        }
    }

    #[test]
    fn bad_claims() {
        let table = [
            ("not json", "not a JSON object"),
            (r#"{"sub":"a""#, "not a JSON object"),
            (r#"["a"]"#, "not a JSON object"),
            (r#"  {"sub":"a"} x"#, "not a JSON object"),
            (
                r#"{"roles":["a"]}"#,
                "a claim is missing or of the wrong type",
            ),
            (r#"{"sub":42}"#, "a claim is missing or of the wrong type"),
            (
                r#"{"sub":"a","roles":"admin"}"#,
                "a claim is missing or of the wrong type",
            ),
            (
                r#"{"sub":"a","roles":null}"#,
                "a claim is missing or of the wrong type",
            ),
            (
                r#"{"sub":"a","roles":[1]}"#,
                "a claim is missing or of the wrong type",
            ),
            (
                r#"{"sub":"a","exp":1.5}"#,
                "a claim is missing or of the wrong type",
            ),
            (
                r#"{"sub":"a","exp":-1}"#,
                "a claim is missing or of the wrong type",
            ),
            (
                r#"{"sub":"a","exp":"soon"}"#,
                "a claim is missing or of the wrong type",
            ),
            // Not "never expires": a date is absent or a number.
            (
                r#"{"sub":"a","exp":null}"#,
                "a claim is missing or of the wrong type",
            ),
            (
                r#"{"sub":"a","nbf":null}"#,
                "a claim is missing or of the wrong type",
            ),
            (
                r#"{"sub":"a","iat":null}"#,
                "a claim is missing or of the wrong type",
            ),
            (
                r#"{"sub":"a","sub":"b"}"#,
                "a claim is missing or of the wrong type",
            ),
            (r#"{"sub":""}"#, "sub is empty"),
        ];
        for (claims, why) in table {
            assert_eq!(
                verifier().verify(&k1(claims), NOW),
                Err(TokenError::BadClaims(why)),
                "{claims}"
            );
        }
        let many: Vec<String> = (0..=MAX_ROLES).map(|i| format!("\"r{i}\"")).collect();
        let claims = format!(r#"{{"sub":"a","roles":[{}]}}"#, many.join(","));
        assert_eq!(
            verifier().verify(&k1(&claims), NOW),
            Err(TokenError::BadClaims("more than 64 roles"))
        );
    }

    #[test]
    fn errors_never_show_the_token_or_a_secret() {
        let token = k1(r#"{"sub":"alice","exp":1}"#);
        let error = verifier().verify(&token, NOW).unwrap_err();
        let text = format!("{error} {error:?} {:?}", verifier());
        assert!(!text.contains(&token) && !text.contains(SECRET_A) && !text.contains(SECRET_B));
        assert!(text.contains("k1") && text.contains("k2"));
    }

    #[test]
    fn secrets_file_errors_carry_line_numbers() {
        let good = format!("k:{SECRET_A}");
        let table = [
            (format!("# c\n{good}\nnope"), Some(3), "not KID:SECRET"),
            (
                format!(":{SECRET_A}"),
                Some(1),
                "the key id is empty or holds whitespace",
            ),
            (
                format!("a b:{SECRET_A}"),
                Some(1),
                "the key id is empty or holds whitespace",
            ),
            (
                "k:short".to_owned(),
                Some(1),
                "the secret is shorter than 32 bytes",
            ),
            (
                format!("{good}\n\n{good}"),
                Some(3),
                "the key id is given twice",
            ),
            ("# only comments\n\n".to_owned(), None, "no KID:SECRET line"),
        ];
        for (text, line, reason) in table {
            assert_eq!(
                Verifier::from_secrets(&text).map(|_| ()),
                Err(SecretsError { line, reason }),
                "{text}"
            );
        }
        let error = Verifier::from_secrets(&format!("{good}\nk2:{}", "s".repeat(5))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2: the secret is shorter than 32 bytes"
        );
    }

    #[test]
    fn secrets_may_hold_colons_and_crlf_line_ends() {
        let secret = "with:colons:inside-and-long-enough-000";
        let v = Verifier::from_secrets(&format!("k1:{secret}\r\nk2:{SECRET_B}\r\n")).unwrap();
        assert_eq!(v.key_ids().collect::<Vec<_>>(), ["k1", "k2"]);
        let token = sign(r#"{"alg":"HS256","kid":"k1"}"#, r#"{"sub":"a"}"#, secret);
        assert!(v.verify(&token, NOW).is_ok());
    }
}
