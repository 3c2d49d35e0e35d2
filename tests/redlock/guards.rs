//! LockGuard, its watchdog, with_lock, and multi-resource locks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumlock::{ErrorKind, Retry};

use crate::support::*;

/// Script calls (EVALSHA + EVAL) a node has executed so far: extensions and releases.
/// Summed over a cluster member's shards.
fn script_calls(cluster: &LocalCluster, i: usize) -> u64 {
    (0..cluster.shards())
        .map(|s| {
            let Ok(Reply::Bulk(Some(info))) =
                cluster.command(cluster.shard_port(i, s), &["INFO", "commandstats"])
            else {
                panic!("node {i} shard {s}: no INFO commandstats")
            };
            String::from_utf8_lossy(&info)
                .lines()
                .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
                .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

fn total_script_calls(cluster: &LocalCluster) -> u64 {
    (0..cluster.len())
        .filter(|&i| cluster.is_running(i))
        .map(|i| script_calls(cluster, i))
        .sum()
}

/// P12 / S16: a guard with a 1.5 s TTL held for 5 s stays valid, its keys keep being
/// refreshed, and no extension reaches any node after release.
#[tokio::test]
async fn guard_outlives_its_ttl_and_stops_extending_after_release() {
    let cluster = cluster(3);
    // Not a test of timeouts: with a 100 ms node timeout (and a 500 ms TTL) two extensions in a
    // row that took over 100 ms on a majority, on a loaded machine, ended the hold (as
    // `max_hold_ends_the_hold_at_the_cap` did). 300 ms needs a TTL of at least 1.29 s for a guard.
    let redlock = builder(&cluster, Duration::from_millis(300)).build().unwrap();
    let ttl = Duration::from_millis(1500);
    // Connections up first: a SET sent while a connection is still being made can land after
    // the acquisition returned (it decides on a majority), and the loop below expects the key
    // on every node.
    warm_up(&redlock).await;
    let calls_before = total_script_calls(&cluster);
    let guard = redlock.acquire_guard("long-job", ttl).await.unwrap();
    // The acquisition decided at a majority; the last node's SET may still be on its way (on a
    // cluster member, over a shard connection the warm-up did not need): wait for it, bounded.
    let pttls = || (0..3).map(|i| on_node(&cluster, i, redis::cmd("PTTL").arg(lock_key("long-job"))));
    let arrived = eventually(Duration::from_secs(5), || pttls().all(|pttl: i64| pttl > 0)).await;
    assert!(arrived, "a node never got the key");
    let start = Instant::now();
    let mut min_pttl = i64::MAX;
    while start.elapsed() < Duration::from_secs(5) {
        assert!(
            guard.is_valid(),
            "lost after {:?}: {:?}",
            start.elapsed(),
            guard.lost_reason()
        );
        assert!(guard.remaining() > Duration::ZERO);
        for i in 0..3 {
            let pttl: i64 = on_node(&cluster, i, redis::cmd("PTTL").arg(lock_key("long-job")));
            assert!(pttl > 0, "node {i} lost the key after {:?}", start.elapsed());
            min_pttl = min_pttl.min(pttl);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Renewed with two thirds of the TTL left: a key never got near expiry.
    assert!(min_pttl > 100, "a node's TTL fell to {min_pttl} ms");
    let extensions_while_held = total_script_calls(&cluster) - calls_before;
    assert!(
        extensions_while_held >= 10,
        "only {extensions_while_held} extensions in 5 s"
    );
    let report = guard.release().await.unwrap();
    assert!(report.was_held());
    redlock.shutdown().await;
    let after_release = total_script_calls(&cluster);
    tokio::time::sleep(ttl * 2).await; // two renewal periods
    assert_eq!(
        total_script_calls(&cluster),
        after_release,
        "an extension was sent after release"
    );
    assert_no_lock_keys(&cluster, "after release");
}

#[tokio::test]
async fn dropped_guard_releases_at_once_and_stops_extending() {
    let cluster = cluster(3);
    // Not a test of timeouts: with 50 ms (and a 300 ms TTL) a cold connection or two slow
    // extensions on a loaded machine failed the acquisition or lost the guard, and the
    // forgotten guard's keys below had to be read within 300 ms. 200 ms needs a TTL of at least
    // 0.86 s for a guard.
    let redlock = builder(&cluster, Duration::from_millis(200)).build().unwrap();
    let ttl = Duration::from_millis(1000);
    let guard = redlock.acquire_guard("dropped", ttl).await.unwrap();
    tokio::time::sleep(ttl / 2).await; // at least one extension (a third of the TTL in)
    drop(guard);
    redlock.shutdown().await;
    assert_no_lock_keys(&cluster, "right after drop + shutdown");
    let calls = total_script_calls(&cluster);
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(
        total_script_calls(&cluster),
        calls,
        "an extension was sent after drop"
    );
    // Forget keeps the keys and stops the watchdog.
    let guard = redlock.acquire_guard("forgotten", ttl).await.unwrap();
    let token = guard.token().to_owned();
    guard.forget();
    redlock.shutdown().await;
    for v in values(&cluster, "forgotten") {
        assert_eq!(v.unwrap(), Some(token.clone()));
    }
}

/// P12 / C30: kill 3 of 5 under a held guard: lost() fires before the validity the guard last
/// reported, and with_lock drops its work and returns the loss.
#[tokio::test]
async fn majority_killed_under_guard_fires_lost_before_validity_ends() {
    let mut cluster = cluster(5);
    // The killed nodes refuse connections at once, so the loss is seen within an extension
    // whatever the node timeout; 50 ms let two slow extensions on a loaded machine lose the
    // guard before the kill (then `with_lock` below returned before it). 200 ms is the most a
    // 1 s guard allows.
    let node_timeout = Duration::from_millis(200);
    let redlock = builder(&cluster, node_timeout).build().unwrap();
    let ttl = Duration::from_millis(1000);
    let guard = redlock.acquire_guard("fragile", ttl).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await; // one extension done
    for i in [0, 2, 4] {
        cluster.kill(i).unwrap();
    }
    let until_at_kill = guard.valid_until();
    let err = tokio::time::timeout(ttl * 2, guard.lost())
        .await
        .expect("lost() never fired");
    let lost_at = Instant::now();
    assert!(err.is_lost(), "{err}");
    assert!(!guard.is_valid());
    assert!(
        lost_at < until_at_kill,
        "lost() fired {:?} after the validity ended",
        lost_at - until_at_kill
    );
    eprintln!(
        "lost() lead before valid_until: {:?} (ttl {ttl:?}, node timeout {node_timeout:?})",
        until_at_kill - lost_at
    );
    assert!(guard.release().await.unwrap_err().is_lost());

    // The same through with_lock: the work is dropped, the loss returned.
    for i in [0, 2, 4] {
        cluster.restart(i).unwrap();
    }
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let redlock = builder(&cluster, node_timeout)
        .retry(patient(50, 10))
        .build()
        .unwrap();
    let flag = SetOnDrop(dropped.clone());
    let work = async move {
        let _flag = flag;
        std::future::pending::<()>().await;
    };
    let killer = {
        let ports: Vec<u16> = (0..5).map(|i| cluster.port(i)).collect();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ports
        })
    };
    let with_lock = redlock.with_lock("fragile-2", ttl, work);
    tokio::pin!(with_lock);
    // Drive with_lock until the lock is held, then kill a majority under it.
    tokio::select! {
        _ = &mut with_lock => panic!("with_lock returned before the kill"),
        _ = killer => {}
    }
    for i in [1, 2, 3] {
        cluster.kill(i).unwrap();
    }
    let result = tokio::time::timeout(ttl * 2, with_lock)
        .await
        .expect("with_lock never returned");
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lost, "{err}");
    assert!(dropped.load(Ordering::SeqCst), "the work future was not dropped");
}

/// A runtime blocked past the TTL: the guard then reports lost and sends no extension for a lock
/// another client now holds.
#[test]
fn blocked_runtime_loses_the_guard_without_extending() {
    let cluster = cluster(3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redlock = rt.block_on(async { builder(&cluster, Duration::from_millis(50)).build().unwrap() });
    // Cache the scripts, so every script call below is one EVALSHA per node.
    rt.block_on(warm_up(&redlock));
    let ttl = Duration::from_millis(300);
    let guard = rt.block_on(redlock.acquire_guard("blocked", ttl)).unwrap();
    let urls = cluster.urls();
    // Another client, on its own runtime, takes the lock once A's keys expire.
    let other = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = quorumlock::Redlock::builder()
                .nodes(urls)
                .retry(
                    Retry::new()
                        .attempts(100)
                        .delay(Duration::from_millis(10), Duration::from_millis(10)),
                )
                .build()
                .unwrap();
            let lock = b.acquire("blocked", Duration::from_secs(10)).await.unwrap();
            let token = lock.token().to_owned();
            lock.forget();
            // B decided on a majority; its third request (and the clean-up of its refused
            // attempts) may already be written and run on its node later, after the counts
            // below were taken. Every request B sent has run once this returns.
            b.shutdown().await;
            token
        })
    });
    rt.block_on(async {
        // Block the runtime: the watchdog cannot run.
        std::thread::sleep(Duration::from_millis(800));
    });
    let b_token = other.join().unwrap();
    // B decided on a majority; its third node may have refused (A's key expires on each node
    // by its own clock), so the check below is per node: where B's key is now, it must still be
    // after A's release.
    let b_before = values(&cluster, "blocked");
    let b_nodes = b_before
        .iter()
        .filter(|v| v.as_ref().is_ok_and(|v| v.as_deref() == Some(b_token.as_str())))
        .count();
    assert!(b_nodes >= 2, "B holds a majority: {b_before:?}");
    let calls_before = total_script_calls(&cluster);
    assert!(!guard.is_valid(), "validity passed while the runtime was blocked");
    // Let the runtime turn: the watchdog's renewal timer is long due, so it runs now and must
    // find that no extension can be started in time.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    let err = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(2), guard.lost()).await })
        .unwrap();
    assert!(err.is_lost(), "{err}");
    assert!(
        err.to_string().contains("before the watchdog could extend"),
        "not the watchdog's verdict: {err}"
    );
    // Joining the watchdog (release() waits for it) and then the background work.
    rt.block_on(async {
        assert!(guard.release().await.unwrap_err().is_lost());
        redlock.shutdown().await;
    });
    // The only script calls since: the lost guard's release (compare-and-delete, one per node,
    // which leaves B's keys alone). An extension attempt would add at least one more per node.
    assert_eq!(
        total_script_calls(&cluster) - calls_before,
        3,
        "the stale guard sent an extension"
    );
    // The stale guard's release did not touch B's keys either.
    assert_eq!(values(&cluster, "blocked"), b_before, "B's keys changed");
}

