//! docs/testing.md, "Least privilege": the least-privilege lock user. Every test built on `support::cluster` already
//! runs as that user; these tests cover each feature under it, and drop each permission in turn:
//! the failure must be a permission error naming the node, never "contended" or "lost".

use std::time::Duration;

use quorumlock::{ErrorKind, NodeOutcome, Redlock, Retry};

use crate::support::*;

/// A cluster whose client user has `rules` instead of the full lock profile.
fn cluster_with_rules(rules: &str) -> LocalCluster {
    LocalCluster::start_with(3, ClusterOptions::default().user("locker", "locker-pw", rules)).unwrap()
}

fn lock_client(cluster: &LocalCluster) -> Redlock {
    builder(cluster, Duration::from_millis(500))
        .retry(Retry::new().attempts(3))
        .build()
        .unwrap()
}

/// Every outcome of `e` is a permission denial (or was not awaited), each naming its node.
fn assert_denied(e: &quorumlock::Error, context: &str) {
    assert!(!e.is_contended(), "{context}: {e}");
    let denied = e
        .nodes()
        .iter()
        .filter(|(_, o)| matches!(o, NodeOutcome::Denied(_)))
        .count();
    assert!(denied >= 2, "{context}: {e}");
    let text = e.to_string();
    assert!(
        text.contains("permission denied") && text.contains("redis://127.0.0.1:"),
        "{context}: {text}"
    );
}

#[test]
fn docs_give_the_tested_rules() {
    let guide = include_str!("../../docs/operations.md");
    assert!(
        guide.contains(LOCK_USER_RULES),
        "docs/operations.md must give the ACL that the tests run with:\n{LOCK_USER_RULES}"
    );
}

#[tokio::test]
async fn every_feature_works_as_the_lock_user() {
    let cluster = cluster(3);
    let plain = lock_client(&cluster);
    let mut lock = plain.acquire("acl-one", Duration::from_secs(5)).await.unwrap();
    lock.extend(Duration::from_secs(5)).await.unwrap();
    assert!(lock.release().await.unwrap().was_held());
    let many = plain
        .acquire_many(["acl-a", "acl-b"], Duration::from_secs(5))
        .await
        .unwrap();
    many.release().await.unwrap();
    // Not a test of timeouts: 100 ms and a 600 ms guard is the set-up that lost
    // `max_hold_ends_the_hold_at_the_cap`'s guard to two slow extensions on a loaded machine.
    // 200 ms needs a guard TTL of at least 0.86 s; the wait is past the TTL, so only renewals
    // keep it.
    let quick = builder(&cluster, Duration::from_millis(200)).build().unwrap();
    let guard = quick
        .acquire_guard("acl-guard", Duration::from_millis(1000))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(guard.is_valid(), "the watchdog renews as the lock user");
    let view = plain.inspect("acl-guard").await.unwrap();
    assert_eq!(view.answered(), 3);
    assert!(view.holder().is_some());
    guard.release().await.unwrap();

    let fenced = builder(&cluster, Duration::from_millis(500))
        .fencing(true)
        .build()
        .unwrap();
    let f1 = fenced.acquire("acl-fence", Duration::from_secs(5)).await.unwrap();
    let t1 = f1.fencing_token().unwrap();
    f1.release().await.unwrap();
    let f2 = fenced.acquire("acl-fence", Duration::from_secs(5)).await.unwrap();
    assert!(f2.fencing_token().unwrap() > t1);
    f2.release().await.unwrap();

    // Wake-on-release: PUBLISH from the release script, SUBSCRIBE for the waiter.
    let waking = builder(&cluster, Duration::from_millis(500))
        .wake_on_release(true)
        .retry(
            Retry::new()
                .attempts(50)
                .delay(Duration::from_secs(2), Duration::ZERO)
                .deadline(Duration::from_secs(8)),
        )
        .build()
        .unwrap();
    // Only clients with wake_on_release publish on release.
    let held = waking.acquire("acl-wake", Duration::from_secs(5)).await.unwrap();
    waking.shutdown().await; // its requests are done: node 0's script calls are the waiter's
    let before = script_calls(&cluster, 0);
    let waiter = tokio::spawn({
        let waking = waking.clone();
        async move {
            let start = std::time::Instant::now();
            let lock = waking.acquire("acl-wake", Duration::from_secs(5)).await.unwrap();
            let waited = start.elapsed();
            lock.release().await.unwrap();
            waited
        }
    });
    // Not a sleep: the waiter must have been refused (else it is granted at once and nothing
    // was woken) and subscribed on every node (a notice published before that is lost and the
    // waiter polls: "woken after 2s" on a loaded machine, as in
    // `basics::release_wakes_refused_waiters`).
    let start = std::time::Instant::now();
    while script_calls(&cluster, 0) < before + 1
        || (0..3).any(|i| {
            let numsub = cluster.command(cluster.port(i), &["PUBSUB", "NUMSUB", "quorumlock:released"]);
            !matches!(numsub, Ok(Reply::Array(Some(v))) if matches!(v.get(1), Some(Reply::Int(n)) if *n >= 1))
        })
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the waiter never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    held.release().await.unwrap();
    let waited = waiter.await.unwrap();
    // Polling alone would wait for the 2 s retry delay; a wake-up comes with the release.
    assert!(waited < Duration::from_millis(1900), "woken after {waited:?}");
    assert_clean(&cluster, &[&plain, &quick, &fenced, &waking], "acl").await;
}

