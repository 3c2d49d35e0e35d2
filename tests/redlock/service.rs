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
