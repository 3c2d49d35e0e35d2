//! Node failures (G4): a minority down changes nothing, a majority down fails fast and says why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumlock::{ErrorKind, NodeOutcome};

use crate::support::*;

#[tokio::test]
async fn two_of_five_killed_acquire_extend_release_still_work() {
    let mut cluster = cluster(5);
    let redlock = client(&cluster);
    cluster.kill(1).unwrap();
    cluster.kill(3).unwrap();
    let mut lock = redlock
        .acquire("minority-down", Duration::from_secs(5))
        .await
        .expect("acquire with 3 of 5");
    lock.extend(Duration::from_secs(10))
        .await
        .expect("extend with 3 of 5");
    let report = lock.release().await.expect("release with 3 of 5");
    assert_eq!(report.deleted(), 3);
    for (node, outcome) in report.nodes() {
        match node.index() {
            1 | 3 => assert!(
                matches!(outcome, NodeOutcome::Io(_) | NodeOutcome::Pending),
                "{node}: {outcome}"
            ),
            _ => assert!(
                matches!(outcome, NodeOutcome::Granted | NodeOutcome::Pending),
                "{node}: {outcome}"
            ),
        }
    }
    assert_clean(&cluster, &[&redlock], "after release").await;
}

/// P7 / S12: with 3 of 5 down, acquire fails within its deadline, the error is "too few
/// nodes" (not contention) and names every node with its reason.
#[tokio::test]
async fn three_of_five_killed_fails_within_deadline_naming_the_nodes() {
    let mut cluster = cluster(5);
    let deadline = Duration::from_millis(800);
    let node_timeout = Duration::from_millis(100);
    let redlock = builder(&cluster, node_timeout)
        .retry(patient(1000, 20).deadline(deadline))
        .build()
        .unwrap();
    for i in [0, 2, 4] {
        cluster.kill(i).unwrap();
    }
    let start = Instant::now();
    let err = redlock
        .acquire("majority-down", Duration::from_secs(5))
        .await
        .unwrap_err();
    let took = start.elapsed();
    // Returns within deadline + one attempt's clean-up + scheduling slack (a guarantee, G4).
    assert!(
        took <= deadline + node_timeout + Duration::from_millis(250),
        "took {took:?}: {err}"
    );
    assert!(err.is_timeout(), "{err}");
    assert!(err.is_quorum_unreachable(), "{err}");
    assert!(!err.is_contended(), "{err}");
    assert_eq!(err.last_cause(), Some(ErrorKind::QuorumUnreachable));
    assert!(err.attempts() > 1);
    assert_eq!(err.nodes().len(), 5);
    let text = err.to_string();
    for (node, outcome) in err.nodes() {
        if [0, 2, 4].contains(&node.index()) {
            assert!(matches!(outcome, NodeOutcome::Io(_)), "{node}: {outcome}");
            assert!(
                text.contains(&format!("127.0.0.1:{}: i/o error", cluster.port(node.index()))),
                "{text}"
            );
        } else {
            assert!(
                matches!(outcome, NodeOutcome::Granted | NodeOutcome::Pending),
                "{node}: {outcome}"
            );
        }
    }
    // The decision can precede a live node's grant; its release then runs in the background.
    redlock.shutdown().await;
    assert_no_lock_keys(&cluster, "after the failed acquisition");

    // With the attempt count as the bound, the kind itself is "too few nodes".
    let err = redlock
        .try_acquire("majority-down", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuorumUnreachable, "{err}");
    assert_eq!(err.attempts(), 1);
}

