//! The node core's hot path, sans-IO (no sockets): a client message
//! handed to a worker of protocol version 1 (one MESSAGE each) and of
//! version 2 (records in a batch, one MESSAGES a turn of 16), and a worker's
//! SENDS of 16 replies delivered to their connections.

use std::hint::black_box;
use std::time::{Duration, Instant};

use averyws::backend::batch::BatchBuilder;
use averyws::backend::message::{Author, List, Message, Payload, Reactors, Ready};
use averyws::backend::{encode_in, Frames, VERSION, VERSION_2};
use averyws::config::WorkerLoss;
use averyws::node::sessions::ConnectInfo;
use averyws::node::{Edge, Node, NodeConfig, Refused, Time, Wire};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Client messages per reactor turn.
const TURN: u64 = 16;
const PIPE: &[u8] = b"worker";

/// A pipe that takes everything and keeps nothing.
struct Discard;

impl Wire for Discard {
    fn send<'a>(
        &mut self,
        _routing_id: &[u8],
        frames: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Result<(), Refused> {
        frames.for_each(|frame| {
            black_box(frame);
        });
        Ok(())
    }
}

/// Connections that are all open and take every message.
struct Open;

impl Edge for Open {
    fn deliver(&mut self, _conn: u64, payload: Payload<'_>) -> bool {
        black_box(payload);
        true
    }

    fn permits(&self, _conn: u64, _resource: &str, _permission: &str) -> Option<bool> {
        Some(true)
    }

    fn is_open(&self, _conn: u64) -> bool {
        true
    }

    fn author_may(&self, _author: &Author<'_>, _resource: &str, _permission: &str) -> bool {
        true
    }
}

/// A node with one worker of `version` serving connections 1 to `TURN`.
fn node_with_worker(version: u8, time: Time) -> Node {
    let config = NodeConfig {
        name: "bench".to_owned(),
        keys: None,
        admin_keys: Vec::new(),
        heartbeat: Duration::from_secs(3600),
        liveness: 3,
        max_payload: 1 << 20,
        worker_queue: 4096,
        worker_loss: WorkerLoss::Close,
        max_workers: 16,
        max_channels_per_conn: 16,
        reactors: Reactors::ALONE,
    };
    let mut node = Node::new(config, 1);
    let ready = Message::Ready(Ready {
        instance: 7,
        name: "w",
        services: List::from(&["svc"][..]),
    });
    let mut out = Frames::new();
    encode_in(version, &ready, &mut out).expect("READY encodes");
    let frames: Vec<&[u8]> = out.iter().collect();
    node.handle(&mut Discard, &mut Open, PIPE, &frames, time);
    for conn in 1..=TURN {
        let info = ConnectInfo {
            service: "svc".to_owned(),
            path: "/".to_owned(),
            ..ConnectInfo::default()
        };
        assert!(node.open(&mut Discard, conn, info, time), "served");
    }
    node
}

fn hot_path(c: &mut Criterion) {
    let time = Time {
        now: Instant::now(),
        unix_ms: 0,
    };
    let payload = [0xA5u8; 32];
    let mut group = c.benchmark_group("node_turn_of_16");
    group.throughput(Throughput::Elements(TURN));
    for (name, version) in [("v1", VERSION), ("v2", VERSION_2)] {
        let mut node = node_with_worker(version, time);
        group.bench_function(BenchmarkId::new("client_messages", name), |b| {
            b.iter(|| {
                for conn in 1..=TURN {
                    let sent = node.message(&mut Discard, conn, Payload::Binary(&payload), time);
                    black_box(sent);
                }
                node.flush_batches(&mut Discard, time);
            })
        });
    }
    let mut node = node_with_worker(VERSION_2, time);
    let mut batch = BatchBuilder::default();
    for conn in 1..=TURN {
        batch.push(conn, Payload::Binary(&payload));
    }
    let mut out = Frames::new();
    encode_in(VERSION_2, &Message::Sends(batch.batch()), &mut out).expect("SENDS encodes");
    let frames: Vec<&[u8]> = out.iter().collect();
    group.bench_function("worker_sends_v2", |b| {
        b.iter(|| black_box(node.handle(&mut Discard, &mut Open, PIPE, &frames, time)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = hot_path
}
criterion_main!(benches);
