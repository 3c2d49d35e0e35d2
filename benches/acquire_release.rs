//! Uncontended acquire + release latency on local redis-server nodes, for N = 1, 3, 5.
//!
//! A simple loop, not a statistical benchmark (the full harness is a separate issue): prints
//! p50/p99 of one acquire+release cycle on a fresh key each time. Absolute numbers depend on
//! the machine; compare the rows of one run.
//!
//! Run: `cargo bench --bench acquire_release`

use std::time::{Duration, Instant};

use quorumlock::{Redlock, Retry};
use quorumlock_testkit::LocalCluster;

const WARMUP: usize = 500;
const CYCLES: usize = 5000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent; only measure when asked.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("| nodes | cycles | acquire+release p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    for n in [1, 3, 5] {
        let cluster = LocalCluster::start(n).expect("redis-server");
        let redlock = Redlock::builder()
            .nodes(cluster.urls())
            .node_timeout(Duration::from_millis(200))
            .retry(Retry::none())
            .build()
            .unwrap();
        let mut samples = Vec::with_capacity(CYCLES);
        rt.block_on(async {
            for i in 0..WARMUP + CYCLES {
                let key = format!("bench:{i}");
                let t = Instant::now();
                let lock = redlock.acquire(&key, Duration::from_secs(10)).await.unwrap();
                lock.release().await.unwrap();
                if i >= WARMUP {
                    samples.push(t.elapsed());
                }
            }
            redlock.shutdown().await;
        });
        samples.sort();
        println!(
            "| {n} | {CYCLES} | {:.1?} | {:.1?} | {:.1?} |",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples[samples.len() - 1]
        );
    }
}
