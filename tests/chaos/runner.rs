//! The random fault mix (C31, docs/testing.md): workers contend for a few resources through their own
//! fault proxies while a seeded scheduler injects faults; a history checker, a key auditor and
//! a witness store check the safety properties; a report gives every figure.
//!
//! Shared by the PR-tier test (`tests/redlock/chaos.rs`, 3 minutes) and the soak
//! (`cargo run --release --example chaos -- --minutes 30`).
//!
//! A *client* pause (C10) is emulated by blocking the worker's own runtime thread inside its
//! critical section, after its last validity check and before its writes: the same as a GC
//! pause or SIGSTOP of that client, for everything the client can observe.
//!
//! A *holder crash* (C13) is emulated by a worker that `forget()`s a lock it was just granted:
//! nothing is released and the keys stay until their TTL, as after a SIGKILL of a holder
//! process. Its token is recorded, so the final key scan can tell those keys (left on purpose)
//! from leaks.
//!
//! The leak column (P8) scans every node right after the heal, once every client's
//! `shutdown()` has returned, and counts every lock key still there except those of crashed
//! holders. Scanning after the TTL instead would find nothing whatever the client did.

#![allow(dead_code, reason = "each user of this file takes the parts it needs")]

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use quorumlock::{ErrorKind, Redlock, Retry};
use quorumlock_testkit::{
    audit, fingerprint, Direction, Fault, Grant, History, LocalCluster, Proxy, FENCED_WRITE,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Debug)]
pub struct Config {
    pub nodes: usize,
    pub workers: usize,
    pub resources: usize,
    pub ttl: Duration,
    pub node_timeout: Duration,
    pub duration: Duration,
    pub seed: u64,
    pub hold_max: Duration,
    /// Inject faults (the random mix). Off only for calibration runs.
    pub faults: bool,
    /// Negative control of the leak column: this many workers (ids 0..n) never release their
    /// locks and do not report them as crashed, as if their release path were broken. They lock
    /// a fresh resource each time, so that a grant never waits for their own previous keys.
    /// 0 in every real run.
    pub unreleased_workers: usize,
    /// Release obligations (DESIGN rule (c)). `false` only for the negative control that shows
    /// the leak column failing when releases are given up after one try.
    pub obligations: bool,
}

impl Config {
    pub fn pr(duration: Duration, seed: u64) -> Self {
        Self {
            nodes: 5,
            workers: 4,
            resources: 2,
            ttl: Duration::from_millis(1000),
            node_timeout: Duration::from_millis(50),
            duration,
            seed,
            hold_max: Duration::from_millis(5),
            faults: true,
            unreleased_workers: 0,
            obligations: true,
        }
    }
}

/// The TTL of the locks taken during the final step, which ends at the heal.
const FINAL_TTL: Duration = Duration::from_secs(10);

/// Every figure of one run.
#[derive(Debug, Default)]
pub struct Report {
    pub config: String,
    pub wall: Duration,
    pub attempts: u64,
    pub grants: u64,
    pub failures: BTreeMap<String, u64>,
    pub faults: BTreeMap<&'static str, u64>,
    pub overlaps: Option<String>,
    pub fence_violation: Option<String>,
    pub witness_writes: u64,
    /// Increments overwritten by holders that believed they held the lock (SAFE: must be 0).
    pub witness_lost_updates: u64,
    /// Increments overwritten by paused holders' late writes (expected without fencing).
    pub witness_overwritten_by_paused: u64,
    pub fenced_accepted: u64,
    pub fenced_rejected: u64,
    pub keys_without_ttl: u64,
    pub auditor_samples: u64,
    /// Waiting lines seen by the auditor: the witness that waiters went through the line.
    pub line_samples: u64,
    /// Lock keys found by the scan after the heal that no crashed holder left: "node i: key
    /// (token fingerprint)".
    pub leaked_keys: Vec<String>,
    /// Lock keys found by that scan whose token is a crashed (C13) holder's: they stay until
    /// their TTL by design.
    pub crashed_holder_keys: u64,
    /// Holder crashes (C13) injected.
    pub holder_crashes: u64,
    /// The last fault injected before the heal, for reading a leak.
    pub last_fault: String,
    /// From the heal to the end of the key scan (the workers' shutdown is in between).
    pub scan_after_heal: Duration,
    /// The TTL of the keys present at the heal (the final step's, in faulty runs), to tell
    /// whether the scan came soon enough to see them.
    pub ttl: Duration,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
    pub client_pauses: u64,
}

