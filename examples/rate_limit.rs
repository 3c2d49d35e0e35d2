//! A rate-limit window shared by three service instances: at most 25 calls to a partner API per
//! 500 ms window, whichever instance makes them.
//!
//! The window (its start and the calls admitted in it) lives in a shared store. Each instance
//! decides under a lock: read the window, start a new one if it ended, admit the call if the
//! window has room. The store's clock (`TIME`) is the one clock all instances use. For a plain
//! counter, `INCR` with `PEXPIRE` needs no lock; the lock earns its keep when the decision
//! reads and writes several values, as a sliding or token-bucket policy does.
//!
//! The lock nodes come from `QUORUMLOCK_NODES` and the store from `QUORUMLOCK_STORE`; each
//! unset one is started locally. Exits non-zero if any window admitted more than the limit.
//!
//! Run it:
//!
//! ```sh
//! cargo run --example rate_limit    # starts local redis-server nodes (apt-get install redis-server)
//! # with your own lock nodes and store (it overwrites the store's key `window:partner-api`):
//! QUORUMLOCK_NODES=redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379 \
//!   QUORUMLOCK_STORE=redis://10.0.0.9:6379 cargo run --example rate_limit
//! ```
//!
//! Only `support::nodes` (examples/support/mod.rs) starts local servers; the rest is plain
//! quorumlock and tokio code that you can copy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use quorumlock::{Redlock, Retry};

mod support;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const LIMIT: u64 = 25;
const WINDOW_MS: u64 = 500;

/// The store's clock in milliseconds.
async fn now_ms(db: &mut redis::aio::MultiplexedConnection) -> Result<u64, BoxError> {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(db).await?;
    Ok(s * 1000 + us / 1000)
}

/// Admits one call or not; returns the window it was admitted in.
async fn admit(
    redlock: &Redlock,
    db: &mut redis::aio::MultiplexedConnection,
) -> Result<Option<u64>, BoxError> {
    let lock = redlock
        .acquire("ratelimit:partner-api", Duration::from_secs(1))
        .await?;
    let now = now_ms(db).await?;
    let (start, count): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
        .arg("window:partner-api")
        .arg("start")
        .arg("count")
        .query_async(db)
        .await?;
    let (start, count) = match start {
        Some(s) if now < s + WINDOW_MS => (s, count.unwrap_or(0)),
        _ => (now - now % WINDOW_MS, 0),
    };
    let admitted = count < LIMIT;
    let new_count = if admitted { count + 1 } else { count };
    let _: () = redis::cmd("HSET")
        .arg("window:partner-api")
        .arg("start")
        .arg(start)
        .arg("count")
        .arg(new_count)
        .query_async(db)
        .await?;
    // Only count the call if the decision was made while the lock was still ours.
    let valid = lock.is_valid();
    lock.release().await?;
    Ok((admitted && valid).then_some(start))
}

async fn instance(nodes: Vec<String>, store: redis::Client, run_for: Duration) -> Result<Vec<u64>, BoxError> {
    let redlock = Redlock::builder()
        .nodes(&nodes)
        .retry(
            Retry::new()
                .attempts(1000)
                .delay(Duration::from_millis(1), Duration::from_millis(4)),
        )
        .build()?;
    let mut db = store.get_multiplexed_async_connection().await?;
    let end = Instant::now() + run_for;
    let mut windows = Vec::new();
    while Instant::now() < end {
        if let Some(w) = admit(&redlock, &mut db).await? {
            windows.push(w);
            // ... call the partner API ...
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await; // over the limit: back off
        }
    }
    Ok(windows)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (nodes, _lock_nodes) = support::nodes("QUORUMLOCK_NODES", 3)?;
    let (store_url, _store) = support::nodes("QUORUMLOCK_STORE", 1)?;
    let store = redis::Client::open(store_url[0].as_str())?;
    let mut db = store.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("DEL")
        .arg("window:partner-api")
        .query_async(&mut db)
        .await?;

    let handles: Vec<_> = (0..3)
        .map(|_| tokio::spawn(instance(nodes.clone(), store.clone(), Duration::from_secs(2))))
        .collect();
    let mut per_window: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (i, h) in handles.into_iter().enumerate() {
        for w in h.await?? {
            per_window.entry(w).or_insert_with(|| vec![0; 3])[i] += 1;
        }
    }
    let first = per_window.keys().next().copied().unwrap_or(0);
    let mut over = false;
    for (w, by_instance) in &per_window {
        let total: u64 = by_instance.iter().sum();
        over |= total > LIMIT;
        println!(
            "window +{:>4} ms: {total:>2} calls admitted (limit {LIMIT}), per instance {by_instance:?}",
            w - first
        );
    }
    if over {
        return Err("a window admitted more calls than the limit".into());
    }
    Ok(())
}
