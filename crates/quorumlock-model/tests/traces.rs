//! Counterexample traces of the model, replayed on real redis-server processes (issue 13).
//!
//! Each test first asks the model for the control's shortest counterexample (so the test and the
//! trace it follows cannot drift apart silently), then plays the same schedule twice on a fresh
//! `LocalCluster`: once with a small hand-written client that has the control's fault, which
//! must show the violation, and once with the real library under the same delays and pauses,
//! which must not. The faulty clients talk plain RESP through redis-rs and use the library's own
//! Lua scripts where the library does.

use std::time::{Duration, Instant};

use quorumlock::{ErrorKind, Redlock, Retry};
use quorumlock_model::{check, control, format_trace, Bug};
use quorumlock_testkit::{Direction, Fault, LocalCluster, Proxy};

const ACQUIRE_FENCED: &str = include_str!("../../../src/wire/scripts/acquire_fenced.lua");
const RELEASE: &str = include_str!("../../../src/wire/scripts/release.lua");

/// The server that holds `token`'s key at the end of the control's counterexample.
fn holder_at_end(bug: Bug, token: u8) -> usize {
    let (cfg, prop) = control(bug);
    let o = check(cfg, 0, 1, true);
    let (_, path) = o.violations.iter().find(|(p, _)| *p == prop).unwrap();
    let end = path.last_state();
    end.nodes
        .iter()
        .position(|n| n.keys[0].is_some_and(|k| k.token == token))
        .unwrap_or_else(|| panic!("no server holds token {token} at the end"))
}

/// The control's counterexample, printed with the test's output.
fn model_trace(bug: Bug) -> String {
    let (cfg, prop) = control(bug);
    let o = check(cfg.clone(), 0, 1, true);
    let (_, path) = o
        .violations
        .iter()
        .find(|(p, _)| *p == prop)
        .unwrap_or_else(|| panic!("the model no longer finds {bug:?}"));
    let trace = format_trace(&cfg, path);
    eprintln!("model trace for {bug:?} ({prop}):\n{trace}");
    trace
}

fn conn(cluster: &LocalCluster, i: usize) -> redis::Connection {
    redis::Client::open(cluster.url(i))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap()
}

fn lock_key(resource: &str) -> String {
    format!("quorumlock:lock:{resource}")
}

fn fence_key(resource: &str) -> String {
    format!("quorumlock:fence:{resource}")
}

/// `SET key token NX PX ttl`: whether it granted.
fn set_nx(cluster: &LocalCluster, i: usize, resource: &str, token: &str, ttl: Duration) -> bool {
    let r: Option<String> = redis::cmd("SET")
        .arg(lock_key(resource))
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(ttl.as_millis() as u64)
        .query(&mut conn(cluster, i))
        .unwrap();
    r.as_deref() == Some("OK")
}

/// The token's tombstone key, as the library builds it (`src/pure/key.rs`).
fn tomb_key(token: &str) -> String {
    format!("quorumlock:tomb:{token}")
}

/// The library's compare-and-delete (KEYS: lock key, tombstone; ARGV: token, tombstone TTL).
fn release(cluster: &LocalCluster, i: usize, resource: &str, token: &str) {
    let _: i64 = redis::Script::new(RELEASE)
        .key(lock_key(resource))
        .key(tomb_key(token))
        .arg(token)
        .arg(10_000)
        .invoke(&mut conn(cluster, i))
        .unwrap();
}

/// The library's fenced acquire script: the fence, or 0 when refused. A grant answers
/// `[token, fence]`; a refusal `0`.
fn acquire_fenced(cluster: &LocalCluster, i: usize, resource: &str, token: &str, ttl: Duration) -> u64 {
    let reply: redis::Value = redis::Script::new(ACQUIRE_FENCED)
        .key(lock_key(resource))
        .key(fence_key(resource))
        .key(tomb_key(token))
        .arg(token)
        .arg(ttl.as_millis() as u64)
        .arg(3_600_000) // the fence horizon: the library's default, an hour
        .invoke(&mut conn(cluster, i))
        .unwrap();
    match reply {
        redis::Value::Array(items) => match items.as_slice() {
            [_, redis::Value::Int(fence)] => u64::try_from(*fence).unwrap(),
            other => panic!("unexpected fenced grant: {other:?}"),
        },
        redis::Value::Int(0) => 0,
        other => panic!("unexpected fenced acquire reply: {other:?}"),
    }
}

/// A library client through `proxies`, with its connections made before any fault is set (so
/// faults hit requests, not the connection handshake).
async fn via(proxies: &[Proxy], fencing: bool, node_timeout: Duration) -> Redlock {
    let r = Redlock::builder()
        .nodes(proxies.iter().map(Proxy::url))
        .node_timeout(node_timeout)
        .retry(Retry::none())
        .fencing(fencing)
        .build()
        .unwrap();
    let warm = r.try_acquire("warm-up", Duration::from_secs(5)).await.unwrap();
    warm.release().await.unwrap();
    r.shutdown().await;
    r
}