/// A paused node (SIGSTOP: connection open, no replies) does not delay an acquisition that has
/// its quorum: the decision does not wait for slow nodes.
#[tokio::test]
async fn paused_node_does_not_delay_acquire_or_release() {
    let cluster = cluster(5);
    let node_timeout = Duration::from_secs(3);
    let redlock = builder(&cluster, node_timeout).build().unwrap();
    warm_up(&redlock).await;
    cluster.pause(2).unwrap();
    let start = Instant::now();
    let lock = redlock
        .acquire("paused", Duration::from_secs(10))
        .await
        .expect("4 of 5 answer");
    let report = lock.release().await.expect("release with 4 of 5");
    let took = start.elapsed();
    // Waiting for the paused node would take the whole node timeout.
    assert!(
        took < node_timeout / 2,
        "acquire+release took {took:?} with one node paused"
    );
    assert_eq!(report.nodes()[2].1, NodeOutcome::Pending);
    cluster.resume(2).unwrap();
    // The paused node got the SET and then the release, in that order, on one connection.
    redlock.shutdown().await;
    assert_no_lock_keys(&cluster, "after resume");
}

#[tokio::test]
async fn build_with_every_node_down_then_nodes_start() {
    let mut cluster = cluster(3);
    for i in 0..3 {
        cluster.kill(i).unwrap();
    }
    let redlock = builder(&cluster, Duration::from_millis(200))
        .retry(patient(200, 10))
        .build()
        .expect("build needs no node");
    let err = redlock
        .try_acquire("late-start", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuorumUnreachable, "{err}");
    assert!(
        err.nodes().iter().all(|(_, o)| matches!(o, NodeOutcome::Io(_))),
        "{err}"
    );
    for i in 0..3 {
        cluster.restart(i).unwrap();
    }
    let lock = redlock
        .acquire("late-start", Duration::from_secs(5))
        .await
        .expect("nodes are up now");
    lock.release().await.unwrap();
}

/// The same client, not a new one, recovers after its nodes restart.
#[tokio::test]
async fn same_client_recovers_after_nodes_restart() {
    let mut cluster = cluster(3);
    let redlock = builder(&cluster, Duration::from_millis(200))
        .retry(patient(100, 10))
        .build()
        .unwrap();
    redlock
        .acquire("before", Duration::from_secs(5))
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    for i in 0..3 {
        cluster.kill(i).unwrap();
        cluster.restart(i).unwrap();
    }
    let lock = redlock
        .acquire("after", Duration::from_secs(5))
        .await
        .expect("same client reconnects");
    assert!(lock.release().await.unwrap().was_held());
}

/// Error replies (here OOM on a majority) are failure votes with the server's text, never
/// "contended".
#[tokio::test]
async fn error_replies_are_failures_with_reasons() {
    let cluster = Arc::new(cluster(3));
    let redlock = client(&cluster);
    for i in [0, 1] {
        let _: () = on_node(
            &cluster,
            i,
            redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1"),
        );
    }
    let err = redlock
        .try_acquire("oom", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuorumUnreachable, "{err}");
    for (node, outcome) in &err.nodes()[..2] {
        match outcome {
            NodeOutcome::Redis(text) => assert!(text.starts_with("OOM"), "{node}: {text}"),
            other => panic!("{node}: {other}"),
        }
    }
    redlock.shutdown().await;
    assert_no_lock_keys(&cluster, "after OOM refusals");
}

/// `rediss://` goes through rustls: against a server without TLS the handshake fails as an i/o
/// failure per node (no panic for a missing crypto provider, no hang).
#[tokio::test]
async fn tls_to_a_plain_server_is_a_typed_failure() {
    let cluster = cluster(3);
    let urls: Vec<String> = (0..3)
        .map(|i| format!("rediss://127.0.0.1:{}", cluster.port(i)))
        .collect();
    let redlock = quorumlock::Redlock::builder()
        .nodes(urls)
        .node_timeout(Duration::from_millis(500))
        .retry(quorumlock::Retry::none())
        .build()
        .unwrap();
    let err = redlock.acquire("tls", Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuorumUnreachable, "{err}");
    for (node, outcome) in err.nodes() {
        assert!(
            matches!(
                outcome,
                NodeOutcome::Io(_) | NodeOutcome::Timeout | NodeOutcome::Pending
            ),
            "{node}: {outcome}"
        );
    }
    assert_no_lock_keys(&cluster, "after failed TLS handshakes");
}

