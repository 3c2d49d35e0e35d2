//! Issue 21: logs an operator can read. While a node is down, a service that locks many times
//! logs one WARN for the node (and at most one line per node every 10 s about the releases it
//! gave up on), not one per lock; a node that refuses our password is one ERROR naming it;
//! a node that comes back is one INFO. Per-lock details stay at DEBUG.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quorumlock::{Redlock, Retry};
use quorumlock_testkit::{ClusterOptions, LocalCluster};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn lines(&self, level: &str, containing: &str) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter(|l| l.contains(level) && l.contains(containing))
            .map(str::to_owned)
            .collect()
    }
}

/// The process-wide capture of INFO and above. Global: tracing caches per-callsite interest
/// process-wide (see tests/spans.rs), so both tests of this binary share it and look only at
/// lines that name their own resources or nodes.
fn capture() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let sink = capture.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("only this binary installs one");
            capture
        })
        .clone()
}

#[tokio::test]
async fn an_outage_is_a_few_lines_not_one_per_lock() {
    let capture = capture();

    let mut cluster = LocalCluster::start_with(3, ClusterOptions::default().password("right")).unwrap();
    let ports: Vec<u16> = (0..3).map(|i| cluster.port(i)).collect();
    let url = |i: usize, password: &str| format!("redis://:{password}@127.0.0.1:{}", ports[i]);
    let redlock = Redlock::builder()
        .nodes((0..3).map(|i| url(i, "right")))
        // Not shorter: on a loaded machine a 100 ms timeout can let node 0 or 1 time out now
        // and then, and their WARN lines would be counted as node 2's outage.
        .node_timeout(Duration::from_millis(250))
        .retry(Retry::new().attempts(3))
        .build()
        .unwrap();
    let lock = redlock
        .acquire("logs-warm", Duration::from_secs(5))
        .await
        .unwrap();
    lock.release().await.unwrap();

    // Node 2 stops answering (SIGSTOP: connections stay open, requests time out); 40 locks
    // are taken and released meanwhile. Each release to node 2 is an obligation that ends when
    // its key has certainly expired.
    cluster.pause(2).unwrap();
    let node2 = format!("127.0.0.1:{}", cluster.port(2));
    for i in 0..40 {
        let lock = redlock
            .acquire(&format!("logs-{i}"), Duration::from_millis(600))
            .await
            .expect("a majority is up");
        lock.release().await.unwrap();
    }
    redlock.shutdown().await;
    let given_up = capture.lines("WARN", "releases given up");
    assert!(
        (1..=2).contains(&given_up.len()),
        "40 releases given up on node 2 in one or two lines, not one per lock: {given_up:#?}"
    );
    assert!(given_up.iter().all(|l| l.contains(&node2)), "{given_up:#?}");
    let down = capture.lines("WARN", "node unreachable");
    assert!(
        down.len() <= 1,
        "at most one WARN for the node going down: {down:#?}"
    );
    let ours = capture.lines("WARN", &node2);
    assert!(
        ours.len() <= 2,
        "WARN lines about node 2: a few, not one per lock: {ours:#?}"
    );

    // Back again: one INFO, once it has been seen down.
    cluster.resume(2).unwrap();
    cluster.kill(2).unwrap();
    let lock = redlock
        .acquire("logs-down", Duration::from_secs(5))
        .await
        .unwrap();
    lock.release().await.unwrap();
    assert_eq!(
        capture.lines("WARN", "node unreachable").len(),
        1,
        "{:#?}",
        capture.lines("WARN", "")
    );
    cluster.restart(2).unwrap();
    let start = std::time::Instant::now();
    while capture.lines("INFO", "node reachable again").is_empty()
        && start.elapsed() < Duration::from_secs(10)
    {
        let lock = redlock
            .acquire("logs-back", Duration::from_secs(5))
            .await
            .unwrap();
        lock.release().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        let lock = redlock
            .acquire("logs-back", Duration::from_secs(5))
            .await
            .unwrap();
        lock.release().await.unwrap();
    }
    redlock.shutdown().await;
    let back = capture.lines("INFO", "node reachable again");
    assert_eq!(back.len(), 1, "{back:#?}");
    assert_eq!(capture.lines("WARN", "node unreachable").len(), 1);

    // A node with the wrong password: one ERROR naming it, however many locks are taken.
    let wrong = Redlock::builder()
        .nodes([url(0, "right"), url(1, "right"), url(2, "wrong")])
        .node_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    for i in 0..10 {
        let lock = wrong
            .acquire(&format!("logs-pw-{i}"), Duration::from_secs(5))
            .await
            .unwrap();
        lock.release().await.unwrap();
    }
    wrong.shutdown().await;
    let refused = capture.lines("ERROR", "refuses this client");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0].contains(&node2) && !refused[0].contains("wrong"),
        "{}",
        refused[0]
    );

    // Configurations without fault tolerance say so once (issue 21, item 9): fewer than three
    // nodes at build(), unless accepted; a TTL under two node timeouts once per client.
    let lonely = Redlock::builder().nodes([url(0, "right")]).build().unwrap();
    let _quiet = Redlock::builder()
        .nodes([url(0, "right")])
        .accept_no_fault_tolerance(true)
        .build()
        .unwrap();
    let few = capture.lines("WARN", "fewer than 3 lock nodes");
    assert_eq!(few.len(), 1, "{few:#?}");
    for _ in 0..3 {
        let lock = lonely
            .acquire("logs-short", Duration::from_millis(60))
            .await
            .unwrap();
        lock.release().await.unwrap();
    }
    let short = capture.lines("WARN", "a TTL under two node timeouts");
    assert_eq!(
        short.len(),
        1,
        "60 ms against the default 50 ms node timeout, said once: {short:#?}"
    );
    lonely.shutdown().await;
}