/// The extension cap ends the hold at the cap, reports why, and frees the resource.
#[tokio::test]
async fn max_hold_ends_the_hold_at_the_cap() {
    let cluster = cluster(3);
    let max_hold = Duration::from_millis(3000);
    // A node timeout and a TTL long enough that an extension on a loaded machine does not end
    // the hold for another reason than the cap: with 100 ms and 600 ms (and a 1.2 s cap), an extension that took
    // over 100 ms on a majority ended the hold as "the validity ended without an extension"
    // (once in 8 runs with both cores busy).
    let redlock = builder(&cluster, Duration::from_millis(300))
        .max_hold(max_hold)
        .build()
        .unwrap();
    let ttl = Duration::from_millis(1500);
    let start = Instant::now();
    let guard = redlock.acquire_guard("capped", ttl).await.unwrap();
    let err = tokio::time::timeout(max_hold * 2, guard.lost())
        .await
        .expect("the cap never ended the hold");
    let held = start.elapsed();
    assert!(err.is_lost() && err.to_string().contains("max_hold"), "{err}");
    assert!(
        held <= max_hold + Duration::from_millis(250),
        "held {held:?}, cap {max_hold:?}"
    );
    assert!(
        held >= max_hold - ttl,
        "let go after {held:?}, long before the cap {max_hold:?}"
    );
    drop(guard);
    redlock.shutdown().await;
    assert_no_lock_keys(&cluster, "after the cap");
}

