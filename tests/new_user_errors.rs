//! Errors a new user meets in the first hour (issue 12 §2.3, §2.10), on real redis-server nodes.

use std::time::Duration;

use quorumlock::{ErrorKind, NodeOutcome, Redlock, Retry};
use quorumlock_testkit::{ClusterOptions, LocalCluster};

/// A wrong password is told apart by `is_unauthorized()`, not mistaken for contention or an
/// outage, and names each node that denied it.
#[tokio::test]
async fn wrong_password_is_unauthorized() {
    let cluster = LocalCluster::start_with(3, ClusterOptions::default().password("right-password")).unwrap();
    let urls: Vec<String> = (0..3)
        .map(|i| format!("redis://:wrong-password@127.0.0.1:{}", cluster.port(i)))
        .collect();
    let redlock = Redlock::builder()
        .nodes(urls)
        .retry(Retry::wait(Duration::from_secs(10)))
        .build()
        .unwrap();
    let err = redlock
        .acquire("unauthorized", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(
        !err.is_contended() && !err.is_quorum_unreachable() && !err.is_timeout(),
        "{err}"
    );
    let denied = err
        .nodes()
        .iter()
        .filter(|(_, o)| matches!(o, NodeOutcome::Denied(_)))
        .count();
    assert!(denied >= 2, "a majority denied: {err}");
    redlock.shutdown().await;
}

/// Outside tokio the call fails with [`ErrorKind::NoRuntime`] instead of tokio's "no reactor
/// running" panic.
#[test]
fn outside_tokio_is_a_clear_error() {
    let cluster = LocalCluster::start(3).unwrap();
    let redlock = Redlock::builder().nodes(cluster.urls()).build().unwrap();
    let err = futures::executor::block_on(redlock.acquire("no-runtime", Duration::from_secs(5))).unwrap_err();
    assert!(err.is_no_runtime(), "{err}");
    assert_eq!(err.kind(), ErrorKind::NoRuntime);
    assert!(err.to_string().contains("tokio"), "{err}");
}