impl Report {
    /// Whether every safety column is zero, and the leak scan came before the keys it looks
    /// for could have expired by themselves: a later scan sees nothing whatever happened, so
    /// it fails the run rather than passing it with a note.
    pub fn safe(&self) -> bool {
        self.scan_in_time()
            && self.overlaps.is_none()
            && self.fence_violation.is_none()
            && self.keys_without_ttl == 0
            && self.leaked_keys.is_empty()
            && self.witness_lost_updates == 0
    }

    /// Whether the leak scan ended before the TTL of the keys present at the heal.
    pub fn scan_in_time(&self) -> bool {
        self.scan_after_heal < self.ttl
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| figure | value |\n|---|---|");
        let _ = writeln!(s, "| configuration | {} |", self.config);
        let _ = writeln!(s, "| wall time | {:.1?} |", self.wall);
        let _ = writeln!(s, "| attempts | {} |", self.attempts);
        let _ = writeln!(s, "| grants | {} |", self.grants);
        for (k, v) in &self.failures {
            let _ = writeln!(s, "| failed: {k} | {v} |");
        }
        let total: u64 = self.faults.values().sum();
        let _ = writeln!(s, "| faults injected | {total} ({} types) |", self.faults.len());
        for (k, v) in &self.faults {
            let _ = writeln!(s, "| fault: {k} | {v} |");
        }
        let _ = writeln!(
            s,
            "| **P1 overlaps** | {} |",
            self.overlaps
                .as_deref()
                .map_or("0".into(), |v| format!("1+: {v}"))
        );
        let _ = writeln!(
            s,
            "| **P10 fence-order violations** | {} |",
            self.fence_violation
                .as_deref()
                .map_or("0".into(), |v| format!("1+: {v}"))
        );
        let _ = writeln!(
            s,
            "| **witness lost updates** (by holders that believed they held the lock) | {} (of {} writes) |",
            self.witness_lost_updates, self.witness_writes
        );
        let _ = writeln!(
            s,
            "| unfenced increments overwritten by paused holders (expected without fencing) | {} |",
            self.witness_overwritten_by_paused
        );
        let _ = writeln!(
            s,
            "| **P11 fenced writes below the store's max accepted** | 0 (the store refuses them; refused: {}) |",
            self.fenced_rejected
        );
        let _ = writeln!(s, "| fenced writes accepted | {} |", self.fenced_accepted);
        let _ = writeln!(s, "| client pauses (C10) | {} |", self.client_pauses);
        let _ = writeln!(
            s,
            "| **P9 keys without TTL or over their bound (every kind)** | {} (in {} auditor samples) |",
            self.keys_without_ttl, self.auditor_samples
        );
        let _ = writeln!(
            s,
            "| waiting lines sampled (witness: waiters joined the line) | {} |",
            self.line_samples
        );
        let blind = if !self.scan_in_time() {
            " (FAILED: the scan came after the TTL, when keys from before the heal could have expired)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "| **P8 leaked lock keys, scanned {:.0?} after the heal, once every client's shutdown() returned** | {}{blind}{} |",
            self.scan_after_heal,
            self.leaked_keys.len(),
            if self.leaked_keys.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}{}",
                    self.leaked_keys.iter().take(8).cloned().collect::<Vec<_>>().join(", "),
                    if self.leaked_keys.len() > 8 { ", ..." } else { "" }
                )
            }
        );
        let _ = writeln!(s, "| last fault before the heal | {} |", self.last_fault);
        let _ = writeln!(
            s,
            "| lock keys of crashed holders (C13, left until their TTL by design; not leaks) | {} (of {} crashes) |",
            self.crashed_holder_keys, self.holder_crashes
        );
        let _ = writeln!(
            s,
            "| acquire latency p50 / p99 / max | {:.1?} / {:.1?} / {:.1?} |",
            self.latency_p50, self.latency_p99, self.latency_max
        );
        s
    }
}

