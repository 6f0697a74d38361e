//! Codec benchmarks: decode and encode of the per-message frames (PUBLISH in, DELIVER out) at
//! several payload sizes, and ACK with and without listed seqs.
//!
//! Throughput is in bytes of the whole frame on the wire (length prefix included), so the
//! figures compare directly with socket bandwidth. Encoders append to one reused `Vec`, as the
//! event loop's write buffer does; decode reads a frame that is already in memory, as the
//! event loop's read buffer holds it.
//!
//! Quick run: `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir::protocol::codec::{encode_ack, encode_deliver, encode_publish};
use weir::protocol::{decode, Frame, Publish, MAX_FRAME_LEN};

criterion_group!(benches, publish, deliver, ack);
criterion_main!(benches);

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish");
    for &size in PAYLOAD_SIZES {
        let payload = vec![0xA5; size];
        let message = Publish {
            seq: 42,
            queue: QUEUE,
            event: EVENT,
            key: None,
            ttl_ms: None,
            payload: &payload,
        };
        let mut wire = Vec::new();
        encode_publish(&message, &mut wire).expect("bench frame is within limits");
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("decode", size), &wire, |b, wire| {
            b.iter(|| match decode(black_box(wire), MAX_FRAME_LEN) {
                Ok(Some((Frame::Publish(p), used))) => (p.payload.len(), used),
                other => panic!("not a PUBLISH: {other:?}"),
            });
        });
        let mut out = Vec::with_capacity(wire.len());
        group.bench_with_input(BenchmarkId::new("encode", size), &message, |b, message| {
            b.iter(|| {
                out.clear();
                encode_publish(black_box(message), &mut out).expect("within limits");
                out.len()
            });
        });
    }
    group.finish();
}

fn deliver(c: &mut Criterion) {
    let mut group = c.benchmark_group("deliver");
    for &size in PAYLOAD_SIZES {
        let payload = vec![0x5A; size];
        let mut wire = Vec::new();
        encode_deliver(7, 1_000_000, 0, QUEUE, EVENT, &payload, &mut wire)
            .expect("bench frame is within limits");
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("decode", size), &wire, |b, wire| {
            b.iter(|| match decode(black_box(wire), MAX_FRAME_LEN) {
                Ok(Some((Frame::Deliver(d), used))) => (d.payload.len(), used),
                other => panic!("not a DELIVER: {other:?}"),
            });
        });
        let mut out = Vec::with_capacity(wire.len());
        group.bench_with_input(BenchmarkId::new("encode", size), &payload, |b, payload| {
            b.iter(|| {
                out.clear();
                encode_deliver(
                    black_box(7),
                    black_box(1_000_000),
                    0,
                    QUEUE,
                    EVENT,
                    black_box(payload),
                    &mut out,
                )
                .expect("within limits");
                out.len()
            });
        });
    }
    group.finish();
}

fn ack(c: &mut Criterion) {
    let mut group = c.benchmark_group("ack");
    for &listed in ACK_LISTED_SEQS {
        let seqs: Vec<u64> = (0..listed as u64).map(|n| 1_000 + 2 * n).collect();
        let mut wire = Vec::new();
        encode_ack(999, &seqs, &mut wire).expect("bench frame is within limits");
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("decode", listed), &wire, |b, wire| {
            b.iter(|| match decode(black_box(wire), MAX_FRAME_LEN) {
                // Summing the listed seqs makes the benchmark pay for reading them, as the
                // broker does when it applies the ACK.
                Ok(Some((Frame::Ack(a), _))) => a.seqs.iter().fold(a.up_to, u64::wrapping_add),
                other => panic!("not an ACK: {other:?}"),
            });
        });
        let mut out = Vec::with_capacity(wire.len());
        group.bench_with_input(BenchmarkId::new("encode", listed), &seqs, |b, seqs| {
            b.iter(|| {
                out.clear();
                encode_ack(black_box(999), black_box(seqs), &mut out).expect("within limits");
                out.len()
            });
        });
    }
    group.finish();
}

/// 16 B and 64 B are typical event notifications; 1 KiB a small document; 64 KiB where the
/// copy dominates everything else.
const PAYLOAD_SIZES: &[usize] = &[16, 64, 1_024, 65_536];

/// An ACK is usually cumulative only (0 listed); 64 listed seqs is a client acking out of order.
const ACK_LISTED_SEQS: &[usize] = &[0, 64];

const QUEUE: &[u8] = b"orders";
const EVENT: &[u8] = b"created";
