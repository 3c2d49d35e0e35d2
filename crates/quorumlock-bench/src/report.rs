//! The Markdown and JSON reports. Every cell is the median over repetitions with each
//! repetition in brackets; a ratio is taken within each repetition (the two runs it compares ran
//! next to each other), then its median is reported.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{median, pct, us, Run};
use crate::libs::Lib;
use crate::Results;

/// The task count of the S2 targets.
pub const TARGET_TASKS: usize = 64;

fn col(runs: &[Run], f: impl Fn(&Run) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

/// `median [rep, rep, ...]`
fn reps(v: &[f64], f: impl Fn(f64) -> String) -> String {
    let all: Vec<String> = v.iter().map(|x| f(*x)).collect();
    format!("{} [{}]", f(median(v.to_vec())), all.join(", "))
}

/// Per-repetition ratios `f(a) / f(b)`.
fn ratios(a: &[Run], b: &[Run], f: impl Fn(&Run) -> f64) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| f(a) / f(b)).collect()
}

fn x(v: f64) -> String {
    format!("{v:.2}x")
}
fn pc(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}
fn micros(v: f64) -> String {
    format!("{v:.0} µs")
}
fn micros1(v: f64) -> String {
    format!("{v:.1} µs")
}
fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

fn p50(r: &Run) -> f64 {
    us(pct(&r.s.acquire, 0.5))
}

fn header(md: &mut String, title: &str, cols: &[&str]) {
    let _ = writeln!(
        md,
        "\n## {title}\n\n| {} |\n|{}",
        cols.join(" | "),
        "---|".repeat(cols.len())
    );
}

pub fn render(r: &Results, machine: &str, elapsed: Duration) -> (String, String) {
    let mut md = format!("Machine: {machine}. Medians, with every repetition in brackets.\n");
    let mut js = serde_json::Map::new();
    targets(&mut md, r);
    if !r.s1.is_empty() {
        s1(&mut md, &mut js, r);
    }
    if !r.s2.is_empty() {
        s2(&mut md, &mut js, r);
    }
    if !r.cost.is_empty() {
        cost(&mut md, &mut js, r);
    }
    if !r.s3.is_empty() {
        s3(&mut md, &mut js, r);
    }
    if !r.s4.is_empty() {
        s4(&mut md, &mut js, r);
    }
    if let Some(b) = r.bytes_per_guard {
        let _ = writeln!(md, "\n## Memory\n\nRSS growth with 10000 guards held (each with its watchdog task): {b:.0} bytes per guard.");
        js.insert("bytes_per_guard".into(), b.into());
    }
    let failed = crate::libs::FAILED_UNCONTENDED.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(
        md,
        "\nUncontended attempts that failed (node timeouts of 100 ms on the loaded machine; retried, their time counted): {failed}.\n\nTotal run time: {:.0?}.",
        elapsed
    );
    (md, serde_json::to_string_pretty(&js).unwrap())
}

/// The three targets against the ceiling, and the script's share.
fn targets(md: &mut String, r: &Results) {
    let cols = [
        "N",
        "comparison",
        "S1 acquire p50",
        "S2 cycles/s (64 tasks)",
        "S2 client CPU / cycle (64 tasks)",
    ];
    header(md, "Against the ceiling (ratios within each repetition)", &cols);
    let pairs = [
        (
            Lib::Quorumlock,
            Lib::Raw,
            "quorumlock / raw ceiling (targets: <= 1.05x, >= 95%, <= 1.1x)",
        ),
        (
            Lib::RawScripts,
            Lib::Raw,
            "raw + scripts / raw ceiling (the scripts' cost)",
        ),
        (
            Lib::Quorumlock,
            Lib::RawScripts,
            "quorumlock / raw + scripts (library overhead)",
        ),
        (Lib::RawWaitAll, Lib::Raw, "raw, waits for all / raw ceiling"),
    ];
    let ns: Vec<usize> = r.s1.keys().map(|k| k.0).chain(r.s2.keys().map(|k| k.0)).collect();
    let ns: std::collections::BTreeSet<usize> = ns.into_iter().collect();
    for n in ns {
        for (a, b, what) in pairs {
            let s1 = match (r.s1.get(&(n, a, false)), r.s1.get(&(n, b, false))) {
                (Some(a), Some(b)) => reps(&ratios(a, b, p50), x),
                _ => "-".into(),
            };
            let (cps, cpu) = match (r.s2.get(&(n, a, TARGET_TASKS)), r.s2.get(&(n, b, TARGET_TASKS))) {
                (Some(a), Some(b)) => (
                    reps(&ratios(a, b, Run::cycles_per_s), pc),
                    reps(&ratios(a, b, Run::cpu_per_cycle_us), x),
                ),
                _ => ("-".into(), "-".into()),
            };
            let _ = writeln!(md, "| {n} | {what} | {s1} | {cps} | {cpu} |");
        }
    }
}

