//! `cargo run --release -p quorumlock-bench -- [--quick] [--out DIR]`
//!
//! Starts its own redis-server nodes (client pinned to CPU 0, servers to CPU 1) and measures
//! quorumlock against the raw ceiling (a hand-written client, raw.rs) in three forms and rslock:
//! - S1 uncontended latency (acquire, release), one task;
//! - S2 throughput with several tasks on their own keys, and the server's cost per acquisition
//!   (acquisitions only: a plain `SET NX PX` against the tombstone script);
//! - S3 contention: 16 tasks on one key, in one process or in 4 processes of 4 tasks;
//! - S4 a sick node among 5: one paused (SIGSTOP), one behind 20 ms of latency.
//!
//! Repetitions are interleaved between clients (the order rotates each repetition); the
//! reports give medians with every repetition, and ratios taken within a repetition. Besides
//! time: client CPU per cycle (getrusage), the servers' commands and CPU (`INFO`), which noise
//! moves far less. Writes `results.md`, `results.json` and SVG plots into `--out`.
//! Never part of a test's pass/fail.

mod footprint;
mod harness;
mod libs;
mod outage;
mod plot;
mod raw;
mod report;
mod scale;
mod scenarios;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use harness::{measure, pin, runtime, start_cluster, Run, CLIENT_CPU};
use libs::{Client, Lib};
use quorumlock_testkit::{Direction, Fault, Proxy};
use scenarios::TTL;

#[derive(Parser)]
#[command(about = "Benchmarks quorumlock against a hand-written raw ceiling and rslock")]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Where results.md, results.json and the plots go.
    #[arg(long, default_value = "target/bench")]
    out: String,
    /// Shorter runs (about a quarter of the samples): a smoke run, noisier.
    #[arg(long)]
    quick: bool,
    /// Repetitions of every measurement.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Cluster sizes for S1, S2 and S3.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5")]
    nodes: Vec<usize>,
    /// Concurrent tasks for S2.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    tasks: Vec<usize>,
    /// Scenarios to run.
    #[arg(long, value_delimiter = ',', default_value = "s1,s2,cost,s3,s4,memory")]
    only: Vec<Scenario>,
    /// Also run S1 on a 2-thread runtime.
    #[arg(long)]
    multi_thread: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    S1,
    S2,
    Cost,
    S3,
    S4,
    Memory,
}

#[derive(Subcommand)]
enum Cmd {
    /// One client in a loop, for a profiler: S1 cycles (`--tasks 0`) or S2 for `--secs`.
    /// Prints client CPU and heap allocations per cycle.
    Profile {
        #[arg(long, value_enum, default_value = "quorumlock")]
        lib: Lib,
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long, default_value_t = 0)]
        tasks: usize,
        #[arg(long, default_value_t = 5000)]
        cycles: usize,
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// S2 on 3 members of 1 shard against 3 members of 3 shards (Redis Cluster members):
    /// cycles per second and server CPU per lock cycle per shard. Writes `scale.md` to `--out`.
    Scale {
        #[arg(long, default_value_t = 3)]
        reps: usize,
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        #[arg(long, default_value_t = 64)]
        tasks: usize,
    },
    /// What quorumlock's keys cost three local nodes (bytes per held lock, tombstone, fence
    /// counter, waiter) through a churn of `--resources` distinct names, and whether `DBSIZE`
    /// returns to its start once every documented TTL has run out (exit 1 if not). Writes
    /// `footprint.md` to `--out`.
    Footprint {
        /// Distinct resource names to churn through.
        #[arg(long, default_value_t = 1_000_000)]
        resources: usize,
        /// Concurrent tasks.
        #[arg(long, default_value_t = 64)]
        tasks: usize,
        /// Keys of each kind held at once to measure bytes per key.
        #[arg(long, default_value_t = 100_000)]
        sample: usize,
        /// Waiting lines (one waiter each) held at once to measure bytes per waiter.
        #[arg(long, default_value_t = 1000)]
        waiters: usize,
        /// Fence horizon of the churn's fenced client, in seconds.
        #[arg(long, default_value_t = 5)]
        fence_horizon: u64,
        /// Lock TTL in the churn, in ms.
        #[arg(long, default_value_t = 2000)]
        ttl_ms: u64,
        /// Lock TTL (and fence horizon) of the keys held to measure bytes per key, in seconds:
        /// longer than it takes to write `--sample` of them.
        #[arg(long, default_value_t = 30)]
        hold_secs: u64,
        /// Node timeout of every client, in ms.
        #[arg(long, default_value_t = 250)]
        node_timeout_ms: u64,
        /// Allowed beyond a documented bound for the server to reclaim expired keys, in seconds.
        #[arg(long, default_value_t = 30)]
        expiry_slack: u64,
    },
    /// Issue 21's trial figures on local nodes: shutdown with a node down from the start, time
    /// to fail and requests per second with two of three nodes down, for the default policy
    /// and a fail-fast one. Prints a table.
    Outage {
        /// Seconds per rate measurement (at least 6 for the default policy with a majority
        /// down, whose requests take 5 s each).
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// A worker process of the multi-process S3 (started by the benchmark itself).
    #[command(hide = true)]
    S3Worker {
        #[arg(long, value_enum)]
        lib: Lib,
        #[arg(long, value_delimiter = ',')]
        urls: Vec<String>,
        #[arg(long)]
        key: String,
        #[arg(long)]
        tasks: usize,
        #[arg(long)]
        ms: u64,
    },
}

