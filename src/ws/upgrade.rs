//! The server side of the opening handshake (RFC 6455 section 4.2): read
//! the client's HTTP/1.1 upgrade request, decide, and write the answer.
//!
//! Sans-IO and stateless. The reactor appends what it reads to its buffer
//! and calls [`parse`] on the whole buffer each time: `Ok(None)` means "need
//! more bytes" and consumes nothing. [`httparse`] cannot resume a partial
//! parse, and a head is small and capped by [`Policy::max_header_bytes`], so
//! parsing again from the start is cheap. [`Request::head_len`] says where
//! the request head ends and the first WebSocket frame bytes begin.
//!
//! Checks run in a fixed order, so a request with several faults always
//! gets the same answer:
//!
//! 1. HTTP syntax, as [`httparse`] judges it: 400; a head longer than
//!    [`Policy::max_header_bytes`] or with more than [`MAX_HEADERS`] lines:
//!    431.
//! 2. Request line: method `GET`, version `HTTP/1.1`, an origin-form
//!    target: 400. Any other method is 400 as well, not 405: section
//!    4.2.1 names 400 for every request that is not the handshake, and a
//!    405 would owe an `Allow` header for a resource that only upgrades.
//! 3. Header fields: a single-valued field sent twice, a request body,
//!    `Host`, `Upgrade`, `Connection`: 400.
//! 4. `Sec-WebSocket-Version` missing or not 13: 426. It comes before the
//!    key because a client speaking another version may also build its key
//!    another way; telling it the version we speak is the useful answer.
//! 5. `Sec-WebSocket-Key`: 400.
//! 6. `Origin`, when [`Policy::allowed_origins`] is not empty: 403.
//! 7. Subprotocol negotiation, which never fails.
//!
//! Credentials are collected, not judged: the `Authorization` field (at
//! most once: 400) and the first `Sec-WebSocket-Protocol` entry of the form
//! `bearer.<token>` (the convention for browsers, which cannot set
//! headers) are handed to the caller in the [`Request`]. Such an entry is
//! never chosen as the subprotocol. A bad credential is the caller's
//! [`Rejection::Unauthorized`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// Most header lines one request head may carry; more is 431. This is the
/// size of the array [`parse`] hands to [`httparse`].
pub const MAX_HEADERS: usize = 64;

/// A `Sec-WebSocket-Protocol` entry starting with this carries a token.
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

/// RFC 6455 section 1.3: the GUID appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the server accepts, set from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Cap on the whole request head (request line + headers + CRLFCRLF),
    /// in bytes. A head of exactly this size is accepted. Default in the
    /// server: 8192.
    pub max_header_bytes: usize,
    /// Allowed `Origin` values (exact, ASCII case-insensitive match).
    /// Empty = any origin, and a missing `Origin` is fine.
    pub allowed_origins: &'a [String],
    /// Subprotocols the server speaks. Only membership counts: the client's
    /// order decides (see [`Request::subprotocol`]). Names are matched
    /// exactly, case included.
    pub subprotocols: &'a [String],
}

/// A valid upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request-target's path, without the query; raw, not
    /// percent-decoded.
    pub path: String,
    /// The request-target after the first `?`, raw.
    pub query: Option<String>,
    /// The `Host` field value.
    pub host: String,
    /// The `Origin` field value, if sent.
    pub origin: Option<String>,
    /// The `User-Agent` field value, if sent.
    pub user_agent: Option<String>,
    /// The `Cookie` field value, if sent; several `Cookie` lines are
    /// joined with `; ` (RFC 6265 section 5.4).
    pub cookie: Option<String>,
    /// The negotiated subprotocol: the first entry of the client's
    /// `Sec-WebSocket-Protocol` list that [`Policy::subprotocols`] holds.
    /// Never a `bearer.` entry.
    pub subprotocol: Option<String>,
    /// The `Authorization` field value, if sent.
    pub authorization: Option<String>,
    /// The `Sec-WebSocket-Extensions` offers, if any; several lines are
    /// joined with `, ` as one list (RFC 6455 section 9.1).
    pub extensions: Option<String>,
    /// The token of the first `Sec-WebSocket-Protocol` entry that starts
    /// with [`BEARER_PROTOCOL_PREFIX`], without the prefix.
    pub bearer_protocol: Option<String>,
    /// The `Sec-WebSocket-Accept` value:
    /// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
    pub accept: String,
    /// Length of the request head in bytes; whatever follows it in the
    /// buffer is the start of the WebSocket stream.
    pub head_len: usize,
}

/// Why a request was refused; each maps to an HTTP status.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 400: not a well-formed WebSocket opening handshake. The text says
    /// which rule failed; it is for logs and never sent to the client.
    BadRequest(&'static str),
    /// 401: a token was presented and refused, or none was presented and
    /// the ACL does not let guests connect (decided by the caller). The
    /// response carries `WWW-Authenticate: Bearer` (RFC 6750 section 3).
    Unauthorized,
    /// 403: `Origin` not allowed, or the ACL refuses `connect` on the path.
    Forbidden,
    /// 404: no route for the path (decided by the reactor).
    NotFound,
    /// 426: `Sec-WebSocket-Version` missing or not 13.
    UpgradeRequired,
    /// 431: the head exceeds [`Policy::max_header_bytes`] or has more than
    /// [`MAX_HEADERS`] header lines.
    HeadersTooLarge,
    /// 503: the server cannot take the connection now (decided by the
    /// reactor, e.g. while shutting down).
    ServiceUnavailable,
}

