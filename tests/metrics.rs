//! The `metrics` feature against real redis-server nodes: what a grant, contention, a node
//! failure, a pending release obligation, extend/release and a lost guard record.
//!
//! Runs only with the feature (`required-features` in Cargo.toml):
//! `cargo test --features metrics --test metrics`.
//!
//! One test function: the recorder is process-global, so phases run one after another and each
//! assertion reads how much a counter grew during its phase.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use quorumlock::{Redlock, Retry};
use quorumlock_testkit::LocalCluster;

type Labels = Vec<(String, String)>;

/// Everything recorded so far. The debugging recorder hands out each counter's and gauge's
/// change since the previous snapshot (it swaps them to zero), so the totals are the sums.
struct Recorded {
    snapshotter: Snapshotter,
    totals: HashMap<(String, Labels), f64>,
    histograms: HashMap<(String, Labels), Vec<f64>>,
}

impl Recorded {
    fn refresh(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let (_, key) = key.into_parts();
            let mut labels: Labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let id = (key.name().to_owned(), labels);
            match value {
                DebugValue::Counter(n) => *self.totals.entry(id).or_default() += n as f64,
                DebugValue::Gauge(g) => *self.totals.entry(id).or_default() += g.into_inner(),
                DebugValue::Histogram(v) => self
                    .histograms
                    .entry(id)
                    .or_default()
                    .extend(v.into_iter().map(|x| x.into_inner())),
            }
        }
    }

    fn matches(labels: &Labels, want: &[(&str, &str)]) -> bool {
        want.iter()
            .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
    }

    /// The sum of `name` over every label set that includes `want`.
    fn total(&mut self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.refresh();
        self.totals
            .iter()
            .filter(|((n, labels), _)| n == name && Self::matches(labels, want))
            .map(|(_, v)| *v)
            .sum()
    }

    fn samples(&mut self, name: &str, want: &[(&str, &str)]) -> Vec<f64> {
        self.refresh();
        self.histograms
            .iter()
            .filter(|((n, labels), _)| n == name && Self::matches(labels, want))
            .flat_map(|(_, v)| v.iter().copied())
            .collect()
    }

    /// Waits (up to 10 s) until `name{want}` satisfies `done`: background work records after
    /// the call that started it has returned. Returns the last total seen.
    async fn await_until(&mut self, name: &str, want: &[(&str, &str)], done: impl Fn(f64) -> bool) -> f64 {
        let started = Instant::now();
        loop {
            let now = self.total(name, want);
            if done(now) || started.elapsed() > Duration::from_secs(10) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn await_total(&mut self, name: &str, want: &[(&str, &str)], value: f64) -> f64 {
        self.await_until(name, want, |v| v == value).await
    }

    async fn await_at_least(&mut self, name: &str, want: &[(&str, &str)], value: f64) -> f64 {
        self.await_until(name, want, |v| v >= value).await
    }
}

const ACQUIRE: &str = "quorumlock_acquire_total";
const ATTEMPTS: &str = "quorumlock_acquire_attempts_total";
const NODE_ERRORS: &str = "quorumlock_node_errors_total";
const PENDING: &str = "quorumlock_release_obligations_pending";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_contention_node_failures_and_obligations_are_counted() {
    let recorder = DebuggingRecorder::new();
    let mut m = Recorded {
        snapshotter: recorder.snapshotter(),
        totals: HashMap::new(),
        histograms: HashMap::new(),
    };
    recorder.install().expect("the only recorder of this test binary");
    quorumlock::describe_metrics();

    let mut cluster = LocalCluster::start(3).expect("redis-server");
    let redlock = Redlock::builder()
        .nodes(cluster.urls())
        .node_timeout(Duration::from_millis(200))
        .retry(Retry::wait(Duration::from_millis(400)))
        .build()
        .unwrap();
    let node2 = redlock.nodes().nth(2).unwrap().addr().to_owned();
    let ttl = Duration::from_secs(10);

    // A grant: one acquisition, one attempt, one latency sample, all labelled granted.
    let mut lock = redlock.acquire("orders", ttl).await.unwrap();
    assert_eq!(m.total(ACQUIRE, &[("outcome", "granted")]), 1.0);
    assert_eq!(m.total(ATTEMPTS, &[("outcome", "granted")]), 1.0);
    let latency = m.samples("quorumlock_acquire_duration_seconds", &[("outcome", "granted")]);
    assert!(latency.len() == 1 && latency[0] > 0.0, "{latency:?}");

    // Contention: one refused attempt for try_acquire; retried attempts until the deadline.
    let e = redlock.try_acquire("orders", ttl).await.unwrap_err();
    assert!(e.is_contended(), "{e}");
    assert_eq!(m.total(ACQUIRE, &[("outcome", "contended")]), 1.0);
    let e = redlock.acquire("orders", ttl).await.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(m.total(ACQUIRE, &[("outcome", "deadline")]), 1.0);
    let contended = m.total(ATTEMPTS, &[("outcome", "contended")]);
    // try_acquire's one attempt, and at least one of acquire's: with 50-250 ms pauses and a
    // 200 ms node timeout kept in reserve, a second attempt fits in 400 ms only sometimes
    // (asserting two of them failed the fresh-clone CI run once).
    assert!(
        contended >= 2.0,
        "1 + at least 1 attempt within 400 ms: {contended}"
    );
    assert_eq!(m.total(ACQUIRE, &[]), 3.0, "every acquisition counted once");

    // Bad input is counted too, although no node is contacted.
    assert!(redlock.acquire("", ttl).await.unwrap_err().is_invalid());
    assert_eq!(m.total(ACQUIRE, &[("outcome", "invalid_input")]), 1.0);

    // Extend and release outcomes.
    lock.extend(ttl).await.unwrap();
    assert_eq!(
        m.total("quorumlock_extend_total", &[("outcome", "extended")]),
        1.0
    );
    lock.release().await.unwrap();
    assert_eq!(
        m.total("quorumlock_release_total", &[("outcome", "released")]),
        1.0
    );
    drop(redlock.acquire("dropped", ttl).await.unwrap());
    assert_eq!(
        m.total("quorumlock_release_total", &[("outcome", "dropped")]),
        1.0
    );
    redlock.shutdown().await;
    assert_eq!(m.total(NODE_ERRORS, &[]), 0.0, "no node failed so far");

    // A node that stops answering: its timeouts are counted under its own address, and the
    // release it owes stays in the pending gauge until it answers again.
    cluster.pause(2).unwrap();
    let lock = redlock.acquire("paused", ttl).await.unwrap();
    let timeout = [
        ("node", node2.as_str()),
        ("op", "acquire"),
        ("outcome", "timeout"),
    ];
    assert_eq!(
        m.await_total(NODE_ERRORS, &timeout, 1.0).await,
        1.0,
        "node 2's acquire timeout counted under its address"
    );
    lock.release().await.unwrap();
    let pending = [("node", node2.as_str())];
    assert_eq!(
        m.await_total(PENDING, &pending, 1.0).await,
        1.0,
        "release owed to node 2"
    );
    let release_timeout = [
        ("node", node2.as_str()),
        ("op", "release"),
        ("outcome", "timeout"),
    ];
    assert!(m.total(NODE_ERRORS, &release_timeout) >= 1.0);
    cluster.resume(2).unwrap();
    assert_eq!(m.await_total(PENDING, &pending, 0.0).await, 0.0, "obligation met");
    redlock.shutdown().await;

    // A node that is down: i/o errors. With two down, quorum is unreachable.
    cluster.kill(2).unwrap();
    // Kept until its TTL: a release would owe node 2 a try until then, and shutdown() wait.
    redlock.try_acquire("down", ttl).await.unwrap().forget();
    let io = [("node", node2.as_str()), ("outcome", "io")];
    assert!(m.await_at_least(NODE_ERRORS, &io, 1.0).await >= 1.0);
    cluster.kill(1).unwrap();
    let e = redlock.try_acquire("down2", ttl).await.unwrap_err();
    assert!(e.is_quorum_unreachable(), "{e}");
    assert_eq!(m.total(ACQUIRE, &[("outcome", "quorum_unreachable")]), 1.0);
    cluster.restart(1).unwrap();
    cluster.restart(2).unwrap();

    // A guard held past max_hold is lost, with that reason.
    let capped = Redlock::builder()
        .nodes(cluster.urls())
        .max_hold(Duration::from_millis(300))
        .build()
        .unwrap();
    let guard = capped
        .acquire_guard("capped", Duration::from_secs(1))
        .await
        .unwrap();
    let lost = guard.lost().await;
    assert!(lost.is_lost(), "{lost}");
    assert_eq!(
        m.total("quorumlock_guards_lost_total", &[("reason", "max_hold")]),
        1.0
    );
    drop(guard);
    capped.shutdown().await;
    redlock.shutdown().await;
}
