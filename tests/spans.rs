//! The `tracing` spans of acquire, extend and release: named `quorumlock.acquire` (with the
//! attempt number), `quorumlock.extend` / `quorumlock.release`, carrying the resource and the
//! token's fingerprint, never the token, and enclosing the operation's own events.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quorumlock::Redlock;
use quorumlock_testkit::LocalCluster;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn extend_and_release_run_in_their_spans() {
    // Global: tracing caches per-callsite interest process-wide (see tests/redlock/secrets.rs).
    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("only this test installs a subscriber");

    let cluster = LocalCluster::start(3).expect("redis-server");
    let redlock = Redlock::builder().nodes(cluster.urls()).build().unwrap();
    let mut lock = redlock.acquire("spans", Duration::from_secs(5)).await.unwrap();
    let (token, fingerprint) = (lock.token().to_owned(), lock.token_fingerprint());
    lock.extend(Duration::from_secs(4)).await.unwrap();
    lock.release().await.unwrap();
    redlock.shutdown().await;

    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The acquire span, with the attempt it recorded (entered only because a subscriber
    // wants it: `in_span!`).
    assert!(
        text.lines()
            .any(|l| l.contains("quorumlock.acquire{resource=spans ttl_ms=5000")
                && l.contains("attempt=1")
                && l.contains("attempt decided")),
        "{text}"
    );
    let extend = format!("quorumlock.extend{{resource=spans token={fingerprint} ttl_ms=4000}}");
    let release = format!("quorumlock.release{{resource=spans token={fingerprint}}}");
    // fmt prefixes an event with the spans it happened in.
    assert!(
        text.lines()
            .any(|l| l.contains(&extend) && l.contains("extend decided")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(&release) && l.contains("release decided")),
        "{text}"
    );
    assert!(!text.contains(&token), "the token itself was logged:\n{text}");
}