impl Rejection {
    /// The HTTP status code.
    pub fn status(self) -> u16 {
        self.status_and_reason().0
    }

    /// Append the full HTTP/1.1 error response: status line,
    /// `Connection: close`, `Content-Length: 0` and no body, so nothing
    /// tells an attacker which rule failed.
    ///
    /// A 426 also carries `Upgrade: websocket` (with `upgrade` added to
    /// `Connection`) and `Sec-WebSocket-Version: 13`.
    pub fn write_response(self, out: &mut Vec<u8>) {
        let (status, reason) = self.status_and_reason();
        out.extend_from_slice(b"HTTP/1.1 ");
        for unit in [100, 10, 1] {
            out.push(b'0' + (status / unit % 10) as u8);
        }
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        if self == Rejection::UpgradeRequired {
            // RFC 6455 section 4.2.2, /version/: "If this version does not
            // match a version understood by the server, the server MUST
            // abort the WebSocket handshake described in this section and
            // instead send an appropriate HTTP error code (such as 426
            // Upgrade Required) and a |Sec-WebSocket-Version| header field
            // indicating the version(s) the server is capable of
            // understanding." RFC 9110 section 15.5.22 adds that a 426 MUST
            // carry `Upgrade`, and section 7.8 that `Upgrade` MUST be named
            // in `Connection`.
            out.extend_from_slice(
                b"\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13",
            );
        } else if self == Rejection::Unauthorized {
            out.extend_from_slice(b"\r\nConnection: close\r\nWWW-Authenticate: Bearer");
        } else {
            out.extend_from_slice(b"\r\nConnection: close");
        }
        out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    }

