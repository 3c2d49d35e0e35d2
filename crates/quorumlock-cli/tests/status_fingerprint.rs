//! `quorumlock status` names a holder by the documented fingerprint (docs/design.md, "Token
//! fingerprints"): 32-bit FNV-1a of the token, computed here independently of the library, so a
//! service written in another language can match a holder to its own logs.

use std::process::{Command, Stdio};
use std::time::Duration;

use quorumlock::{Redlock, Retry};
use quorumlock_testkit::{fingerprint as fnv1a_32, LocalCluster};

#[tokio::test]
async fn status_prints_the_documented_fingerprint_of_the_holder() {
    assert_eq!(
        fnv1a_32("foobar"),
        "bf9cf968",
        "the FNV specification's test vector"
    );
    let cluster = LocalCluster::start(3).expect("redis-server");
    let redlock = Redlock::builder()
        .nodes(cluster.urls())
        .retry(Retry::none())
        .build()
        .unwrap();
    let lock = redlock
        .acquire("fingerprinted", Duration::from_secs(30))
        .await
        .unwrap();
    // The acquisition decided on a majority; its third request finishes in the background. Let
    // it, before the blocking `status` calls below stall this runtime (flaky before: 18 of 50
    // runs saw the key on 2 of 3 nodes).
    redlock.shutdown().await;
    let expected = fnv1a_32(lock.token());
    assert_eq!(
        lock.token_fingerprint(),
        expected,
        "the library's own name for it"
    );

    let status = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_quorumlock"));
        c.env("QUORUMLOCK_NODES", cluster.urls().join(","))
            .env_remove("QUORUMLOCK_KEY_PREFIX")
            .stdin(Stdio::null());
        if json {
            c.arg("--json");
        }
        let out = c.args(["status", "fingerprinted"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let v: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(v["holder"], expected.as_str(), "{v}");
    let text = status(false);
    assert!(
        text.contains(&format!("held by {expected} on 3 of 3 nodes")),
        "{text}"
    );
    assert!(
        !text.contains(lock.token()),
        "the token itself is never printed: {text}"
    );
    lock.release().await.unwrap();
    redlock.shutdown().await;
}
