//! `GET /metrics` as Prometheus sends it, and reading samples back with
//! a strict parser of the text exposition format.

use std::io::{ErrorKind, Read};

use super::{send, status, Server, TlsStream, WebSocket};

/// Sends `GET /metrics` (with a bearer token if given) and reads the
/// answer to its end: the status, the head and the body.
pub fn scrape(server: &Server, token: Option<&str>) -> (u16, String, String) {
    let mut stream = server.tls();
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{authorization}\r\n");
    send(&mut stream, request.as_bytes());
    let all = read_to_end(&mut stream);
    let text = String::from_utf8(all).expect("a UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head: {text:?}"));
    let head = format!("{head}\r\n\r\n");
    (status(&head), head, body.to_owned())
}

/// Reads until the server ends the TLS session (close_notify, or TCP EOF
/// without one); fails on the read timeout or another error.
pub fn read_to_end(stream: &mut TlsStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return all,
            Err(e) => panic!("reading the response: {e}; got {all:?}"),
        }
    }
}

/// One sample line: the metric name, its label pairs in order, the value.
pub struct Sample<'t> {
    pub name: &'t str,
    pub labels: Vec<(&'t str, &'t str)>,
    pub value: &'t str,
}

/// Parses a sample line `name{k="v",...} value` (labels optional), or
/// fails the test saying why.
pub fn parse_sample(line: &str) -> Sample<'_> {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {line:?}"));
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
            let labels = inner
                .split(',')
                .map(|pair| {
                    let (key, quoted) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("label without `=`: {line:?}"));
                    let value = quoted
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label value: {line:?}"));
                    assert!(is_name(key), "bad label name {key:?}: {line:?}");
                    assert!(
                        !value.contains(['"', '\\', '\n']),
                        "label value needs escaping: {line:?}"
                    );
                    (key, value)
                })
                .collect();
            (name, labels)
        }
        None => (series, Vec::new()),
    };
    assert!(is_name(name), "bad metric name {name:?}: {line:?}");
    assert!(is_number(value), "value is not a number: {line:?}");
    Sample {
        name,
        labels,
        value,
    }
}

/// A Prometheus metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// An integer, or a decimal with digits on both sides of the point.
pub fn is_number(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match text.split_once('.') {
        Some((whole, fraction)) => digits(whole) && digits(fraction),
        None => digits(text),
    }
}

/// The values of every sample of `query` (`name` or `name{k="v",...}`):
/// the lines of that metric that carry each of the given label pairs.
/// The samples must be integers.
pub fn sample_values(body: &str, query: &str) -> Vec<u64> {
    let line = format!("{query} 0");
    let wanted = parse_sample(&line);
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(parse_sample)
        .filter(|s| s.name == wanted.name && wanted.labels.iter().all(|p| s.labels.contains(p)))
        .map(|s| {
            s.value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("not an integer: {} {}", s.name, s.value))
        })
        .collect()
}

/// The sum of [`sample_values`], failing when no sample matches.
pub fn sample_sum(body: &str, query: &str) -> u64 {
    let values = sample_values(body, query);
    assert!(!values.is_empty(), "no sample matches {query}:\n{body}");
    values.iter().sum()
}

/// The sum of `name` with `labels` (`k="v"` pairs) on each reactor, in
/// reactor order.
pub fn per_reactor(body: &str, name: &str, labels: &[&str]) -> Vec<u64> {
    let mut sums = Vec::new();
    for reactor in 0.. {
        let mut all = vec![format!("reactor=\"{reactor}\"")];
        all.extend(labels.iter().map(|l| (*l).to_owned()));
        let values = sample_values(body, &format!("{name}{{{}}}", all.join(",")));
        if values.is_empty() {
            return sums;
        }
        sums.push(values.iter().sum());
    }
    sums
}

/// Clients opened at most while looking for enough on every reactor.
const MAX_CLIENTS: usize = 64;

/// Opens WebSocket clients on `path` until both reactors of a
/// `--threads 2` server have upgraded at least `each` of them, judged by
/// the 101 count per reactor (the kernel picks the reactor by a hash of
/// the client's address and port).
pub fn open_on_every_reactor(server: &Server, path: &str, each: usize) -> Vec<WebSocket> {
    let upgraded = || {
        let (status, _, body) = scrape(server, None);
        assert_eq!(status, 200, "guests may read the metrics here");
        per_reactor(
            &body,
            "averyws_upgrade_responses_total",
            &["status=\"101\""],
        )
    };
    let before = upgraded();
    let mut clients = Vec::new();
    while clients.len() < MAX_CLIENTS {
        clients.push(server.ws(path));
        if clients.len() < 2 * each {
            continue;
        }
        let now = upgraded();
        let mut spread = now.iter().zip(&before).map(|(n, b)| n - b);
        if now.len() == 2 && spread.all(|n| n >= each as u64) {
            return clients;
        }
    }
    panic!("{MAX_CLIENTS} clients did not reach both reactors");
}