    /// Status code and reason phrase (RFC 9110 section 15, RFC 6585 for 431).
    fn status_and_reason(self) -> (u16, &'static str) {
        match self {
            Rejection::BadRequest(_) => (400, "Bad Request"),
            Rejection::Unauthorized => (401, "Unauthorized"),
            Rejection::Forbidden => (403, "Forbidden"),
            Rejection::NotFound => (404, "Not Found"),
            Rejection::UpgradeRequired => (426, "Upgrade Required"),
            Rejection::HeadersTooLarge => (431, "Request Header Fields Too Large"),
            Rejection::ServiceUnavailable => (503, "Service Unavailable"),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (status, reason) = self.status_and_reason();
        match self {
            Rejection::BadRequest(why) => write!(f, "{status} {reason}: {why}"),
            _ => write!(f, "{status} {reason}"),
        }
    }
}

impl std::error::Error for Rejection {}

/// Parse the request head at the front of `buf`.
///
/// `Ok(None)`: the head is not complete yet; call again with more bytes.
/// Once `buf` holds [`Policy::max_header_bytes`] bytes without a complete
/// head, the answer is `Err(HeadersTooLarge)` instead. `Ok(Some(req))`: the
/// head is complete and valid; bytes past [`Request::head_len`] are not
/// looked at. The answer for a prefix of `buf` is always either `Ok(None)`
/// or the answer for `buf` itself.
pub fn parse(buf: &[u8], policy: &Policy<'_>) -> Result<Option<Request>, Rejection> {
    // httparse does not cap the head, so never show it more than the cap.
    let window = buf.get(..policy.max_header_bytes).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(window) {
        Ok(httparse::Status::Complete(head_len)) => validate(&head, policy, head_len).map(Some),
        Ok(httparse::Status::Partial) if buf.len() >= policy.max_header_bytes => {
            Err(Rejection::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Rejection::HeadersTooLarge),
        Err(_) => Err(Rejection::BadRequest("malformed HTTP request head")),
    }
}

/// Append the `101 Switching Protocols` response for `req`, which must come
/// from [`parse`] (its values are written as they are).
///
/// RFC 6455 section 4.2.2 step 5: the status line, `Upgrade: websocket`,
/// `Connection: Upgrade`, `Sec-WebSocket-Accept`, and
/// `Sec-WebSocket-Protocol` only when one was negotiated: "if the server
/// does not wish to agree to one of the suggested subprotocols, it MUST NOT
/// send back a |Sec-WebSocket-Protocol| header field in its response".
/// `Sec-WebSocket-Extensions` carries `extensions`, the accepted offer,
/// when there is one.
pub fn write_accept(out: &mut Vec<u8>, req: &Request, extensions: Option<&str>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(req.accept.as_bytes());
    if let Some(subprotocol) = &req.subprotocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(subprotocol.as_bytes());
    }
    if let Some(extensions) = extensions {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(extensions.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Steps 2 to 7 of the module docs, on a complete head.
fn validate(
    head: &httparse::Request<'_, '_>,
    policy: &Policy<'_>,
    head_len: usize,
) -> Result<Request, Rejection> {
    // RFC 6455 section 4.2.1, item 1: "An HTTP/1.1 or higher GET request";
    // httparse reads only HTTP/1.x, so "or higher" cannot arrive here.
    if head.method != Some("GET") {
        return Err(Rejection::BadRequest("method is not GET"));
    }
    // httparse gives the minor version: 1 for HTTP/1.1.
    if head.version != Some(1) {
        return Err(Rejection::BadRequest("version is not HTTP/1.1"));
    }
    let (path, query) = split_target(head.path.unwrap_or_default())?;
    let fields = Fields::collect(head.headers, policy.subprotocols)?;
    // Item 2: "A |Host| header field containing the server's authority."
    let host = fields
        .host
        .filter(|host| !host.is_empty())
        .ok_or(Rejection::BadRequest("missing Host"))?;
    // Item 3: "An |Upgrade| header field containing the value "websocket",
    // treated as an ASCII case-insensitive value."
    if !fields.upgrade_websocket {
        return Err(Rejection::BadRequest("Upgrade lacks websocket"));
    }
    // Item 4: "A |Connection| header field that includes the token
    // "Upgrade", treated as an ASCII case-insensitive value."
    if !fields.connection_upgrade {
        return Err(Rejection::BadRequest("Connection lacks upgrade"));
    }
    // Item 6: "A |Sec-WebSocket-Version| header field, with a value of 13";
    // section 4.2.2 makes any other value a 426 (see `write_response`).
    if fields.version != Some(b"13") {
        return Err(Rejection::UpgradeRequired);
    }
    // Item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded
    // (see Section 4 of [RFC4648]) value that, when decoded, is 16 bytes in
    // length."
    let key = fields
        .key
        .ok_or(Rejection::BadRequest("missing Sec-WebSocket-Key"))?;
    let accept = accept_key(key)?;
    // Section 4.2.2, /origin/: "If the server does not wish to accept this
    // connection, it MUST return an appropriate HTTP error code (e.g., 403
    // Forbidden) and abort the WebSocket handshake".
    if !policy.allowed_origins.is_empty() {
        let allowed = fields.origin.is_some_and(|origin| {
            policy
                .allowed_origins
                .iter()
                .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin))
        });
        if !allowed {
            return Err(Rejection::Forbidden);
        }
    }
    Ok(Request {
        path,
        query,
        host: text(host, "Host is not UTF-8")?,
        origin: fields
            .origin
            .map(|origin| text(origin, "Origin is not UTF-8"))
            .transpose()?,
        user_agent: fields
            .user_agent
            .map(|agent| text(agent, "User-Agent is not UTF-8"))
            .transpose()?,
        cookie: match fields.cookies.as_slice() {
            [] => None,
            cookies => Some(text(&cookies.join(&b"; "[..]), "Cookie is not UTF-8")?),
        },
        subprotocol: fields.subprotocol.map(str::to_owned),
        extensions: match fields.extensions.as_slice() {
            [] => None,
            offers => Some(text(
                &offers.join(&b", "[..]),
                "Sec-WebSocket-Extensions is not UTF-8",
            )?),
        },
        authorization: fields
            .authorization
            .map(|value| text(value, "Authorization is not UTF-8"))
            .transpose()?,
        bearer_protocol: fields
            .bearer
            .map(|value| text(value, "bearer token is not UTF-8"))
            .transpose()?,
        accept,
        head_len,
    })
}

/// Split an origin-form request-target (RFC 9112 section 3.2.1:
/// `absolute-path [ "?" query ]`) into path and query.
///
/// Absolute-form, authority-form and `*` are refused: a browser sends
/// origin-form, and a gateway has no use for a proxy's target forms.
pub(crate) fn split_target(target: &str) -> Result<(String, Option<String>), Rejection> {
    // Non-ASCII bytes are not URI characters (RFC 3986 section 2). RFC 6455
    // section 3: "Fragment identifiers are meaningless in the context of
    // WebSocket URIs and MUST NOT be used on these URIs."
    if !target.starts_with('/') || !target.is_ascii() || target.contains('#') {
        return Err(Rejection::BadRequest("request-target is not origin-form"));
    }
    Ok(match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    })
}

/// The header fields the handshake reads, gathered in one pass. Values
/// have their optional whitespace trimmed and borrow from the buffer.
#[derive(Default)]
pub(crate) struct Fields<'b, 'p> {
    pub(crate) host: Option<&'b [u8]>,
    origin: Option<&'b [u8]>,
    user_agent: Option<&'b [u8]>,
    cookies: Vec<&'b [u8]>,
    extensions: Vec<&'b [u8]>,
    key: Option<&'b [u8]>,
    version: Option<&'b [u8]>,
    upgrade_websocket: bool,
    connection_upgrade: bool,
    /// The negotiated subprotocol, as the policy spells it.
    subprotocol: Option<&'p str>,
    pub(crate) authorization: Option<&'b [u8]>,
    /// The token of the first `bearer.` subprotocol entry.
    bearer: Option<&'b [u8]>,
}

impl<'b, 'p> Fields<'b, 'p> {
    /// Gather the fields, refusing what no valid handshake carries.
    ///
    /// List fields (`Upgrade`, `Connection`, `Sec-WebSocket-Protocol`) may
    /// span several lines, which count as one comma-separated list (RFC 9110
    /// section 5.3). The others must appear at most once: a second
    /// `Sec-WebSocket-Key` or `Sec-WebSocket-Version` is forbidden by RFC
    /// 6455 sections 11.3.1 and 11.3.5, a second `Host` by RFC 9112 section
    /// 3.2, a second `Origin` by RFC 6454 section 7.3, and two answers to one
    /// question leave the server guessing.
    pub(crate) fn collect(
        headers: &[httparse::Header<'b>],
        subprotocols: &'p [String],
    ) -> Result<Self, Rejection> {
        let mut fields = Fields::default();
        for header in headers {
            let name = header.name;
            let value = trim_ows(header.value);
            if name.eq_ignore_ascii_case("host") {
                once(&mut fields.host, value, "duplicate Host")?;
            } else if name.eq_ignore_ascii_case("origin") {
                once(&mut fields.origin, value, "duplicate Origin")?;
            } else if name.eq_ignore_ascii_case("user-agent") {
                once(&mut fields.user_agent, value, "duplicate User-Agent")?;
            } else if name.eq_ignore_ascii_case("cookie") {
                fields.cookies.push(value);
            } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
                fields.extensions.push(value);
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                once(&mut fields.key, value, "duplicate Sec-WebSocket-Key")?;
            } else if name.eq_ignore_ascii_case("sec-websocket-version") {
                once(
                    &mut fields.version,
                    value,
                    "duplicate Sec-WebSocket-Version",
                )?;
            } else if name.eq_ignore_ascii_case("upgrade") {
                fields.upgrade_websocket |= has_token(value, b"websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                fields.connection_upgrade |= has_token(value, b"upgrade");
            } else if name.eq_ignore_ascii_case("authorization") {
                once(&mut fields.authorization, value, "duplicate Authorization")?;
            } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                fields.subprotocol = fields
                    .subprotocol
                    .or_else(|| negotiate(value, subprotocols));
                fields.bearer = fields.bearer.or_else(|| bearer_entry(value));
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                || (name.eq_ignore_ascii_case("content-length") && !is_zero(value))
            {
                // A handshake is a GET without a body; a body here would be
                // read as WebSocket frames.
                return Err(Rejection::BadRequest("request has a body"));
            }
        }
        Ok(fields)
    }
}

/// Store the value of a field that may appear only once.
fn once<'b>(
    slot: &mut Option<&'b [u8]>,
    value: &'b [u8],
    duplicate: &'static str,
) -> Result<(), Rejection> {
    match slot.replace(value) {
        Some(_) => Err(Rejection::BadRequest(duplicate)),
        None => Ok(()),
    }
}

/// Pick the subprotocol from one `Sec-WebSocket-Protocol` line. RFC 6455
/// section 4.2.2, /subprotocol/: the value "MUST be derived from the
/// client's handshake, specifically by selecting one of the values from the
/// |Sec-WebSocket-Protocol| field that the server is willing to use". The
/// client's first entry that `ours` holds wins; entries that are not tokens
/// are skipped.
fn negotiate<'p>(value: &[u8], ours: &'p [String]) -> Option<&'p str> {
    list(value)
        .filter(|entry| is_token(entry) && !entry.starts_with(BEARER_PROTOCOL_PREFIX.as_bytes()))
        .find_map(|entry| ours.iter().find(|name| name.as_bytes() == entry))
        .map(String::as_str)
}

