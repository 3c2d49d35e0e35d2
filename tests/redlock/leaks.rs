//! No keys left behind (G5): failed attempts, cancelled futures, dropped locks.

use std::sync::Arc;
use std::time::Duration;

use quorumlock::{ErrorKind, Retry};

use crate::support::*;

/// A partial grant is released when the contended attempt fails, and a retrying client is never
/// refused by its own leftovers (S1; the node-redlock defect).
#[tokio::test]
async fn partial_grants_are_released_and_never_block_a_retry() {
    let cluster = cluster(3);
    let redlock = client(&cluster);
    hold_elsewhere(&cluster, 1, "partial", 30_000);
    hold_elsewhere(&cluster, 2, "partial", 30_000);
    let err = redlock
        .try_acquire("partial", Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Contended, "{err}");
    redlock.shutdown().await;
    let v = values(&cluster, "partial");
    assert_eq!(v[0], Ok(None), "our partial grant is still on node 0");
    assert_eq!(v[1], Ok(Some("foreign-owner".into())));
    assert_eq!(v[2], Ok(Some("foreign-owner".into())));

    // The foreign holds end soon; attempts meanwhile win node 0 each time. A retry refused by
    // its own previous grant there would keep failing until that key's 30 s TTL.
    hold_elsewhere(&cluster, 1, "partial", 300);
    hold_elsewhere(&cluster, 2, "partial", 300);
    let patient = builder(&cluster, Duration::from_millis(200))
        .retry(patient(500, 5))
        .build()
        .unwrap();
    let lock = patient
        .acquire("partial", Duration::from_secs(30))
        .await
        .expect("free once the foreign holds expire");
    assert!(lock.release().await.unwrap().was_held());
}

#[tokio::test]
async fn partial_grant_is_gone_when_majority_is_down() {
    let mut cluster = cluster(3);
    let redlock = client(&cluster);
    cluster.kill(1).unwrap();
    cluster.kill(2).unwrap();
    let err = redlock
        .try_acquire("majority-down", Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuorumUnreachable, "{err}");
    redlock.shutdown().await;
    assert_eq!(values(&cluster, "majority-down")[0], Ok(None));
}

/// Quorum that arrives after the validity is used up is a failure, and its keys are removed.
#[tokio::test]
async fn late_quorum_is_refused_and_cleaned_up() {
    let cluster = Arc::new(cluster(3));
    let redlock = builder(&cluster, Duration::from_secs(3))
        // drift = 1000 * 0.5 + 2 = 502 ms: validity is gone once 498 ms have passed.
        .drift_factor(0.5)
        .build()
        .unwrap();
    warm_up(&redlock).await;
    cluster.pause(1).unwrap();
    cluster.pause(2).unwrap();
    let resumer = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            cluster.resume(1).unwrap();
            cluster.resume(2).unwrap();
        })
    };
    let err = redlock
        .try_acquire("late", Duration::from_millis(1000))
        .await
        .unwrap_err();
    resumer.await.unwrap();
    assert_eq!(err.kind(), ErrorKind::ValidityExhausted, "{err}");
    assert!(err.elapsed().unwrap() >= Duration::from_millis(498), "{err}");
    redlock.shutdown().await;
    // Keys were set with PX 1000 at ~700 ms: without our release they would still be there.
    assert_no_lock_keys(&cluster, "after a late quorum");
}

