//! Opening-handshake micro-benchmark: `parse` and `write_accept` of the
//! request head a current browser sends (about 560 bytes), as the reactor
//! does once per connection.

use std::hint::black_box;
use std::time::Duration;

use averyws::ws::upgrade::{self, Policy};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A Chrome upgrade request, origin and subprotocol included.
const BROWSER: &[u8] = b"GET /chat?room=lobby&v=2 HTTP/1.1\r\n\
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

fn handshake(c: &mut Criterion) {
    let origins = ["https://example.com".to_owned()];
    let subprotocols = ["chat".to_owned()];
    let policy = Policy {
        max_header_bytes: 8192,
        allowed_origins: &origins,
        subprotocols: &subprotocols,
    };
    let mut out = Vec::with_capacity(256);
    let mut group = c.benchmark_group("upgrade");
    group.throughput(Throughput::Bytes(BROWSER.len() as u64));
    group.bench_function("parse+write_accept/browser", |b| {
        b.iter(|| {
            out.clear();
            if let Ok(Some(req)) = upgrade::parse(black_box(BROWSER), &policy) {
                upgrade::write_accept(&mut out, &req, None);
            }
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = handshake
}
criterion_main!(benches);
