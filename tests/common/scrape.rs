//! `GET /metrics` as Prometheus sends it, and reading samples back.

use std::io::{ErrorKind, Read};

use super::{read_response_head, send, status, Server};

/// Scrapes the server over TLS, with `token` as a bearer token if given.
/// Returns the status, the response head and the body read to the end.
pub fn scrape(server: &Server, token: Option<&str>) -> (u16, String, String) {
    let mut stream = server.tls();
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{authorization}\r\n");
    send(&mut stream, request.as_bytes());
    let head = read_response_head(&mut stream);
    let mut body = Vec::new();
    match stream.read_to_end(&mut body) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("reading the metrics: {e}"),
    }
    let body = String::from_utf8(body).expect("UTF-8 metrics");
    (status(&head), head, body)
}

/// The value of `name` summed over every sample whose labels include all
/// of `labels` (`key="value"` pairs), e.g. every reactor's.
pub fn sample_sum(body: &str, name: &str, labels: &[&str]) -> f64 {
    samples(body, name, labels)
        .into_iter()
        .map(|(_, v)| v)
        .sum()
}

/// The samples of `name` whose labels include all of `labels`: each
/// one's label text (inside the braces) and value.
pub fn samples(body: &str, name: &str, labels: &[&str]) -> Vec<(String, f64)> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?.strip_prefix('{')?;
            let inside = rest.strip_suffix('}')?;
            let pairs: Vec<&str> = inside.split(',').collect();
            labels
                .iter()
                .all(|want| pairs.contains(want))
                .then(|| (inside.to_owned(), value.parse().expect("a number")))
        })
        .collect()
}

/// The value of `name` (with `labels`) on each reactor, by index.
pub fn per_reactor(body: &str, name: &str, labels: &[&str]) -> Vec<f64> {
    let mut values = Vec::new();
    for reactor in 0.. {
        let label = format!("reactor=\"{reactor}\"");
        let mut wanted = vec![label.as_str()];
        wanted.extend_from_slice(labels);
        let found = samples(body, name, &wanted);
        if found.is_empty() {
            return values;
        }
        values.push(found.iter().map(|(_, v)| v).sum());
    }
    values
}