#[tokio::test]
async fn each_missing_permission_is_a_named_denial() {
    let full = LOCK_USER_RULES;
    // (rule taken away, what needs it)
    let cases = [
        ("+ping", "acquire"),
        ("+info", "acquire"),
        ("+set", "acquire"),
        ("+exists", "acquire"),
        // Every request is a script: EVALSHA, and EVAL on a fresh server's empty script cache.
        ("+evalsha", "acquire"),
        ("+eval", "acquire"),
        ("+get", "release"),
        ("+del", "release"),
        ("+pexpire", "extend"),
        ("+time", "fenced acquire"),
        // wake_on_release: every acquisition of one resource reads the head of its waiting line.
        ("+zrange", "waiting acquire"),
        // A refused waiter joins the line.
        ("+zadd", "contended waiting acquire"),
        // ... and gives the line a TTL: without these, a join that wrote its entry first left
        // the line without one (the drop audit found it).
        ("+pexpire", "contended waiting acquire"),
        ("+pttl", "contended waiting acquire"),
        // On a free key, a waiter checks whether it is in the line, and prunes a lapsed head.
        ("+zscore", "waiting acquire behind a lapsed waiter"),
        ("+zrem", "waiting acquire behind a lapsed waiter"),
        ("~quorumlock:*", "acquire"),
    ];
    for (rule, needed_by) in cases {
        let rules: Vec<&str> = full.split_whitespace().filter(|r| *r != rule).collect();
        let rules = rules.join(" ");
        assert_ne!(rules, full, "{rule} is in the profile");
        let cluster = cluster_with_rules(&rules);
        let redlock = lock_client(&cluster);
        let context = format!("without {rule}");
        let err = match needed_by {
            "acquire" => redlock.acquire("acl", Duration::from_secs(5)).await.unwrap_err(),
            "fenced acquire" => builder(&cluster, Duration::from_millis(500))
                .fencing(true)
                .build()
                .unwrap()
                .acquire("acl", Duration::from_secs(5))
                .await
                .unwrap_err(),
            "waiting acquire" | "contended waiting acquire" | "waiting acquire behind a lapsed waiter" => {
                for i in 0..cluster.len() {
                    if needed_by.starts_with("contended") {
                        hold_elsewhere(&cluster, i, "acl", 30_000);
                    } else if needed_by.ends_with("lapsed waiter") {
                        // A waiter at the earliest place whose lease ended long ago, in a
                        // line that lives on (a later waiter's lease), as the library
                        // writes one: with a TTL.
                        for (kind, score) in [("queue", 1), ("lease", 0)] {
                            let _: () = on_node(
                                &cluster,
                                i,
                                redis::cmd("ZADD").arg(key(kind, "acl")).arg(score).arg("gone"),
                            );
                            let _: () = on_node(
                                &cluster,
                                i,
                                redis::cmd("PEXPIRE").arg(key(kind, "acl")).arg(3_000),
                            );
                        }
                    }
                }
                builder(&cluster, Duration::from_millis(500))
                    .wake_on_release(true)
                    .retry(Retry::new().attempts(3))
                    .build()
                    .unwrap()
                    .acquire("acl", Duration::from_secs(5))
                    .await
                    .unwrap_err()
            }
            "extend" => {
                let mut lock = redlock.acquire("acl", Duration::from_secs(5)).await.unwrap();
                let e = lock.extend(Duration::from_secs(5)).await.unwrap_err();
                lock.forget();
                e
            }
            _ => {
                let lock = redlock.acquire("acl", Duration::from_secs(5)).await.unwrap();
                lock.release().await.unwrap_err()
            }
        };
        if needed_by.contains("acquire") {
            assert_eq!(err.kind(), ErrorKind::Unauthorized, "{context}: {err}");
            assert_eq!(err.attempts(), 1, "{context}: a denial is not retried");
        }
        assert_denied(&err, &context);
    }
}

#[tokio::test]
async fn wrong_password_is_unauthorized_without_retries() {
    let cluster = cluster(3);
    let urls: Vec<String> = cluster
        .urls()
        .iter()
        .map(|u| u.replace("locker-pw", "wrong"))
        .collect();
    let redlock = Redlock::builder()
        .nodes(urls)
        .node_timeout(Duration::from_millis(500))
        .retry(Retry::new().attempts(10))
        .build()
        .unwrap();
    let e = redlock.acquire("acl", Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert_eq!(e.attempts(), 1);
    assert_denied(&e, "wrong password");
    assert!(
        !e.to_string().contains("wrong"),
        "no password in the message: {e}"
    );
}