/// C26: writes refused for three different reasons (an ACL permission revoked at run time,
/// NOREPLICAS, READONLY on a replica): each is a failure vote with its reason, never
/// "contended", and the permission error is told apart as "denied".
#[tokio::test]
async fn write_refusals_are_failures_with_reasons_never_contention() {
    let replica_of = cluster(1);
    // Five nodes, two of them healthy: quorum stays possible until all three refusals are in,
    // so every refusal is read before the decision.
    let cluster = cluster(5);
    for i in 0..5 {
        let _: () = on_node(
            &cluster,
            i,
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("locker")
                .arg("on")
                .arg(">pw")
                .arg("~*")
                .arg("+@all"),
        );
    }
    let urls: Vec<String> = (0..5)
        .map(|i| format!("redis://locker:pw@127.0.0.1:{}", cluster.port(i)))
        .collect();
    let redlock = quorumlock::Redlock::builder()
        .nodes(urls)
        .node_timeout(Duration::from_millis(200))
        .retry(quorumlock::Retry::none())
        .build()
        .unwrap();
    // Settled warm-up: a release still finishing on node 2 when it turns replica would be
    // refused with READONLY and leave the warm-up key behind.
    warm_up(&redlock).await;
    let _: () = on_node(
        &cluster,
        0,
        redis::cmd("ACL").arg("SETUSER").arg("locker").arg("-set"),
    );
    let _: () = on_node(
        &cluster,
        1,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-to-write")
            .arg("1"),
    );
    let _: () = on_node(
        &cluster,
        2,
        redis::cmd("REPLICAOF").arg("127.0.0.1").arg(replica_of.port(0)),
    );
    let err = redlock
        .try_acquire("w", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(!err.is_contended(), "{err}");
    assert!(err.is_quorum_unreachable(), "{err}");
    let outcomes: Vec<&NodeOutcome> = err.nodes().iter().map(|(_, o)| o).collect();
    assert!(
        // SET runs inside the acquire script, where Redis words the ACL refusal differently.
        matches!(outcomes[0], NodeOutcome::Denied(t) if t.contains("NOPERM") || t.contains("can't run this command")),
        "{err}"
    );
    assert!(
        matches!(outcomes[1], NodeOutcome::Redis(t) if t.starts_with("NOREPLICAS")),
        "{err}"
    );
    assert!(
        matches!(outcomes[2], NodeOutcome::Redis(t) if t.starts_with("READONLY")),
        "{err}"
    );
    let _: () = on_node(&cluster, 2, redis::cmd("REPLICAOF").arg("NO").arg("ONE"));
    redlock.shutdown().await;
    assert_no_lock_keys(&cluster, "after refusals");
}

/// docs/testing.md, "Hostile replies": the node timeout, not redis-rs' 500 ms default response timeout, bounds each
/// call, on both sides of 500 ms. A node answering after 700 ms is a grant with a 1.5 s node
/// timeout and a timeout with a 300 ms one.
#[tokio::test]
async fn node_timeout_bounds_calls_on_both_sides_of_500_ms() {
    use quorumlock_testkit::{Direction, Fault, Proxy};
    let cluster = cluster(1);
    let proxy = Proxy::start(cluster.port(0)).unwrap();
    for (node_timeout, granted) in [
        (Duration::from_millis(1500), true),
        (Duration::from_millis(300), false),
    ] {
        let redlock = quorumlock::Redlock::builder()
            .node(proxy.url())
            .node_timeout(node_timeout)
            .retry(quorumlock::Retry::none())
            .build()
            .unwrap();
        warm_up(&redlock).await; // the connection (and its handshake) before the delay
        proxy.set(Direction::Replies, Fault::Delay(Duration::from_millis(700)));
        let result = redlock.acquire("slow-node", Duration::from_secs(30)).await;
        proxy.heal();
        match (result, granted) {
            (Ok(lock), true) => {
                lock.release().await.unwrap();
            }
            (Err(e), false) => {
                assert_eq!(e.nodes()[0].1, quorumlock::NodeOutcome::Timeout, "{e}");
            }
            (r, _) => panic!("node timeout {node_timeout:?}: {:?}", r.map(|l| l.remaining())),
        }
        redlock.shutdown().await;
    }
    assert_no_lock_keys(&cluster, "after both");
}