fn s1(md: &mut String, js: &mut serde_json::Map<String, Value>, r: &Results) {
    let cols = [
        "N",
        "client",
        "runtime",
        "acquire p50",
        "vs ceiling",
        "acquire p99",
        "acquire p99.9",
        "release p50",
        "client CPU / cycle",
        "server cmds / cycle / node",
    ];
    header(md, "S1 uncontended latency (one task, fresh keys)", &cols);
    let mut out = Vec::new();
    for ((n, lib, multi), runs) in &r.s1 {
        let ceiling = r.s1.get(&(*n, Lib::Raw, *multi));
        let vs = ceiling.map_or("-".into(), |c| reps(&ratios(runs, c, p50), x));
        let a50 = col(runs, p50);
        let a99 = col(runs, |r| us(pct(&r.s.acquire, 0.99)));
        let a999 = col(runs, |r| us(pct(&r.s.acquire, 0.999)));
        let r50 = col(runs, |r| us(pct(&r.s.release, 0.5)));
        let cpu = col(runs, Run::cpu_per_cycle_us);
        let cmds = col(runs, Run::cmds_per_cycle_node);
        let rt = if *multi { "multi-thread" } else { "current-thread" };
        let _ = writeln!(
            md,
            "| {n} | {} | {rt} | {} | {vs} | {} | {} | {} | {} | {:.2} |",
            lib.name(),
            reps(&a50, micros),
            reps(&a99, micros),
            reps(&a999, micros),
            reps(&r50, micros),
            reps(&cpu, micros1),
            median(cmds),
        );
        out.push(
            json!({"n": n, "lib": lib.name(), "multi_thread": multi, "acquire_p50_us": a50,
            "acquire_p99_us": a99, "acquire_p999_us": a999, "release_p50_us": r50, "cpu_per_cycle_us": cpu}),
        );
    }
    js.insert("s1".into(), out.into());
}

fn s2(md: &mut String, js: &mut serde_json::Map<String, Value>, r: &Results) {
    let cols = [
        "N",
        "client",
        "tasks",
        "cycles/s",
        "vs ceiling",
        "client CPU / cycle",
        "vs ceiling",
        "server CPU / cycle / node",
        "server cmds / cycle / node",
    ];
    header(
        md,
        "S2 throughput (tasks on their own keys, current-thread runtime)",
        &cols,
    );
    let mut out = Vec::new();
    for ((n, lib, tasks), runs) in &r.s2 {
        let (vs_cps, vs_cpu) = match r.s2.get(&(*n, Lib::Raw, *tasks)) {
            Some(c) => (
                reps(&ratios(runs, c, Run::cycles_per_s), pc),
                reps(&ratios(runs, c, Run::cpu_per_cycle_us), x),
            ),
            None => ("-".into(), "-".into()),
        };
        let cps = col(runs, Run::cycles_per_s);
        let cpu = col(runs, Run::cpu_per_cycle_us);
        let scpu = col(runs, Run::server_cpu_per_cycle_node);
        let _ = writeln!(
            md,
            "| {n} | {} | {tasks} | {} | {vs_cps} | {} | {vs_cpu} | {} | {:.2} |",
            lib.name(),
            reps(&cps, |v| format!("{v:.0}")),
            reps(&cpu, micros1),
            reps(&scpu, micros1),
            median(col(runs, Run::cmds_per_cycle_node)),
        );
        out.push(
            json!({"n": n, "lib": lib.name(), "tasks": tasks, "cycles_per_s": cps,
            "cpu_per_cycle_us": cpu, "server_cpu_per_cycle_node_us": scpu}),
        );
    }
    js.insert("s2".into(), out.into());
}

