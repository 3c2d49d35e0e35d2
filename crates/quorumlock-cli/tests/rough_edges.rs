//! The rough edges a new user hit in the first hour (issue 12 §2.5), each on the real binary:
//! the lost-lock message, TTL usage errors, the exit codes in `--help`, `--nodes` from the
//! environment, and `--wait` meaning the wait.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use quorumlock_testkit::LocalCluster;

fn quorumlock(nodes: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quorumlock"));
    c.env("QUORUMLOCK_NODES", nodes.join(","))
        .env_remove("QUORUMLOCK_KEY_PREFIX")
        .stdin(Stdio::null());
    c
}

fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {out:?}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `Debug` name of an error kind (`QuorumUnreachable`, `DeadlineExceeded`, ...) in a message
/// meant for people.
fn has_debug_kind_name(text: &str) -> bool {
    [
        "InvalidInput",
        "Contended",
        "QuorumUnreachable",
        "Unauthorized",
        "ValidityExhausted",
        "DeadlineExceeded",
        "Lost",
        "Entropy",
        "NoRuntime",
    ]
    .iter()
    .any(|name| text.contains(name))
}

#[test]
fn a_lost_lock_is_explained_in_words() {
    let mut cluster = LocalCluster::start(3).expect("redis-server");
    // No grace: SIGKILL goes out a kill margin before the validity ends, after the watchdog has
    // given up and said why (it stops retrying a node timeout plus its margin earlier).
    let child = quorumlock(&cluster.urls())
        .args([
            "run", "-r", "lost", "--ttl", "1s", "--grace", "0s", "--", "sleep", "30",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let out = quorumlock(&cluster.urls())
            .args(["--json", "status", "lost"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["held"] == true {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never held: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.kill(1).unwrap();
    cluster.kill(2).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 76, "{err}");
    assert!(err.contains("lock lost ("), "{err}");
    assert!(err.contains("too few nodes reachable"), "{err}");
    assert!(!has_debug_kind_name(&err), "{err}");
}
