//! The upgrade request's head, judged without I/O: the bytes collected so
//! far, the configuration, the token verifier and the ACL in; a verdict
//! out. The session carries the verdict out (`opening.rs`); tests
//! drive this with tables of heads.

use crate::access::{Access, Identity};
use crate::auth::token::TokenError;
use crate::config::{Config, Service};
use crate::metrics::scrape_request::{self, Scrape};
use crate::ws::upgrade::{self, Rejection, Request};

/// Appends to `head` what of `bytes` fits under `cap` and says how much
/// that was, and whether the head can have ended: httparse re-parses from
/// the start, so a byte-at-a-time client costs one scan per byte, not
/// one parse.
pub fn collect(head: &mut Vec<u8>, bytes: &[u8], cap: usize) -> (usize, bool) {
    let taken = bytes.len().min(cap.saturating_sub(head.len()));
    let seen = head.len();
    head.extend_from_slice(&bytes[..taken]);
    let fresh = &head[seen.saturating_sub(2)..];
    let may_be_complete = head.len() >= cap
        || fresh.windows(2).any(|w| w == b"\n\n")
        || fresh.windows(3).any(|w| w == b"\n\r\n");
    (taken, may_be_complete)
}

/// What a complete (or over-long) head asks for.
#[derive(Debug)]
pub enum Verdict {
    /// The head has not ended yet.
    More,
    /// `GET /metrics`, answered without an upgrade.
    Scrape(Scrape),
    /// Answered with an HTTP error.
    Refuse(Rejection),
    /// A client without a token, on a route whose guests the auth
    /// service judges.
    Delegate {
        /// The request, its query as workers are told it.
        request: Request,
        /// The auth service.
        service: String,
    },
    /// Admitted by route and token; `connect` on the path is checked next.
    Open {
        /// The request, its query as workers are told it.
        request: Request,
        /// Who the client is.
        identity: Identity,
        /// What serves the route.
        service: Service,
    },
}

/// A verdict, with what the access log and /metrics learn on the way.
#[derive(Debug)]
pub struct Judged {
    /// What to do.
    pub verdict: Verdict,
    /// The path and subprotocol, once a route matched.
    pub route: Option<(String, Option<String>)>,
    /// The check of the token the client presented, if it presented one
    /// on a route that exists.
    pub token: Option<Result<(), TokenError>>,
}

/// Judges `head` at `now_unix`.
pub fn judge(head: &[u8], config: &Config, access: &Access, now_unix: u64) -> Judged {
    let judged = |verdict| Judged {
        verdict,
        route: None,
        token: None,
    };
    let cap = config.max_header_bytes;
    if let Some(scrape) = scrape_request::parse_scrape(head, cap) {
        return judged(Verdict::Scrape(scrape));
    }
    let policy = upgrade::Policy {
        max_header_bytes: cap,
        allowed_origins: &config.allowed_origins,
        subprotocols: &config.subprotocols,
    };
    let mut request = match upgrade::parse(head, &policy) {
        Ok(None) => return judged(Verdict::More),
        Ok(Some(request)) => request,
        Err(rejection) => return judged(Verdict::Refuse(rejection)),
    };
    let Some(route) = config.route(&request.path) else {
        return judged(Verdict::Refuse(Rejection::NotFound));
    };
    let seen = Some((request.path.clone(), request.subprotocol.clone()));
    let identity = match access.identify(&request, now_unix) {
        Ok(identity) => identity,
        Err(e) => {
            return Judged {
                verdict: Verdict::Refuse(Rejection::Unauthorized),
                route: seen,
                token: Some(Err(e)),
            }
        }
    };
    let token = identity.is_authenticated().then_some(Ok(()));
    request.query = request.query.map(|q| access.forwarded_query(&q));
    let verdict = match config.auth.delegate_for(&request.path) {
        Some(service) if !identity.is_authenticated() => Verdict::Delegate {
            request,
            service: service.to_owned(),
        },
        _ => Verdict::Open {
            request,
            identity,
            service: route.service.clone(),
        },
    };
    Judged {
        verdict,
        route: seen,
        token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(args: &[&str]) -> (Config, Access) {
        let config = crate::cli::parse("averyws", args)
            .expect("valid flags")
            .config;
        let access = Access::load(&config.auth, &config.routes).expect("development ACL");
        (config, access)
    }

    fn upgrade(path: &str, extra: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    /// A verdict's kind, path and token check, as the tables spell them.
    type Summary<'a> = (&'a str, Option<&'a str>, Option<bool>);

    /// The verdict's kind, the path the access log gets, and the token check.
    fn summary(judged: &Judged) -> (String, Option<&str>, Option<bool>) {
        let kind = match &judged.verdict {
            Verdict::More => "more".to_owned(),
            Verdict::Scrape(_) => "scrape".to_owned(),
            Verdict::Refuse(rejection) => rejection.status().to_string(),
            Verdict::Delegate { service, .. } => format!("delegate {service}"),
            Verdict::Open { service, .. } => format!("open {service:?}"),
        };
        let path = judged.route.as_ref().map(|(path, _)| path.as_str());
        (kind, path, judged.token.as_ref().map(Result::is_ok))
    }

    #[test]
    fn each_head_gets_its_verdict() {
        let (config, access) = server(&[]);
        let long = format!("GET /echo HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        let table: &[(&str, String, Summary)] = &[
            (
                "incomplete",
                "GET /echo HTTP/1.1\r\nHost: h\r\n".into(),
                ("more", None, None),
            ),
            (
                "echo",
                upgrade("/echo", ""),
                ("open Echo", Some("/echo"), None),
            ),
            ("no route", upgrade("/nope", ""), ("404", None, None)),
            (
                "scrape",
                "GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n".into(),
                ("scrape", None, None),
            ),
            (
                "token without a verifier",
                upgrade("/echo", "Authorization: Bearer abc\r\n"),
                ("401", Some("/echo"), Some(false)),
            ),
            ("head over the cap", long, ("431", None, None)),
            (
                "not a websocket upgrade",
                "GET /echo HTTP/1.1\r\nHost: h\r\n\r\n".into(),
                ("400", None, None),
            ),
        ];
        for (name, head, want) in table {
            let judged = judge(head.as_bytes(), &config, &access, 0);
            let (kind, path, token) = summary(&judged);
            assert_eq!((kind.as_str(), path, token), *want, "{name}");
        }
    }

    #[test]
    fn a_guest_on_an_auth_route_waits_for_the_auth_service() {
        let (config, access) = server(&["--route", "/chat=chat", "--auth-service", "auth"]);
        let judged = judge(upgrade("/chat", "").as_bytes(), &config, &access, 0);
        assert_eq!(summary(&judged).0, "delegate auth");
        let (config, access) = server(&["--route", "/chat=chat"]);
        let judged = judge(upgrade("/chat", "").as_bytes(), &config, &access, 0);
        assert_eq!(summary(&judged).0, "open Worker(\"chat\")");
    }

    #[test]
    fn collecting_stops_at_the_cap_and_waits_for_an_end_of_head() {
        let head = upgrade("/echo", "");
        let mut collected = Vec::new();
        for (i, byte) in head.bytes().enumerate() {
            let (taken, may_be_complete) = collect(&mut collected, &[byte], 8192);
            assert_eq!(taken, 1);
            assert_eq!(may_be_complete, i == head.len() - 1, "byte {i}");
        }
        let mut full = Vec::new();
        assert_eq!(collect(&mut full, &[b'x'; 100], 64), (64, true));
        assert_eq!(collect(&mut full, b"more", 64), (0, true));
    }
}
