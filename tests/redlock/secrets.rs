//! G8: a password given in a URL never shows in Debug, Display, errors, panics or traces.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quorumlock::{Redlock, Retry};

use crate::support::*;

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

fn sentinel() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).unwrap();
    format!("pw{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

#[tokio::test]
async fn passwords_never_appear_in_output() {
    let right = sentinel();
    let wrong = sentinel();
    let cluster = LocalCluster::start_with(3, ClusterOptions::default().password(right.clone())).unwrap();
    // Global, not thread-local: tracing caches per-callsite interest process-wide, and tests on
    // other threads would race a thread-local subscriber. Other tests' logs land here too, which
    // only widens what is checked.
    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("only this test installs a subscriber");

    let mut shown = Vec::new();
    let mut urls = cluster.urls();
    urls[2] = format!("redis://user:{wrong}@127.0.0.1:{}", cluster.port(2));
    let builder = Redlock::builder()
        .nodes(&urls)
        .node_timeout(Duration::from_millis(300))
        .retry(Retry::new().attempts(2));
    shown.push(format!("{builder:?}"));
    let redlock = builder.build().unwrap();
    shown.push(format!("{redlock:?}"));

    // Success path with one node refusing our credentials.
    let mut lock = redlock.acquire("g8", Duration::from_secs(5)).await.unwrap();
    shown.push(format!("{lock:?}"));
    lock.extend(Duration::from_secs(5)).await.unwrap();
    let report = lock.release().await.unwrap();
    shown.push(format!("{report:?}"));

    // Failure paths: contention, then credentials refused by a majority, then bad URLs.
    let held = redlock.acquire("g8-held", Duration::from_secs(5)).await.unwrap();
    let err = redlock
        .try_acquire("g8-held", Duration::from_secs(5))
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));
    held.release().await.unwrap();
    let all_wrong: Vec<String> = (0..3)
        .map(|i| format!("redis://:{wrong}@127.0.0.1:{}", cluster.port(i)))
        .collect();
    let denied = Redlock::builder().nodes(&all_wrong).build().unwrap();
    let err = denied.acquire("g8", Duration::from_secs(5)).await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    for bad in [
        format!("redis://:{right}@127.0.0.1:notaport"),
        format!("ftp://:{right}@127.0.0.1:1"),
        format!("redis://:{right}@127.0.0.1:1#insecure"),
        right.clone(),
        format!("{right}@@::"),
    ] {
        let err = Redlock::builder().node(&bad).build().unwrap_err();
        assert!(err.is_invalid());
        shown.push(format!("{err} {err:?}"));
    }
    let dup = Redlock::builder()
        .nodes([urls[0].clone(), urls[0].clone()])
        .build()
        .unwrap_err();
    shown.push(format!("{dup} {dup:?}"));

    // A panic carrying an error.
    fn failing(e: quorumlock::Error) -> Result<(), quorumlock::Error> {
        Err(e)
    }
    let payload = std::panic::catch_unwind(|| failing(err.clone()).unwrap()).unwrap_err();
    shown.push(payload.downcast_ref::<String>().cloned().unwrap_or_default());

    redlock.shutdown().await;
    denied.shutdown().await;
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("attempt decided"),
        "tracing captured nothing useful:\n{logs}"
    );
    shown.push(logs);
    for text in &shown {
        for secret in [&right, &wrong] {
            assert!(!text.contains(secret.as_str()), "secret leaked in:\n{text}");
        }
    }
}
