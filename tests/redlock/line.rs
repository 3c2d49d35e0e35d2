//! docs/testing.md, "Waiting line": with wake-on-release, the waiters of one resource are served
//! across clients (processes) in the order they began to wait, a waiter that stops trying holds
//! the line up for one lease at most, and one that gets the lock, gives up or is dropped leaves
//! (docs/design.md, "The waiting line", says when).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorumlock::{Redlock, Retry};

use crate::support::*;

const NODE_TIMEOUT: Duration = Duration::from_millis(200);

/// A client with wake-on-release whose retries are `delay` apart: hand-overs within a delay come
/// from wake-ups and the line, not from polling.
fn waiting_client(cluster: &LocalCluster, delay: Duration, deadline: Duration) -> Redlock {
    builder(cluster, NODE_TIMEOUT)
        .wake_on_release(true)
        .retry(Retry::new().delay(delay, Duration::ZERO).deadline(deadline))
        .build()
        .unwrap()
}

/// Three clients made by `client`, each with one waiter of `resource`, join its line one after
/// the other while `held` holds it; then `held` is released. Returns who was served, in the
/// order served, with each lock's fence, and the clients.
async fn serve_in_turn(
    cluster: &LocalCluster,
    resource: &'static str,
    held: quorumlock::Lock,
    client: impl Fn() -> Redlock,
) -> (Vec<(usize, Option<u64>)>, Vec<Redlock>) {
    let served = Arc::new(Mutex::new(Vec::new()));
    let (mut clients, mut tasks) = (Vec::new(), Vec::new());
    for who in 0..3 {
        let c = client();
        tasks.push(tokio::spawn({
            let (c, served) = (c.clone(), served.clone());
            async move {
                let lock = c.acquire(resource, Duration::from_secs(10)).await.unwrap();
                served.lock().unwrap().push((who, lock.fencing_token()));
                tokio::time::sleep(Duration::from_millis(50)).await;
                lock.release().await.unwrap();
            }
        }));
        wait_for_line(cluster, resource, who + 1).await;
        clients.push(c);
    }
    held.release().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let served = served.lock().unwrap().clone();
    (served, clients)
}

/// Three clients, each with one waiter, joined the line one after the other while a fourth held
/// the key. Every release wakes the waiter of every client and they all try; only the head of
/// the line is granted, so they get the key in the order they began to wait. Without the line
/// the three race at every release.
#[tokio::test]
async fn waiters_of_different_clients_are_served_in_the_order_they_began_to_wait() {
    let cluster = cluster(3);
    let resource = "line-order";
    let holder = builder(&cluster, NODE_TIMEOUT).build().unwrap();
    let held = hold_everywhere(&cluster, &holder, resource).await;
    let (served, clients) = serve_in_turn(&cluster, resource, held, || {
        waiting_client(&cluster, Duration::from_secs(2), Duration::from_secs(30))
    })
    .await;
    let order: Vec<usize> = served.iter().map(|(who, _)| *who).collect();
    assert_eq!(order, [0, 1, 2]);
    let mut all: Vec<&Redlock> = clients.iter().collect();
    all.push(&holder);
    assert_clean(&cluster, &all, "after the hand-overs").await;
}

/// A waiter whose future is dropped (here: its task aborted while it waits for a release)
/// leaves the line on every node at once, so the next waiter is not held up for its lease. The
/// control for "at once": a single try of another waiting client, which is refused on a free
/// key while an earlier waiter's lease runs (next test).
#[tokio::test]
async fn a_dropped_waiter_leaves_the_line_at_once() {
    let cluster = cluster(3);
    let resource = "line-dropped";
    let holder = builder(&cluster, NODE_TIMEOUT).build().unwrap();
    let held = hold_everywhere(&cluster, &holder, resource).await;
    // A 1 s node timeout makes its lease 3.35 s (250 ms + 3 node timeouts + 100 ms): the check
    // below must come before the entry could have lapsed by itself, or it proves nothing.
    let dropped = builder(&cluster, Duration::from_secs(1))
        .wake_on_release(true)
        .retry(Retry::wait(Duration::from_secs(30)).delay(Duration::from_secs(1), Duration::ZERO))
        .build()
        .unwrap();
    let task = tokio::spawn({
        let dropped = dropped.clone();
        async move { dropped.acquire(resource, Duration::from_secs(10)).await }
    });
    wait_for_line(&cluster, resource, 1).await;
    let joined = Instant::now();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    dropped.shutdown().await; // its leave is a background job
    let lengths = line_lengths(&cluster, resource);
    assert!(
        joined.elapsed() < Duration::from_millis(3_000),
        "checked {:?} after the waiter joined: its entry could have lapsed by itself",
        joined.elapsed()
    );
    assert_eq!(lengths, [0, 0, 0], "the dropped waiter left");
    held.release().await.unwrap();
    let next = builder(&cluster, NODE_TIMEOUT)
        .wake_on_release(true)
        .build()
        .unwrap();
    let lock = next
        .try_acquire(resource, Duration::from_secs(5))
        .await
        .expect("nobody is ahead in the line");
    lock.release().await.unwrap();
    assert_clean(&cluster, &[&holder, &dropped, &next], "after the drop").await;
}