/// A guard lost at its cap keeps its keys, unextended, until the owner releases or drops it:
/// the owner may still be stopping the work the lock protects, and no one else may start
/// meanwhile.
#[tokio::test]
async fn lost_guard_keeps_its_keys_until_released_or_dropped() {
    let cluster = cluster(3);
    // A TTL far beyond the cap: the keys outlive the loss unless something deletes them.
    let ttl = Duration::from_secs(10);
    // Connections first, and a node timeout a loaded machine keeps to: a node whose first
    // connection took over 100 ms timed out before its SET was sent, and the check below (the
    // key on every node) then found it missing there.
    let redlock = builder(&cluster, Duration::from_millis(300))
        .max_hold(Duration::from_millis(300))
        .build()
        .unwrap();
    warm_up(&redlock).await;
    let other = client(&cluster);
    for end in ["release", "drop"] {
        let resource = format!("kept-{end}");
        let guard = redlock.acquire_guard(&resource, ttl).await.unwrap();
        let token = guard.token().to_owned();
        let err = tokio::time::timeout(ttl, guard.lost())
            .await
            .expect("the cap never ended the hold");
        assert!(err.to_string().contains("max_hold"), "{err}");
        assert!(!guard.is_valid());
        // Anything the loss set off in the background has finished once shutdown returns.
        redlock.shutdown().await;
        for v in values(&cluster, &resource) {
            assert_eq!(v.unwrap(), Some(token.clone()), "{end}: released at the loss");
        }
        let refused = other.try_acquire(&resource, ttl).await.unwrap_err();
        assert!(refused.is_contended(), "{end}: {refused}");
        // The published validity is the lock's claim, still ahead: a deadline for the owner.
        assert!(guard.valid_until() > Instant::now(), "{end}");
        if end == "release" {
            let err = guard.release().await.unwrap_err();
            assert!(err.is_lost() && err.to_string().contains("max_hold"), "{err}");
        } else {
            drop(guard);
        }
        // A release returns once a majority deleted the key; the last node's release finishes
        // in the background. And the other client's refused attempt decided on two refusals:
        // its third SET may land after this release and is then undone in *its* background
        // (flaky before: a fresh key on node 2 in 2 of 9 hunt runs). Wait for both clients.
        redlock.shutdown().await;
        other.shutdown().await;
        assert_no_lock_keys(&cluster, end);
        let lock = other.try_acquire(&resource, ttl).await.unwrap();
        lock.release().await.unwrap();
    }
    other.shutdown().await;
}

