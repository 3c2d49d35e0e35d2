//! The pure per-attempt code, with criterion: the quorum decision, the validity arithmetic, reply
//! classification, token drawing and command building. These run once per node call or per
//! attempt; the point is to show they are nanoseconds next to a round trip of tens of
//! microseconds.
//!
//! Run: `cargo bench --features bench-internals --bench pure`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use quorumlock::bench_internals as q;

fn decision(c: &mut Criterion) {
    c.bench_function("decide N=5, 3 grants", |b| {
        b.iter(|| q::decide(black_box(5), black_box(&[0, 1, 0, 0, 2])))
    });
    c.bench_function("decide N=7, impossible after 4 refusals", |b| {
        b.iter(|| q::decide(black_box(7), black_box(&[1, 1, 0, 1, 1, 0, 0])))
    });
    c.bench_function("validity of a 10 s TTL", |b| {
        b.iter(|| {
            q::validity(
                black_box(Duration::from_secs(10)),
                black_box(Duration::from_micros(740)),
                black_box(0.01),
            )
        })
    });
}

fn replies_and_commands(c: &mut Criterion) {
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    let granted = redis::Value::BulkString(TOKEN.as_bytes().to_vec());
    let stray = redis::Value::Int(1);
    c.bench_function("classify a granting reply (its token)", |b| {
        b.iter(|| q::grants_acquire(TOKEN, black_box(&granted)))
    });
    c.bench_function("classify a stray :1", |b| {
        b.iter(|| q::grants_acquire(TOKEN, black_box(&stray)))
    });
    c.bench_function("draw a token (getrandom)", |b| b.iter(q::token));
    c.bench_function("build SET NX PX (with its token)", |b| {
        b.iter(|| q::acquire_command(black_box("orders:42")))
    });
}

criterion_group!(benches, decision, replies_and_commands);
criterion_main!(benches);
