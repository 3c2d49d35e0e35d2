//! The one measuring scaffold: every scenario hands [`measure`] a workload, and gets back a
//! [`Run`] with wall time, client CPU (getrusage) and the nodes' own counters (`INFO`) around
//! it. Plus the small helpers every scenario shares: pinning, the runtime, percentiles.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use quorumlock_testkit::LocalCluster;

/// The client runs on this CPU, every redis-server on [`SERVER_CPU`].
pub const CLIENT_CPU: usize = 0;
pub const SERVER_CPU: usize = 1;

pub fn pin(pid: libc::pid_t, cpu: usize) {
    // SAFETY: plain syscalls on a zeroed cpu_set_t for our own process or our own children.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPU time (user + system) of this process and of its children that have been waited for:
/// worker processes (the multi-process S3) count as client CPU once they have exited.
pub fn cpu_time() -> Duration {
    let get = |who| {
        // SAFETY: getrusage fills a zeroed struct we own.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut ru);
            ru
        };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    get(libc::RUSAGE_SELF) + get(libc::RUSAGE_CHILDREN)
}

/// The system-wide monotonic clock in nanoseconds: comparable between processes, so holder
/// intervals from several worker processes can be checked for overlap.
pub fn mono_ns() -> u64 {
    // SAFETY: clock_gettime fills a zeroed struct we own.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts
    };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn start_cluster(n: usize) -> LocalCluster {
    let cluster = LocalCluster::start(n).expect("redis-server");
    for i in 0..n {
        pin(cluster.pid(i).unwrap() as libc::pid_t, SERVER_CPU);
    }
    cluster
}

pub fn runtime(multi: bool) -> tokio::runtime::Runtime {
    let mut b = if multi {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().unwrap()
}

/// The nodes' counters at one moment, summed over nodes.
#[derive(Clone, Debug, Default)]
pub struct ServerStats {
    /// `total_commands_processed` (commands run by scripts count too).
    pub commands: u64,
    /// `used_cpu_user + used_cpu_sys`, in µs.
    pub cpu_us: f64,
    /// `INFO commandstats`: command -> (calls, usec). A script's usec includes the commands it
    /// runs, which are also counted under their own names.
    pub per_command: BTreeMap<String, (u64, u64)>,
}

fn info(port: u16) -> redis::RedisResult<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut c = client.get_connection_with_timeout(Duration::from_millis(200))?;
    c.set_read_timeout(Some(Duration::from_millis(200)))?;
    redis::cmd("INFO")
        .arg("stats")
        .arg("cpu")
        .arg("commandstats")
        .query(&mut c)
}

impl ServerStats {
    /// A node that does not answer within 200 ms (paused, in S4) is left out.
    pub fn take(cluster: &LocalCluster) -> Self {
        Self::take_ports((0..cluster.len()).map(|i| cluster.port(i)))
    }

    /// The same, for the servers on `ports` (the shards of clustered members).
    pub fn take_ports(ports: impl IntoIterator<Item = u16>) -> Self {
        let mut s = Self::default();
        for port in ports {
            let Ok(text) = info(port) else { continue };
            for line in text.lines() {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                match name {
                    "total_commands_processed" => s.commands += value.trim().parse().unwrap_or(0),
                    "used_cpu_user" | "used_cpu_sys" => {
                        s.cpu_us += value.trim().parse::<f64>().unwrap_or(0.0) * 1e6
                    }
                    _ => {
                        if let Some(cmd) = name.strip_prefix("cmdstat_") {
                            let field = |k: &str| {
                                value
                                    .split(',')
                                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                                    .and_then(|v| v.parse::<u64>().ok())
                                    .unwrap_or(0)
                            };
                            let e = s.per_command.entry(cmd.to_owned()).or_default();
                            e.0 += field("calls");
                            e.1 += field("usec");
                        }
                    }
                }
            }
        }
        s
    }

    /// What happened between `before` and `self`, minus the `INFO` calls themselves.
    pub fn since(&self, before: &Self) -> Self {
        let mut per_command = BTreeMap::new();
        for (k, (calls, usec)) in &self.per_command {
            let (c0, u0) = before.per_command.get(k).copied().unwrap_or_default();
            if k != "info" && calls > &c0 {
                per_command.insert(k.clone(), (calls - c0, usec.saturating_sub(u0)));
            }
        }
        let info_calls = |s: &Self| s.per_command.get("info").map_or(0, |c| c.0);
        let infos = info_calls(self).saturating_sub(info_calls(before));
        Self {
            commands: self
                .commands
                .saturating_sub(before.commands)
                .saturating_sub(infos),
            cpu_us: (self.cpu_us - before.cpu_us).max(0.0),
            per_command,
        }
    }
}

/// What a workload reports.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    pub acquire: Vec<Duration>,
    pub release: Vec<Duration>,
    pub waits: Vec<Duration>,
    /// Lock cycles (or, in the server-cost scenario, acquisitions) completed.
    pub cycles: u64,
    /// Acquisition attempts, when the workload can count them.
    pub attempts: Option<u64>,
    /// Times the lock was held, `[start, end)` in [`mono_ns`], for the exclusion check.
    pub held: Vec<(u64, u64)>,
}

/// One measured run.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub s: Samples,
    pub wall: Duration,
    pub cpu: Duration,
    pub server: ServerStats,
    pub nodes: usize,
}

/// Runs `work` between two snapshots of the nodes' counters and of the clock and CPU time;
/// `settle` (run after the clock stops) waits for background work so the counts are complete.
pub fn measure(cluster: &LocalCluster, work: impl FnOnce() -> Samples, settle: impl FnOnce()) -> Run {
    let before = ServerStats::take(cluster);
    let (start, cpu) = (Instant::now(), cpu_time());
    let mut s = work();
    let (wall, cpu) = (start.elapsed(), cpu_time() - cpu);
    settle();
    let server = ServerStats::take(cluster).since(&before);
    s.acquire.sort();
    s.release.sort();
    s.waits.sort();
    Run {
        s,
        wall,
        cpu,
        server,
        nodes: cluster.len(),
    }
}

impl Run {
    pub fn cycles_per_s(&self) -> f64 {
        self.s.cycles as f64 / self.wall.as_secs_f64()
    }
    pub fn cpu_per_cycle_us(&self) -> f64 {
        us(self.cpu) / self.s.cycles.max(1) as f64
    }
    /// Server commands per cycle per node.
    pub fn cmds_per_cycle_node(&self) -> f64 {
        self.server.commands as f64 / self.s.cycles.max(1) as f64 / self.nodes.max(1) as f64
    }
    pub fn cmds_per_attempt_node(&self) -> Option<f64> {
        let a = self.s.attempts?;
        Some(self.server.commands as f64 / a.max(1) as f64 / self.nodes.max(1) as f64)
    }
    /// Server CPU per cycle per node, µs.
    pub fn server_cpu_per_cycle_node(&self) -> f64 {
        self.server.cpu_us / self.s.cycles.max(1) as f64 / self.nodes.max(1) as f64
    }
    /// The most holders at once, from the holding intervals.
    pub fn max_holders(&self) -> usize {
        let mut edges: Vec<(u64, i32)> = self.s.held.iter().flat_map(|&(a, b)| [(a, 1), (b, -1)]).collect();
        edges.sort(); // at equal times the end (-1) sorts first: touching intervals do not overlap
        let (mut now, mut max) = (0i32, 0i32);
        for (_, d) in edges {
            now += d;
            max = max.max(now);
        }
        max as usize
    }
}

pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
