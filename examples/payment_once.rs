//! A payment processed exactly once, even when a worker pauses past its lock.
//!
//! Five workers race to process order 42. Worker 0 gets the lock first, then "pauses" (a GC
//! pause, a slow disk) longer than its TTL; meanwhile another worker takes over and charges. The
//! store accepts a charge only with a fencing token at least as large as any it has seen, so
//! worker 0's late charge is refused, and the workers that come later find the order paid.
//!
//! The lock nodes come from `QUORUMLOCK_NODES` and the store from `QUORUMLOCK_STORE` (one
//! URL); each unset one is started locally. Exits non-zero if the order is not charged exactly
//! once.
//!
//! Run it:
//!
//! ```sh
//! cargo run --example payment_once    # starts local redis-server nodes (apt-get install redis-server)
//! # with your own lock nodes and store (it overwrites the store's key `order:42`):
//! QUORUMLOCK_NODES=redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379 \
//!   QUORUMLOCK_STORE=redis://10.0.0.9:6379 cargo run --example payment_once
//! ```
//!
//! Only `support::nodes` (examples/support/mod.rs) starts local servers; the rest is plain
//! quorumlock and tokio code that you can copy.

use std::time::Duration;

use quorumlock::{Redlock, Retry};

mod support;

/// Records the charge if the order is unpaid and the fence is not stale, atomically in the
/// store. Returns 1 charged, 0 already paid, -1 stale fence.
const CHARGE: &str = r"
local seen = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if tonumber(ARGV[1]) < seen then return -1 end
redis.call('HSET', KEYS[1], 'fence', ARGV[1])
if redis.call('HGET', KEYS[1], 'status') == 'charged' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'charged', 'by', ARGV[2])
return 1";

async fn worker(
    id: usize,
    nodes: Vec<String>,
    store: redis::Client,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let redlock = Redlock::builder()
        .nodes(&nodes)
        .fencing(true)
        .retry(Retry::new().attempts(100).deadline(Duration::from_secs(10)))
        .build()?;
    let mut db = store.get_multiplexed_async_connection().await?;
    let ttl = Duration::from_millis(if id == 0 { 300 } else { 2000 });
    let lock = redlock.acquire("payment:order-42", ttl).await?;
    let fence = lock.fencing_token().expect("fencing is on");
    let paid: Option<String> = redis::cmd("HGET")
        .arg("order:42")
        .arg("status")
        .query_async(&mut db)
        .await?;
    if paid.is_some() {
        lock.release().await?;
        return Ok(format!(
            "worker {id} (fence {fence}): already paid, nothing to do"
        ));
    }
    if id == 0 {
        // The pause: longer than the TTL, so the lock expires and someone else takes over.
        tokio::time::sleep(Duration::from_millis(700)).await;
    } else {
        tokio::time::sleep(Duration::from_millis(50)).await; // the payment gateway
    }
    let outcome: i64 = redis::cmd("EVAL")
        .arg(CHARGE)
        .arg(1)
        .arg("order:42")
        .arg(fence)
        .arg(id)
        .query_async(&mut db)
        .await?;
    let valid = lock.is_valid();
    if valid {
        lock.release().await?;
    } else {
        lock.forget(); // expired: nothing of ours to release
    }
    Ok(match outcome {
        1 => format!("worker {id} (fence {fence}): CHARGED order 42"),
        0 => format!("worker {id} (fence {fence}): already paid"),
        _ => format!("worker {id} (fence {fence}): charge REFUSED by the store, stale fence (lock still valid: {valid})"),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (nodes, _lock_nodes) = support::nodes("QUORUMLOCK_NODES", 3)?;
    let (store_url, _store) = support::nodes("QUORUMLOCK_STORE", 1)?;
    let store = redis::Client::open(store_url[0].as_str())?;
    let mut db = store.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("DEL").arg("order:42").query_async(&mut db).await?;

    let first = tokio::spawn(worker(0, nodes.clone(), store.clone()));
    tokio::time::sleep(Duration::from_millis(30)).await; // worker 0 gets there first
    let others: Vec<_> = (1..5)
        .map(|id| tokio::spawn(worker(id, nodes.clone(), store.clone())))
        .collect();
    for handle in std::iter::once(first).chain(others) {
        println!("{}", handle.await??);
    }
    let by: Option<String> = redis::cmd("HGET")
        .arg("order:42")
        .arg("by")
        .query_async(&mut db)
        .await?;
    let status: Option<String> = redis::cmd("HGET")
        .arg("order:42")
        .arg("status")
        .query_async(&mut db)
        .await?;
    println!("order 42: status {status:?}, charged by worker {by:?}");
    if status.as_deref() != Some("charged") {
        return Err("order 42 was not charged".into());
    }
    Ok(())
}
