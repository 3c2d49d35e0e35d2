//! `cargo run --release -p quorumlock-bench -- [--out DIR] [--quick]`
//!
//! Starts its own redis-server nodes (client pinned to CPU 0, servers to CPU 1) and runs, for
//! quorumlock and its references (the raw Redis ceiling, rslock 0.10, a single-instance lock):
//! - S1 uncontended latency (acquire, release) for N = 1, 3, 5, 7;
//! - S2 throughput with 1, 16, 64, 256 tasks on their own keys;
//! - S3 contention: 16 tasks, one key, 1 ms critical section, wait times, exclusion checked;
//! - S4 a sick node among 5: one paused (SIGSTOP), one behind 20 ms of latency.
//!
//! Three repetitions, interleaved between libraries; medians reported with every repetition.
//! Besides time: client CPU per cycle (getrusage) and server commands per attempt per node
//! (INFO deltas), which noise does not move. Writes `results.md`, `results.json` and SVG plots
//! into `--out` (default `target/bench`). Never part of a test's pass/fail.

mod libs;
mod plot;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libs::{Client, Lib};
use quorumlock_testkit::{Direction, Fault, LocalCluster, Proxy};

const REPS: usize = 3;
const TTL: Duration = Duration::from_secs(10);

fn pin(pid: libc::pid_t, cpu: usize) {
    // SAFETY: plain syscalls on a zeroed cpu_set_t for our own process or our own children.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills a zeroed struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Commands processed by the nodes so far (minus our own INFO). A node that does not answer
/// within 200 ms (paused, in S4) counts 0: its delta is then not measured.
fn server_commands(cluster: &LocalCluster) -> u64 {
    (0..cluster.len())
        .map(|i| {
            let count = || -> redis::RedisResult<u64> {
                let client = redis::Client::open(format!("redis://127.0.0.1:{}", cluster.port(i)))?;
                let mut c = client.get_connection_with_timeout(Duration::from_millis(200))?;
                c.set_read_timeout(Some(Duration::from_millis(200)))?;
                let info: String = redis::cmd("INFO").arg("stats").query(&mut c)?;
                Ok(info
                    .lines()
                    .find_map(|l| l.strip_prefix("total_commands_processed:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0))
            };
            count().unwrap_or(0)
        })
        .sum()
}

fn start_cluster(n: usize) -> LocalCluster {
    let cluster = LocalCluster::start(n).expect("redis-server");
    for i in 0..n {
        pin(cluster.pid(i).unwrap() as libc::pid_t, 1);
    }
    cluster
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One measured run.
#[derive(Clone, Debug, Default)]
struct Run {
    acquire: Vec<Duration>,
    release: Vec<Duration>,
    waits: Vec<Duration>,
    cycles: u64,
    attempts: u64,
    wall: Duration,
    cpu: Duration,
    server_cmds: u64,
    nodes: usize,
    max_holders: usize,
}

impl Run {
    fn finish(&mut self) {
        self.acquire.sort();
        self.release.sort();
        self.waits.sort();
    }
    fn cycles_per_s(&self) -> f64 {
        self.cycles as f64 / self.wall.as_secs_f64()
    }
    fn cpu_per_cycle_us(&self) -> f64 {
        us(self.cpu) / self.cycles.max(1) as f64
    }
    fn cmds_per_attempt_node(&self) -> f64 {
        self.server_cmds as f64 / self.attempts.max(1) as f64 / self.nodes.max(1) as f64
    }
}

fn runtime(multi: bool) -> tokio::runtime::Runtime {
    if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

/// S1: one task, acquire then release on fresh keys (at most `cycles`, and at most 5 s of
/// measuring: a library that waits for a paused node takes seconds per cycle).
fn s1(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    cluster: &LocalCluster,
    cycles: usize,
    tag: &str,
) -> Run {
    let mut run = Run {
        nodes: cluster.len(),
        ..Run::default()
    };
    rt.block_on(async {
        let warm = Instant::now();
        for i in 0..cycles.min(200) {
            client.cycle(&format!("warm:{tag}:{i}")).await;
            if warm.elapsed() > Duration::from_millis(500) {
                break; // a library waiting for a paused node needs no 200 warm-up cycles
            }
        }
        client.settle().await;
        let cmds = server_commands(cluster);
        let (start, cpu) = (Instant::now(), cpu_time());
        for i in 0..cycles {
            let (a, r) = client.cycle(&format!("s1:{tag}:{i}")).await;
            run.acquire.push(a);
            run.release.push(r);
            if start.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        run.wall = start.elapsed();
        run.cpu = cpu_time() - cpu;
        client.settle().await;
        run.server_cmds = server_commands(cluster) - cmds;
    });
    run.cycles = run.acquire.len() as u64;
    run.attempts = run.cycles;
    run.finish();
    run
}

/// S2: `tasks` tasks, each cycling on its own key for `dur`.
fn s2(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    cluster: &LocalCluster,
    tasks: usize,
    dur: Duration,
    tag: &str,
) -> Run {
    let mut run = Run {
        nodes: cluster.len(),
        ..Run::default()
    };
    let cycles = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let cmds = server_commands(cluster);
        let (start, cpu) = (Instant::now(), cpu_time());
        let mut handles = Vec::new();
        for t in 0..tasks {
            let (client, cycles, tag) = (client.clone(), cycles.clone(), tag.to_owned());
            handles.push(tokio::spawn(async move {
                let mut i = 0u64;
                while start.elapsed() < dur {
                    client.cycle(&format!("s2:{tag}:{t}:{i}")).await;
                    cycles.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        run.wall = start.elapsed();
        run.cpu = cpu_time() - cpu;
        client.settle().await;
        run.server_cmds = server_commands(cluster) - cmds;
    });
    run.cycles = cycles.load(Ordering::SeqCst) as u64;
    run.attempts = run.cycles;
    run
}

/// S3: 16 tasks on one key, 1 ms critical section; each task retries (with the library's own
/// policy) until it gets the lock, and the time from its first try is its wait.
fn s3(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    cluster: &LocalCluster,
    dur: Duration,
    tag: &str,
) -> Run {
    let mut run = Run {
        nodes: cluster.len(),
        ..Run::default()
    };
    let holders = Arc::new(AtomicUsize::new(0));
    let max_holders = Arc::new(AtomicUsize::new(0));
    let key = format!("s3:{tag}");
    let (waits, attempts) = rt.block_on(async {
        let cmds = server_commands(cluster);
        let (start, cpu) = (Instant::now(), cpu_time());
        let mut handles = Vec::new();
        for _ in 0..16 {
            let (client, holders, max_holders, key) =
                (client.clone(), holders.clone(), max_holders.clone(), key.clone());
            handles.push(tokio::spawn(async move {
                let (mut waits, mut attempts) = (Vec::new(), 0u64);
                while start.elapsed() < dur {
                    let t = Instant::now();
                    let (token, tries) = client
                        .acquire_waiting(&key, start + dur + Duration::from_secs(2))
                        .await;
                    attempts += tries;
                    let Some(token) = token else { continue };
                    waits.push(t.elapsed());
                    let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                    max_holders.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    holders.fetch_sub(1, Ordering::SeqCst);
                    client.release(token).await;
                }
                (waits, attempts)
            }));
        }
        let (mut waits, mut attempts) = (Vec::new(), 0);
        for h in handles {
            let (w, a) = h.await.unwrap();
            waits.extend(w);
            attempts += a;
        }
        run.wall = start.elapsed();
        run.cpu = cpu_time() - cpu;
        client.settle().await;
        run.server_cmds = server_commands(cluster) - cmds;
        (waits, attempts)
    });
    run.cycles = waits.len() as u64;
    run.waits = waits;
    run.attempts = attempts;
    run.max_holders = max_holders.load(Ordering::SeqCst);
    run.finish();
    run
}

struct Out {
    md: String,
    json: serde_json::Map<String, serde_json::Value>,
}

/// Counts heap allocations, so the profile mode can report allocations per lock cycle (a number
/// that noise does not move). Written here because it is ten lines around the system allocator.
struct Counting;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(secs) = args
        .iter()
        .position(|a| a == "--profile-s2")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<u64>().ok())
    {
        // Only quorumlock's S2 (N = 5, 64 tasks), for a profiler to attach to:
        // `perf record -g -- target/release/quorumlock-bench --profile-s2 10`.
        let cluster = start_cluster(5);
        let rt = runtime(false);
        for lib in [Lib::Raw, Lib::Quorumlock, Lib::Rslock] {
            let client = rt.block_on(Client::new(lib, &cluster.urls(), TTL));
            let _ = s2(&rt, &client, &cluster, 64, Duration::from_millis(300), "warm");
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let run = s2(
                &rt,
                &client,
                &cluster,
                64,
                Duration::from_secs(secs),
                &format!("profile-{lib:?}"),
            );
            let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
            eprintln!(
                "{lib:?}: {} cycles in {:?}, {:.1} allocations per cycle",
                run.cycles,
                run.wall,
                allocs as f64 / run.cycles.max(1) as f64
            );
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let out_dir = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or("target/bench".into());
    std::fs::create_dir_all(&out_dir).unwrap();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get()); // before pinning
    pin(0, 0);
    let s1_cycles = if quick { 300 } else { 2000 };
    let s2_dur = Duration::from_millis(if quick { 200 } else { 700 });
    let s3_dur = Duration::from_secs(if quick { 1 } else { 3 });
    let mut out = Out {
        md: String::new(),
        json: serde_json::Map::new(),
    };
    let started = Instant::now();
    let _ = writeln!(
        out.md,
        "Machine: {} CPUs (client pinned to CPU 0, redis-servers to CPU 1); {}; {} repetitions, interleaved; medians, with every repetition in brackets.\n",
        cpus,
        std::process::Command::new("redis-server").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default(),
        REPS
    );

    // S1 and S2 for every N.
    let mut s1_table: BTreeMap<(usize, Lib, bool), Vec<Run>> = BTreeMap::new();
    let mut s2_table: BTreeMap<(usize, Lib, usize), Vec<Run>> = BTreeMap::new();
    for n in [1, 3, 5, 7] {
        let cluster = start_cluster(n);
        for multi in [false, true] {
            let rt = runtime(multi);
            let clients: Vec<(Lib, Client)> = Lib::ALL
                .iter()
                .filter(|l| n == 1 || **l != Lib::Single)
                .map(|l| (*l, rt.block_on(Client::new(*l, &cluster.urls(), TTL))))
                .collect();
            for rep in 0..REPS {
                for (lib, client) in &clients {
                    let tag = format!("{n}:{lib:?}:{multi}:{rep}");
                    s1_table
                        .entry((n, *lib, multi))
                        .or_default()
                        .push(s1(&rt, client, &cluster, s1_cycles, &tag));
                    if !multi {
                        for tasks in [1, 16, 64, 256] {
                            s2_table
                                .entry((n, *lib, tasks))
                                .or_default()
                                .push(s2(&rt, client, &cluster, tasks, s2_dur, &tag));
                        }
                    }
                }
            }
        }
        eprintln!("S1+S2 N={n} done at {:.0?}", started.elapsed());
    }
    report_s1(&mut out, &s1_table);
    report_s2(&mut out, &s2_table);

    // S3 on N = 5 (and 1 and 3 for the curve).
    let mut s3_table: BTreeMap<(usize, Lib), Vec<Run>> = BTreeMap::new();
    for n in [1, 3, 5, 7] {
        let cluster = start_cluster(n);
        let rt = runtime(false);
        let clients: Vec<(Lib, Client)> = [
            Lib::Quorumlock,
            Lib::QuorumlockFast,
            Lib::QuorumlockWake,
            Lib::Rslock,
        ]
        .iter()
        .map(|l| (*l, rt.block_on(Client::new(*l, &cluster.urls(), TTL))))
        .collect();
        for rep in 0..REPS {
            for (lib, client) in &clients {
                s3_table.entry((n, *lib)).or_default().push(s3(
                    &rt,
                    client,
                    &cluster,
                    s3_dur,
                    &format!("{n}:{lib:?}:{rep}"),
                ));
            }
        }
        eprintln!("S3 N={n} done at {:.0?}", started.elapsed());
    }
    report_s3(&mut out, &s3_table);

    // S4: one sick node among five.
    let mut s4_table: BTreeMap<(&'static str, Lib), Vec<Run>> = BTreeMap::new();
    {
        let cluster = start_cluster(5);
        let proxies: Vec<Proxy> = (0..5).map(|i| Proxy::start(cluster.port(i)).unwrap()).collect();
        let urls: Vec<String> = proxies.iter().map(Proxy::url).collect();
        let rt = runtime(false);
        let libs = [Lib::Quorumlock, Lib::Raw, Lib::Rslock];
        let clients: Vec<(Lib, Client)> = libs
            .iter()
            .map(|l| (*l, rt.block_on(Client::new(*l, &urls, TTL))))
            .collect();
        let cycles = if quick { 20 } else { 300 };
        for case in ["healthy", "one paused", "one +20 ms"] {
            match case {
                "one paused" => cluster.pause(4).unwrap(),
                "one +20 ms" => proxies[4].set(Direction::Replies, Fault::Delay(Duration::from_millis(20))),
                _ => {}
            }
            for rep in 0..REPS {
                for (lib, client) in &clients {
                    s4_table.entry((case, *lib)).or_default().push(s1(
                        &rt,
                        client,
                        &cluster,
                        cycles,
                        &format!("s4:{case}:{lib:?}:{rep}"),
                    ));
                }
            }
            match case {
                "one paused" => cluster.resume(4).unwrap(),
                "one +20 ms" => proxies[4].heal(),
                _ => {}
            }
            eprintln!("S4 {case} done at {:.0?}", started.elapsed());
        }
    }
    report_s4(&mut out, &s4_table);

    // Memory per held guard.
    report_memory(&mut out);

    let _ = writeln!(out.md, "\nTotal run time: {:.0?}.", started.elapsed());
    std::fs::write(format!("{out_dir}/results.md"), &out.md).unwrap();
    std::fs::write(
        format!("{out_dir}/results.json"),
        serde_json::to_string_pretty(&out.json).unwrap(),
    )
    .unwrap();
    plot::latency_by_n(&format!("{out_dir}/s1_latency_by_n.svg"), &s1_table);
    plot::throughput_by_tasks(&format!("{out_dir}/s2_throughput.svg"), &s2_table);
    plot::contention_waits(&format!("{out_dir}/s3_waits.svg"), &s3_table);
    println!("{}", out.md);
    eprintln!("wrote {out_dir}/results.md, results.json and SVG plots");
}

fn reps_fmt(v: &[f64], f: impl Fn(f64) -> String) -> String {
    let all: Vec<String> = v.iter().map(|x| f(*x)).collect();
    format!("{} [{}]", f(median(v.to_vec())), all.join(", "))
}

fn report_s1(out: &mut Out, t: &BTreeMap<(usize, Lib, bool), Vec<Run>>) {
    let _ = writeln!(out.md, "## S1 uncontended latency (one task, fresh keys)\n");
    let _ = writeln!(out.md, "| N | library | runtime | acquire p50 | acquire p99 | acquire p99.9 | release p50 | release p99 | client CPU / cycle | server cmds / attempt / node |");
    let _ = writeln!(out.md, "|---|---|---|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for ((n, lib, multi), runs) in t {
        let col = |f: &dyn Fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<_>>();
        let a50 = col(&|r| us(pct(&r.acquire, 0.5)));
        let a99 = col(&|r| us(pct(&r.acquire, 0.99)));
        let a999 = col(&|r| us(pct(&r.acquire, 0.999)));
        let r50 = col(&|r| us(pct(&r.release, 0.5)));
        let r99 = col(&|r| us(pct(&r.release, 0.99)));
        let cpu = col(&|r| r.cpu_per_cycle_us());
        let cmds = col(&|r| r.cmds_per_attempt_node());
        let u = |x: f64| format!("{x:.0} µs");
        let _ = writeln!(
            out.md,
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            lib.name(),
            if *multi { "multi-thread" } else { "current-thread" },
            reps_fmt(&a50, u),
            reps_fmt(&a99, u),
            reps_fmt(&a999, u),
            reps_fmt(&r50, u),
            reps_fmt(&r99, u),
            reps_fmt(&cpu, |x| format!("{x:.1} µs")),
            median(cmds.clone()),
        );
        json.push(serde_json::json!({"n": n, "lib": lib.name(), "multi_thread": multi, "acquire_p50_us": a50, "acquire_p99_us": a99, "acquire_p999_us": a999, "release_p50_us": r50, "release_p99_us": r99, "cpu_per_cycle_us": cpu, "server_cmds_per_attempt_node": cmds}));
    }
    out.json.insert("s1".into(), json.into());
}

fn report_s2(out: &mut Out, t: &BTreeMap<(usize, Lib, usize), Vec<Run>>) {
    let _ = writeln!(
        out.md,
        "\n## S2 throughput (tasks on their own keys, current-thread runtime)\n"
    );
    let _ = writeln!(
        out.md,
        "| N | library | tasks | cycles/s | client CPU / cycle | server cmds / attempt / node |"
    );
    let _ = writeln!(out.md, "|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for ((n, lib, tasks), runs) in t {
        let cps: Vec<f64> = runs.iter().map(Run::cycles_per_s).collect();
        let cpu: Vec<f64> = runs.iter().map(Run::cpu_per_cycle_us).collect();
        let cmds: Vec<f64> = runs.iter().map(Run::cmds_per_attempt_node).collect();
        let _ = writeln!(
            out.md,
            "| {n} | {} | {tasks} | {} | {} | {:.2} |",
            lib.name(),
            reps_fmt(&cps, |x| format!("{x:.0}")),
            reps_fmt(&cpu, |x| format!("{x:.1} µs")),
            median(cmds)
        );
        json.push(serde_json::json!({"n": n, "lib": lib.name(), "tasks": tasks, "cycles_per_s": cps, "cpu_per_cycle_us": cpu}));
    }
    out.json.insert("s2".into(), json.into());
}

fn report_s3(out: &mut Out, t: &BTreeMap<(usize, Lib), Vec<Run>>) {
    let _ = writeln!(
        out.md,
        "\n## S3 contention (16 tasks, one key, 1 ms critical section, default retry policies)\n"
    );
    let _ = writeln!(out.md, "| N | library | cycles/s | wait p50 | wait p99 | wait max | server cmds / attempt / node | server cmds / grant / node | max holders at once |");
    let _ = writeln!(out.md, "|---|---|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for ((n, lib), runs) in t {
        let cps: Vec<f64> = runs.iter().map(Run::cycles_per_s).collect();
        let w50: Vec<f64> = runs.iter().map(|r| us(pct(&r.waits, 0.5)) / 1e3).collect();
        let w99: Vec<f64> = runs.iter().map(|r| us(pct(&r.waits, 0.99)) / 1e3).collect();
        let wmax: Vec<f64> = runs.iter().map(|r| us(pct(&r.waits, 1.0)) / 1e3).collect();
        let cmds: Vec<f64> = runs.iter().map(Run::cmds_per_attempt_node).collect();
        let per_grant: Vec<f64> = runs
            .iter()
            .map(|r| r.server_cmds as f64 / r.cycles.max(1) as f64 / r.nodes.max(1) as f64)
            .collect();
        let holders = runs.iter().map(|r| r.max_holders).max().unwrap_or(0);
        let ms = |x: f64| format!("{x:.1} ms");
        let counted = runs.iter().all(|r| r.attempts > 0);
        let _ = writeln!(
            out.md,
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {holders} |",
            lib.name(),
            reps_fmt(&cps, |x| format!("{x:.0}")),
            reps_fmt(&w50, ms),
            reps_fmt(&w99, ms),
            reps_fmt(&wmax, ms),
            if counted {
                reps_fmt(&cmds, |x| format!("{x:.2}"))
            } else {
                "not counted".into()
            },
            reps_fmt(&per_grant, |x| format!("{x:.1}")),
        );
        json.push(serde_json::json!({"n": n, "lib": lib.name(), "cycles_per_s": cps, "wait_p50_ms": w50, "wait_p99_ms": w99, "wait_max_ms": wmax, "server_cmds_per_attempt_node": cmds, "max_holders": holders}));
    }
    out.json.insert("s3".into(), json.into());
}

fn report_s4(out: &mut Out, t: &BTreeMap<(&'static str, Lib), Vec<Run>>) {
    let _ = writeln!(out.md, "\n## S4 a sick node among 5 (acquire latency)\n");
    let _ = writeln!(
        out.md,
        "| case | library | acquire p50 | acquire p99 | p50 / healthy p50 |"
    );
    let _ = writeln!(out.md, "|---|---|---|---|---|");
    let mut json = Vec::new();
    for ((case, lib), runs) in t {
        let a50: Vec<f64> = runs.iter().map(|r| us(pct(&r.acquire, 0.5))).collect();
        let a99: Vec<f64> = runs.iter().map(|r| us(pct(&r.acquire, 0.99))).collect();
        let healthy = t
            .get(&("healthy", *lib))
            .map(|r| median(r.iter().map(|r| us(pct(&r.acquire, 0.5))).collect()))
            .unwrap_or(1.0);
        let ratio = median(a50.clone()) / healthy;
        let u = |x: f64| format!("{x:.0} µs");
        let _ = writeln!(
            out.md,
            "| {case} | {} | {} | {} | {ratio:.2}x |",
            lib.name(),
            reps_fmt(&a50, u),
            reps_fmt(&a99, u)
        );
        json.push(serde_json::json!({"case": case, "lib": lib.name(), "acquire_p50_us": a50, "acquire_p99_us": a99, "ratio_to_healthy": ratio}));
    }
    out.json.insert("s4".into(), json.into());
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn report_memory(out: &mut Out) {
    let cluster = start_cluster(5);
    let rt = runtime(false);
    let redlock = quorumlock::Redlock::builder()
        .nodes(cluster.urls())
        .build()
        .unwrap();
    let (per_guard, n) = rt.block_on(async {
        let hold = |prefix: &'static str, n: usize| {
            let redlock = redlock.clone();
            async move {
                let mut guards = Vec::with_capacity(n);
                for i in 0..n {
                    let name = format!("mem:{prefix}:{i}");
                    guards.push(
                        redlock
                            .acquire_guard(&name, Duration::from_secs(600))
                            .await
                            .unwrap(),
                    );
                }
                guards
            }
        };
        let warm = hold("warm", 100).await;
        let before = rss_kib();
        let guards = hold("held", 10_000).await;
        let after = rss_kib();
        let per = (after.saturating_sub(before)) as f64 * 1024.0 / 10_000.0;
        for g in guards.into_iter().chain(warm) {
            g.forget();
        }
        (per, 10_000)
    });
    let _ = writeln!(out.md, "\n## Memory\n\nRSS growth with {n} guards held (each with its watchdog task): {per_guard:.0} bytes per guard.");
    out.json.insert("bytes_per_guard".into(), per_guard.into());
}
