//! `quorumlock-bench outage`: the figures of issue 21's trial, measured again on local nodes.
//!
//! 1. Shutdown with a node that never accepted a connection: one acquire and release of a 30 s
//!    lock on three nodes with one down from the start, then `shutdown()` (the trial: 30.6 s).
//! 2. Time to fail with two of three nodes down: `acquire` with the default policy (5 s
//!    deadline), and `acquire_with` a request-path policy that fails fast on an outage
//!    (the trial: 4.7 s).
//! 3. Requests per second of a handler (lock, then release; 8 concurrent callers, each request
//!    answered 200 or 503) with every node up, and with two of three down, for both policies
//!    (the trial: 314 requests/s healthy, 22 during the outage).
//!
//! A benchmark: it prints a table and is no test's pass/fail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumlock::{Redlock, Retry};
use quorumlock_testkit::LocalCluster;

const CALLERS: usize = 8;

fn client(cluster: &LocalCluster) -> Redlock {
    Redlock::builder()
        .nodes(cluster.urls())
        .node_timeout(Duration::from_millis(100))
        .build()
        .expect("valid configuration")
}

/// Requests per second of the lock-then-release handler over `secs`, with `retry` per request.
async fn rate(redlock: &Redlock, retry: &Retry, secs: f64) -> (f64, f64) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut callers = Vec::new();
    for c in 0..CALLERS {
        let (redlock, retry, ok, failed) = (redlock.clone(), retry.clone(), ok.clone(), failed.clone());
        callers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < end {
                let resource = format!("outage:{c}:{n}");
                n += 1;
                match redlock
                    .acquire_with(&resource, Duration::from_secs(5), &retry)
                    .await
                {
                    Ok(lock) => {
                        let _ = lock.release().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for c in callers {
        c.await.expect("caller");
    }
    let answered = (ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed)) as f64;
    (answered / secs, ok.load(Ordering::Relaxed) as f64 / secs)
}

/// Runs the three measurements and prints them. Returns the process exit code.
pub(crate) fn outage(secs: f64) -> i32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let default = Retry::new();
        let request_path = Retry::wait(Duration::from_secs(5)).fail_fast_when_unreachable(1);
        println!("| measurement | default policy (5 s deadline) | fail_fast_when_unreachable(1) |");
        println!("|---|---|---|");

        // 1. Shutdown with a node down from the start.
        let mut cluster = LocalCluster::start(3).expect("redis-server");
        cluster.kill(2).expect("kill");
        let redlock = client(&cluster);
        let lock = redlock.acquire("outage:shutdown", Duration::from_secs(30)).await.expect("majority up");
        lock.release().await.expect("released");
        let t = Instant::now();
        redlock.shutdown().await;
        let shutdown = t.elapsed();
        println!("| shutdown() after a 30 s lock, one node down from the start | {shutdown:.1?} | (same) |");

        // 3a. Healthy rate.
        let mut cluster = LocalCluster::start(3).expect("redis-server");
        let redlock = client(&cluster);
        let (healthy_default, _) = rate(&redlock, &default, secs).await;
        let (healthy_fast, _) = rate(&redlock, &request_path, secs).await;
        println!("| requests/s, all nodes up ({CALLERS} callers) | {healthy_default:.0} | {healthy_fast:.0} |");

        // 2. Time to fail, and 3b. the rate, with two of three down.
        cluster.kill(1).expect("kill");
        cluster.kill(2).expect("kill");
        let t = Instant::now();
        let slow = redlock.acquire("outage:fail", Duration::from_secs(5)).await.expect_err("majority down");
        let slow_time = t.elapsed();
        let t = Instant::now();
        let fast = redlock
            .acquire_with("outage:fail", Duration::from_secs(5), &request_path)
            .await
            .expect_err("majority down");
        let fast_time = t.elapsed();
        println!(
            "| time to fail, two of three nodes down | {slow_time:.1?} ({}) | {fast_time:.1?} ({}) |",
            slow.kind(),
            fast.kind()
        );
        let (down_default, _) = rate(&redlock, &default, secs.max(6.0)).await;
        let (down_fast, _) = rate(&redlock, &request_path, secs).await;
        println!(
            "| requests/s answered (all 503), two of three down ({CALLERS} callers) | {down_default:.1} | {down_fast:.0} |"
        );
        let report = redlock.shutdown_timeout(Duration::from_secs(1)).await;
        println!("\nshutdown_timeout(1 s) at the end: {report}");
        0
    })
}