/// Issue 21, item 3: a lock or guard still held when `main` returns (its runtime shuts down
/// with the release queued) is released or reported, every time: ten runs, five of each. A lock dropped after its
/// runtime is gone cannot be released, and says so.
#[test]
fn a_lock_alive_at_the_end_of_main_is_released_or_reported() {
    let capture = capture();
    let cluster = LocalCluster::start(3).unwrap();
    let node0 = format!("127.0.0.1:{}", cluster.port(0));
    let not_run = |c: &Capture| {
        c.lines("WARN", "did not run")
            .into_iter()
            .filter(|l| l.contains(&node0))
            .count()
    };
    let held_anywhere = |resource: &str| {
        (0..3).any(|i| {
            let mut c = redis::Client::open(cluster.url(i))
                .unwrap()
                .get_connection()
                .unwrap();
            let v: Option<String> = redis::cmd("GET")
                .arg(format!("quorumlock:lock:{resource}"))
                .query(&mut c)
                .unwrap();
            v.is_some()
        })
    };
    let (mut released, mut reported) = (0, 0);
    for run in 0..10 {
        let resource = format!("end-of-main-{run}");
        let before = not_run(&capture);
        // What `#[tokio::main] async fn main() { let _lock = ...; }` does.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let redlock = Redlock::builder().nodes(cluster.urls()).build().unwrap();
            // Odd runs hold a guard (its watchdog task too), even runs a plain lock.
            if run % 2 == 1 {
                let _guard = redlock
                    .acquire_guard(&resource, Duration::from_secs(30))
                    .await
                    .unwrap();
            } else {
                let _lock = redlock.acquire(&resource, Duration::from_secs(30)).await.unwrap();
            }
        });
        drop(rt);
        if held_anywhere(&resource) {
            assert_eq!(
                not_run(&capture),
                before + 1,
                "run {run}: the key stays, so it is reported"
            );
            reported += 1;
        } else {
            released += 1;
        }
    }
    eprintln!("end of main: {released} released, {reported} reported");

    // Dropped after its runtime is gone: nothing can run; reported.
    let before = not_run(&capture);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (redlock, lock) = rt.block_on(async {
        let redlock = Redlock::builder().nodes(cluster.urls()).build().unwrap();
        let lock = redlock
            .acquire("after-runtime", Duration::from_secs(30))
            .await
            .unwrap();
        (redlock, lock)
    });
    drop(rt);
    drop(lock);
    assert!(held_anywhere("after-runtime"));
    assert_eq!(
        not_run(&capture),
        before + 1,
        "a lock dropped with no runtime is reported"
    );
    drop(redlock);
}
