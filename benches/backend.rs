//! Backend codec micro-benchmarks: a MESSAGE event of 32 B and 4 KiB,
//! encoded and decoded, unsigned and signed (HMAC-SHA256 sign, verify with
//! the replay window, decode).

use std::hint::black_box;
use std::time::Duration;

use averyws::backend::message::{Data, Message, Payload};
use averyws::backend::{decode, encode, Frames, KeyRing, ReplayPolicy, Verifier, VERSION};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SIZES: [usize; 2] = [32, 4 << 10];
const KEYS: &[u8] = b"k1:0123456789abcdef0123456789abcdef";
const NODE: u64 = 1;
const WORKER: u64 = 2;
const NOW: u64 = 1_700_000_000_000;

/// The first `N` frames of `out`, as `decode` takes them.
fn view<const N: usize>(out: &Frames) -> [&[u8]; N] {
    std::array::from_fn(|index| out.iter().nth(index).unwrap_or_default())
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("backend_message");
    for size in SIZES {
        let text: String = (0..size)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let message = Message::Message(Data {
            conn: 42,
            payload: Payload::Text(&text),
        });
        group.throughput(Throughput::Bytes(size as u64));
        let mut out = Frames::new();
        group.bench_with_input(
            BenchmarkId::new("unsigned", size),
            &message,
            |b, message| {
                b.iter(|| {
                    encode(message, &mut out).expect("encodable");
                    let frames = view::<3>(&out);
                    black_box(decode(&frames).expect("decodes"));
                })
            },
        );
        let ring = KeyRing::parse(KEYS).expect("valid key file");
        let mut signer = ring.signer(NODE);
        let mut verifier = Verifier::new(ring, WORKER, ReplayPolicy::default());
        group.bench_with_input(BenchmarkId::new("signed", size), &message, |b, message| {
            b.iter(|| {
                signer
                    .encode(VERSION, message, WORKER, NOW, &mut out)
                    .expect("encodable");
                let frames = view::<4>(&out);
                verifier.verify(&frames, NOW).expect("verifies");
                black_box(decode(&frames).expect("decodes"));
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = round_trip
}
criterion_main!(benches);