/// The token of the first `bearer.<token>` entry of one
/// `Sec-WebSocket-Protocol` line, if any.
fn bearer_entry(value: &[u8]) -> Option<&[u8]> {
    list(value).find_map(|entry| entry.strip_prefix(BEARER_PROTOCOL_PREFIX.as_bytes()))
}

/// Check the key and compute the `Sec-WebSocket-Accept` value from it
/// (RFC 6455 section 4.2.2, step 5.4: "concatenating /key/ ... with the
/// string "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", taking the SHA-1 hash of
/// this concatenated value to obtain a 20-byte value and base64-encoding
/// ... this 20-byte hash"). The key is hashed as sent, not decoded.
fn accept_key(key: &[u8]) -> Result<String, Rejection> {
    // The standard alphabet with canonical padding. A key that would decode
    // past 16 bytes fails inside the 16-byte array, so no size of key
    // allocates anything.
    let mut nonce = [0u8; 16];
    if !matches!(STANDARD.decode_slice(key, &mut nonce), Ok(16)) {
        return Err(Rejection::BadRequest(
            "Sec-WebSocket-Key is not base64 of 16 bytes",
        ));
    }
    let digest = Sha1::new().chain_update(key).chain_update(GUID).finalize();
    Ok(STANDARD.encode(digest))
}

/// Whether the comma-separated list `value` holds `token`, ignoring ASCII
/// case.
fn has_token(value: &[u8], token: &[u8]) -> bool {
    list(value).any(|entry| entry.eq_ignore_ascii_case(token))
}

/// The non-empty entries of a comma-separated field value, trimmed of
/// optional whitespace (RFC 9110 section 5.6.1: recipients accept and
/// ignore empty elements).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&byte| byte == b',')
        .map(trim_ows)
        .filter(|entry| !entry.is_empty())
}

