//! A payment service on quorumlock, shaped like the real thing: a request handler that charges
//! an order under a fenced lock, a background job under the same client, a start-up health
//! check, a lock node killed mid-run, and a bounded shutdown.
//!
//! - **Request path:** `handle_charge` takes the order's lock with a short policy that waits for
//!   a busy order but fails at once when too few lock nodes answer
//!   (`fail_fast_when_unreachable`), and answers like an HTTP handler: 200 charged, 208 already
//!   paid, 409 stale (a newer holder wrote first), 503 try again (`Error::is_transient`), 500
//!   fix the configuration.
//! - **The store** accepts a charge only with a fence at least as large as any it has seen, so a
//!   holder paused past its lock cannot charge twice.
//! - **Background job:** a reconciler runs under `with_guard` on the same client and reads its
//!   fence from the guard.
//!
//! The lock nodes come from `QUORUMLOCK_NODES` and the store from `QUORUMLOCK_STORE`; each unset
//! one is started locally, and then one lock node is killed halfway through. Exits non-zero
//! unless every order is charged exactly once.
//!
//! ```sh
//! cargo run --example payment_service   # starts local redis-server nodes
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quorumlock::{Redlock, Retry};

mod support;

/// Charges the order if it is unpaid and the fence is not stale, atomically in the store.
/// Returns 1 charged, 0 already paid, -1 stale fence.
const CHARGE: &str = r"
local seen = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if tonumber(ARGV[1]) < seen then return -1 end
redis.call('HSET', KEYS[1], 'fence', ARGV[1])
if redis.call('HGET', KEYS[1], 'status') == 'charged' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'charged')
redis.call('HINCRBY', KEYS[1], 'charges', 1)
return 1";

const ORDERS: usize = 40;
const REQUESTS: usize = 200;

/// What a POST /orders/{order}/charge answers.
async fn handle_charge(redlock: &Redlock, db: &mut redis::aio::MultiplexedConnection, order: usize) -> u16 {
    let request_path = Retry::wait(Duration::from_secs(1)).fail_fast_when_unreachable(1);
    let resource = format!("payments:order-{order}");
    let lock = match redlock
        .acquire_with(&resource, Duration::from_secs(3), &request_path)
        .await
    {
        Ok(lock) => lock,
        Err(e) if e.is_transient() => return 503,
        Err(e) => {
            eprintln!("order {order}: {e}");
            return 500;
        }
    };
    let fence = lock.fencing_token().expect("fencing is on");
    let charged: Result<i64, _> = redis::Script::new(CHARGE)
        .key(format!("order:{order}"))
        .arg(fence)
        .invoke_async(db)
        .await;
    let _ = lock.release().await; // a failed release expires by TTL
    match charged {
        Ok(1) => 200,
        Ok(0) => 208,
        Ok(_) => 409,
        Err(_) => 503,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (nodes, mut local) = support::nodes("QUORUMLOCK_NODES", 3)?;
    let (store, _store_node) = support::nodes("QUORUMLOCK_STORE", 1)?;
    let redlock = Redlock::builder()
        .nodes(&nodes)
        .node_timeout(Duration::from_millis(100))
        .fencing(true)
        .build()?;
    // Start-up check: refuse to serve without a quorum, warn without full redundancy.
    let health = redlock.health().await?;
    println!("start-up: {health}");
    if !health.has_quorum() {
        return Err(format!("no quorum of lock nodes: {health}").into());
    }
    let db = redis::Client::open(store[0].as_str())?
        .get_multiplexed_async_connection()
        .await?;
    for order in 0..ORDERS {
        let _: () = redis::cmd("DEL")
            .arg(format!("order:{order}"))
            .query_async(&mut db.clone())
            .await?;
    }

    // The background job: a reconciler under a guard, on the same client.
    let stop = Arc::new(AtomicBool::new(false));
    let reconciles = Arc::new(AtomicUsize::new(0));
    let job = {
        let (redlock, stop, reconciles) = (redlock.clone(), stop.clone(), reconciles.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let run = redlock
                    .with_guard("jobs:reconcile", Duration::from_secs(2), async |g| {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        g.fencing_token()
                    })
                    .await;
                if let Ok(Some(_fence)) = run {
                    reconciles.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Requests: 200 charges over 40 orders from 8 concurrent callers, each retrying a 503 up to
    // three times. Halfway, one lock node dies.
    let served = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for caller in 0..8 {
        let (redlock, mut db, served) = (redlock.clone(), db.clone(), served.clone());
        callers.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            for n in (caller..REQUESTS).step_by(8) {
                let order = n % ORDERS;
                let mut code = 503;
                for _ in 0..3 {
                    code = handle_charge(&redlock, &mut db, order).await;
                    if code != 503 {
                        break;
                    }
                }
                codes.push(code);
                served.fetch_add(1, Ordering::Relaxed);
            }
            codes
        }));
    }
    if let Some(cluster) = local.as_mut() {
        while served.load(Ordering::Relaxed) < REQUESTS / 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cluster.kill(2)?;
        println!(
            "lock node 2 killed after {} requests",
            served.load(Ordering::Relaxed)
        );
    }
    let mut codes = Vec::new();
    for c in callers {
        codes.extend(c.await?);
    }
    stop.store(true, Ordering::Relaxed);
    job.await?;

    let count = |code| codes.iter().filter(|c| **c == code).count();
    println!(
        "{} requests: {} charged, {} already paid, {} stale, {} unavailable, {} errors; {} reconciler runs",
        codes.len(),
        count(200),
        count(208),
        count(409),
        count(503),
        count(500),
        reconciles.load(Ordering::Relaxed)
    );
    let mut broken = Vec::new();
    for order in 0..ORDERS {
        let charges: Option<u64> = redis::cmd("HGET")
            .arg(format!("order:{order}"))
            .arg("charges")
            .query_async(&mut db.clone())
            .await?;
        if charges != Some(1) {
            broken.push(format!("order {order} charged {charges:?} times"));
        }
    }
    // Bounded shutdown: releases owed to the dead node may be left to expire.
    let report = redlock.shutdown_timeout(Duration::from_secs(2)).await;
    println!("shutdown: {report}");
    if count(200) != ORDERS || count(500) != 0 || !broken.is_empty() {
        return Err(format!(
            "invariant broken: {broken:?}, {} charged, {} errors",
            count(200),
            count(500)
        )
        .into());
    }
    println!("every order charged exactly once");
    Ok(())
}
