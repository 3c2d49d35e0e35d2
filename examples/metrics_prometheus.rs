//! quorumlock's metrics (the `metrics` feature) exported in the Prometheus text format.
//!
//! Run it:
//!
//! ```sh
//! cargo run --features metrics --example metrics_prometheus   # starts 3 local redis-server nodes
//! # with your own lock nodes:
//! QUORUMLOCK_NODES=redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379 \
//!   cargo run --features metrics --example metrics_prometheus
//! ```
//!
//! It takes a lock, meets contention, extends, releases and drops a lock, then prints what a
//! Prometheus scrape would read, once, and exits. In a service, depend on
//! `quorumlock = { version = "0.1", features = ["metrics"] }` and serve the same text on
//! `/metrics`: with `metrics-exporter-prometheus`'s default `http-listener` feature,
//! `PrometheusBuilder::new().install()` does it for you. Every metric is described in
//! docs/metrics.md.
//!
//! Only `support::nodes` (examples/support/mod.rs) starts local servers; the rest is plain
//! quorumlock, metrics and tokio code that you can copy.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use quorumlock::Redlock;

mod support;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Install the recorder before the first lock call: the `metrics` facade drops whatever is
    // recorded while no recorder is installed. Latencies become histograms with these buckets
    // (seconds) instead of the exporter's default summaries.
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )?
        .install_recorder()?;
    // HELP and TYPE lines for every quorumlock metric.
    quorumlock::describe_metrics();

    let (urls, _local) = support::nodes("QUORUMLOCK_NODES", 3)?;
    let redlock = Redlock::builder().nodes(&urls).build()?;
    let ttl = Duration::from_secs(10);

    // A grant, and contention: a second client-side attempt while the lock is held.
    let mut lock = redlock.acquire("metrics-example", ttl).await?;
    let refused = redlock.try_acquire("metrics-example", ttl).await;
    assert!(refused.as_ref().is_err_and(|e| e.is_contended()), "{refused:?}");
    lock.extend(ttl).await?;
    lock.release().await?;
    // A lock dropped without release(): released in the background.
    drop(redlock.acquire("metrics-example", ttl).await?);
    redlock.shutdown().await;

    let text = prometheus.render();
    print!("{text}");
    // The example's check: what it did shows up in the scrape.
    for line in [
        "quorumlock_acquire_total{outcome=\"granted\"} 2",
        "quorumlock_acquire_total{outcome=\"contended\"} 1",
        "quorumlock_acquire_attempts_total{outcome=\"contended\"} 1",
        "quorumlock_extend_total{outcome=\"extended\"} 1",
        "quorumlock_release_total{outcome=\"released\"} 1",
        "quorumlock_release_total{outcome=\"dropped\"} 1",
    ] {
        if !text.lines().any(|l| l == line) {
            return Err(format!("missing from the scrape: {line}").into());
        }
    }
    Ok(())
}