/// Server cost of one acquisition: 64 tasks acquiring fresh keys, never releasing.
fn cost(md: &mut String, js: &mut serde_json::Map<String, Value>, r: &Results) {
    let cols = [
        "N",
        "client",
        "acquire command",
        "acquisitions/s",
        "server CPU / acquisition / node",
        "vs plain SET",
        "usec_per_call of the acquire command",
        "server cmds / acquisition / node",
    ];
    header(md, "Server cost of an acquisition: plain SET NX PX vs the tombstone script (64 tasks, acquisitions only)", &cols);
    let mut out = Vec::new();
    for ((n, lib), runs) in &r.cost {
        let command = if *lib == Lib::Raw { "set" } else { "evalsha" };
        let per_call = col(runs, |r| {
            let (calls, usec) = r.server.per_command.get(command).copied().unwrap_or_default();
            usec as f64 / calls.max(1) as f64
        });
        let scpu = col(runs, Run::server_cpu_per_cycle_node);
        let vs = r.cost.get(&(*n, Lib::Raw)).map_or("-".into(), |c| {
            reps(&ratios(runs, c, Run::server_cpu_per_cycle_node), x)
        });
        let _ = writeln!(
            md,
            "| {n} | {} | {} | {} | {} | {vs} | {} | {:.2} |",
            lib.name(),
            if *lib == Lib::Raw {
                "SET NX PX"
            } else {
                "EVALSHA acquire.lua"
            },
            reps(&col(runs, Run::cycles_per_s), |v| format!("{v:.0}")),
            reps(&scpu, |v| format!("{v:.2} µs")),
            reps(&per_call, |v| format!("{v:.2} µs")),
            median(col(runs, Run::cmds_per_cycle_node)),
        );
        out.push(json!({"n": n, "lib": lib.name(), "server_cpu_per_acquisition_node_us": scpu, "usec_per_call": per_call}));
    }
    js.insert("server_cost".into(), out.into());
}

fn s3(md: &mut String, js: &mut serde_json::Map<String, Value>, r: &Results) {
    let cols = [
        "N",
        "client",
        "processes x tasks",
        "cycles/s",
        "wait p50",
        "wait p99",
        "p99 / p50",
        "wait max",
        "server cmds / attempt / node",
        "server cmds / grant / node",
        "max holders at once",
    ];
    header(
        md,
        "S3 contention (16 tasks, one key, 1 ms critical section)",
        &cols,
    );
    let mut out = Vec::new();
    for ((n, lib, procs), runs) in &r.s3 {
        let w = |p: f64| col(runs, move |r| us(pct(&r.s.waits, p)) / 1e3);
        let (w50, w99, wmax) = (w(0.5), w(0.99), w(1.0));
        let spread: Vec<f64> = w99.iter().zip(&w50).map(|(a, b)| a / b).collect();
        let per_attempt: Option<Vec<f64>> = runs.iter().map(Run::cmds_per_attempt_node).collect();
        let holders = runs.iter().map(Run::max_holders).max().unwrap_or(0);
        let _ = writeln!(
            md,
            "| {n} | {} | {procs} x {} | {} | {} | {} | {} | {} | {} | {} | {holders} |",
            lib.name(),
            16 / procs,
            reps(&col(runs, Run::cycles_per_s), |v| format!("{v:.0}")),
            reps(&w50, ms),
            reps(&w99, ms),
            reps(&spread, |v| format!("{v:.2}")),
            reps(&wmax, ms),
            per_attempt.map_or("not counted".into(), |v| reps(&v, |v| format!("{v:.2}"))),
            reps(&col(runs, Run::cmds_per_cycle_node), |v| format!("{v:.1}")),
        );
        out.push(
            json!({"n": n, "lib": lib.name(), "processes": procs, "wait_p50_ms": w50,
            "wait_p99_ms": w99, "wait_max_ms": wmax, "max_holders": holders}),
        );
    }
    js.insert("s3".into(), out.into());
}

fn s4(md: &mut String, js: &mut serde_json::Map<String, Value>, r: &Results) {
    header(
        md,
        "S4 a sick node among 5 (acquire latency)",
        &[
            "case",
            "client",
            "acquire p50",
            "acquire p99",
            "p50 / healthy p50",
        ],
    );
    let mut out = Vec::new();
    let by_case: BTreeMap<_, _> = r.s4.iter().map(|((c, l), v)| ((*c, *l), v)).collect();
    for ((case, lib), runs) in by_case {
        let a50 = col(runs, p50);
        let a99 = col(runs, |r| us(pct(&r.s.acquire, 0.99)));
        let healthy =
            r.s4.get(&("healthy", lib))
                .map_or(f64::NAN, |h| median(col(h, p50)));
        let ratio = median(a50.clone()) / healthy;
        let _ = writeln!(
            md,
            "| {case} | {} | {} | {} | {ratio:.2}x |",
            lib.name(),
            reps(&a50, micros),
            reps(&a99, micros)
        );
        out.push(json!({"case": case, "lib": lib.name(), "acquire_p50_us": a50, "acquire_p99_us": a99}));
    }
    js.insert("s4".into(), out.into());
}