/// Polls `fut` at most `polls` times, letting the runtime drive I/O in between, then drops it
/// if it has not finished: a cancellation point counted in polls, not in sub-millisecond
/// timers (tokio's timer has 1 ms resolution).
async fn poll_then_drop<F: std::future::Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    for _ in 0..polls {
        if let std::task::Poll::Ready(out) = futures::poll!(fut.as_mut()) {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// S17 (without the proxy): cancel `acquire` after 0, 1, 2, ... polls; once background clean-up
/// has run, no key remains, and no cancelled call returned a grant.
#[tokio::test]
async fn cancelled_acquisitions_leave_no_keys() {
    let cluster = cluster(5);
    let redlock = client(&cluster);
    let (mut completed, mut cancelled) = (0, 0);
    for polls in 0..30 {
        match poll_then_drop(redlock.acquire("cancel", Duration::from_secs(30)), polls).await {
            Some(Ok(lock)) => {
                completed += 1;
                lock.release().await.unwrap();
            }
            Some(Err(e)) => panic!("after {polls} polls: {e}"),
            None => cancelled += 1,
        }
        redlock.shutdown().await;
        assert_no_lock_keys(&cluster, &format!("after cancelling at poll {polls}"));
    }
    assert!(cancelled > 1, "nothing was cancelled: the sweep tested nothing");
    eprintln!("{cancelled} cancelled, {completed} completed");
}

/// Cancelling while a node is paused: the reachable nodes end up clean at once, and the paused
/// node is cleaned by the release obligation once it resumes (before the TTL ends), which
/// `shutdown()` waits for.
#[tokio::test]
async fn cancelled_acquisition_with_a_paused_node() {
    let cluster = cluster(3);
    let redlock = builder(&cluster, Duration::from_millis(500))
        .retry(Retry::none())
        .build()
        .unwrap();
    warm_up(&redlock).await;
    // Node 1 refuses and node 2 is silent, so the attempt waits for node 2 until we cancel it.
    hold_elsewhere(&cluster, 1, "paused-cancel", 30_000);
    cluster.pause(2).unwrap();
    let r = tokio::time::timeout(
        Duration::from_millis(50),
        redlock.acquire("paused-cancel", Duration::from_secs(30)),
    )
    .await;
    assert!(
        r.is_err(),
        "the attempt should still be waiting for node 2: {r:?}"
    );
    let get =
        |i| -> Option<String> { on_node(&cluster, i, redis::cmd("GET").arg(lock_key("paused-cancel"))) };
    // Node 0 granted: its release is sent in the background at once.
    let start = std::time::Instant::now();
    while get(0).is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "node 0 granted and was not released"
        );
        // Yield to the background release (a blocking sleep would starve this runtime).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get(1).as_deref(), Some("foreign-owner"));
    // Paused well past the node timeout: the first release try towards node 2 has failed by
    // now, so only the obligation can still clean it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    cluster.resume(2).unwrap();
    // On resume node 2 runs the queued SET, then a release (the one queued behind it, or an
    // obligation's retry on a new connection, which leaves a tombstone if it came first).
    redlock.shutdown().await;
    assert_eq!(
        get(2),
        None,
        "node 2 kept our key after its release obligation ended"
    );
    assert_eq!(get(1).as_deref(), Some("foreign-owner"));
}

/// Dropping a lock after its runtime is gone neither panics nor blocks; the key expires.
#[test]
fn dropping_a_lock_after_runtime_shutdown_does_not_panic() {
    let cluster = cluster(3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redlock = client(&cluster);
    let lock = rt
        .block_on(redlock.acquire("orphan", Duration::from_millis(300)))
        .unwrap();
    drop(rt);
    drop(lock);
    std::thread::sleep(Duration::from_millis(400));
    assert_no_lock_keys(&cluster, "after TTL");
}

/// A late grant that needed the NOSCRIPT fallback is undone after an early release. The `EVAL`
/// fallback goes out only when the `NOSCRIPT` reply arrives, so the lock's release, issued on
/// the same connection meanwhile, runs first there and finds nothing; the grant that follows must
/// be released by the clean-up (found by the ACL suite: 2 keys left until their TTL).
#[tokio::test]
async fn late_grant_after_noscript_fallback_is_undone_after_release() {
    use quorumlock_testkit::{Direction, Fault, Proxy};
    let cluster = cluster(3);
    let slow = Proxy::start(cluster.port(0)).unwrap();
    let redlock = quorumlock::Redlock::builder()
        .nodes([slow.url(), cluster.url(1), cluster.url(2)])
        .node_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    // Caches the release script on every node (a single resource acquires with a plain SET), so
    // the release below is one EVALSHA; the multi-resource script stays uncached.
    warm_up(&redlock).await;
    slow.set(Direction::Replies, Fault::Delay(Duration::from_millis(150)));
    let lock = redlock
        .acquire_many(["fallback-a", "fallback-b"], Duration::from_secs(30))
        .await
        .unwrap();
    let report = lock.release().await.unwrap();
    assert!(report.was_held());
    // The background work (the late grant and its undo) ends within a few delays.
    redlock.shutdown().await;
    slow.heal();
    assert_no_lock_keys(&cluster, "after a release that overtook a NOSCRIPT fallback");
}
