//! Frame codec micro-benchmarks: header parse, full decode (in place and
//! split across reads), encode and unmasking, at 16 B, 1 KiB and 64 KiB.

use std::hint::black_box;
use std::time::Duration;

use averyws::ws::deflate::Codec;
use averyws::ws::encoder::encode_frame;
use averyws::ws::frame::parse_header;
use averyws::ws::mask::apply_mask;
use averyws::ws::{Decoder, Event, Limits, OpCode};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SIZES: [usize; 3] = [16, 1 << 10, 64 << 10];

/// Every key byte is below 0x80, so ASCII text stays ASCII whether masked or
/// not: decoding the same buffer over and over (which unmasks in place, then
/// re-masks) keeps passing UTF-8 validation.
const KEY: [u8; 4] = [0x37, 0x7a, 0x21, 0x3d];

/// A masked client frame carrying `len` bytes of ASCII.
fn client_frame(opcode: OpCode, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    let mut server = Vec::new();
    encode_frame(&mut server, opcode, &payload);
    let header_len = server.len() - len;
    let mut out = server[..header_len].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&KEY);
    let start = out.len();
    out.extend_from_slice(&payload);
    apply_mask(&mut out[start..], KEY, 0);
    out
}

/// Feed `buf` in reads of `read` bytes; the number of events.
fn decode_all(dec: &mut Decoder, buf: &mut [u8], read: usize) -> usize {
    let mut events = 0;
    for chunk in buf.chunks_mut(read) {
        let mut pos = 0;
        while pos < chunk.len() {
            match dec.decode(&mut chunk[pos..]) {
                Ok((n, event)) => {
                    pos += n;
                    if let Some(Event::Text(t)) = event {
                        black_box(t);
                    }
                    events += usize::from(event.is_some());
                }
                Err(e) => panic!("bench input failed to decode: {e}"),
            }
        }
    }
    events
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_header");
    for len in SIZES {
        let frame = client_frame(OpCode::Binary, len);
        let header_len = frame.len() - len;
        group.throughput(Throughput::Bytes(header_len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &frame, |b, frame| {
            b.iter(|| parse_header(black_box(frame)))
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    for (name, opcode) in [
        ("decode_binary", OpCode::Binary),
        ("decode_text", OpCode::Text),
    ] {
        let mut group = c.benchmark_group(name);
        for len in SIZES {
            let mut frame = client_frame(opcode, len);
            group.throughput(Throughput::Bytes(frame.len() as u64));
            let mut dec = Decoder::new(Limits::default());
            group.bench_function(BenchmarkId::from_parameter(len), |b| {
                b.iter(|| decode_all(&mut dec, black_box(&mut frame), usize::MAX))
            });
        }
        group.finish();
    }
    // The buffered path: a 64 KiB text frame arriving in 16 KiB reads (the
    // size of a TLS record).
    let mut group = c.benchmark_group("decode_text_split_16k");
    let len = 64 << 10;
    let mut frame = client_frame(OpCode::Text, len);
    group.throughput(Throughput::Bytes(frame.len() as u64));
    let mut dec = Decoder::new(Limits::default());
    group.bench_function(BenchmarkId::from_parameter(len), |b| {
        b.iter(|| decode_all(&mut dec, black_box(&mut frame), 16 << 10))
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_frame");
    for len in SIZES {
        let payload = vec![b'x'; len];
        let mut out = Vec::with_capacity(len + 14);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &payload, |b, payload| {
            b.iter(|| {
                out.clear();
                encode_frame(&mut out, OpCode::Binary, black_box(payload));
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_mask");
    for len in SIZES {
        let mut buf = vec![0x5a; len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(len), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), KEY, 1))
        });
    }
    group.finish();
}

/// `len` bytes of chat-like JSON text.
fn chat_text(len: usize) -> Vec<u8> {
    let line = br#"{"room":"lobby","user":"alice","text":"see you at the usual place at eight"},"#;
    line.iter().copied().cycle().take(len).collect()
}

/// permessage-deflate per message, as a reactor does it: the compressed
/// frame of an outgoing message (deflater reset, compress, frame), and
/// the inflating of an incoming one (inflater reset, inflate). Prints
/// the compressed size of each.
fn deflate(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate");
    for len in [128, 512, 4096, 16384] {
        let payload = chat_text(len);
        let mut codec = Codec::default();
        let mut frame = Vec::new();
        codec.encode_message(&mut frame, OpCode::Text, &payload, Some(15), 0);
        let header = if frame[1] & 0x7f == 126 { 4 } else { 2 };
        let compressed = frame[header..].to_vec();
        println!("deflate/{len}: {} bytes compressed", compressed.len());
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("compress", len), &payload, |b, payload| {
            b.iter(|| {
                frame.clear();
                codec.encode_message(&mut frame, OpCode::Text, black_box(payload), Some(15), 0);
                black_box(frame.len())
            })
        });
        group.bench_with_input(
            BenchmarkId::new("inflate", len),
            &compressed,
            |b, compressed| {
                b.iter(|| {
                    let message = codec.inflate(black_box(compressed), len).expect("inflates");
                    let n = message.len();
                    codec.recycle(message);
                    n
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = parse, decode, encode, mask, deflate
}
criterion_main!(benches);
