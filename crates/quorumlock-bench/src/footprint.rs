//! `footprint`: what the keys of quorumlock cost the nodes, and whether they all go away.
//!
//! On three local redis-server nodes:
//! 1. a baseline (`DBSIZE`, `INFO memory`) after a warm-up of every client and kind of
//!    acquisition, once the warm-up's keys have expired: connections, subscriber links and the
//!    script cache are in the baseline;
//! 2. bytes per key of each kind, from the `used_memory` delta of `--sample` keys of that kind
//!    divided by the `DBSIZE` delta (and, beside it, the mean `MEMORY USAGE` of up to 200 of
//!    them): held locks; tombstones (releases of those same locks after they expired); waiting
//!    lines (`--waiters` resources held, one waiter each from another client); fence counters
//!    (acquire and release `--sample` resources with fencing);
//! 3. a churn of `--resources` distinct resource names through a mix of plain, fenced,
//!    wake-on-release (some contended, so waiters join lines), multi-resource, failed
//!    (contended), cancelled (dropped mid-flight, some while in a waiting line) acquisitions
//!    and releases after expiry (tombstones), on `--tasks` tasks; peak `DBSIZE` / `used_memory`
//!    sampled every 100 ms;
//! 4. `shutdown()` of every client, then `DBSIZE` polled until it is back at the baseline,
//!    bounded by the longest documented TTL of any key written plus `--expiry-slack`; then
//!    `used_memory` against the baseline, before and after `MEMORY PURGE`.
//!
//! Exits non-zero when `DBSIZE` did not return to its baseline. A benchmark: never part of a
//! test's pass/fail.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorumlock::{Lock, Redlock, Retry};
use quorumlock_testkit::LocalCluster;
use tokio::task::JoinSet;

use crate::harness::{runtime, start_cluster};

/// Options of the `footprint` subcommand.
pub struct Options {
    pub resources: usize,
    pub tasks: usize,
    pub sample: usize,
    pub waiters: usize,
    pub fence_horizon: Duration,
    pub churn_ttl: Duration,
    pub hold_ttl: Duration,
    pub node_timeout: Duration,
    pub expiry_slack: Duration,
    pub out: String,
}

const PREFIX: &str = "quorumlock:";

/// A waiter's lease as documented: the longest retry pause (250 ms with the default policy)
/// plus three node timeouts plus 100 ms.
fn lease(node_timeout: Duration) -> Duration {
    Duration::from_millis(250) + node_timeout * 3 + Duration::from_millis(100)
}

// ---------------------------------------------------------------------------------------------
// Reading the nodes (own connections, never through the client under test)

#[derive(Clone, Copy, Debug, Default)]
struct Snap {
    keys: u64,
    used: u64,
    rss: u64,
}

struct Admin {
    conns: Vec<redis::Connection>,
}

impl Admin {
    fn new(cluster: &LocalCluster) -> Self {
        let conns = (0..cluster.len())
            .map(|i| {
                let client = redis::Client::open(format!("redis://127.0.0.1:{}", cluster.port(i))).unwrap();
                let c = client
                    .get_connection_with_timeout(Duration::from_secs(2))
                    .unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                c
            })
            .collect();
        Self { conns }
    }

    fn snap(&mut self) -> Vec<Snap> {
        self.conns.iter_mut().map(snap).collect()
    }

    fn keys(&mut self) -> Vec<u64> {
        self.conns
            .iter_mut()
            .map(|c| redis::cmd("DBSIZE").query(c).unwrap())
            .collect()
    }

