//! Issue 21: the library on a service's request path: shutdown that ends.

use std::time::Duration;

use crate::support::*;

/// A node that never accepted a connection was never sent the acquisition, so it holds
/// nothing: the release owes it nothing, and `shutdown()` returns at once instead of waiting
/// out the lock's 60 s TTL (the trial measured 30.6 s with a 30 s lock).
#[tokio::test]
async fn shutdown_does_not_wait_for_a_node_that_never_connected() {
    let mut cluster = cluster(3);
    cluster.kill(2).unwrap();
    let redlock = builder(&cluster, Duration::from_millis(200)).build().unwrap();
    let lock = redlock
        .acquire("svc-never-connected", Duration::from_secs(60))
        .await
        .expect("a majority is up");
    let report = lock.release().await.expect("released on the majority");
    assert_eq!(report.deleted(), 2, "{report:?}");
    let report = redlock.shutdown_timeout(Duration::from_secs(10)).await;
    assert!(
        report.is_complete(),
        "nothing is owed to a node never reached: {report}"
    );
    assert!(report.elapsed() < Duration::from_secs(10));
    assert_clean(&cluster, &[&redlock], "after the shutdown").await;
}

/// A node that was sent the acquisition and then died is owed its release: `shutdown_timeout`
/// stops waiting at its limit and names the node and what it still owes.
#[tokio::test]
async fn shutdown_timeout_names_the_releases_it_leaves_behind() {
    let mut cluster = cluster(3);
    let redlock = builder(&cluster, Duration::from_millis(200)).build().unwrap();
    let lock = hold_everywhere(&cluster, &redlock, "svc-owed").await;
    cluster.kill(2).unwrap();
    lock.release().await.expect("released on the majority");
    let report = redlock.shutdown_timeout(Duration::from_millis(300)).await;
    assert!(!report.is_complete(), "{report}");
    let owed: Vec<(usize, usize)> = report
        .owed_releases()
        .iter()
        .map(|(node, n)| (node.index(), *n))
        .collect();
    assert_eq!(owed, [(2, 1)], "{report}");
    assert!(report.to_string().contains("still owed 1 releases"), "{report}");
    // Back again: the obligation ends with a definite answer, and a full shutdown completes.
    cluster.restart(2).unwrap();
    let report = redlock.shutdown_timeout(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report}");
    assert_clean(&cluster, &[&redlock], "after the node came back").await;
}

/// Issue 21, item 2: with a majority down, a policy with `fail_fast_when_unreachable(1)` fails
/// after its first attempt with "too few nodes reachable" and every node's reason, instead of
/// waiting out its 5 s deadline (the trial: 4.7 s per request with the default policy); the
/// same policy still waits for a held resource until it is released.
#[tokio::test]
async fn an_outage_fails_fast_while_contention_still_waits() {
    let mut cluster = cluster(3);
    let redlock = builder(&cluster, Duration::from_millis(200)).build().unwrap();
    let request_path = quorumlock::Retry::wait(Duration::from_secs(5)).fail_fast_when_unreachable(1);

    let holder = builder(&cluster, Duration::from_millis(200)).build().unwrap();
    let held = holder
        .acquire("svc-fail-fast", Duration::from_secs(10))
        .await
        .unwrap();
    let released = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        held.release().await.unwrap();
    });
    let lock = redlock
        .acquire_with("svc-fail-fast", Duration::from_secs(5), &request_path)
        .await
        .expect("contention is waited out");
    released.await.unwrap();
    lock.release().await.unwrap();

    cluster.kill(1).unwrap();
    cluster.kill(2).unwrap();
    let e = redlock
        .acquire_with("svc-fail-fast", Duration::from_secs(5), &request_path)
        .await
        .expect_err("a majority is down");
    assert_eq!(e.kind(), quorumlock::ErrorKind::QuorumUnreachable, "{e}");
    assert_eq!(e.attempts(), 1, "{e}");
    assert!(e.is_transient());
    assert_eq!(e.nodes().len(), 3, "every node and its reason: {e}");
    assert!(e.elapsed().unwrap() < Duration::from_secs(2), "{e}");
    // The client's own policy (the default: 5 s) still retries until its deadline.
    let e = redlock
        .acquire("svc-fail-fast", Duration::from_secs(5))
        .await
        .expect_err("a majority is down");
    assert_eq!(e.kind(), quorumlock::ErrorKind::DeadlineExceeded, "{e}");
    assert!(
        e.attempts() > 1 && e.is_quorum_unreachable() && e.is_transient(),
        "{e}"
    );
    redlock.shutdown().await;
    holder.shutdown().await;
}

