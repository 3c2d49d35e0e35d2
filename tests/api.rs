//! API conformance that needs no server: configuration errors and `Send` futures.

use std::time::Duration;

use quorumlock::{ErrorKind, Lock, Redlock, Retry};

fn config_err(b: quorumlock::RedlockBuilder) -> quorumlock::Error {
    let e = b.build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.is_invalid());
    e
}

#[test]
fn bad_configurations_are_typed_errors() {
    let ok = || Redlock::builder().node("redis://127.0.0.1:1");
    assert!(config_err(Redlock::builder()).to_string().contains("no nodes"));
    for f in [f64::NAN, -0.1, 1.0, 7.0, f64::INFINITY] {
        assert!(config_err(ok().drift_factor(f))
            .to_string()
            .contains("drift factor"));
    }
    config_err(ok().node_timeout(Duration::ZERO));
    config_err(ok().retry(Retry::new().attempts(0)));
    config_err(ok().retry(Retry::new().deadline(Duration::ZERO)));
    let dup = config_err(Redlock::builder().nodes(["redis://127.0.0.1:7001", "redis://127.0.0.1:7001/"]));
    assert!(dup.to_string().contains("twice"), "{dup}");
    for bad in [
        "",
        "127.0.0.1:7001",
        "redis://",
        "redis://host:notaport",
        "http://127.0.0.1:7001",
        "redis://127.0.0.1:7001#insecure",
        "redis://127.0.0.1:7001/notadb",
    ] {
        let e = config_err(Redlock::builder().node(bad));
        assert!(e.to_string().contains("node 0"), "{bad}: {e}");
    }
}

/// Cluster member URLs (docs/scaling.md) are checked when building, without contacting a node;
/// messages never contain the password.
#[test]
fn cluster_member_urls_are_checked_at_build() {
    let cluster = |url: &str| Redlock::builder().nodes([url, "redis://127.0.0.1:2", "redis://127.0.0.1:3"]);
    let ok = cluster("redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001")
        .build()
        .unwrap();
    assert_eq!(ok.quorum(), 2, "a cluster counts as one member");
    assert_eq!(
        ok.nodes().next().unwrap().addr(),
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
    );
    cluster("rediss+cluster://127.0.0.1:7000,127.0.0.1:7001")
        .build()
        .unwrap();
    for (url, says) in [
        ("redis+cluster://127.0.0.1:7000,,127.0.0.1:7001", "empty address"),
        ("redis+cluster://127.0.0.1:7000/2", "only database 0"),
        ("rediss+cluster://127.0.0.1:7000?tls_ca=/ca.pem", "TLS files"),
        (
            "redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:2",
            "same server",
        ),
    ] {
        let e = config_err(cluster(url));
        assert!(e.to_string().contains(says), "{url}: {e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
    let braced = cluster("redis+cluster://127.0.0.1:7000").key_prefix("app{1}:");
    assert!(config_err(braced).to_string().contains("brace"));
    // Without a cluster member a brace in the prefix is fine: no hash tags are used.
    Redlock::builder()
        .node("redis://127.0.0.1:1")
        .key_prefix("app{1}:")
        .build()
        .unwrap();
}

#[test]
fn build_needs_no_runtime_and_no_server() {
    let r = Redlock::builder()
        .nodes([
            "redis://127.0.0.1:1",
            "redis://127.0.0.1:2",
            "rediss://localhost:3",
            "unix:///tmp/none.sock",
            "redis://u:p@127.0.0.1:4/3",
        ])
        .build()
        .unwrap();
    assert_eq!(r.quorum(), 3);
    let addrs: Vec<&str> = r.nodes().map(|n| n.addr()).collect();
    assert_eq!(
        addrs,
        [
            "redis://127.0.0.1:1",
            "redis://127.0.0.1:2",
            "rediss://localhost:3",
            "unix:/tmp/none.sock",
            "redis://127.0.0.1:4/3"
        ]
    );
}

// Every public future can be spawned on a multi-thread runtime.
#[allow(dead_code, reason = "compile-time checks only")]
fn futures_are_send(r: Redlock, mut l: Lock, l2: Lock) {
    fn send<T: Send>(_: T) {}
    send(r.acquire("x", Duration::from_secs(1)));
    send(r.try_acquire("x", Duration::from_secs(1)));
    send(r.shutdown());
    send(l.extend(Duration::from_secs(1)));
    send(l2.release());
    send(r.acquire_many(["a", "b"], Duration::from_secs(1)));
    send(r.acquire_guard("x", Duration::from_secs(1)));
    send(r.acquire_many_guard(vec!["a".to_owned()], Duration::from_secs(1)));
    send(r.with_lock("x", Duration::from_secs(1), async { 1 }));
}

#[allow(dead_code, reason = "compile-time checks only")]
fn guard_futures_are_send(g: quorumlock::LockGuard, g2: quorumlock::LockGuard) {
    fn send<T: Send>(_: T) {}
    send(g.lost());
    send(g2.release());
}

#[test]
fn public_types_are_send_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Redlock>();
    check::<Lock>();
    check::<quorumlock::Error>();
    check::<quorumlock::ReleaseReport>();
    check::<quorumlock::LockGuard>();
}