    /// Polls `DBSIZE` every 50 ms until every node has `target` keys or `bound` passed. Returns
    /// the time it took, or `None` at the bound.
    fn wait_keys(&mut self, target: &[u64], bound: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        loop {
            if self.keys().iter().zip(target).all(|(k, t)| k == t) {
                return Some(t0.elapsed());
            }
            if t0.elapsed() > bound {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Mean `MEMORY USAGE` of up to 200 keys matching `pattern` on node 0.
    fn memory_usage(&mut self, pattern: &str) -> Option<f64> {
        let c = &mut self.conns[0];
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query(c)
                .ok()?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 || keys.len() >= 200 {
                break;
            }
        }
        keys.truncate(200);
        let sizes: Vec<u64> = keys
            .iter()
            .filter_map(|k| {
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(k)
                    .arg("SAMPLES")
                    .arg(0)
                    .query::<Option<u64>>(c)
                    .ok()
                    .flatten()
            })
            .collect();
        (!sizes.is_empty()).then(|| sizes.iter().sum::<u64>() as f64 / sizes.len() as f64)
    }

    /// Keys by kind (the namespace after the prefix) on node 0, by `SCAN`.
    fn by_kind(&mut self) -> BTreeMap<String, usize> {
        let c = &mut self.conns[0];
        let mut out = BTreeMap::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(c)
                .unwrap();
            for k in batch {
                let kind = k
                    .strip_prefix(PREFIX)
                    .and_then(|r| r.split(':').next())
                    .unwrap_or("other");
                *out.entry(kind.to_owned()).or_default() += 1;
            }
            cursor = next;
            if cursor == 0 {
                break out;
            }
        }
    }

    fn purge(&mut self) {
        for c in &mut self.conns {
            let _: redis::RedisResult<String> = redis::cmd("MEMORY").arg("PURGE").query(c);
        }
    }

    /// Keys under the library's prefix, summed over nodes (by `SCAN`, so only for small counts).
    fn prefixed(&mut self) -> usize {
        let mut n = 0;
        for c in &mut self.conns {
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{PREFIX}*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)
                    .unwrap();
                n += batch.len();
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        n
    }
}

fn snap(c: &mut redis::Connection) -> Snap {
    let keys: u64 = redis::cmd("DBSIZE").query(c).unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query(c).unwrap();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Snap {
        keys,
        used: field("used_memory"),
        rss: field("used_memory_rss"),
    }
}

/// Samples every node every 100 ms on its own thread and keeps the peaks.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Snap>>,
}