/// A waiter that stops trying without leaving (its process died: here, an entry made by the
/// script itself with a 1.5 s lease) keeps its place until its lease ends: meanwhile a single
/// try of a waiting client is refused although the key is free, and does not join. A client
/// without wake-on-release does not read the line (the control: the key was free). After the
/// lease, the next waiter is served.
#[tokio::test]
async fn a_waiter_that_stops_trying_holds_the_line_for_one_lease() {
    let cluster = cluster(3);
    let resource = "line-stalled";
    let lease_ms = 1_500;
    let script = include_str!("../../src/wire/scripts/acquire_queued.lua");
    let joining = Instant::now();
    for i in 0..cluster.len() {
        hold_elsewhere(&cluster, i, resource, 60_000);
        let mut eval = redis::cmd("EVAL");
        eval.arg(script).arg(4).arg(lock_key(resource));
        eval.arg(key("tomb-of-the-dead", resource));
        eval.arg(key("queue", resource)).arg(key("lease", resource));
        // Token, TTL, waiter id, place (the earliest there is), lease.
        eval.arg("dead-token")
            .arg(10_000)
            .arg("dead")
            .arg(1)
            .arg(lease_ms);
        let refused: i64 = on_node(&cluster, i, &mut eval);
        assert_eq!(refused, 0, "node {i}: the key was held");
        let _: () = on_node(&cluster, i, redis::cmd("DEL").arg(lock_key(resource)));
    }
    let joined = Instant::now();
    // The stalled waiter's lease runs from each node's own setup, so it ends on node 2 last (by
    // up to 175 ms on a loaded machine). A polite attempt between the ends is granted by nodes
    // 0 and 1 and refused by node 2, which keeps the stalled entry, and the refusal extends the
    // line's keys by the polite waiter's own lease: `assert_clean` then found them (issue 22,
    // item 6; reproduced 4 times in 120 runs under load, 9 in 10 with node 2's setup delayed
    // 150 ms; the leaves all answered). So the test looks at the line only where its meaning is
    // clear: once the stalled lease has ended on every node, by that node's clock.
    let lease_ended = |i: usize| {
        let now: (i64, i64) = on_node(&cluster, i, &mut redis::cmd("TIME"));
        let end: Option<i64> = on_node(
            &cluster,
            i,
            redis::cmd("ZSCORE").arg(key("lease", resource)).arg("dead"),
        );
        end.is_none_or(|end| now.0 * 1000 + now.1 / 1000 > end)
    };

    let polite = builder(&cluster, NODE_TIMEOUT)
        .wake_on_release(true)
        .build()
        .unwrap();
    let refused = polite
        .try_acquire(resource, Duration::from_secs(5))
        .await
        .expect_err("the key is free, but a waiter that began earlier still holds its place");
    assert!(refused.is_contended(), "{refused}");
    assert_eq!(
        line_lengths(&cluster, resource),
        [1, 1, 1],
        "a single try does not join"
    );

    let barging = builder(&cluster, NODE_TIMEOUT).build().unwrap();
    let lock = barging
        .try_acquire(resource, Duration::from_secs(5))
        .await
        .expect("a client without wake-on-release does not read the line");
    lock.release().await.unwrap();

    while !(0..cluster.len()).all(lease_ended) {
        assert!(
            joined.elapsed() < Duration::from_millis(lease_ms + 2_000),
            "the stalled lease never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lock = polite
        .acquire(resource, Duration::from_secs(5))
        .await
        .expect("served once the stalled waiter's lease ended");
    let served = joining.elapsed();
    assert!(
        served >= Duration::from_millis(lease_ms),
        "served {served:?} after the stalled waiter joined, within its lease"
    );
    // Then at most one retry delay (the default, at most 250 ms) and an attempt later.
    let waited = joined.elapsed();
    assert!(
        waited < Duration::from_millis(lease_ms + 1_000),
        "waited {waited:?}"
    );
    lock.release().await.unwrap();
    assert_clean(&cluster, &[&polite, &barging], "after the lease").await;
}

/// A waiter that reaches its deadline leaves the line at once: its last attempt's lease (1.7 s)
/// is still running when it returns, and no entry is left.
#[tokio::test]
async fn a_waiter_that_gives_up_leaves_the_line() {
    let cluster = cluster(3);
    let resource = "line-give-up";
    let holder = builder(&cluster, NODE_TIMEOUT).build().unwrap();
    let held = hold_everywhere(&cluster, &holder, resource).await;
    let waiter = waiting_client(&cluster, Duration::from_secs(1), Duration::from_millis(1500));
    let err = waiter
        .acquire(resource, Duration::from_secs(10))
        .await
        .expect_err("held for 30 s");
    assert!(err.is_contended(), "{err}");
    waiter.shutdown().await;
    assert_eq!(line_lengths(&cluster, resource), [0, 0, 0], "the waiter left");
    held.release().await.unwrap();
    assert_clean(&cluster, &[&holder, &waiter], "after giving up").await;
}

/// One server, and a connection to it for running the line script by hand.
async fn one_server() -> (LocalCluster, redis::aio::MultiplexedConnection) {
    let cluster = LocalCluster::start(1).unwrap();
    let con = redis::Client::open(cluster.url(0))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (cluster, con)
}

/// The script itself, on one server: the head of the line is served, a refused waiter joins at
/// the place it first gave and renews its lease, an entry whose lease ended is skipped, a last
/// attempt (lease 0) does not join, and the line's keys never outlive their longest lease.
#[tokio::test]
async fn the_line_script_serves_its_head_and_skips_ended_leases() {
    let (cluster, mut con) = one_server().await;
    let script = include_str!("../../src/wire/scripts/acquire_queued.lua");
    let keys = ["lock", "tomb", "line", "leases"];
    let mut run = async |token: &str, waiter: &str, place: u64, lease_ms: u64| -> bool {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(4).arg(&keys[..]);
        cmd.arg(token).arg(60_000).arg(waiter).arg(place).arg(lease_ms);
        match cmd.query_async::<redis::Value>(&mut con).await.unwrap() {
            redis::Value::BulkString(t) => {
                assert_eq!(t, token.as_bytes());
                true
            }
            redis::Value::Int(0) => false,
            other => panic!("unexpected reply {other:?}"),
        }
    };
    let mut audit = redis::Client::open(cluster.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let line = |audit: &mut redis::Connection| -> Vec<String> {
        redis::cmd("ZRANGE")
            .arg("line")
            .arg(0)
            .arg(-1)
            .query(audit)
            .unwrap()
    };
    let del = |audit: &mut redis::Connection| {
        let _: () = redis::cmd("DEL").arg("lock").query(audit).unwrap();
    };

    assert!(run("t-a", "a", 30, 5_000).await, "an empty line: served at once");
    assert!(!run("t-b", "b", 20, 5_000).await);
    assert!(!run("t-c", "c", 10, 1).await, "c joins with a 1 ms lease");
    for k in ["line", "leases"] {
        let pttl: i64 = redis::cmd("PTTL").arg(k).query(&mut audit).unwrap();
        assert!(
            pttl > 1_000,
            "{k}: a shorter lease does not shorten the line's life: {pttl}"
        );
    }
    assert!(!run("t-d", "d", 40, 0).await, "a last attempt does not join");
    assert_eq!(line(&mut audit), ["c", "b"], "ordered by place, not by arrival");
    assert!(
        !run("t-b2", "b", 99, 5_000).await,
        "b renews; its first place stays"
    );
    assert_eq!(line(&mut audit), ["c", "b"]);
    let pttl: i64 = redis::cmd("PTTL").arg("line").query(&mut audit).unwrap();
    assert!(
        (1..=5_000).contains(&pttl),
        "the line lives as long as its longest lease: {pttl}"
    );

    del(&mut audit); // a's release
    tokio::time::sleep(Duration::from_millis(5)).await; // c's lease ends
    assert!(
        !run("t-d", "d", 40, 0).await,
        "b is the head: d is refused although the key is free"
    );
    assert!(run("t-b3", "b", 20, 5_000).await, "c's lease ended: b is served");
    assert!(
        line(&mut audit).is_empty(),
        "c was pruned and b left the line when served"
    );
    let left: i64 = redis::cmd("EXISTS")
        .arg("line")
        .arg("leases")
        .query(&mut audit)
        .unwrap();
    assert_eq!(left, 0, "no lease is left without its waiter");
    del(&mut audit);
    assert!(run("t-d", "d", 40, 0).await, "an empty line: anyone is served");
}

/// A waiter granted by a majority leaves the line on the node that refused it (there it joined):
/// otherwise its entry would hold up the next waiter on that node until its lease ended.
#[tokio::test]
async fn a_waiter_served_by_a_majority_leaves_where_it_was_refused() {
    let cluster = cluster(3);
    let resource = "line-majority";
    hold_elsewhere(&cluster, 2, resource, 30_000);
    let waiter = waiting_client(&cluster, Duration::from_secs(1), Duration::from_secs(10));
    let lock = waiter.acquire(resource, Duration::from_secs(10)).await.unwrap();
    waiter.shutdown().await;
    assert_eq!(line_lengths(&cluster, resource), [0, 0, 0], "left node 2's line");
    lock.release().await.unwrap();
    let _: () = on_node(&cluster, 2, redis::cmd("DEL").arg(lock_key(resource)));
    assert_clean(&cluster, &[&waiter], "after the release").await;
}

/// A refused waiter for several resources does not join the line (its script has none: it keeps
/// the race between woken waiters; docs/design.md, "The waiting line"), while a waiter for one
/// of them does (the control).
#[tokio::test]
async fn multi_resource_waiters_do_not_join_the_line() {
    let cluster = cluster(3);
    let resource = "{line-skip}";
    let holder = builder(&cluster, NODE_TIMEOUT).build().unwrap();
    let held = hold_everywhere(&cluster, &holder, resource).await;
    // Checked while it still waits: a waiter that joined would leave when it gives up.
    let several = waiting_client(&cluster, Duration::from_millis(200), Duration::from_secs(2));
    let task = tokio::spawn({
        let several = several.clone();
        async move {
            several
                .acquire_many([resource, "{line-skip}:2"], Duration::from_secs(5))
                .await
        }
    });
    // Its first two attempts have been refused on node 0 (synchronised on the node's count of
    // script calls, not a sleep): a waiter that joined would be in the line now.
    let before = script_calls(&cluster, 0);
    let start = Instant::now();
    while script_calls(&cluster, 0) < before + 2 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no attempt reached node 0"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!task.is_finished(), "still waiting: the check sees a live waiter");
    assert!(
        all_line_keys(&cluster).is_empty(),
        "{:?}",
        all_line_keys(&cluster)
    );
    let err = task.await.unwrap().unwrap_err();
    assert!(err.is_contended(), "{err}");
    let one = waiting_client(&cluster, Duration::from_secs(1), Duration::from_secs(5));
    let task = tokio::spawn({
        let one = one.clone();
        async move { one.acquire(resource, Duration::from_secs(5)).await }
    });
    // Says why if the control fails (it did once: see `hold_everywhere`).
    let start = Instant::now();
    while line_lengths(&cluster, resource) != [1, 1, 1] {
        if task.is_finished() || start.elapsed() > Duration::from_secs(10) {
            panic!(
                "the single-resource waiter did not join: lines {:?}, values {:?}, finished {}",
                line_lengths(&cluster, resource),
                values(&cluster, resource),
                task.is_finished(),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    held.release().await.unwrap();
    task.await.unwrap().unwrap().release().await.unwrap();
    assert_clean(&cluster, &[&holder, &several, &one], "after the waits").await;
}

/// Fenced locks go through the line too: three fenced waiting clients are served in the order
/// they began to wait, and each lock's fence is above the one before (G6: the fence is taken by
/// the same rule as without the line).
#[tokio::test]
async fn fenced_waiters_are_served_in_order_with_increasing_fences() {
    let cluster = cluster(3);
    let resource = "line-fenced";
    let fenced = |delay| {
        builder(&cluster, NODE_TIMEOUT)
            .wake_on_release(true)
            .fencing(true)
            .retry(
                Retry::new()
                    .delay(delay, Duration::ZERO)
                    .deadline(Duration::from_secs(30)),
            )
            .build()
            .unwrap()
    };
    let holder = fenced(Duration::from_secs(2));
    let held = hold_everywhere(&cluster, &holder, resource).await;
    let first_fence = held.fencing_token().expect("fenced");
    let (served, clients) = serve_in_turn(&cluster, resource, held, || fenced(Duration::from_secs(2))).await;
    let order: Vec<usize> = served.iter().map(|(who, _)| *who).collect();
    assert_eq!(order, [0, 1, 2], "{served:?}");
    let mut last = first_fence;
    for (who, fence) in &served {
        let fence = fence.expect("fenced");
        assert!(fence > last, "waiter {who}'s fence {fence} is not above {last}");
        last = fence;
    }
    let mut all: Vec<&Redlock> = clients.iter().collect();
    all.push(&holder);
    assert_clean(&cluster, &all, "after the fenced hand-overs").await;
}

/// The line script with a fence counter (fenced locks): a grant takes a fence above the counter
/// and stores it; the same request sent again is granted again with the counter; a refusal
/// changes no counter; a fence that cannot be taken sets no key.
#[tokio::test]
async fn the_fenced_line_script_takes_fences_above_the_counter() {
    let (_cluster, mut con) = one_server().await;
    let script = include_str!("../../src/wire/scripts/acquire_queued.lua");
    let far = 9_000_000_000_000_000_i64; // above any server time in microseconds
    let _: () = redis::cmd("SET")
        .arg("fence")
        .arg(far)
        .query_async(&mut con)
        .await
        .unwrap();
    let keys = ["lock", "tomb", "line", "leases", "fence"];
    let mut run = async |token: &str, waiter: &str| -> redis::Value {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(5).arg(&keys[..]);
        cmd.arg(token)
            .arg(60_000)
            .arg(waiter)
            .arg(1)
            .arg(5_000)
            .arg(60_000);
        cmd.query_async(&mut con).await.unwrap()
    };
    let granted =
        |t: &str, f: i64| redis::Value::Array(vec![redis::Value::BulkString(t.into()), redis::Value::Int(f)]);
    assert_eq!(
        run("t-a", "a").await,
        granted("t-a", far + 1),
        "above the counter"
    );
    assert_eq!(
        run("t-a", "a").await,
        granted("t-a", far + 1),
        "sent again: the counter"
    );
    assert_eq!(run("t-b", "b").await, redis::Value::Int(0), "held: refused");
    let counter: i64 = redis::cmd("GET")
        .arg("fence")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        counter,
        far + 1,
        "the grant stored its fence; the refusal changed nothing"
    );
    let pttl: i64 = redis::cmd("PTTL")
        .arg("fence")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        0 < pttl && pttl <= 60_000,
        "the counter lives one horizon: {pttl}"
    );

    // A fence that cannot be taken (a counter that is not a number) fails before the lock key
    // is written: an error reply, and no key set.
    let _: () = redis::cmd("DEL").arg("lock").query_async(&mut con).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("fence")
        .arg("not-a-number")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(5).arg(&keys[..]);
    cmd.arg("t-b2").arg(60_000).arg("b").arg(1).arg(5_000).arg(60_000); // b heads the line
    let failed: redis::RedisResult<redis::Value> = cmd.query_async(&mut con).await;
    assert!(failed.is_err(), "{failed:?}");
    let lock: Option<String> = redis::cmd("GET").arg("lock").query_async(&mut con).await.unwrap();
    assert_eq!(lock, None, "no key without its fence");
}
