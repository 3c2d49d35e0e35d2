//! Hostile and broken replies (docs/testing.md, "Hostile replies", P15): the test kit's proxy rewrites real replies
//! from real servers. Only the request's own token grants an acquisition and only an exact `:1`
//! confirms an extension; anything else is a failed node, nothing panics, the connection is dropped after
//! a protocol error, and the client recovers once the replies are sane again.

use std::time::Duration;

use quorumlock::{ErrorKind, NodeOutcome, Redlock, Retry};
use quorumlock_testkit::Proxy;

use crate::support::*;

struct Rig {
    cluster: LocalCluster,
    proxies: Vec<Proxy>,
}

impl Rig {
    fn new() -> Self {
        let cluster = cluster(3);
        let proxies = (0..3).map(|i| Proxy::start(cluster.port(i)).unwrap()).collect();
        Self { cluster, proxies }
    }

    fn client(&self) -> Redlock {
        Redlock::builder()
            .nodes(self.proxies.iter().map(Proxy::url))
            .node_timeout(Duration::from_millis(300))
            .retry(Retry::none())
            .build()
            .unwrap()
    }

    fn rewrite(&self, from: &[u8], to: &[u8]) {
        for p in &self.proxies {
            p.rewrite_replies(from, to);
        }
    }

    fn clear(&self) {
        for p in &self.proxies {
            p.clear_reply_rewrites();
            p.greet(None);
        }
    }

    fn connections(&self) -> u64 {
        self.proxies.iter().map(Proxy::connections).sum()
    }

    /// After the replies are sane again the client works (on new connections where old ones
    /// were dropped) and leaves nothing behind.
    async fn recovers(&self, redlock: &Redlock, context: &str) {
        self.clear();
        // Connections that failed are re-made after the reconnect back-off (at most 500 ms);
        // a call during it fails at once with the last connect error, so allow a few tries.
        let start = std::time::Instant::now();
        let lock = loop {
            match redlock
                .acquire(&format!("{context}-after"), Duration::from_secs(5))
                .await
            {
                Ok(lock) => break lock,
                Err(e) if start.elapsed() < Duration::from_secs(5) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{context}: no recovery within 5 s: {e}"),
            }
        };
        lock.release().await.unwrap();
    }
}

fn assert_no_grant(result: Result<quorumlock::Lock, quorumlock::Error>, context: &str) -> quorumlock::Error {
    match result {
        Ok(lock) => panic!("{context}: granted with nodes {:?}", lock.resource()),
        Err(e) => {
            assert!(
                e.nodes().iter().all(|(_, o)| *o != NodeOutcome::Granted),
                "{context}: a node counted as granted: {e}"
            );
            e
        }
    }
}

#[tokio::test]
async fn acquire_replies_other_than_its_token_never_grant() {
    // A granted acquisition answers its own token as a 32-byte bulk string. Each mutation puts
    // another reply in front of it (the token's frame then follows as a stray reply, as a
    // duplicated or misrouted reply would).
    let rig = Rig::new();
    let mutations: [(&str, &[u8]); 6] = [
        ("integer 1", b":1\r\n$32\r\n"),
        ("OK", b"+OK\r\n$32\r\n"),
        ("bulk 1", b"$1\r\n1\r\n$32\r\n"),
        ("integer 2", b":2\r\n$32\r\n"),
        ("array", b"*1\r\n$32\r\n"),
        ("QUEUED", b"+QUEUED\r\n$32\r\n"),
    ];
    for (name, to) in mutations {
        let redlock = rig.client();
        warm_up(&redlock).await;
        let before = rig.connections();
        rig.rewrite(b"$32\r\n", to);
        let e = assert_no_grant(redlock.acquire(name, Duration::from_secs(30)).await, name);
        assert_eq!(e.kind(), ErrorKind::QuorumUnreachable, "{name}: {e}");
        assert!(
            e.nodes()
                .iter()
                .any(|(_, o)| matches!(o, NodeOutcome::Protocol(_))),
            "{name}: {e}"
        );
        rig.recovers(&redlock, name).await;
        assert!(
            rig.connections() > before,
            "{name}: the connection was not dropped"
        );
        // The servers did set the key; the unknown state was cleaned up.
        assert_clean(&rig.cluster, &[&redlock], name).await;
    }
}

#[tokio::test]
async fn resp3_null_is_a_failure_not_a_grant_nor_a_refusal() {
    // redis-rs reads `_`, `$-1` and `*-1` all as nil. The acquire script never answers nil, so a
    // null in place of the token is an unexpected reply: a failed node whose key is cleaned up,
    // not "held elsewhere" (which would leave the key the server set until its TTL).
    let rig = Rig::new();
    let redlock = rig.client();
    warm_up(&redlock).await;
    rig.rewrite(b"$32\r\n", b"_\r\n$32\r\n");
    let e = assert_no_grant(redlock.acquire("null", Duration::from_secs(30)).await, "null");
    assert!(!e.is_contended(), "{e}");
    assert!(e.is_quorum_unreachable(), "{e}");
    rig.recovers(&redlock, "null").await;
    assert_clean(&rig.cluster, &[&redlock], "null").await;
}