impl Sampler {
    fn start(cluster: &LocalCluster) -> Self {
        let mut admin = Admin::new(cluster);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = vec![Snap::default(); admin.conns.len()];
            while !flag.load(Ordering::Relaxed) {
                for (p, s) in peak.iter_mut().zip(admin.snap()) {
                    p.keys = p.keys.max(s.keys);
                    p.used = p.used.max(s.used);
                    p.rss = p.rss.max(s.rss);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        Self { stop, thread }
    }

    fn stop(self) -> Vec<Snap> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Running work on several tasks

/// Runs `f(0..n)` on `tasks` tasks, each taking the next index in turn; returns the outputs.
async fn par<T, F, Fut>(tasks: usize, n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..tasks.max(1) {
        let (f, next) = (f.clone(), next.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break out;
                }
                out.push(f(i).await);
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    all
}

// ---------------------------------------------------------------------------------------------
// The clients

#[derive(Clone)]
struct Clients {
    /// Plain locks and multi-resource locks.
    plain: Redlock,
    /// Another client (another process, as far as the nodes can tell): holds what `plain` fails on.
    other: Redlock,
    /// `fencing(true)` with the churn's fence horizon.
    fenced: Redlock,
    /// Two wake-on-release clients: `wake` holds, `waiter` waits in the nodes' lines.
    wake: Redlock,
    waiter: Redlock,
}

impl Clients {
    fn new(urls: &[String], o: &Options) -> Self {
        let b = || Redlock::builder().nodes(urls).node_timeout(o.node_timeout);
        Self {
            plain: b().build().unwrap(),
            other: b().build().unwrap(),
            fenced: b().fencing(true).fence_horizon(o.fence_horizon).build().unwrap(),
            wake: b().wake_on_release(true).build().unwrap(),
            waiter: b().wake_on_release(true).build().unwrap(),
        }
    }

    fn all(&self) -> [&Redlock; 5] {
        [&self.plain, &self.other, &self.fenced, &self.wake, &self.waiter]
    }

    async fn shutdown(&self) {
        for c in self.all() {
            c.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The churn

/// The operations of the churn, by weight out of 20.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Plain,
    Fenced,
    Wake,
    WakeContended,
    Many,
    Failed,
    Cancelled,
    CancelledWaiter,
    ExpiredRelease,
}

impl Op {
    fn of(j: usize) -> Self {
        match j % 20 {
            0..=5 => Op::Plain,
            6..=8 => Op::Fenced,
            9..=10 => Op::Wake,
            11 => Op::WakeContended,
            12..=13 => Op::Many,
            14..=15 => Op::Failed,
            16..=17 => Op::Cancelled,
            18 => Op::CancelledWaiter,
            _ => Op::ExpiredRelease,
        }
    }

    fn names(self) -> usize {
        if self == Op::Many {
            3
        } else {
            1
        }
    }
}

type Tally = Arc<Mutex<BTreeMap<(Op, String), u64>>>;

fn outcome<T>(r: &Result<T, quorumlock::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

async fn release(lock: Result<Lock, quorumlock::Error>) {
    if let Ok(l) = lock {
        let _ = l.release().await;
    }
}

/// One operation on fresh resource names starting at `id`; returns what the acquisition under
/// test did.
async fn churn_op(c: &Clients, op: Op, id: usize, ttl: Duration) -> String {
    let r = format!("fp:{id}");
    match op {
        Op::Plain => {
            let l = c.plain.acquire(&r, ttl).await;
            let o = outcome(&l);
            release(l).await;
            o
        }
        Op::Fenced => {
            let l = c.fenced.acquire(&r, ttl).await;
            let o = outcome(&l);
            release(l).await;
            o
        }
        Op::Wake => {
            let l = c.wake.acquire(&r, ttl).await;
            let o = outcome(&l);
            release(l).await;
            o
        }
        Op::WakeContended => {
            // The waiter (another client) joins the nodes' line while `wake` holds the key.
            let held = c.wake.acquire(&r, ttl).await;
            let waiter = c.waiter.clone();
            let (r2, ttl2) = (r.clone(), ttl);
            let w = tokio::spawn(async move { waiter.acquire(&r2, ttl2).await });
            tokio::time::sleep(Duration::from_millis(2)).await;
            release(held).await;
            let l = w.await.unwrap();
            let o = outcome(&l);
            release(l).await;
            o
        }
        Op::Many => {
            let names = [r, format!("fp:{}", id + 1), format!("fp:{}", id + 2)];
            let l = c.plain.acquire_many(&names, ttl).await;
            let o = outcome(&l);
            release(l).await;
            o
        }
        Op::Failed => {
            let held = c.other.acquire(&r, ttl).await;
            let l = c.plain.try_acquire(&r, ttl).await;
            let o = outcome(&l);
            release(l).await;
            release(held).await;
            o
        }
        Op::Cancelled => {
            // Dropped after 0-1499 µs: at 0, right after its requests were handed to the
            // connections; later, with some answers in.
            let after = Duration::from_micros((id as u64).wrapping_mul(2_654_435_761) % 1500);
            match tokio::time::timeout(after, c.plain.acquire(&r, ttl)).await {
                Ok(l) => {
                    let o = format!("finished: {}", outcome(&l));
                    release(l).await;
                    o
                }
                Err(_) => "dropped".into(),
            }
        }
        Op::CancelledWaiter => {
            // A waiter dropped while in the line (another client holds the key).
            let held = c.wake.acquire(&r, ttl).await;
            let o = match tokio::time::timeout(Duration::from_millis(3), c.waiter.acquire(&r, ttl)).await {
                Ok(l) => {
                    let o = format!("finished: {}", outcome(&l));
                    release(l).await;
                    o
                }
                Err(_) => "dropped".into(),
            };
            release(held).await;
            o
        }
        Op::ExpiredRelease => {
            // Released after its TTL: the release finds nothing and leaves a tombstone.
            let short = Duration::from_millis(30);
            let l = c.plain.acquire(&r, short).await;
            let o = outcome(&l);
            tokio::time::sleep(short + Duration::from_millis(10)).await;
            release(l).await;
            o
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run

struct KindCost {
    name: &'static str,
    keys: f64,
    bytes_per_key: f64,
    bytes_per_unit: f64,
    unit: &'static str,
    memory_usage: Option<f64>,
}

/// Per node: (used after - before) / (keys after - before), averaged over nodes; `units` is how
/// many of the measured things (locks, waiters) there are per node.
fn cost(
    name: &'static str,
    unit: &'static str,
    units: usize,
    before: &[Snap],
    after: &[Snap],
    memory_usage: Option<f64>,
) -> KindCost {
    let n = before.len() as f64;
    let dkeys: f64 = before
        .iter()
        .zip(after)
        .map(|(b, a)| a.keys as f64 - b.keys as f64)
        .sum::<f64>()
        / n;
    let dused: f64 = before
        .iter()
        .zip(after)
        .map(|(b, a)| a.used as f64 - b.used as f64)
        .sum::<f64>()
        / n;
    KindCost {
        name,
        keys: dkeys,
        bytes_per_key: dused / dkeys.max(1.0),
        bytes_per_unit: dused / units.max(1) as f64,
        unit,
        memory_usage,
    }
}

fn sum(s: &[Snap], f: impl Fn(&Snap) -> u64) -> u64 {
    s.iter().map(f).sum()
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

fn signed_kib(b: i64) -> String {
    format!("{:+.1} KiB", b as f64 / 1024.0)
}

pub fn footprint(o: Options) -> i32 {
    let started = Instant::now();
    let cluster = start_cluster(3);
    let urls = cluster.urls();
    let mut admin = Admin::new(&cluster);
    let rt = runtime(false);
    let c = Clients::new(&urls, &o);
    let lease = lease(o.node_timeout);
    let zero = vec![0u64; cluster.len()];

    // 1. Warm-up: every client, every script, the subscriber links; then its keys expire.
    rt.block_on(async {
        for i in 0..20 {
            for op in [
                Op::Plain,
                Op::Fenced,
                Op::Wake,
                Op::WakeContended,
                Op::Many,
                Op::Failed,
                Op::Cancelled,
                Op::CancelledWaiter,
                Op::ExpiredRelease,
            ] {
                churn_op(&c, op, 1_000_000_000 + i * 10 + op as usize, o.churn_ttl).await;
            }
        }
        c.shutdown().await;
    });
    let warm_bound = o.fence_horizon.max(o.churn_ttl).max(lease) + o.expiry_slack;
    admin
        .wait_keys(&zero, warm_bound)
        .expect("warm-up keys did not expire");
    std::thread::sleep(Duration::from_secs(1));
    let base = admin.snap();
    eprintln!(
        "baseline: {} keys, used_memory {:?} at {:.0?}",
        sum(&base, |s| s.keys),
        base.iter().map(|s| s.used).collect::<Vec<_>>(),
        started.elapsed()
    );

    // 2. Bytes per key of each kind.
    let mut kinds = Vec::new();
    let k = o.sample;
    let t_kinds = Instant::now();
    let (locks, rate) = rt.block_on(async {
        let (plain, ttl) = (c.plain.clone(), o.hold_ttl);
        let t0 = Instant::now();
        let locks = par(o.tasks, k, move |i| {
            let plain = plain.clone();
            async move { plain.acquire(&format!("fp:held:{i}"), ttl).await }
        })
        .await;
        (locks, k as f64 / t0.elapsed().as_secs_f64())
    });
    let held = admin.snap();
    let ok = locks.iter().filter(|l| l.is_ok()).count();
    eprintln!("{ok} of {k} locks held ({rate:.0}/s)");
    kinds.push(cost(
        "held lock",
        "lock",
        ok,
        &base,
        &held,
        admin.memory_usage(&format!("{PREFIX}lock:*")),
    ));
    // Their keys expire (this also checks the lock keys' bound), then each release finds nothing
    // and leaves a tombstone on every node.
    let expired = admin.wait_keys(&zero, o.hold_ttl + o.expiry_slack);
    eprintln!("held locks expired after {expired:?} more");
    let before = admin.snap();
    rt.block_on(par(o.tasks, locks.len(), {
        let locks: Arc<Vec<Mutex<Option<Lock>>>> =
            Arc::new(locks.into_iter().map(|l| Mutex::new(l.ok())).collect());
        move |i| {
            let l = locks[i].lock().unwrap().take();
            async move {
                if let Some(l) = l {
                    let _ = l.release().await;
                }
            }
        }
    }));
    let tombs = admin.snap();
    kinds.push(cost(
        "tombstone",
        "release",
        ok,
        &before,
        &tombs,
        admin.memory_usage(&format!("{PREFIX}tomb:*")),
    ));
    let expired = admin.wait_keys(&zero, o.hold_ttl + o.expiry_slack);
    eprintln!("tombstones expired after {expired:?} more");

    // Waiting lines: `--waiters` resources held by `wake`, one waiter each from `waiter`.
    let w = o.waiters;
    let lines = rt.block_on(async {
        let (wake, ttl) = (c.wake.clone(), o.hold_ttl);
        par(o.tasks, w, move |i| {
            let wake = wake.clone();
            async move { wake.acquire(&format!("fp:line:{i}"), ttl).await }
        })
        .await
    });
    let holding = admin.snap();
    // Their own client, which waits up to a minute (the default gives up after 5 s).
    let patient = Redlock::builder()
        .nodes(&urls)
        .node_timeout(o.node_timeout)
        .wake_on_release(true)
        .retry(Retry::wait(Duration::from_secs(60)))
        .build()
        .unwrap();
    let waiters: Vec<_> = {
        (0..w)
            .map(|i| {
                let waiter = patient.clone();
                let ttl = o.churn_ttl;
                rt.spawn(async move { waiter.acquire(&format!("fp:line:{i}"), ttl).await })
            })
            .collect()
    };
    // Each line is two keys (the line and its leases) on every node once its waiter joined.
    let target: Vec<u64> = holding.iter().map(|s| s.keys + 2 * w as u64).collect();
    // The runtime runs the waiters only inside `block_on`: poll between short sleeps.
    let t0 = Instant::now();
    let joined = loop {
        let keys = admin.keys();
        if keys.iter().zip(&target).all(|(k, t)| k >= t) {
            break true;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            break false;
        }
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    };
    let in_line = admin.snap();
    eprintln!("{w} waiters in line: {joined}; node 0: {:?}", admin.by_kind());
    kinds.push(cost(
        "waiter (a line of one: queue + lease keys)",
        "waiter",
        w,
        &holding,
        &in_line,
        None,
    ));
    let queue_usage = admin.memory_usage(&format!("{PREFIX}queue:*"));
    let lease_usage = admin.memory_usage(&format!("{PREFIX}lease:*"));
    if let Some(last) = kinds.last_mut() {
        last.memory_usage = queue_usage.zip(lease_usage).map(|(q, l)| (q + l) / 2.0);
    }
    rt.block_on(async {
        for l in lines {
            release(l).await;
        }
        for t in waiters {
            release(t.await.unwrap()).await;
        }
        c.shutdown().await;
        patient.shutdown().await;
    });
    eprintln!("after the lines' releases: node 0: {:?}", admin.by_kind());
    let gone = admin.wait_keys(&zero, lease + o.expiry_slack);
    eprintln!("lines gone after {gone:?}");

    // Fence counters: acquire and release `--sample` resources with a fence horizon longer than
    // the measurement.
    let before = admin.snap();
    let sample_horizon = o.hold_ttl;
    rt.block_on(async {
        let fenced = Redlock::builder()
            .nodes(&urls)
            .node_timeout(o.node_timeout)
            .fencing(true)
            .fence_horizon(sample_horizon)
            .retry(Retry::none())
            .build()
            .unwrap();
        let ttl = o.churn_ttl;
        let f2 = fenced.clone();
        par(o.tasks, k, move |i| {
            let fenced = f2.clone();
            async move { release(fenced.acquire(&format!("fp:fence:{i}"), ttl).await).await }
        })
        .await;
        fenced.shutdown().await;
    });
    let fences = admin.snap();
    kinds.push(cost(
        "fence counter",
        "resource",
        k,
        &before,
        &fences,
        admin.memory_usage(&format!("{PREFIX}fence:*")),
    ));
    let expired = admin.wait_keys(&zero, sample_horizon + o.expiry_slack);
    eprintln!(
        "fence counters expired after {expired:?} more; kinds measured in {:.0?}",
        t_kinds.elapsed()
    );

    // 3. The churn.
    let before_churn = admin.snap();
    let sampler = Sampler::start(&cluster);
    let tally: Tally = Arc::default();
    let t_churn = Instant::now();
    let (ops, names) = rt.block_on(async {
        let (next_op, next_name) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut set = JoinSet::new();
        for _ in 0..o.tasks {
            let (c, tally, next_op, next_name) =
                (c.clone(), tally.clone(), next_op.clone(), next_name.clone());
            let (n, ttl) = (o.resources, o.churn_ttl);
            set.spawn(async move {
                loop {
                    let op = Op::of(next_op.fetch_add(1, Ordering::Relaxed));
                    let id = next_name.fetch_add(op.names(), Ordering::Relaxed);
                    if id >= n {
                        break;
                    }
                    let result = churn_op(&c, op, id, ttl).await;
                    *tally.lock().unwrap().entry((op, result)).or_default() += 1;
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        let t = tally.lock().unwrap();
        let ops: u64 = t.values().sum();
        let names: u64 = t.iter().map(|((op, _), n)| n * op.names() as u64).sum();
        (ops, names)
    });
    let churn = t_churn.elapsed();
    let at_end = admin.snap();
    let end_kinds = admin.by_kind();

    // 4. Shutdown, then wait for the longest bound of any key written.
    let t_shutdown = Instant::now();
    rt.block_on(c.shutdown());
    let shutdown = t_shutdown.elapsed();
    let bound = [o.churn_ttl, o.hold_ttl, o.fence_horizon, sample_horizon, lease]
        .into_iter()
        .max()
        .unwrap();
    let target: Vec<u64> = base.iter().map(|s| s.keys).collect();
    let returned = admin.wait_keys(&target, bound + o.expiry_slack);
    let peak = sampler.stop();
    std::thread::sleep(Duration::from_secs(1));
    let end = admin.snap();
    admin.purge();
    std::thread::sleep(Duration::from_millis(500));
    let purged = admin.snap();
    let prefixed = admin.prefixed();
    let ok = returned.is_some() && prefixed == 0 && end.iter().zip(&base).all(|(e, b)| e.keys == b.keys);

    // 5. Report.
    let mut md = String::new();
    let line = |md: &mut String, s: String| {
        md.push_str(&s);
        md.push('\n');
    };
    line(
        &mut md,
        format!(
            "## Footprint: 3 nodes, {} ({}), {} tasks\n",
            crate::redis_version(),
            mem_allocator(&cluster),
            o.tasks
        ),
    );
    line(
        &mut md,
        "Bytes per key: `used_memory` delta / `DBSIZE` delta per node, averaged over the 3 nodes; \
         `MEMORY USAGE` is the mean of up to 200 keys (`SAMPLES 0`) on node 0 and leaves out the \
         keyspace and expiry tables' entries."
            .into(),
    );
    line(&mut md, String::new());
    line(
        &mut md,
        "| kind | keys per node | bytes per key (used_memory) | bytes per unit | MEMORY USAGE |".into(),
    );
    line(&mut md, "|---|---|---|---|---|".into());
    for kc in &kinds {
        line(
            &mut md,
            format!(
                "| {} | {:.0} | {:.0} | {:.0} per {} | {} |",
                kc.name,
                kc.keys,
                kc.bytes_per_key,
                kc.bytes_per_unit,
                kc.unit,
                kc.memory_usage.map_or("-".into(), |m| format!("{m:.0}")),
            ),
        );
    }
    line(&mut md, String::new());
    line(
        &mut md,
        format!(
            "Churn: {names} distinct resource names in {ops} operations on {} tasks in {:.1?}: \
             {:.0} names/s, {:.0} operations/s. TTL {:?} (30 ms for releases after expiry), fence \
             horizon {:?}, node timeout {:?} (lease {:?}).\n",
            o.tasks,
            churn,
            names as f64 / churn.as_secs_f64(),
            ops as f64 / churn.as_secs_f64(),
            o.churn_ttl,
            o.fence_horizon,
            o.node_timeout,
            lease
        ),
    );
    line(
        &mut md,
        format!("Keys on node 0 at the end of the churn, by kind: {end_kinds:?}.\n"),
    );
    line(&mut md, "| operation | outcome | count |".into());
    line(&mut md, "|---|---|---|".into());
    for ((op, outcome), n) in tally.lock().unwrap().iter() {
        line(&mut md, format!("| {op:?} | {outcome} | {n} |"));
    }
    line(&mut md, String::new());
    line(
        &mut md,
        "| node | DBSIZE start | peak | at churn end | final | used_memory start | peak | final | \
         final - start | after MEMORY PURGE - start | RSS start | RSS final | RSS after purge |"
            .into(),
    );
    line(
        &mut md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|".into(),
    );
    for i in 0..cluster.len() {
        let (b, p, e, f, g) = (base[i], peak[i], at_end[i], end[i], purged[i]);
        line(
            &mut md,
            format!(
                "| {i} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                b.keys,
                p.keys.max(before_churn[i].keys),
                e.keys,
                f.keys,
                mib(b.used as f64),
                mib(p.used as f64),
                mib(f.used as f64),
                signed_kib(f.used as i64 - b.used as i64),
                signed_kib(g.used as i64 - b.used as i64),
                mib(b.rss as f64),
                mib(f.rss as f64),
                mib(g.rss as f64),
            ),
        );
    }
    line(&mut md, String::new());
    line(
        &mut md,
        format!(
            "shutdown() of 5 clients took {shutdown:.1?}; longest documented bound {bound:?}; \
             DBSIZE back at its start {}; keys under `{PREFIX}` left: {prefixed}. Total {:.0?}.",
            match returned {
                Some(d) => format!("{d:.1?} after shutdown"),
                None => format!("NOT within {:?}", bound + o.expiry_slack),
            },
            started.elapsed()
        ),
    );
    println!("{md}");
    if std::fs::create_dir_all(&o.out).is_ok() {
        let _ = std::fs::write(format!("{}/footprint.md", o.out), &md);
        eprintln!("wrote {}/footprint.md", o.out);
    }
    if ok {
        0
    } else {
        eprintln!("FAILED: DBSIZE did not return to its start");
        1
    }
}

fn mem_allocator(cluster: &LocalCluster) -> String {
    let mut admin = Admin::new(cluster);
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut admin.conns[0])
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("mem_allocator:"))
        .unwrap_or("?")
        .trim()
        .to_owned()
}