/// Lost because a majority no longer holds the token: the node that still does keeps the key
/// until the owner releases, and the release then removes it.
#[tokio::test]
async fn guard_lost_to_a_majority_keeps_the_minority_key_until_released() {
    let cluster = cluster(3);
    let redlock = builder(&cluster, Duration::from_millis(100)).build().unwrap();
    warm_up(&redlock).await;
    let ttl = Duration::from_secs(3);
    let guard = redlock.acquire_guard("minority", ttl).await.unwrap();
    let token = guard.token().to_owned();
    // The acquisition decided at a majority; a node's SET may still be on its way, and one that
    // lands on node 0 or 1 after the DEL below leaves a majority holding the token, so the guard
    // is never lost. The keys must be on every node first.
    let everywhere = eventually(Duration::from_secs(5), || {
        values(&cluster, "minority")
            .iter()
            .all(|v| v.as_ref().is_ok_and(|v| v.as_deref() == Some(token.as_str())))
    })
    .await;
    assert!(
        everywhere,
        "a node never got the key: {:?}",
        values(&cluster, "minority")
    );
    for i in [0, 1] {
        let _: i64 = on_node(&cluster, i, redis::cmd("DEL").arg(lock_key("minority")));
    }
    // The next extension (a third of the TTL in) finds the key gone on a majority.
    let err = tokio::time::timeout(ttl, guard.lost())
        .await
        .expect("lost() never fired");
    assert!(err.is_lost(), "{err}");
    redlock.shutdown().await;
    assert_eq!(
        values(&cluster, "minority"),
        vec![Ok(None), Ok(None), Ok(Some(token))],
        "node 2 still holds our token until the owner releases"
    );
    assert!(guard.release().await.unwrap_err().is_lost());
    // The release decided once nodes 0 and 1 said "not held"; node 2's delete may still be on
    // its way: wait for it before reading the node.
    redlock.shutdown().await;
    assert_no_lock_keys(&cluster, "after the release of the lost guard");
}

#[tokio::test]
async fn guard_ttl_too_short_for_the_node_timeout_is_rejected() {
    let cluster = cluster(3);
    let redlock = builder(&cluster, Duration::from_millis(200)).build().unwrap();
    let err = redlock
        .acquire_guard("short", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("too short for a guard"), "{err}");
    assert_no_lock_keys(&cluster, "nothing was acquired");
}