/// A per-call policy is checked as `build()` checks the client's; `try_acquire_guard` makes one
/// attempt; a configuration error is not transient.
#[tokio::test]
async fn per_call_policies_and_single_try_guards() {
    let cluster = cluster(3);
    let redlock = builder(&cluster, Duration::from_millis(200)).build().unwrap();
    let e = redlock
        .acquire_with(
            "svc-policy",
            Duration::from_secs(5),
            &quorumlock::Retry::new().attempts(0),
        )
        .await
        .expect_err("zero attempts");
    assert_eq!(e.kind(), quorumlock::ErrorKind::Config, "{e}");
    assert!(!e.is_transient());
    let e = redlock
        .acquire_with(
            "svc-policy",
            Duration::from_secs(5),
            &quorumlock::Retry::new().fail_fast_when_unreachable(0),
        )
        .await
        .expect_err("zero unreachable attempts");
    assert_eq!(e.kind(), quorumlock::ErrorKind::Config, "{e}");

    // The settings every client of a resource must share are in the client's Debug (issue 21).
    let shown = format!("{redlock:?}");
    for field in ["fencing: false", "wake_on_release: false", "fence_horizon: 3600s"] {
        assert!(shown.contains(field), "{shown}");
    }
    let guard = redlock
        .try_acquire_guard("svc-policy", Duration::from_secs(5))
        .await
        .unwrap();
    let e = redlock
        .try_acquire_guard("svc-policy", Duration::from_secs(5))
        .await
        .expect_err("held by the guard");
    assert!(e.is_contended() && e.attempts() == 1 && e.is_transient(), "{e}");
    guard.release().await.unwrap();
    assert_clean(&cluster, &[&redlock], "after the guards").await;
}

/// Issue 21, item 6: a start-up check. `health()` names each node's state: a healthy one with
/// its server identity, one that is down, one with the wrong password (not "unreachable": it
/// needs a person), and the quorum's margin.
#[tokio::test]
async fn health_names_each_nodes_state() {
    let mut cluster = cluster(3);
    let redlock = builder(&cluster, Duration::from_millis(200)).build().unwrap();
    let health = redlock.health().await.unwrap();
    assert!(health.is_fully_healthy() && health.has_quorum(), "{health}");
    assert_eq!(health.spare(), 1);
    for n in health.nodes() {
        assert_eq!(n.server.len(), 1, "{n:?}: one run_id");
    }
    assert_ne!(health.nodes()[0].server, health.nodes()[1].server);

    let wrong = cluster.urls()[2].replace("locker-pw", "wrong-pw");
    assert_ne!(wrong, cluster.urls()[2], "the URL carries the password");
    cluster.kill(1).unwrap();
    let misconfigured = quorumlock::Redlock::builder()
        .nodes([cluster.urls()[0].clone(), cluster.urls()[1].clone(), wrong])
        .node_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let health = misconfigured.health().await.unwrap();
    assert!(!health.has_quorum() && health.spare() == 0, "{health}");
    assert!(health.nodes()[0].is_ok(), "{health}");
    assert!(
        matches!(
            health.nodes()[1].state,
            Err(quorumlock::NodeOutcome::Io(_) | quorumlock::NodeOutcome::Timeout)
        ),
        "{health}"
    );
    assert!(
        matches!(health.nodes()[2].state, Err(quorumlock::NodeOutcome::Denied(_))),
        "{health}"
    );
    let text = health.to_string();
    assert!(
        text.starts_with("1 of 3 nodes healthy (quorum 2, 0 more may fail)"),
        "{text}"
    );
    assert!(!text.contains("wrong-pw"), "no password in the report: {text}");
}

/// Issue 21, item 4: the work gets its guard: the fence for its writes, and `lost()` for work
/// that wants to stop on its own terms. A lock lost while the work runs ends it with the loss.
#[tokio::test]
async fn the_work_sees_its_guard_and_its_loss() {
    let cluster = cluster(3);
    let redlock = builder(&cluster, Duration::from_millis(100))
        .fencing(true)
        .build()
        .unwrap();
    let (fence, held) = redlock
        .with_guard("svc-guarded", Duration::from_secs(2), async |g| {
            (g.fencing_token(), values(&cluster, "svc-guarded"))
        })
        .await
        .unwrap();
    assert!(fence.is_some_and(|f| f > 0), "the work read its fence");
    // A majority decides; the third node's grant may still be on its way (or never sent).
    let holding = held.iter().filter(|v| matches!(v, Ok(Some(_)))).count();
    assert!(holding >= 2, "held by a majority while it ran: {held:?}");
    redlock.shutdown().await;
    assert_no_lock_keys(&cluster, "released after the work");

    let lost = redlock
        .with_guard("svc-guarded", Duration::from_millis(1_500), async |g| {
            // Another party takes the keys away: the watchdog's next extension fails.
            for i in 0..3 {
                let _: () = on_node(&cluster, i, redis::cmd("DEL").arg(lock_key("svc-guarded")));
            }
            // Both wake together; run() looks at the loss first and drops the work.
            g.lost().await
        })
        .await
        .expect_err("the lock was lost while the work ran");
    assert!(lost.is_lost(), "{lost}");
    assert_clean(&cluster, &[&redlock], "after the lost guard").await;
}