/// Counts heap allocations, so the profile mode can report allocations per lock cycle.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

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

/// Every measurement of one run, keyed by what varies.
#[derive(Default)]
pub struct Results {
    /// (N, client, multi-thread runtime)
    pub s1: BTreeMap<(usize, Lib, bool), Vec<Run>>,
    /// (N, client, tasks)
    pub s2: BTreeMap<(usize, Lib, usize), Vec<Run>>,
    /// (N, client): acquisitions only, 64 tasks.
    pub cost: BTreeMap<(usize, Lib), Vec<Run>>,
    /// (N, client, processes)
    pub s3: BTreeMap<(usize, Lib, usize), Vec<Run>>,
    pub s4: BTreeMap<(&'static str, Lib), Vec<Run>>,
    pub bytes_per_guard: Option<f64>,
}

/// `libs` in the order of repetition `rep`: rotated, so no client always runs first.
fn rotated(libs: &[Lib], rep: usize) -> Vec<Lib> {
    let mut v = libs.to_vec();
    v.rotate_left(rep % libs.len().max(1));
    v
}

fn main() {
    let args = Args::parse();
    match args.command {
        Some(Cmd::S3Worker {
            lib,
            urls,
            key,
            tasks,
            ms,
        }) => return scenarios::worker(lib, &urls, &key, tasks, Duration::from_millis(ms)),
        Some(Cmd::Profile {
            lib,
            nodes,
            tasks,
            cycles,
            secs,
        }) => return profile(lib, nodes, tasks, cycles, secs),
        Some(Cmd::Scale { reps, secs, tasks }) => {
            pin(0, CLIENT_CPU);
            return scale::scale(&args.out, reps, secs, tasks);
        }
        Some(Cmd::Footprint {
            resources,
            tasks,
            sample,
            waiters,
            fence_horizon,
            ttl_ms,
            hold_secs,
            node_timeout_ms,
            expiry_slack,
        }) => {
            pin(0, CLIENT_CPU);
            std::process::exit(footprint::footprint(footprint::Options {
                resources,
                tasks,
                sample,
                waiters,
                fence_horizon: Duration::from_secs(fence_horizon),
                churn_ttl: Duration::from_millis(ttl_ms),
                hold_ttl: Duration::from_secs(hold_secs),
                node_timeout: Duration::from_millis(node_timeout_ms),
                expiry_slack: Duration::from_secs(expiry_slack),
                out: args.out.clone(),
            }));
        }
        Some(Cmd::Outage { secs }) => std::process::exit(outage::outage(secs)),
        None => {}
    }
    std::fs::create_dir_all(&args.out).unwrap();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get()); // before pinning
    pin(0, CLIENT_CPU);
    let q = |quick: u64, full: u64| if args.quick { quick } else { full };
    let s1_cycles = q(500, 2000) as usize;
    let s2_dur = Duration::from_millis(q(250, 700));
    let s3_dur = Duration::from_millis(q(1000, 3000));
    let run = |s| args.only.contains(&s);
    let started = Instant::now();
    let mut r = Results::default();