#[tokio::test]
async fn script_replies_other_than_one_never_confirm_an_extension() {
    let rig = Rig::new();
    let mutations: [(&str, &[u8]); 5] = [
        ("bulk 1", b"$1\r\n1\r\n"),
        ("integer 2", b":2\r\n"),
        ("integer -1", b":-1\r\n"),
        ("double", b",1.0\r\n"),
        ("boolean", b"#t\r\n"),
    ];
    for (name, to) in mutations {
        let redlock = rig.client();
        warm_up(&redlock).await;
        let mut lock = redlock.acquire(name, Duration::from_secs(30)).await.unwrap();
        let until = lock.valid_until();
        rig.rewrite(b":1\r\n", to);
        let e = lock.extend(Duration::from_secs(60)).await.unwrap_err();
        assert!(
            e.nodes().iter().all(|(_, o)| *o != NodeOutcome::Granted),
            "{name}: {e}"
        );
        assert!(
            lock.valid_until() <= until,
            "{name}: validity grew on an unconfirmed extension"
        );
        rig.clear();
        lock.release().await.unwrap();
        rig.recovers(&redlock, name).await;
        assert_clean(&rig.cluster, &[&redlock], name).await;
    }
}

#[tokio::test]
async fn protocol_damage_never_grants_and_never_panics() {
    let rig = Rig::new();
    let deep = {
        let mut v = b"*1\r\n".repeat(200);
        v.extend_from_slice(b"+OK\r\n");
        v
    };
    let damages: [(&str, Vec<u8>, bool); 4] = [
        ("partial frame then close", b"$5\r\nab".to_vec(), true),
        ("line without CRLF", b"+OK".to_vec(), false),
        ("huge announced bulk", b"$999999999\r\nxxxx".to_vec(), false),
        ("nesting past 100", deep, false),
    ];
    for (name, to, close) in damages {
        let redlock = rig.client();
        warm_up(&redlock).await;
        // Another owner holds the resource, so any grant would be false.
        for i in 0..3 {
            hold_elsewhere(&rig.cluster, i, name, 30_000);
        }
        // The acquire script refuses with `:0` (it answered `$-1` when acquisitions were a plain
        // SET; rewriting `$-1` after that change matched nothing and tested nothing).
        for p in &rig.proxies {
            if close {
                p.rewrite_replies_then_close(b":0\r\n", to.clone());
            } else {
                p.rewrite_replies(b":0\r\n", to.clone());
            }
        }
        assert_no_grant(redlock.acquire(name, Duration::from_secs(30)).await, name);
        // Three timeouts in a row drop a connection that stopped answering.
        for _ in 0..3 {
            assert_no_grant(redlock.acquire(name, Duration::from_secs(30)).await, name);
        }
        rig.recovers(&redlock, name).await;
    }
}

#[tokio::test]
async fn stray_replies_cannot_turn_a_refusal_into_a_grant() {
    let rig = Rig::new();
    for i in 0..3 {
        hold_elsewhere(&rig.cluster, i, "taken", 30_000);
    }
    // A greeting: an `+OK` before any request. The connection handshake (PING must be answered
    // by PONG) sees it and refuses the connection.
    for p in &rig.proxies {
        p.greet(Some(b"+OK\r\n".to_vec()));
    }
    let redlock = rig.client();
    let e = assert_no_grant(
        redlock.acquire("taken", Duration::from_secs(30)).await,
        "greeting",
    );
    assert!(
        e.nodes()
            .iter()
            .any(|(_, o)| matches!(o, NodeOutcome::Protocol(m) if m.contains("handshake"))),
        "{e}"
    );
    rig.clear();

    // Duplicated replies: every `:1` (a release's reply) arrives twice, and the next request
    // goes out without waiting for the slowest node's release, so the copy may land on it. An
    // acquisition is granted only by its own token, so a copy landing on the SET of a taken
    // resource is an unexpected reply, never a grant (before acquisitions answered their token,
    // docs/operations.md left this case to TLS).
    let redlock = rig.client();
    warm_up(&redlock).await;
    rig.rewrite(b":1\r\n", b":1\r\n:1\r\n");
    for round in 0..5 {
        let mine = redlock
            .acquire(&format!("mine-{round}"), Duration::from_secs(30))
            .await
            .unwrap();
        mine.release().await.unwrap();
        let e = assert_no_grant(
            redlock.acquire("taken", Duration::from_secs(30)).await,
            "duplicate",
        );
        assert!(
            !e.is_quorum_unreachable()
                || e.nodes()
                    .iter()
                    .any(|(_, o)| matches!(o, NodeOutcome::Protocol(_))),
            "{e}"
        );
    }
    rig.clear();
    redlock.shutdown().await;
}