const SHORT: Duration = Duration::from_millis(150);

fn proxies(cluster: &LocalCluster) -> Vec<Proxy> {
    (0..cluster.len())
        .map(|i| Proxy::start(cluster.port(i)).unwrap())
        .collect()
}

/// A belief "I hold the lock from `from` until `until`" (G1's window).
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

fn overlap(a: Window, b: Window) -> bool {
    a.from < b.until && b.from < a.until
}

/// Control QuorumHalf (G1). Model trace: client 0's SET reaches one server and is granted; with a
/// quorum of N/2 = 1 it holds. Client 1's SET reaches another server first and is granted; it
/// holds too. The other SETs are still on their way.
#[tokio::test]
async fn quorum_half_gives_two_holders_and_the_library_gives_none() {
    model_trace(Bug::QuorumHalf);
    // Client 0 (token 1) and client 1 (token 2) each hold one server at the end of the trace.
    let (na, nb) = (
        holder_at_end(Bug::QuorumHalf, 1),
        holder_at_end(Bug::QuorumHalf, 2),
    );
    assert_ne!(na, nb);
    let others = |n: usize| (0..3).filter(move |&i| i != n);
    let ttl = Duration::from_secs(5);

    // Faulty client: decide at N/2 grants, in the trace's delivery order.
    let cluster = LocalCluster::start(3).unwrap();
    let half = |node: usize, token: &str| {
        let t0 = Instant::now();
        let grants = usize::from(set_nx(&cluster, node, "q", token, ttl));
        (grants >= 3 / 2).then(|| Window {
            from: Instant::now(),
            until: t0 + ttl - ttl / 100 - Duration::from_millis(2),
        })
    };
    let a = half(na, "token-a").expect("one grant is N/2");
    let b = half(nb, "token-b").expect("one grant is N/2");
    assert!(overlap(a, b), "two holders at once: {a:?} {b:?}");

    // The library under the same schedule: each client's other SETs are still on their way.
    let cluster = LocalCluster::start(3).unwrap();
    let (pa, pb) = (proxies(&cluster), proxies(&cluster));
    let (ra, rb) = (via(&pa, false, SHORT).await, via(&pb, false, SHORT).await);
    for i in others(na) {
        pa[i].set(Direction::Requests, Fault::Hold);
    }
    for i in others(nb) {
        pb[i].set(Direction::Requests, Fault::Hold);
    }
    let a = ra.try_acquire("q", ttl).await;
    let b = rb.try_acquire("q", ttl).await;
    for r in [&a, &b] {
        let e = r.as_ref().expect_err("one grant of three is no quorum");
        assert_eq!(e.kind(), ErrorKind::QuorumUnreachable, "{e}");
    }
    for p in pa.iter().chain(&pb) {
        p.heal();
    }
    ra.shutdown().await;
    rb.shutdown().await;
}