/// Sets the register and returns its previous value, atomically: a write whose previous value
/// is not what the writer read overwrote someone else's update.
const SWAP: &str =
    "local p = tonumber(redis.call('GET', KEYS[1]) or '0') redis.call('SET', KEYS[1], ARGV[1]) return p";

struct Shared {
    history: History,
    stop: AtomicBool,
    attempts: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    latencies: Mutex<Vec<Duration>>,
    witness_writes: AtomicU64,
    lost_updates: AtomicU64,
    pause_lost: AtomicU64,
    fenced_accepted: AtomicU64,
    fenced_rejected: AtomicU64,
    /// Tokens of the locks crashed holders left behind (C13).
    crashed_tokens: Mutex<HashSet<String>>,
    /// The TTL workers lock with, in ms: `cfg.ttl`, except during the final step (below).
    ttl_ms: AtomicU64,
}

enum WorkerCmd {
    PauseInCriticalSection(Duration),
    /// Crash at the next grant: keep the lock's keys until their TTL (C13).
    CrashHolding,
}

/// Blocks the thread for `d`, as a GC pause does, but no longer than until the run stops: the
/// leak scan must not wait out a pause (it would then come after the TTL).
fn pause_thread(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(10)));
    }
}

fn witness_conn(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// One worker: its own thread, runtime, client and proxies.
fn worker(
    id: usize,
    cfg: Config,
    urls: Vec<String>,
    witness: u16,
    shared: Arc<Shared>,
    cmds: mpsc::Receiver<WorkerCmd>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Three kinds of client on the same resources (issue 22: exclusion through the waiting
    // line): plain fenced single tries (workers 0, 3, ...), fenced waiters with wake-on-release
    // (1, 4, ...) and unfenced waiters with wake-on-release (2, 5, ...). A waiter retries a few
    // times, a few ms apart, so it joins the line (acquire_queued.lua) and is served through
    // it; the overlap checker and the witness register see every kind.
    let (fenced, waits) = match id % 3 {
        0 => (true, false),
        1 => (true, true),
        _ => (false, true),
    };
    let retry = if waits {
        Retry::new()
            .attempts(4)
            .delay(Duration::from_millis(2), Duration::from_millis(8))
            .deadline(cfg.ttl)
    } else {
        Retry::none()
    };
    let redlock = Redlock::builder()
        .nodes(&urls)
        .node_timeout(cfg.node_timeout)
        .fencing(fenced)
        .wake_on_release(waits)
        .retry(retry)
        .negative_control_release_obligations(cfg.obligations)
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ ((id as u64 + 1) * 0x9e37_79b9));
    let mut w = witness_conn(witness);
    let unreleased = id < cfg.unreleased_workers;
    let mut fresh = 0u64;
    rt.block_on(async {
        while !shared.stop.load(Ordering::Relaxed) {
            let resource = if unreleased {
                fresh += 1;
                format!("chaos-unreleased-w{id}-{fresh}")
            } else {
                format!("chaos-{}", rng.random_range(0..cfg.resources))
            };
            let invoked = Instant::now();
            shared.attempts.fetch_add(1, Ordering::Relaxed);
            let ttl = Duration::from_millis(shared.ttl_ms.load(Ordering::Relaxed));
            match redlock.acquire(&resource, ttl).await {
                Ok(lock) => {
                    let ok = Instant::now();
                    shared.latencies.lock().unwrap().push(ok - invoked);
                    let id_ = shared.history.record(Grant {
                        client: format!("worker{id}"),
                        resource: resource.clone(),
                        invoked,
                        ok,
                        until: ok + lock.remaining(),
                        released: None,
                        fence: lock.fencing_token(),
                    });
                    if unreleased {
                        // The negative control: the keys stay, and nobody is told.
                        lock.forget();
                        continue;
                    }
                    let cmd = cmds.try_recv().ok();
                    if let Some(WorkerCmd::CrashHolding) = cmd {
                        // The holder dies here: its window ends at `until` (no release is
                        // recorded), its keys stay until their TTL.
                        shared
                            .crashed_tokens
                            .lock()
                            .unwrap()
                            .insert(lock.token().to_owned());
                        lock.forget();
                        continue;
                    }
                    // Critical section: read-modify-write on the unfenced register, a fenced
                    // write, each only while the lock is believed valid.
                    let key = format!("witness:{resource}");
                    let v: u64 = redis::cmd("GET")
                        .arg(&key)
                        .query::<Option<u64>>(&mut w)
                        .unwrap()
                        .unwrap_or(0);
                    let hold = Duration::from_micros(rng.random_range(0..=cfg.hold_max.as_micros() as u64));
                    tokio::time::sleep(hold).await;
                    let paused = match cmd {
                        Some(WorkerCmd::PauseInCriticalSection(d)) if lock.is_valid() => {
                            // The whole client stops, as in a GC pause, after its check.
                            pause_thread(d, &shared.stop);
                            true
                        }
                        _ => false,
                    };
                    let believes = paused || lock.is_valid();
                    if believes {
                        let prev: u64 = redis::cmd("EVAL")
                            .arg(SWAP)
                            .arg(1)
                            .arg(&key)
                            .arg(v + 1)
                            .query(&mut w)
                            .unwrap();
                        shared.witness_writes.fetch_add(1, Ordering::Relaxed);
                        // Someone wrote between our read and our write: their updates are lost.
                        // From a paused holder that is expected without fencing; from a holder
                        // that believed it held the lock it is a real overlap.
                        let lost = prev.saturating_sub(v);
                        let tally = if paused {
                            &shared.pause_lost
                        } else {
                            &shared.lost_updates
                        };
                        tally.fetch_add(lost, Ordering::Relaxed);
                    }
                    // The fenced register takes fenced writes only.
                    if let (Some(fence), true) = (lock.fencing_token(), believes) {
                        let accepted: i64 = redis::cmd("EVAL")
                            .arg(FENCED_WRITE)
                            .arg(1)
                            .arg(format!("fenced:{resource}"))
                            .arg(fence)
                            .query(&mut w)
                            .unwrap();
                        if accepted == 1 {
                            shared.fenced_accepted.fetch_add(1, Ordering::Relaxed);
                        } else {
                            shared.fenced_rejected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    shared.history.released(id_, Instant::now());
                    let _ = lock.release().await;
                }
                Err(e) => {
                    let reason = match e.kind() {
                        ErrorKind::Contended => "contended",
                        ErrorKind::QuorumUnreachable => "too few nodes",
                        ErrorKind::ValidityExhausted => "validity exhausted",
                        ErrorKind::Unauthorized => "unauthorized",
                        _ => "other",
                    };
                    *shared.failures.lock().unwrap().entry(reason.into()).or_default() += 1;
                }
            }
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..2000))).await;
        }
        redlock.shutdown().await;
    });
}

