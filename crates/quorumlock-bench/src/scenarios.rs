//! The workloads. Each returns [`Samples`]; [`crate::harness::measure`] wraps them.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{mono_ns, Samples};
use crate::libs::{Client, Lib};

pub const TTL: Duration = Duration::from_secs(10);

/// Warm-up before a measured run: at most `cycles` cycles and at most 500 ms (a client that
/// waits for a paused node needs no 200 warm-up cycles).
pub async fn warm(client: &Client, cycles: usize, tag: &str) {
    let t = Instant::now();
    for i in 0..cycles {
        client.cycle(&format!("warm:{tag}:{i}"), TTL).await;
        if t.elapsed() > Duration::from_millis(500) {
            break;
        }
    }
    client.settle().await;
}

/// S1: one task, acquire then release on fresh keys (at most `cycles`, and at most 5 s).
pub async fn s1(client: &Client, cycles: usize, tag: &str) -> Samples {
    let mut s = Samples::default();
    let start = Instant::now();
    for i in 0..cycles {
        let (a, r) = client.cycle(&format!("s1:{tag}:{i}"), TTL).await;
        s.acquire.push(a);
        s.release.push(r);
        if start.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    s.cycles = s.acquire.len() as u64;
    s.attempts = Some(s.cycles);
    s
}

/// S2: `tasks` tasks, each cycling on its own keys for `dur`; with `acquire_only`, acquisitions
/// left to expire instead of cycles (the server-cost scenario).
pub async fn s2(client: &Client, tasks: usize, dur: Duration, tag: &str, acquire_only: bool) -> Samples {
    let cycles = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (client, cycles, tag) = (client.clone(), cycles.clone(), tag.to_owned());
            tokio::spawn(async move {
                let mut i = 0u64;
                while start.elapsed() < dur {
                    let key = format!("s2:{tag}:{t}:{i}");
                    if acquire_only {
                        while !client.acquire_only(&key, TTL).await {
                            crate::libs::FAILED_UNCONTENDED.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        client.cycle(&key, TTL).await;
                    }
                    cycles.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let n = cycles.load(Ordering::SeqCst);
    Samples {
        cycles: n,
        attempts: Some(n),
        ..Samples::default()
    }
}

/// S3: `tasks` tasks on one key, 1 ms critical section; each retries (with the client's own
/// policy) until it holds the key, and the time from its first try is its wait.
pub async fn contend(client: &Client, key: &str, tasks: usize, dur: Duration) -> Samples {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (client, key) = (client.clone(), key.to_owned());
            tokio::spawn(async move {
                let mut s = Samples {
                    attempts: Some(0),
                    ..Samples::default()
                };
                while start.elapsed() < dur {
                    let t = Instant::now();
                    let (held, tries) = client
                        .acquire_waiting(&key, TTL, start + dur + Duration::from_secs(2))
                        .await;
                    s.attempts = s.attempts.zip(tries).map(|(a, b)| a + b);
                    let Some(held) = held else { continue };
                    s.waits.push(t.elapsed());
                    let from = mono_ns();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    s.held.push((from, mono_ns()));
                    client.release(held).await;
                }
                s
            })
        })
        .collect();
    let mut all = Samples {
        attempts: Some(0),
        ..Samples::default()
    };
    for h in handles {
        merge(&mut all, h.await.unwrap());
    }
    all.cycles = all.waits.len() as u64;
    all
}

fn merge(all: &mut Samples, s: Samples) {
    all.waits.extend(s.waits);
    all.held.extend(s.held);
    all.attempts = all.attempts.zip(s.attempts).map(|(a, b)| a + b);
    all.cycles += s.cycles;
}

/// S3 across processes: `procs` copies of this binary (`s3-worker`), each with its own client
/// and `tasks` tasks. They connect, report `ready`, and start together on `go`.
pub fn contend_processes(
    lib: Lib,
    urls: &[String],
    key: &str,
    procs: usize,
    tasks: usize,
    dur: Duration,
) -> Samples {
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..procs)
        .map(|_| {
            Command::new(&exe)
                .arg("s3-worker")
                .args(["--lib", &lib_arg(lib), "--key", key, "--urls", &urls.join(",")])
                .args([
                    "--tasks",
                    &tasks.to_string(),
                    "--ms",
                    &dur.as_millis().to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("worker process")
        })
        .collect();
    let mut outs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()))
        .collect();
    for out in &mut outs {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "worker did not start");
    }
    for c in &mut children {
        c.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let mut all = Samples {
        attempts: Some(0),
        ..Samples::default()
    };
    for (c, mut out) in children.iter_mut().zip(outs) {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(c.wait().unwrap().success(), "worker failed");
        merge(&mut all, from_json(&line));
    }
    all
}

fn lib_arg(lib: Lib) -> String {
    use clap::ValueEnum;
    lib.to_possible_value().unwrap().get_name().to_owned()
}

/// The worker side of [`contend_processes`].
pub fn worker(lib: Lib, urls: &[String], key: &str, tasks: usize, dur: Duration) {
    let rt = crate::harness::runtime(false);
    let client = rt.block_on(Client::new(lib, urls, TTL));
    println!("ready");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let s = rt.block_on(async {
        let s = contend(&client, key, tasks, dur).await;
        client.settle().await;
        s
    });
    let ns = |d: &Duration| d.as_nanos() as u64;
    let json = serde_json::json!({
        "waits_ns": s.waits.iter().map(ns).collect::<Vec<_>>(),
        "held": s.held,
        "attempts": s.attempts,
        "cycles": s.cycles,
    });
    println!("{json}");
}

fn from_json(line: &str) -> Samples {
    let v: serde_json::Value = serde_json::from_str(line).expect("worker output");
    let u64s = |k: &str| -> Vec<u64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x.as_u64())
            .collect()
    };
    Samples {
        waits: u64s("waits_ns").into_iter().map(Duration::from_nanos).collect(),
        held: v["held"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
            .collect(),
        attempts: v["attempts"].as_u64(),
        cycles: v["cycles"].as_u64().unwrap_or(0),
        ..Samples::default()
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// RSS growth per held guard (each with its watchdog task), with `n` guards.
pub async fn memory_per_guard(urls: Vec<String>, n: usize) -> f64 {
    let redlock = quorumlock::Redlock::builder().nodes(urls).build().unwrap();
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
    let guards = hold("held", n).await;
    let per = rss_kib().saturating_sub(before) as f64 * 1024.0 / n as f64;
    for g in guards.into_iter().chain(warm) {
        g.forget();
    }
    per
}
