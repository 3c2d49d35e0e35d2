//! Cache stampede prevented: 40 requests on 4 instances miss the cache at once, and the
//! expensive value is computed once.
//!
//! On a miss, a request tries the lock once (`try_acquire`). The winner computes the value and
//! fills the cache; everyone else waits for the cache instead of computing too. If the winner
//! dies, its lock expires and the next waiter to try takes over: waiting is bounded by the TTL.
//!
//! The lock nodes come from `QUORUMLOCK_NODES` and the cache from `QUORUMLOCK_STORE`; each
//! unset one is started locally. Exits non-zero if the value was computed more than once.
//!
//! Run it:
//!
//! ```sh
//! cargo run --example cache_stampede    # starts local redis-server nodes (apt-get install redis-server)
//! # with your own lock nodes and store (it overwrites the store's key `cache:daily-report`):
//! QUORUMLOCK_NODES=redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379 \
//!   QUORUMLOCK_STORE=redis://10.0.0.9:6379 cargo run --example cache_stampede
//! ```
//!
//! Only `support::nodes` (examples/support/mod.rs) starts local servers; the rest is plain
//! quorumlock and tokio code that you can copy.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumlock::Redlock;

mod support;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const KEY: &str = "cache:daily-report";
const COMPUTE_TIME: Duration = Duration::from_millis(300);

async fn get(db: &mut redis::aio::MultiplexedConnection) -> Result<Option<String>, BoxError> {
    Ok(redis::cmd("GET").arg(KEY).query_async(db).await?)
}

/// One request: the cached value, computing it at most once across all instances.
async fn serve(redlock: &Redlock, store: &redis::Client, computed: &AtomicU32) -> Result<String, BoxError> {
    let mut db = store.get_multiplexed_async_connection().await?;
    let ttl = COMPUTE_TIME * 10;
    let deadline = Instant::now() + ttl * 2;
    loop {
        if let Some(v) = get(&mut db).await? {
            return Ok(v);
        }
        match redlock.try_acquire("recompute:daily-report", ttl).await {
            Ok(lock) => {
                // Someone may have filled the cache between our miss and our lock.
                if let Some(v) = get(&mut db).await? {
                    lock.release().await?;
                    return Ok(v);
                }
                computed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(COMPUTE_TIME).await; // the expensive query
                let value = format!("report computed at {:?}", Instant::now());
                let _: () = redis::cmd("SET")
                    .arg(KEY)
                    .arg(&value)
                    .arg("EX")
                    .arg(60)
                    .query_async(&mut db)
                    .await?;
                lock.release().await?;
                return Ok(value);
            }
            Err(e) if e.is_contended() => {
                if Instant::now() > deadline {
                    return Err("the cache was not filled in time".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (nodes, _lock_nodes) = support::nodes("QUORUMLOCK_NODES", 3)?;
    let (store_url, _store) = support::nodes("QUORUMLOCK_STORE", 1)?;
    let store = redis::Client::open(store_url[0].as_str())?;
    let mut db = store.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("DEL").arg(KEY).query_async(&mut db).await?;

    let computed = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let mut requests = Vec::new();
    for _ in 0..4 {
        let redlock = Redlock::builder().nodes(&nodes).build()?;
        for _ in 0..10 {
            let (redlock, store, computed) = (redlock.clone(), store.clone(), computed.clone());
            requests.push(tokio::spawn(
                async move { serve(&redlock, &store, &computed).await },
            ));
        }
    }
    let mut values = Vec::new();
    for r in requests {
        values.push(r.await??);
    }
    values.sort();
    values.dedup();
    let computed = computed.load(Ordering::Relaxed);
    println!(
        "40 requests served in {:?}: value computed {computed} time(s), {} distinct value(s) served",
        start.elapsed(),
        values.len()
    );
    if computed != 1 || values.len() != 1 {
        return Err("the stampede was not prevented".into());
    }
    Ok(())
}
