//! `quorumlock-bench scale`: S2 on 3 members of 1 shard against 3 members of 3 shards (Redis
//! Cluster members, issue 14). Measures cycles per second and, per shard process, the server CPU
//! per lock cycle, to show how a member's work spreads over its shards. On this 2-core machine
//! every server shares one core, so the spread, not the throughput, is what carries over to a
//! production layout (docs/scaling.md works the estimate).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use quorumlock_testkit::{ClusterOptions, LocalCluster};

use crate::harness::{pin, runtime, ServerStats, SERVER_CPU};
use crate::libs::{Client, Lib};
use crate::scenarios::{self, TTL};

/// Every shard process of every member, as (member, shard, port).
fn shard_ports(cluster: &LocalCluster) -> Vec<(usize, usize, u16)> {
    (0..cluster.len())
        .flat_map(|i| (0..cluster.shards()).map(move |s| (i, s, cluster.shard_port(i, s))))
        .collect()
}

struct Layout {
    shards: usize,
    /// Per repetition: cycles per second, and server CPU µs per lock cycle for each shard.
    reps: Vec<(f64, Vec<f64>)>,
    /// Per repetition and shard: script calls (`INFO commandstats` of EVALSHA and EVAL) per lock
    /// cycle: how the member's requests spread over its shards. (The commands' own `usec` is
    /// wall time inside the server, which an oversubscribed core inflates, so it is not used.)
    scripts: Vec<Vec<f64>>,
}

pub fn scale(out: &str, reps: usize, secs: f64, tasks: usize) {
    let mut layouts = Vec::new();
    for shards in [1, 3] {
        let cluster =
            LocalCluster::start_with(3, ClusterOptions::default().shards(shards)).expect("redis-server");
        let ports = shard_ports(&cluster);
        for &(i, s, _) in &ports {
            pin(cluster.shard_pid(i, s).unwrap() as libc::pid_t, SERVER_CPU);
        }
        let rt = runtime(false);
        let client = rt.block_on(Client::new(Lib::Quorumlock, &cluster.urls(), TTL));
        rt.block_on(scenarios::warm(&client, 200, &format!("scale{shards}")));
        let mut layout = Layout {
            shards,
            reps: Vec::new(),
            scripts: Vec::new(),
        };
        for rep in 0..reps {
            let before: Vec<ServerStats> = ports.iter().map(|p| ServerStats::take_ports([p.2])).collect();
            let start = Instant::now();
            let dur = Duration::from_secs_f64(secs);
            let s = rt.block_on(scenarios::s2(
                &client,
                tasks,
                dur,
                &format!("scale{shards}:{rep}"),
                false,
            ));
            let wall = start.elapsed();
            rt.block_on(client.settle());
            let cycles = s.cycles.max(1) as f64;
            let deltas: Vec<ServerStats> = ports
                .iter()
                .zip(&before)
                .map(|(p, b)| ServerStats::take_ports([p.2]).since(b))
                .collect();
            let per_shard = deltas.iter().map(|d| d.cpu_us / cycles).collect();
            let scripts = deltas
                .iter()
                .map(|d| {
                    let calls: u64 = ["evalsha", "eval"]
                        .iter()
                        .filter_map(|c| d.per_command.get(*c))
                        .map(|(calls, _)| calls)
                        .sum();
                    calls as f64 / cycles
                })
                .collect();
            layout
                .reps
                .push((s.cycles as f64 / wall.as_secs_f64(), per_shard));
            layout.scripts.push(scripts);
        }
        layouts.push(layout);
    }
    let report = render(&layouts, tasks);
    print!("{report}");
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(format!("{out}/scale.md"), report).unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn render(layouts: &[Layout], tasks: usize) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# S2 on cluster members ({tasks} tasks, medians of {} repetitions)\n",
        layouts[0].reps.len()
    );
    let _ = writeln!(
        md,
        "| members x shards | cycles/s | server CPU per cycle, all shards (µs) | busiest shard (µs per cycle) | busiest shard's share of its member |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for l in layouts {
        let cps = median(l.reps.iter().map(|r| r.0).collect());
        let total = median(l.reps.iter().map(|r| r.1.iter().sum()).collect());
        let n = l.reps[0].1.len();
        let per_shard: Vec<f64> = (0..n)
            .map(|k| median(l.reps.iter().map(|r| r.1[k]).collect()))
            .collect();
        let busiest = per_shard.iter().copied().fold(0.0, f64::max);
        let member_of = |k: usize| k / l.shards;
        let busiest_k = per_shard.iter().position(|v| *v == busiest).unwrap_or(0);
        let member_total: f64 = (0..n)
            .filter(|k| member_of(*k) == member_of(busiest_k))
            .map(|k| per_shard[k])
            .sum();
        let _ = writeln!(
            md,
            "| 3 x {} | {cps:.0} | {total:.1} | {busiest:.1} | {:.0}% |",
            l.shards,
            100.0 * busiest / member_total.max(f64::MIN_POSITIVE)
        );
    }
    let _ = writeln!(
        md,
        "\nPer shard (member.shard): server CPU µs per lock cycle / script calls per lock cycle \
         (a lock cycle is one acquire and one release on every member):\n"
    );
    for l in layouts {
        let n = l.reps[0].1.len();
        let cells: Vec<String> = (0..n)
            .map(|k| {
                let v = median(l.reps.iter().map(|r| r.1[k]).collect());
                let sc = median(l.scripts.iter().map(|r| r[k]).collect());
                format!("{}.{}: {v:.1} / {sc:.2}", k / l.shards, k % l.shards)
            })
            .collect();
        let _ = writeln!(md, "- 3 x {}: {}", l.shards, cells.join(", "));
    }
    md
}