/// Control IgnoreElapsed (G1). Model trace: client 0's SETs are applied on nodes 0 and 1 at
/// t=0, their replies reach it only at t=2 (a pause); meanwhile node 1's key expires and client 1
/// takes nodes 1 and 2. A client that ignores elapsed time then claims a full validity from t=2,
/// while client 1 holds.
#[tokio::test]
async fn ignoring_elapsed_time_overlaps_and_the_library_refuses_the_late_quorum() {
    let trace = model_trace(Bug::IgnoreElapsed);
    assert!(trace.contains("tick") && trace.contains("expires"), "{trace}");
    let ttl = Duration::from_millis(400);
    let drift = ttl / 100 + Duration::from_millis(2);
    let pause = ttl + Duration::from_millis(100);

    // Faulty client: SETs applied at once, replies read after the pause, validity from then.
    let cluster = LocalCluster::start(3).unwrap();
    let granted = [0, 1]
        .into_iter()
        .filter(|&i| set_nx(&cluster, i, "e", "token-a", ttl))
        .count();
    assert_eq!(granted, 2);
    let honest = Redlock::builder()
        .nodes(cluster.urls())
        .retry(Retry::none())
        .build()
        .unwrap();
    tokio::time::sleep(pause / 2).await;
    // Client 1 asks while client 0's keys still live: refused, as it must be.
    assert!(honest.try_acquire("e", ttl).await.unwrap_err().is_contended());
    tokio::time::sleep(pause - pause / 2).await;
    let b_invoked = Instant::now();
    let b = honest
        .try_acquire("e", ttl)
        .await
        .expect("client 0's keys have expired");
    let b_window = Window {
        from: b_invoked,
        until: Instant::now() + b.remaining(),
    };
    // Client 0 reads its two grants now and, ignoring the elapsed time, believes it holds.
    let now = Instant::now();
    let a_window = Window {
        from: now,
        until: now + ttl - drift,
    };
    assert!(overlap(a_window, b_window), "{a_window:?} {b_window:?}");
    b.release().await.unwrap();

    // The library: same pause (every reply held past the TTL), same second client.
    let cluster = LocalCluster::start(3).unwrap();
    let pa = proxies(&cluster);
    // The node timeout is longer than the pause, so the late replies are counted (as in the
    // model, where a timeout is a choice, not a must).
    let ra = via(&pa, false, Duration::from_secs(2)).await;
    let honest = Redlock::builder()
        .nodes(cluster.urls())
        .retry(Retry::none())
        .build()
        .unwrap();
    for p in &pa {
        p.set(Direction::Replies, Fault::Hold);
    }
    let a = tokio::spawn(async move {
        let r = ra.try_acquire("e", ttl).await.map(|l| l.remaining());
        ra.shutdown().await;
        r
    });
    tokio::time::sleep(pause).await;
    let b = honest
        .try_acquire("e", ttl)
        .await
        .expect("the held keys have expired");
    for p in &pa {
        p.heal();
    }
    let a = a.await.unwrap();
    let e = a.expect_err("a quorum that arrives after the TTL is no grant");
    assert_eq!(e.kind(), ErrorKind::ValidityExhausted, "{e}");
    assert!(b.is_valid());
    // Client 0's clean-up only touched its own token: client 1's keys are all still there.
    for i in 0..3 {
        let v: Option<String> = redis::cmd("GET")
            .arg(lock_key("e"))
            .query(&mut conn(&cluster, i))
            .unwrap();
        assert_eq!(v.as_deref(), Some(b.token()), "node {i}");
    }
    b.release().await.unwrap();
}

/// Control NoWriteBack (G6). Model trace: node 0's clock is ahead; client 0 is granted on nodes
/// 0 and 1 and takes node 0's larger fence, without writing it back. After it returned, client 1
/// decides on nodes 1 and 2 before node 0 answers, and gets a smaller fence.
#[tokio::test]
async fn no_fence_write_back_breaks_order_and_the_library_keeps_it() {
    let trace = model_trace(Bug::NoWriteBack);
    assert!(
        trace.contains("client 1 -> node 2") && trace.contains("fence"),
        "{trace}"
    );
    let ttl = Duration::from_secs(5);
    let ahead_us = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        (now + Duration::from_secs(10)).as_micros() as u64
    };

    // Faulty client: the fenced script on nodes 0 and 1, max fence, no write-back.
    let cluster = LocalCluster::start(3).unwrap();
    let _: () = redis::cmd("SET")
        .arg(fence_key("f"))
        .arg(ahead_us())
        .query(&mut conn(&cluster, 0))
        .unwrap();
    let fa = [0, 1]
        .into_iter()
        .map(|i| acquire_fenced(&cluster, i, "f", "token-a", ttl))
        .max()
        .unwrap();
    for i in [0, 1] {
        release(&cluster, i, "f", "token-a");
    }
    // A returned; B begins and decides on nodes 1 and 2.
    let fb = [1, 2]
        .into_iter()
        .map(|i| acquire_fenced(&cluster, i, "f", "token-b", ttl))
        .max()
        .unwrap();
    assert!(
        fb > 0 && fb < fa,
        "fence order broken: fence(A)={fa} fence(B)={fb}"
    );

    // The library: the same clock offset, client 1 deciding without node 0.
    let cluster = LocalCluster::start(3).unwrap();
    let _: () = redis::cmd("SET")
        .arg(fence_key("f"))
        .arg(ahead_us())
        .query(&mut conn(&cluster, 0))
        .unwrap();
    let pa = proxies(&cluster);
    let pb = proxies(&cluster);
    let (ra, rb) = (via(&pa, true, SHORT).await, via(&pb, true, SHORT).await);
    pa[2].set(Direction::Requests, Fault::Hold);
    let a = ra.try_acquire("f", ttl).await.expect("nodes 0 and 1 grant");
    let fa = a.fencing_token().unwrap();
    a.release().await.unwrap();
    pa[2].heal();
    ra.shutdown().await;
    pb[0].set(Direction::Requests, Fault::Hold);
    let b = rb.try_acquire("f", ttl).await.expect("nodes 1 and 2 grant");
    let fb = b.fencing_token().unwrap();
    assert!(fb > fa, "fence(B)={fb} must exceed fence(A)={fa}");
    b.release().await.unwrap();
    pb[0].heal();
    rb.shutdown().await;
}
