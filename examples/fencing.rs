//! Fencing tokens protect a store from a holder that was paused past its lock.
//!
//! A holds the lock and writes with its fence; A then "pauses" (a GC pause) past its TTL; B
//! acquires with a larger fence and writes; A wakes up and writes with its old fence: the store
//! refuses it.
//!
//! Run it:
//!
//! ```sh
//! cargo run --example fencing    # starts local redis-server nodes (apt-get install redis-server)
//! # with your own lock nodes:
//! QUORUMLOCK_NODES=redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379 \
//!   cargo run --example fencing
//! ```
//!
//! Only `support::nodes` (examples/support/mod.rs) starts local servers; the rest is plain
//! quorumlock and tokio code that you can copy.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use quorumlock::Redlock;

mod support;

/// A store that refuses writes with a fence below the largest it has accepted for the key.
#[derive(Default)]
struct FencedStore {
    rows: Mutex<HashMap<String, (u64, String)>>,
}

impl FencedStore {
    fn write(&self, key: &str, fence: u64, value: &str) -> Result<(), String> {
        let mut rows = self.rows.lock().unwrap();
        match rows.get(key) {
            Some((seen, _)) if fence < *seen => Err(format!("refused: fence {fence} < {seen}")),
            _ => {
                rows.insert(key.to_owned(), (fence, value.to_owned()));
                Ok(())
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (urls, _local) = support::nodes("QUORUMLOCK_NODES", 3)?;
    let redlock = Redlock::builder().nodes(&urls).fencing(true).build()?;
    let store = FencedStore::default();

    let a = redlock.acquire("invoice:7", Duration::from_millis(500)).await?;
    let fence_a = a.fencing_token().expect("fencing on");
    store.write("invoice:7", fence_a, "paid by A")?;
    println!("A holds the lock with fence {fence_a} and writes");

    println!("A pauses for 800 ms (longer than its 500 ms TTL)...");
    tokio::time::sleep(Duration::from_millis(800)).await;

    let b = redlock.acquire("invoice:7", Duration::from_secs(5)).await?;
    let fence_b = b.fencing_token().expect("fencing on");
    store.write("invoice:7", fence_b, "refunded by B")?;
    println!("B acquires with fence {fence_b} (> {fence_a}) and writes");

    println!("A wakes up: is_valid() = {}", a.is_valid());
    match store.write("invoice:7", fence_a, "paid again by A") {
        Ok(()) => println!("!! the store accepted A's stale write"),
        Err(e) => println!("A writes anyway with fence {fence_a}: {e}"),
    }
    println!("final row: {:?}", store.rows.lock().unwrap().get("invoice:7"));
    a.forget();
    b.release().await?;
    Ok(())
}