#[tokio::test]
async fn with_lock_returns_the_output_and_releases() {
    let cluster = cluster(3);
    // Not a test of timeouts: a 50 ms node timeout let two slow extensions on a loaded machine
    // lose the lock while the work ran. 300 ms needs a TTL of at least 1.29 s for a guard.
    let redlock = builder(&cluster, Duration::from_millis(300)).build().unwrap();
    let out = redlock
        .with_lock("wl", Duration::from_millis(1500), async {
            tokio::time::sleep(Duration::from_millis(3000)).await; // longer than the TTL
            7
        })
        .await
        .unwrap();
    assert_eq!(out, 7);
    assert_clean(&cluster, &[&redlock], "after with_lock").await;
}

/// Overlapping sets from two clients never both succeed; a failure leaves no partial set.
#[tokio::test]
async fn overlapping_multi_resource_locks_exclude_each_other() {
    let cluster = cluster(3);
    let (a, b) = (client(&cluster), client(&cluster));
    let ttl = Duration::from_secs(5);
    for round in 0..10 {
        // One slot group per round, so that the sets are valid on cluster members too.
        let (x, y, z) = (
            format!("{{r{round}}}x"),
            format!("{{r{round}}}y"),
            format!("{{r{round}}}z"),
        );
        let (ra, rb) = tokio::join!(
            a.try_acquire_many([x.as_str(), y.as_str()], ttl),
            b.try_acquire_many([z.as_str(), y.as_str(), z.as_str()], ttl)
        );
        let winner = match (ra, rb) {
            (Ok(w), Err(e)) | (Err(e), Ok(w)) => {
                assert!(e.is_contended(), "{e}");
                w
            }
            (Ok(_), Ok(_)) => panic!("round {round}: both hold {y}"),
            (Err(e1), Err(e2)) => panic!("round {round}: neither won:\n{e1}\n{e2}"),
        };
        a.shutdown().await;
        b.shutdown().await;
        // Every key that exists belongs to the winner: the loser left no partial set.
        for (node, key, _) in all_lock_keys(&cluster) {
            let v: Option<String> = on_node(&cluster, node, redis::cmd("GET").arg(&key));
            assert_eq!(v.as_deref(), Some(winner.token()), "node {node} key {key}");
        }
        let names: Vec<&str> = winner.resources().collect();
        assert!(
            names == [x.as_str(), y.as_str()] || names == [y.as_str(), z.as_str()],
            "{names:?}"
        );
        winner.release().await.unwrap();
    }
    assert_clean(&cluster, &[&a, &b], "after the rounds").await;
}

#[tokio::test]
async fn multi_resource_lock_is_all_or_nothing_per_node() {
    let cluster = cluster(3);
    let redlock = client(&cluster);
    for i in 0..3 {
        hold_elsewhere(&cluster, i, "{m}b", 30_000);
    }
    let err = redlock
        .try_acquire_many(["{m}a", "{m}b", "{m}c"], Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.is_contended(), "{err}");
    redlock.shutdown().await;
    for r in ["{m}a", "{m}c"] {
        assert!(
            values(&cluster, r).iter().all(|v| *v == Ok(None)),
            "{r} was set alone"
        );
    }
    // Duplicates merge, order does not matter; extend and release cover every key.
    let mut lock = redlock
        .acquire_many(["{m}c", "{m}a", "{m}a"], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(lock.resources().collect::<Vec<_>>(), ["{m}a", "{m}c"]);
    lock.extend(Duration::from_secs(20)).await.unwrap();
    redlock.shutdown().await;
    for r in ["{m}a", "{m}c"] {
        for i in 0..3 {
            let pttl: i64 = on_node(&cluster, i, redis::cmd("PTTL").arg(lock_key(r)));
            assert!(pttl > 19_000, "{r} on node {i}: {pttl}");
        }
    }
    lock.release().await.unwrap();
    redlock.shutdown().await;
    for r in ["{m}a", "{m}c"] {
        assert!(
            values(&cluster, r).iter().all(|v| *v == Ok(None)),
            "{r} left behind"
        );
    }
    let empty: [&str; 0] = [];
    assert_eq!(
        redlock
            .try_acquire_many(empty, Duration::from_secs(1))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}