    for &n in &args.nodes {
        let cluster = start_cluster(n);
        for multi in [false, true] {
            if multi && !args.multi_thread {
                continue;
            }
            let rt = runtime(multi);
            let clients: BTreeMap<Lib, Client> = Lib::CYCLING
                .iter()
                .map(|l| (*l, rt.block_on(Client::new(*l, &cluster.urls(), TTL))))
                .collect();
            for (lib, c) in &clients {
                rt.block_on(scenarios::warm(c, 200, &format!("{n}:{lib:?}:{multi}")));
            }
            for rep in 0..args.reps {
                let order = rotated(&Lib::CYCLING, rep);
                let settle = |c: &Client| rt.block_on(c.settle());
                if run(Scenario::S1) {
                    for lib in &order {
                        let (c, tag) = (&clients[lib], format!("{n}:{lib:?}:{multi}:{rep}"));
                        let m = measure(
                            &cluster,
                            || rt.block_on(scenarios::s1(c, s1_cycles, &tag)),
                            || settle(c),
                        );
                        r.s1.entry((n, *lib, multi)).or_default().push(m);
                    }
                }
                if multi {
                    continue;
                }
                for &tasks in args.tasks.iter().filter(|_| run(Scenario::S2)) {
                    for lib in &order {
                        let (c, tag) = (&clients[lib], format!("{n}:{lib:?}:{tasks}:{rep}"));
                        let work = || rt.block_on(scenarios::s2(c, tasks, s2_dur, &tag, false));
                        let m = measure(&cluster, work, || settle(c));
                        r.s2.entry((n, *lib, tasks)).or_default().push(m);
                    }
                }
                if run(Scenario::Cost) {
                    for lib in rotated(&[Lib::Quorumlock, Lib::Raw, Lib::RawScripts], rep) {
                        let (c, tag) = (&clients[&lib], format!("cost:{n}:{lib:?}:{rep}"));
                        let work = || rt.block_on(scenarios::s2(c, 64, s2_dur, &tag, true));
                        let m = measure(&cluster, work, || settle(c));
                        r.cost.entry((n, lib)).or_default().push(m);
                    }
                }
            }
        }
        if run(Scenario::S3) {
            let rt = runtime(false);
            let libs = [Lib::Quorumlock, Lib::QuorumlockWake, Lib::Rslock];
            let clients: BTreeMap<Lib, Client> = libs
                .iter()
                .map(|l| (*l, rt.block_on(Client::new(*l, &cluster.urls(), TTL))))
                .collect();
            for rep in 0..args.reps {
                // One process of 16 tasks per client, and quorumlock with wake-on-release in 4
                // processes of 4 tasks.
                let mut cases: Vec<(Lib, usize)> = libs.iter().map(|l| (*l, 1)).collect();
                cases.push((Lib::QuorumlockWake, 4));
                let k = rep % cases.len();
                cases.rotate_left(k);
                for (lib, procs) in cases {
                    let key = format!("s3:{n}:{lib:?}:{procs}:{rep}");
                    let c = &clients[&lib];
                    let work = || {
                        if procs == 1 {
                            rt.block_on(scenarios::contend(c, &key, 16, s3_dur))
                        } else {
                            scenarios::contend_processes(
                                lib,
                                &cluster.urls(),
                                &key,
                                procs,
                                16 / procs,
                                s3_dur,
                            )
                        }
                    };
                    let m = measure(&cluster, work, || rt.block_on(c.settle()));
                    r.s3.entry((n, lib, procs)).or_default().push(m);
                }
            }
        }
        eprintln!("N={n} done at {:.0?}", started.elapsed());
    }
    if run(Scenario::S4) {
        s4(&mut r, &args, if args.quick { 100 } else { 300 });
        eprintln!("S4 done at {:.0?}", started.elapsed());
    }
    if run(Scenario::Memory) {
        let cluster = start_cluster(5);
        let per = runtime(false).block_on(scenarios::memory_per_guard(cluster.urls(), 10_000));
        r.bytes_per_guard = Some(per);
    }
    let machine = format!(
        "{cpus} CPUs (client pinned to CPU {CLIENT_CPU}, redis-servers to CPU {}); {}; {} repetitions{}",
        harness::SERVER_CPU,
        redis_version(),
        args.reps,
        if args.quick { ", --quick" } else { "" }
    );
    let (md, json) = report::render(&r, &machine, started.elapsed());
    std::fs::write(format!("{}/results.md", args.out), &md).unwrap();
    std::fs::write(format!("{}/results.json", args.out), json).unwrap();
    plot::all(&args.out, &r);
    println!("{md}");
    eprintln!("wrote {}/results.md, results.json and SVG plots", args.out);
}