/// Strip optional whitespace (`OWS = *( SP / HTAB )`, RFC 9110 section
/// 5.6.3) from both ends.
fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Whether `value` is an RFC 9110 section 5.6.2 `token` (`1*tchar`).
fn is_token(value: &[u8]) -> bool {
    !value.is_empty()
        && value
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// Whether a `Content-Length` value announces an empty body.
fn is_zero(value: &[u8]) -> bool {
    !value.is_empty() && value.iter().all(|&byte| byte == b'0')
}

/// A field value the [`Request`] carries as a string.
pub(crate) fn text(value: &[u8], not_utf8: &'static str) -> Result<String, Rejection> {
    std::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|_| Rejection::BadRequest(not_utf8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Rejection::{BadRequest, Forbidden, HeadersTooLarge, UpgradeRequired};

    /// The RFC 6455 section 1.3 handshake with only the required fields.
    const MINIMAL: &str = "GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\
        \r\n";

    /// Section 1.3: the accept value for MINIMAL's key.
    const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// What a current browser sends (about 500 bytes).
    const BROWSER: &str = "GET /chat?room=lobby&v=2 HTTP/1.1\r\n\
        Host: ws.example.com\r\n\
        Connection: Upgrade\r\n\
        Pragma: no-cache\r\n\
        Cache-Control: no-cache\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
        Upgrade: websocket\r\n\
        Origin: https://example.com\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Accept-Encoding: gzip, deflate, br, zstd\r\n\
        Accept-Language: en-US,en;q=0.9\r\n\
        Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        Sec-WebSocket-Protocol: superchat, chat\r\n\
        \r\n";

    /// MINIMAL with the first `from` replaced by `to`.
    fn edit(from: &str, to: &str) -> String {
        assert!(MINIMAL.contains(from), "{from:?} is not in MINIMAL");
        MINIMAL.replacen(from, to, 1)
    }

    /// MINIMAL with `lines` inserted after the request line.
    fn with(lines: &str) -> String {
        edit("HTTP/1.1\r\n", &format!("HTTP/1.1\r\n{lines}"))
    }

    /// `text` with each char below U+0100 as one byte, to build heads that
    /// are not UTF-8.
    fn latin1(text: &str) -> Vec<u8> {
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin-1"))
            .collect()
    }

    /// The request of a valid, complete head with `lines` added.
    fn parsed(lines: &str) -> Request {
        check(with(lines), &[], &[])
            .expect("valid")
            .expect("complete")
    }

    #[test]
    fn extension_lines_are_joined_and_the_answer_written() {
        assert_eq!(parsed("").extensions, None);
        let two = parsed("Sec-WebSocket-Extensions: a; x=1\r\nsec-websocket-extensions:  b \r\n");
        assert_eq!(two.extensions.as_deref(), Some("a; x=1, b"));
        let mut out = Vec::new();
        write_accept(&mut out, &two, Some("permessage-deflate"));
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
            "{out}"
        );
    }

    #[test]
    fn cookie_lines_are_joined() {
        assert_eq!(parsed("").cookie, None);
        assert_eq!(parsed("Cookie: a=1\r\n").cookie.as_deref(), Some("a=1"));
        let two = parsed("Cookie: a=1\r\ncookie:  b=2 \r\n");
        assert_eq!(two.cookie.as_deref(), Some("a=1; b=2"));
    }

    /// Parse under the default head cap and the given lists.
    fn check(
        request: impl AsRef<[u8]>,
        origins: &[&str],
        subprotocols: &[&str],
    ) -> Result<Option<Request>, Rejection> {
        let origins: Vec<String> = origins.iter().map(|&o| o.to_owned()).collect();
        let subprotocols: Vec<String> = subprotocols.iter().map(|&p| p.to_owned()).collect();
        let policy = Policy {
            max_header_bytes: 8192,
            allowed_origins: &origins,
            subprotocols: &subprotocols,
        };
        parse(request.as_ref(), &policy)
    }

    /// One test per row: `name: request [, origin "allowed"]* => rejection;`.
    macro_rules! rejects {
        ($($name:ident: $request:expr $(, origin $origin:literal)* => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(check($request, &[$($origin),*], &[]), Err($expected));
            }
        )*};
    }

    const MALFORMED: Rejection = BadRequest("malformed HTTP request head");
    const NOT_ORIGIN_FORM: Rejection = BadRequest("request-target is not origin-form");
    const BAD_KEY: Rejection = BadRequest("Sec-WebSocket-Key is not base64 of 16 bytes");

    rejects! {
        garbage: b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n" => MALFORMED;
        obsolete_line_folding: edit("Upgrade: websocket", "Upgrade:\r\n websocket") => MALFORMED;
        space_before_colon: edit("Upgrade:", "Upgrade :") => MALFORMED;
        http_2_0: edit("HTTP/1.1", "HTTP/2.0") => MALFORMED;
        post: edit("GET", "POST") => BadRequest("method is not GET");
        lowercase_get: edit("GET", "get") => BadRequest("method is not GET");
        http_1_0: edit("HTTP/1.1", "HTTP/1.0") => BadRequest("version is not HTTP/1.1");
        absolute_form: edit("/chat", "https://server.example.com/chat") => NOT_ORIGIN_FORM;
        asterisk_form: edit("/chat", "*") => NOT_ORIGIN_FORM;
        fragment: edit("/chat", "/chat#top") => NOT_ORIGIN_FORM;
        non_ascii_target: edit("/chat", "/ch\u{e4}t") => NOT_ORIGIN_FORM;
        missing_host: edit("Host: server.example.com\r\n", "") => BadRequest("missing Host");
        empty_host: edit("Host: server.example.com", "Host:  ") => BadRequest("missing Host");
        duplicate_host: with("Host: other.example.com\r\n") => BadRequest("duplicate Host");
        host_not_utf8: latin1(&edit("server.", "s\u{e9}rver.")) => BadRequest("Host is not UTF-8");
        content_length: with("Content-Length: 5\r\n") => BadRequest("request has a body");
        content_length_not_a_number: with("Content-Length: zero\r\n") => BadRequest("request has a body");
        transfer_encoding: with("Transfer-Encoding: chunked\r\n") => BadRequest("request has a body");
        missing_upgrade: edit("Upgrade: websocket\r\n", "") => BadRequest("Upgrade lacks websocket");
        upgrade_h2c: edit("Upgrade: websocket", "Upgrade: h2c") => BadRequest("Upgrade lacks websocket");
        upgrade_websocket_as_substring: edit("Upgrade: websocket", "Upgrade: websockets") => BadRequest("Upgrade lacks websocket");
        missing_connection: edit("Connection: Upgrade\r\n", "") => BadRequest("Connection lacks upgrade");
        connection_keep_alive: edit("Connection: Upgrade", "Connection: keep-alive") => BadRequest("Connection lacks upgrade");
        connection_upgrade_as_substring: edit("Connection: Upgrade", "Connection: Upgraded") => BadRequest("Connection lacks upgrade");
        missing_version: edit("Sec-WebSocket-Version: 13\r\n", "") => UpgradeRequired;
        version_8: edit("Version: 13", "Version: 8") => UpgradeRequired;
        version_leading_zero: edit("Version: 13", "Version: 013") => UpgradeRequired;
        version_list: edit("Version: 13", "Version: 13, 8") => UpgradeRequired;
        version_checked_before_key: edit("Version: 13", "Version: 8").replace("ZQ==", "") => UpgradeRequired;
        duplicate_version: with("Sec-WebSocket-Version: 13\r\n") => BadRequest("duplicate Sec-WebSocket-Version");
        missing_key: edit("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "") => BadRequest("missing Sec-WebSocket-Key");
        key_of_15_bytes: edit("dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAA") => BAD_KEY;
        key_of_17_bytes: edit("dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAAA=") => BAD_KEY;
        key_not_base64: edit("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ!!") => BAD_KEY;
        key_unpadded: edit("ZQ==", "ZQ") => BAD_KEY;
        key_url_safe_alphabet: edit("dGhlIHNhbXBsZSBub25jZQ==", "-_-_-_-_-_-_-_-_-_-_-w==") => BAD_KEY;
        key_with_stray_low_bits: edit("ZQ==", "ZR==") => BAD_KEY;
        key_empty: edit("dGhlIHNhbXBsZSBub25jZQ==", "") => BAD_KEY;
        duplicate_key: with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") => BadRequest("duplicate Sec-WebSocket-Key");
        origin_not_allowed: with("Origin: https://evil.example\r\n"), origin "https://example.com" => Forbidden;
        origin_missing_when_required: MINIMAL, origin "https://example.com" => Forbidden;
        origin_prefix_of_allowed: with("Origin: https://example.co\r\n"), origin "https://example.com" => Forbidden;
        duplicate_origin: with("Origin: https://example.com\r\nOrigin: https://example.com\r\n") => BadRequest("duplicate Origin");
        origin_not_utf8: latin1(&with("Origin: https://\u{e9}.example\r\n")) => BadRequest("Origin is not UTF-8");
        user_agent_not_utf8: latin1(&with("User-Agent: caf\u{e9}\r\n")) => BadRequest("User-Agent is not UTF-8");
        duplicate_user_agent: with("User-Agent: a\r\nUser-Agent: b\r\n") => BadRequest("duplicate User-Agent");
        cookie_not_utf8: latin1(&with("Cookie: caf\u{e9}\r\n")) => BadRequest("Cookie is not UTF-8");
        too_many_headers: with(&"X-Filler: 1\r\n".repeat(MAX_HEADERS - 5 + 1)) => HeadersTooLarge;
        head_too_large: with(&format!("Cookie: {}\r\n", "a".repeat(8192))) => HeadersTooLarge;
    }

    /// One test per row: `name: request [, origin "allowed"]*;`, each a valid
    /// variant of MINIMAL (same key, so same accept value).
    macro_rules! accepts {
        ($($name:ident: $request:expr $(, origin $origin:literal)*;)*) => {$(
            #[test]
            fn $name() {
                let req = check($request, &[$($origin),*], &[]);
                assert_eq!(req.map(|req| req.map(|req| req.accept)), Ok(Some(RFC_ACCEPT.to_owned())));
            }
        )*};
    }

    accepts! {
        minimal: MINIMAL;
        upgrade_among_other_tokens: edit("Upgrade: websocket", "Upgrade: foo, WebSocket");
        upgrade_over_two_lines: edit("Upgrade: websocket", "Upgrade: foo\r\nUPGRADE: websocket");
        connection_among_other_tokens: edit("Connection: Upgrade", "Connection: keep-alive, Upgrade");
        connection_over_two_lines: edit("Connection: Upgrade", "Connection: keep-alive\r\nconnection: upgrade");
        connection_with_empty_elements: edit("Connection: Upgrade", "Connection: ,\tupgrade ,");
        lowercase_field_names: edit("Host:", "host:").replace("Sec-WebSocket-Key", "sec-websocket-key");
        key_with_whitespace: edit("Key: dGhlIHNhbXBsZSBub25jZQ==", "Key: \t dGhlIHNhbXBsZSBub25jZQ== \t");
        content_length_zero: with("Content-Length: 0\r\n");
        origin_any_when_unconfigured: with("Origin: https://anything.example\r\n");
        origin_allowed_ignoring_case: with("Origin: HTTPS://Example.COM\r\n"), origin "https://example.com";
        origin_second_of_allowed: with("Origin: https://b.example\r\n"), origin "https://a.example", origin "https://b.example";
        leading_empty_line: format!("\r\n{MINIMAL}");
        max_headers_exactly: with(&"X-Filler: 1\r\n".repeat(MAX_HEADERS - 5));
        unknown_fields_ignored: with("Sec-WebSocket-Extensions: x-unknown\r\nX-Bytes: \u{e9}\r\n");
    }

    #[test]
    fn rfc_6455_section_1_3_example() {
        let request = "GET /chat HTTP/1.1\r\n\
            Host: server.example.com\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Origin: http://example.com\r\n\
            Sec-WebSocket-Protocol: chat, superchat\r\n\
            Sec-WebSocket-Version: 13\r\n\
            \r\n";
        let req = check(request, &[], &["chat"])
            .expect("valid")
            .expect("complete");
        assert_eq!(
            req,
            Request {
                path: "/chat".into(),
                query: None,
                host: "server.example.com".into(),
                origin: Some("http://example.com".into()),
                user_agent: None,
                cookie: None,
                subprotocol: Some("chat".into()),
                authorization: None,
                extensions: None,
                bearer_protocol: None,
                accept: RFC_ACCEPT.into(),
                head_len: request.len(),
            }
        );
        let mut out = Vec::new();
        write_accept(&mut out, &req, None);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\
             \r\n"
        );
    }

    #[test]
    fn accept_without_subprotocol_has_no_protocol_field() {
        let req = check(MINIMAL, &[], &["chat"])
            .expect("valid")
            .expect("complete");
        let mut out = Vec::new();
        write_accept(&mut out, &req, None);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             \r\n"
        );
    }

    #[test]
    fn browser_request_fields() {
        let req = check(BROWSER, &["https://example.com"], &["chat"])
            .expect("valid")
            .expect("complete");
        assert_eq!(req.path, "/chat");
        assert_eq!(req.query.as_deref(), Some("room=lobby&v=2"));
        assert_eq!(req.host, "ws.example.com");
        assert_eq!(req.origin.as_deref(), Some("https://example.com"));
        assert!(req
            .user_agent
            .is_some_and(|agent| agent.starts_with("Mozilla/5.0 ")));
        assert_eq!(req.subprotocol.as_deref(), Some("chat"));
        assert_eq!(req.head_len, BROWSER.len());
    }

    #[test]
    fn every_prefix_is_partial_and_pipelined_bytes_are_not_head() {
        // A masked "hi" text frame sent right behind the head.
        let frame = [0x81, 0x82, 0x01, 0x02, 0x03, 0x04, 0x69, 0x6b];
        let buf = [BROWSER.as_bytes(), &frame].concat();
        for end in 0..BROWSER.len() {
            assert_eq!(
                check(&buf[..end], &[], &[]),
                Ok(None),
                "prefix of {end} bytes"
            );
        }
        let whole = check(BROWSER, &[], &[]).expect("valid").expect("complete");
        assert_eq!(whole.head_len, BROWSER.len());
        for end in BROWSER.len()..=buf.len() {
            assert_eq!(
                check(&buf[..end], &[], &[]),
                Ok(Some(whole.clone())),
                "prefix of {end} bytes"
            );
        }
    }

    #[test]
    fn head_cap_boundaries() {
        let policy = |max_header_bytes| Policy {
            max_header_bytes,
            allowed_origins: &[],
            subprotocols: &[],
        };
        let head = MINIMAL.as_bytes();
        let exact = parse(head, &policy(head.len()))
            .expect("valid")
            .expect("complete");
        assert_eq!(exact.head_len, head.len());
        // Pipelined bytes past the cap do not count against it.
        let buf = [head, b"\x81\x80\0\0\0\0"].concat();
        assert_eq!(parse(&buf, &policy(head.len())), Ok(Some(exact)));
        assert_eq!(parse(head, &policy(head.len() - 1)), Err(HeadersTooLarge));
        let partial = &head[..head.len() - 1];
        assert_eq!(parse(partial, &policy(head.len())), Ok(None));
        assert_eq!(parse(partial, &policy(partial.len())), Err(HeadersTooLarge));
        assert_eq!(parse(b"", &policy(0)), Err(HeadersTooLarge));
    }

    #[test]
    fn subprotocol_negotiation() {
        // (client's Sec-WebSocket-Protocol lines, server's list, chosen)
        let table: &[(&[&str], &[&str], Option<&str>)] = &[
            (&["chat, superchat"], &["superchat", "chat"], Some("chat")),
            (
                &["superchat, chat"],
                &["chat", "superchat"],
                Some("superchat"),
            ),
            (&["v1.json,v2.json"], &["v2.json"], Some("v2.json")),
            (&["\t a , b \t"], &["b"], Some("b")),
            (&["a", "b"], &["b", "a"], Some("a")),
            (&["a", "b"], &["b"], Some("b")),
            (&["chat"], &["Chat"], None),
            (&["chat, superchat"], &["mqtt"], None),
            (&["chat"], &[], None),
            (&[], &["chat"], None),
            (&[""], &["chat"], None),
            (&[",,"], &["chat"], None),
            (&["a b, c"], &["a b", "c"], Some("c")),
            (&["a\"b\", c"], &["a\"b\"", "c"], Some("c")),
        ];
        for &(lines, ours, chosen) in table {
            let fields: String = lines
                .iter()
                .map(|line| format!("Sec-WebSocket-Protocol: {line}\r\n"))
                .collect();
            let req = check(with(&fields), &[], ours);
            assert_eq!(
                req.map(|req| req.and_then(|req| req.subprotocol)),
                Ok(chosen.map(str::to_owned)),
                "client {lines:?}, server {ours:?}"
            );
        }
    }

    #[test]
    fn credentials_are_collected_and_bearer_entries_never_chosen() {
        // (extra lines, server's subprotocols, chosen, authorization, bearer)
        type Row<'a> = (
            &'a str,
            &'a [&'a str],
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let table: &[Row] = &[
            ("", &["chat"], None, None, None),
            (
                "Authorization: Bearer a.b.c\r\n",
                &[],
                None,
                Some("Bearer a.b.c"),
                None,
            ),
            (
                "Sec-WebSocket-Protocol: bearer.a.b.c, chat\r\n",
                &["chat"],
                Some("chat"),
                None,
                Some("a.b.c"),
            ),
            (
                "Sec-WebSocket-Protocol: bearer.x\r\n",
                &["bearer.x"],
                None,
                None,
                Some("x"),
            ),
            (
                "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: bearer.1, bearer.2\r\n",
                &[],
                None,
                None,
                Some("1"),
            ),
            (
                "Sec-WebSocket-Protocol: Bearer.x\r\n",
                &[],
                None,
                None,
                None,
            ),
        ];
        for &(lines, ours, chosen, authorization, bearer) in table {
            let req = check(with(lines), &[], ours)
                .expect("valid")
                .expect("complete");
            assert_eq!(req.subprotocol.as_deref(), chosen, "{lines:?}");
            assert_eq!(req.authorization.as_deref(), authorization, "{lines:?}");
            assert_eq!(req.bearer_protocol.as_deref(), bearer, "{lines:?}");
        }
        assert_eq!(
            check(with("Authorization: a\r\nAuthorization: b\r\n"), &[], &[]),
            Err(BadRequest("duplicate Authorization"))
        );
    }

    #[test]
    fn rejection_responses() {
        let table = [
            (
                BadRequest("x"),
                400,
                "400 Bad Request\r\nConnection: close\r\n",
            ),
            (
                Rejection::Unauthorized,
                401,
                "401 Unauthorized\r\nConnection: close\r\nWWW-Authenticate: Bearer\r\n",
            ),
            (Forbidden, 403, "403 Forbidden\r\nConnection: close\r\n"),
            (
                Rejection::NotFound,
                404,
                "404 Not Found\r\nConnection: close\r\n",
            ),
            (
                UpgradeRequired,
                426,
                "426 Upgrade Required\r\nConnection: Upgrade, close\r\n\
                 Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
            ),
            (
                HeadersTooLarge,
                431,
                "431 Request Header Fields Too Large\r\nConnection: close\r\n",
            ),
            (
                Rejection::ServiceUnavailable,
                503,
                "503 Service Unavailable\r\nConnection: close\r\n",
            ),
        ];
        for (rejection, status, head) in table {
            assert_eq!(rejection.status(), status);
            let mut out = b"kept".to_vec();
            rejection.write_response(&mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!("keptHTTP/1.1 {head}Content-Length: 0\r\n\r\n")
            );
        }
    }

    #[test]
    fn rejection_display_names_the_rule() {
        assert_eq!(
            BadRequest("missing Host").to_string(),
            "400 Bad Request: missing Host"
        );
        assert_eq!(UpgradeRequired.to_string(), "426 Upgrade Required");
    }
}
