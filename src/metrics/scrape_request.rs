//! The one plain HTTP request the server answers: a Prometheus scrape,
//! `GET /metrics`, read with the upgrade parser's field rules.

use crate::ws::upgrade::{split_target, text, Fields, MAX_HEADERS};

/// The path of the metrics endpoint (see [`parse_scrape`]).
pub const METRICS_PATH: &str = "/metrics";

/// A Prometheus scrape: `GET /metrics` asking for no upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrape {
    /// The `Authorization` field value, if sent.
    pub authorization: Option<String>,
}

/// `Some` when `buf` starts with a complete, well-formed HTTP/1.1 head of
/// `GET /metrics` (any query) with a `Host` and without an `Upgrade`
/// field. Anything else (incomplete, another request, malformed) is for
/// [`crate::ws::upgrade::parse`] to answer. Only a head starting with `GET /metrics` is
/// parsed, so handshakes pay one comparison for the endpoint.
pub fn parse_scrape(buf: &[u8], max_header_bytes: usize) -> Option<Scrape> {
    if !buf.starts_with(b"GET /metrics") {
        return None;
    }
    let window = buf.get(..max_header_bytes).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = head.parse(window) else {
        return None;
    };
    let (path, _query) = split_target(head.path?).ok()?;
    let asks_upgrade = head
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade"));
    if head.version != Some(1) || path != METRICS_PATH || asks_upgrade {
        return None;
    }
    let fields = Fields::collect(head.headers, &[]).ok()?;
    fields.host.filter(|host| !host.is_empty())?;
    let authorization = match fields.authorization {
        Some(value) => Some(text(value, "Authorization is not UTF-8").ok()?),
        None => None,
    };
    Some(Scrape { authorization })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_get_of_metrics_is_a_scrape() {
        let scrape = |head: &str| parse_scrape(head.as_bytes(), 8192);
        let with_token = Scrape {
            authorization: Some("Bearer abc".into()),
        };
        assert_eq!(
            scrape("GET /metrics HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer abc\r\n\r\n"),
            Some(with_token)
        );
        let anonymous = Some(Scrape {
            authorization: None,
        });
        assert_eq!(
            scrape("GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"),
            anonymous
        );
        for not_a_scrape in [
            "GET /metrics HTTP/1.1\r\nHost: h\r\n",
            "GET /metricsx HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /metrics HTTP/1.0\r\nHost: h\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n",
            "POST /metrics HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(scrape(not_a_scrape), None, "{not_a_scrape:?}");
        }
    }
}