fn redis_version() -> String {
    let out = std::process::Command::new("redis-server")
        .arg("--version")
        .output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    })
    .unwrap_or_default()
}

/// S4: S1 through proxies, with one of five nodes healthy, paused, or 20 ms slow.
fn s4(r: &mut Results, args: &Args, cycles: usize) {
    let cluster = start_cluster(5);
    let proxies: Vec<Proxy> = (0..5).map(|i| Proxy::start(cluster.port(i)).unwrap()).collect();
    let urls: Vec<String> = proxies.iter().map(Proxy::url).collect();
    let rt = runtime(false);
    let libs = [Lib::Quorumlock, Lib::Raw, Lib::RawWaitAll, Lib::Rslock];
    let clients: BTreeMap<Lib, Client> = libs
        .iter()
        .map(|l| (*l, rt.block_on(Client::new(*l, &urls, TTL))))
        .collect();
    for case in ["healthy", "one paused", "one +20 ms"] {
        match case {
            "one paused" => cluster.pause(4).unwrap(),
            "one +20 ms" => proxies[4].set(Direction::Replies, Fault::Delay(Duration::from_millis(20))),
            _ => {}
        }
        for rep in 0..args.reps {
            for lib in rotated(&libs, rep) {
                let (c, tag) = (&clients[&lib], format!("s4:{case}:{lib:?}:{rep}"));
                rt.block_on(scenarios::warm(c, 20, &tag));
                let work = || rt.block_on(scenarios::s1(c, cycles, &tag));
                let m = measure(&cluster, work, || rt.block_on(c.settle()));
                r.s4.entry((case, lib)).or_default().push(m);
            }
        }
        match case {
            "one paused" => cluster.resume(4).unwrap(),
            "one +20 ms" => proxies[4].heal(),
            _ => {}
        }
    }
}

/// The profile loop: `perf record -g -- target/release/quorumlock-bench profile --nodes 1`, or
/// under `valgrind --tool=callgrind` with two `--cycles` values: the difference divided by the
/// difference in cycles leaves out start-up. S1 here runs exactly 200 warm-up cycles and then
/// exactly `cycles` (no time cap), so that difference is exact.
fn profile(lib: Lib, nodes: usize, tasks: usize, cycles: usize, secs: u64) {
    let cluster = start_cluster(nodes);
    let rt = runtime(false);
    let client = rt.block_on(Client::new(lib, &cluster.urls(), TTL));
    rt.block_on(async {
        for i in 0..200 {
            client.cycle(&format!("profile:warm:{i}"), TTL).await;
        }
        client.settle().await;
    });
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let work = || {
        rt.block_on(async {
            if tasks > 0 {
                return scenarios::s2(&client, tasks, Duration::from_secs(secs), "profile", false).await;
            }
            let mut s = harness::Samples::default();
            for i in 0..cycles {
                s.acquire.push(client.cycle(&format!("profile:{i}"), TTL).await.0);
            }
            s.cycles = cycles as u64;
            s
        })
    };
    let m = measure(&cluster, work, || rt.block_on(client.settle()));
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
    eprintln!(
        "{}: N={nodes} tasks={tasks}: {} cycles in {:.2?}, client CPU {:.1} µs/cycle, {:.1} allocations/cycle, acquire p50 {:.0} µs",
        lib.name(),
        m.s.cycles,
        m.wall,
        m.cpu_per_cycle_us(),
        allocs as f64 / m.s.cycles.max(1) as f64,
        harness::us(harness::pct(&m.s.acquire, 0.5)),
    );
}
