//! Inventory not oversold: 30 buyers on 3 service instances race for the last 10 units.
//!
//! Each purchase reads the stock, talks to the warehouse for a few milliseconds, then writes the
//! new stock: a read-modify-write that oversells when two buyers interleave. The example runs
//! the sale twice, first without a lock (it oversells) and then with each purchase under a
//! quorumlock guard (exactly 10 sold).
//!
//! The lock nodes come from `QUORUMLOCK_NODES` and the store from `QUORUMLOCK_STORE`; each
//! unset one is started locally. Exits non-zero if the locked sale oversells.
//!
//! Run it:
//!
//! ```sh
//! cargo run --example inventory    # starts local redis-server nodes (apt-get install redis-server)
//! # with your own lock nodes and store (it overwrites the store's key `stock:sku-123`):
//! QUORUMLOCK_NODES=redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379 \
//!   QUORUMLOCK_STORE=redis://10.0.0.9:6379 cargo run --example inventory
//! ```
//!
//! Only `support::nodes` (examples/support/mod.rs) starts local servers; the rest is plain
//! quorumlock and tokio code that you can copy.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quorumlock::{Redlock, Retry};

mod support;

const STOCK: i64 = 10;
const INSTANCES: usize = 3;
const BUYERS_PER_INSTANCE: usize = 10;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One purchase: read, think, write. Returns whether a unit was sold.
async fn buy(db: &mut redis::aio::MultiplexedConnection) -> Result<bool, BoxError> {
    let stock: i64 = redis::cmd("GET").arg("stock:sku-123").query_async(db).await?;
    if stock <= 0 {
        return Ok(false);
    }
    tokio::time::sleep(Duration::from_millis(5)).await; // reserve at the warehouse
    let _: () = redis::cmd("SET")
        .arg("stock:sku-123")
        .arg(stock - 1)
        .query_async(db)
        .await?;
    Ok(true)
}

async fn sale(nodes: &[String], store: &redis::Client, locked: bool) -> Result<(u32, i64), BoxError> {
    let mut db = store.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("SET")
        .arg("stock:sku-123")
        .arg(STOCK)
        .query_async(&mut db)
        .await?;
    let sold = Arc::new(AtomicU32::new(0));
    let mut buyers = Vec::new();
    for _ in 0..INSTANCES {
        // One client per instance, as separate services would have.
        let redlock = Redlock::builder()
            .nodes(nodes)
            .retry(Retry::new().attempts(1000).deadline(Duration::from_secs(30)))
            .build()?;
        for _ in 0..BUYERS_PER_INSTANCE {
            let (redlock, store, sold) = (redlock.clone(), store.clone(), sold.clone());
            buyers.push(tokio::spawn(async move {
                let mut db = store.get_multiplexed_async_connection().await?;
                let bought = if locked {
                    let guard = redlock.acquire_guard("sku-123", Duration::from_secs(2)).await?;
                    let bought = buy(&mut db).await?;
                    guard.release().await?;
                    bought
                } else {
                    buy(&mut db).await?
                };
                if bought {
                    sold.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, BoxError>(())
            }));
        }
    }
    for b in buyers {
        b.await??;
    }
    let left: i64 = redis::cmd("GET")
        .arg("stock:sku-123")
        .query_async(&mut db)
        .await?;
    Ok((sold.load(Ordering::Relaxed), left))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (nodes, _lock_nodes) = support::nodes("QUORUMLOCK_NODES", 3)?;
    let (store_url, _store) = support::nodes("QUORUMLOCK_STORE", 1)?;
    let store = redis::Client::open(store_url[0].as_str())?;
    let buyers = INSTANCES * BUYERS_PER_INSTANCE;

    let (sold, left) = sale(&nodes, &store, false).await?;
    println!("without a lock: {buyers} buyers, {sold} units sold of {STOCK}, stock left {left}");
    let (sold, left) = sale(&nodes, &store, true).await?;
    println!("with quorumlock: {buyers} buyers, {sold} units sold of {STOCK}, stock left {left}");
    if sold != STOCK as u32 || left != 0 {
        return Err(format!("locked sale sold {sold} with {left} left").into());
    }
    Ok(())
}