/// Runs the mix and returns the report. Panics only on harness failures (servers that will
/// not start), never on a property: the caller asserts `report.safe()`.
pub fn run(cfg: Config) -> Report {
    let start = Instant::now();
    let mut cluster = LocalCluster::start(cfg.nodes).expect("redis-server");
    let witness = LocalCluster::start(1).expect("witness redis-server");
    let shared = Arc::new(Shared {
        history: History::new(),
        stop: AtomicBool::new(false),
        attempts: AtomicU64::new(0),
        failures: Mutex::default(),
        latencies: Mutex::default(),
        witness_writes: AtomicU64::new(0),
        lost_updates: AtomicU64::new(0),
        pause_lost: AtomicU64::new(0),
        fenced_accepted: AtomicU64::new(0),
        fenced_rejected: AtomicU64::new(0),
        crashed_tokens: Mutex::default(),
        ttl_ms: AtomicU64::new(u64::try_from(cfg.ttl.as_millis()).unwrap_or(u64::MAX)),
    });
    // Per worker, one proxy per node.
    let proxies: Vec<Vec<Proxy>> = (0..cfg.workers)
        .map(|_| {
            (0..cfg.nodes)
                .map(|i| Proxy::start(cluster.port(i)).unwrap())
                .collect()
        })
        .collect();
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    for (id, ps) in proxies.iter().enumerate() {
        let urls: Vec<String> = ps.iter().map(Proxy::url).collect();
        let (tx, rx) = mpsc::channel();
        senders.push(tx);
        let (cfg, shared, witness_port) = (cfg.clone(), shared.clone(), witness.port(0));
        threads.push(std::thread::spawn(move || {
            worker(id, cfg, urls, witness_port, shared, rx)
        }));
    }
    // Auditor: every key under the prefix on every running, unpaused node has a TTL within its
    // kind's bound (P9, G3).
    let paused: Arc<Mutex<Vec<bool>>> = Arc::new(Mutex::new(vec![false; cfg.nodes]));
    let down: Arc<Mutex<Vec<bool>>> = Arc::new(Mutex::new(vec![false; cfg.nodes]));
    let no_ttl = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(AtomicU64::new(0));
    let line_samples = Arc::new(AtomicU64::new(0));
    let auditor = {
        let ports: Vec<u16> = (0..cfg.nodes).map(|i| cluster.port(i)).collect();
        let (shared, paused, down, no_ttl, samples, line_samples) = (
            shared.clone(),
            paused.clone(),
            down.clone(),
            no_ttl.clone(),
            samples.clone(),
            line_samples.clone(),
        );
        // Locks and tombstones live at most the longest TTL the workers use; fence counters the
        // default fence horizon; waiting lines one lease (250 ms + 3 node timeouts + 100 ms).
        let longest = cfg.ttl.max(FINAL_TTL);
        let bounds = audit::Bounds {
            lock: longest,
            tomb: longest,
            fence: Duration::from_secs(3600),
            line: Duration::from_millis(350) + cfg.node_timeout * 3,
        };
        std::thread::spawn(move || {
            while !shared.stop.load(Ordering::Relaxed) {
                for (i, port) in ports.iter().enumerate() {
                    if paused.lock().unwrap()[i] || down.lock().unwrap()[i] {
                        continue;
                    }
                    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
                        continue;
                    };
                    let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(100)) else {
                        continue;
                    };
                    let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                    // Every key the library writes, not only lock keys (issue 20: the fence
                    // counters had no TTL and a lock-key scan never saw them).
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg("quorumlock:*")
                        .query(&mut c)
                        .unwrap_or_default();
                    let sampled: Vec<audit::Sample> = keys
                        .into_iter()
                        .map(|k| {
                            let pttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut c).unwrap_or(-2);
                            audit::Sample::new(i, k, pttl)
                        })
                        .collect();
                    samples.fetch_add(sampled.len() as u64, Ordering::Relaxed);
                    let lines = sampled
                        .iter()
                        .filter(|s| s.key.starts_with("quorumlock:queue:"))
                        .count();
                    line_samples.fetch_add(lines as u64, Ordering::Relaxed);
                    if let Err(found) = audit::check("quorumlock:", &bounds, sampled) {
                        for f in &found {
                            eprintln!("auditor: {f}");
                        }
                        no_ttl.fetch_add(found.len() as u64, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // The fault scheduler.
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut client_pauses = 0;
    let mut holder_crashes = 0;
    // The last fault and when its step ended (a window's heal, or the injection itself).
    let mut last_fault: Option<(String, Instant)> = None;
    let minority = (cfg.nodes - 1) / 2;
    let node_cmd = |cluster: &LocalCluster, i: usize, args: &[&str]| {
        if let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{}", cluster.port(i))) {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                let mut cmd = redis::cmd(args[0]);
                for a in &args[1..] {
                    cmd.arg(*a);
                }
                let _: redis::RedisResult<redis::Value> = cmd.query(&mut c);
            }
        }
    };
    while start.elapsed() < cfg.duration {
        if !cfg.faults {
            std::thread::sleep(cfg.duration.saturating_sub(start.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1200)));
        let pick = rng.random_range(0..12);
        let window = Duration::from_millis(rng.random_range(300..1500));
        let mut nodes: Vec<usize> = (0..cfg.nodes).collect();
        nodes.sort_by_key(|_| rng.random::<u32>());
        let some: Vec<usize> = nodes[..rng.random_range(1..=minority)].to_vec();
        let before = faults.clone();
        match pick {
            0 => {
                // C1 kill a minority; C3 restart without persistence after ttl + margin.
                *faults.entry("C1 kill minority").or_default() += 1;
                for &i in &some {
                    cluster.kill(i).unwrap();
                    down.lock().unwrap()[i] = true;
                }
                std::thread::sleep(cfg.ttl + Duration::from_millis(500));
                for &i in &some {
                    cluster.restart(i).unwrap();
                    down.lock().unwrap()[i] = false;
                }
                *faults.entry("C3 delayed restart, empty").or_default() += some.len() as u64;
            }
            1 => {
                // C8: SIGSTOP nodes for less than the TTL.
                *faults.entry("C8 pause node").or_default() += 1;
                for &i in &some {
                    paused.lock().unwrap()[i] = true;
                    cluster.pause(i).unwrap();
                }
                std::thread::sleep(cfg.ttl / 2);
                for &i in &some {
                    cluster.resume(i).unwrap();
                    paused.lock().unwrap()[i] = false;
                }
            }
            2 => {
                // C12: latency above the node timeout on a majority, for one worker.
                *faults.entry("C12 latency majority").or_default() += 1;
                let w = rng.random_range(0..cfg.workers);
                for i in &nodes[..cfg.nodes / 2 + 1] {
                    proxies[w][*i].set(Direction::Replies, Fault::Delay(cfg.node_timeout * 3));
                }
                std::thread::sleep(window);
                proxies[w].iter().for_each(Proxy::heal);
            }
            3 => {
                // C14: latency on a minority, for everyone.
                *faults.entry("C14 latency minority").or_default() += 1;
                for ps in &proxies {
                    for &i in &some {
                        ps[i].set(Direction::Replies, Fault::Delay(cfg.node_timeout * 2));
                    }
                }
                std::thread::sleep(window);
                proxies.iter().flatten().for_each(Proxy::heal);
            }
            4 => {
                // C16/C17: each worker loses a different random set of nodes.
                *faults.entry("C16/C17 partitions").or_default() += 1;
                for ps in &proxies {
                    let k = rng.random_range(1..=minority + 1);
                    for _ in 0..k {
                        ps[rng.random_range(0..cfg.nodes)].set_both(Fault::Drop);
                    }
                }
                std::thread::sleep(window);
                proxies.iter().flatten().for_each(Proxy::heal);
            }
            5 => {
                // C18: requests applied, replies dropped.
                *faults.entry("C18 drop replies").or_default() += 1;
                for ps in &proxies {
                    for &i in &some {
                        ps[i].set(Direction::Replies, Fault::Drop);
                    }
                }
                std::thread::sleep(window);
                proxies.iter().flatten().for_each(Proxy::heal);
            }
            6 => {
                // C20: connection resets.
                *faults.entry("C20 resets").or_default() += 1;
                for ps in &proxies {
                    for &i in &some {
                        ps[i].reset_connections();
                    }
                }
            }
            7 => {
                // C21: SCRIPT FLUSH everywhere.
                *faults.entry("C21 script flush").or_default() += 1;
                for i in 0..cfg.nodes {
                    if !down.lock().unwrap()[i] {
                        node_cmd(&cluster, i, &["SCRIPT", "FLUSH"]);
                    }
                }
            }
            8 => {
                // C24 OOM / C26 NOREPLICAS on a minority.
                let oom = rng.random_bool(0.5);
                *faults
                    .entry(if oom { "C24 OOM" } else { "C26 NOREPLICAS" })
                    .or_default() += 1;
                for &i in &some {
                    if oom {
                        node_cmd(&cluster, i, &["CONFIG", "SET", "maxmemory", "1"]);
                    } else {
                        node_cmd(&cluster, i, &["CONFIG", "SET", "min-replicas-to-write", "1"]);
                    }
                }
                std::thread::sleep(window);
                for &i in &some {
                    node_cmd(&cluster, i, &["CONFIG", "SET", "maxmemory", "0"]);
                    node_cmd(&cluster, i, &["CONFIG", "SET", "min-replicas-to-write", "0"]);
                }
            }
            9 => {
                // C27: write stall.
                *faults.entry("C27 CLIENT PAUSE WRITE").or_default() += 1;
                let ms = (cfg.node_timeout * 4).as_millis().to_string();
                node_cmd(&cluster, some[0], &["CLIENT", "PAUSE", &ms, "WRITE"]);
            }
            10 => {
                // C13: a holder crashes with its lock (emulated by forget(), see the top).
                *faults.entry("C13 holder crash").or_default() += 1;
                holder_crashes += 1;
                let w = rng.random_range(0..cfg.workers);
                let _ = senders[w].send(WorkerCmd::CrashHolding);
            }
            _ => {
                // C10 (fenced): a client pauses inside its critical section for longer than the
                // TTL.
                *faults.entry("C10 client pause").or_default() += 1;
                client_pauses += 1;
                let w = rng.random_range(0..cfg.workers);
                let _ = senders[w].send(WorkerCmd::PauseInCriticalSection(cfg.ttl * 3 / 2));
            }
        }
        let injected: Vec<&str> = faults
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, _)| *k)
            .collect();
        last_fault = Some((
            format!("{} (nodes {some:?})", injected.join(" + ")),
            Instant::now(),
        ));
    }
    // The last step of every faulty run ends right at the heal and leaves releases behind on a
    // minority: its replies are dropped (requests still applied, so SETs land and their
    // clean-ups are sent), then both directions (the clean-ups sent now never arrive). Only a
    // release that is re-sent after the heal (an obligation) removes those keys before the
    // scan; with obligations off the leak column must show them.
    if cfg.faults {
        // Keys set in this step live FINAL_TTL, far longer than the scan can come after the heal
        // (the report checks that), so a key the scan does not find was released, not expired.
        shared.ttl_ms.store(
            u64::try_from(FINAL_TTL.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        std::thread::sleep(cfg.ttl + cfg.hold_max); // locks taken before now are done
        let some = &[0usize, 1][..minority.min(2)];
        *faults.entry("final: drop replies, then partition").or_default() += 1;
        for ps in &proxies {
            for &i in some {
                ps[i].set(Direction::Replies, Fault::Drop);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        for ps in &proxies {
            for &i in some {
                ps[i].set_both(Fault::Drop);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        last_fault = Some((
            format!("final: drop replies, then partition (nodes {some:?})"),
            Instant::now(),
        ));
    }
    // Heal everything (every node runs and is resumed at this point; a CLIENT PAUSE may still
    // be on), stop the workers, and scan for lock keys as soon as every client's shutdown() has
    // returned: a key still there now was left by a release or clean-up that did not happen.
    // Waiting out the TTL first would hide every such key.
    proxies.iter().flatten().for_each(Proxy::heal);
    for i in 0..cfg.nodes {
        node_cmd(&cluster, i, &["CLIENT", "UNPAUSE"]);
    }
    let healed = Instant::now();
    let last_fault = last_fault.map_or_else(
        || "none".to_owned(),
        |(what, at)| format!("{what}, step ended {:.0?} before the heal", healed - at),
    );
    shared.stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("worker panicked");
    }
    auditor.join().expect("auditor panicked");
    let crashed = shared.crashed_tokens.lock().unwrap().clone();
    let mut leaked = Vec::new();
    let mut crashed_holder_keys = 0;
    for i in 0..cfg.nodes {
        let mut c = witness_conn(cluster.port(i));
        let keys: Vec<String> = redis::cmd("KEYS").arg("quorumlock:lock:*").query(&mut c).unwrap();
        for k in keys {
            // Gone meanwhile (expired) means not there.
            let Some(token): Option<String> = redis::cmd("GET").arg(&k).query(&mut c).unwrap() else {
                continue;
            };
            if crashed.contains(&token) {
                crashed_holder_keys += 1;
            } else {
                leaked.push(format!("node {i}: {k} (token {})", fingerprint(&token)));
            }
        }
    }
    let scan_after_heal = healed.elapsed();
    let mut lat = shared.latencies.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    drop(proxies);
    let failures = shared.failures.lock().unwrap().clone();
    Report {
        config: format!(
            "N={}, workers={} (fenced single tries, fenced wake-on-release waiters through the line, unfenced waiters through the line, in turn), resources={}, ttl={:?}, node_timeout={:?}, drift 0.01, waiters retry 4 times 2-10 ms apart, persistence none (restarts delayed > ttl), redis-server 7.0, seed={}{}",
            cfg.nodes,
            cfg.workers,
            cfg.resources,
            cfg.ttl,
            cfg.node_timeout,
            cfg.seed,
            if cfg.obligations { "" } else { ", release obligations OFF (negative control)" }
        ),
        wall: start.elapsed(),
        attempts: shared.attempts.load(Ordering::SeqCst),
        grants: shared.history.len() as u64,
        failures,
        faults,
        overlaps: shared.history.check_exclusion().err().map(|v| v.to_string()),
        fence_violation: shared.history.check_fences().err().map(|v| v.to_string()),
        witness_writes: shared.witness_writes.load(Ordering::SeqCst),
        witness_lost_updates: shared.lost_updates.load(Ordering::SeqCst),
        witness_overwritten_by_paused: shared.pause_lost.load(Ordering::SeqCst),
        fenced_accepted: shared.fenced_accepted.load(Ordering::SeqCst),
        fenced_rejected: shared.fenced_rejected.load(Ordering::SeqCst),
        keys_without_ttl: no_ttl.load(Ordering::SeqCst),
        auditor_samples: samples.load(Ordering::SeqCst),
        line_samples: line_samples.load(Ordering::SeqCst),
        leaked_keys: leaked,
        crashed_holder_keys,
        holder_crashes,
        last_fault,
        scan_after_heal,
        // The TTL of the keys present at the heal: the final step's in faulty runs.
        ttl: if cfg.faults { FINAL_TTL } else { cfg.ttl },
        latency_p50: pct(0.5),
        latency_p99: pct(0.99),
        latency_max: lat.last().copied().unwrap_or_default(),
        client_pauses,
    }
}
