//! The real `quorumlock` binary against real redis-server processes: mutual exclusion between
//! `run` processes, a lost lock stopping the command, exit codes, `status`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use quorumlock_testkit::LocalCluster;

mod support;
use support::{code, quorumlock, stderr};

fn pid_alive(pid: i32) -> bool {
    // A zombie is dead for our purpose; /proc/<pid>/stat's third field is the state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Clock readings in ns (CLOCK_REALTIME via `date`, the same clock for every process here).
fn read_interval(path: &Path) -> (u128, u128) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().map(|l| l.trim().parse::<u128>().unwrap());
    (lines.next().unwrap(), lines.next().unwrap())
}

#[test]
fn concurrent_runs_never_overlap() {
    let cluster = LocalCluster::start(3).expect("redis-server");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    // Each command records when it started and ended; if two ever held the lock at once, their
    // intervals would overlap.
    let script = format!(
        "f={}/$QUORUMLOCK_HOLDER; date +%s%N > $f; sleep 0.15; date +%s%N >> $f",
        dir.display()
    );
    let children: Vec<_> = (0..6)
        .map(|_| {
            quorumlock(&cluster.urls())
                .args([
                    "run",
                    "-r",
                    "shared-job",
                    "--ttl",
                    "2s",
                    "--wait",
                    "30s",
                    "--",
                    "sh",
                    "-c",
                    &script,
                ])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let mut intervals: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| read_interval(&e.unwrap().path()))
        .collect();
    assert_eq!(intervals.len(), 6, "every run ran its command once");
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlap: {:?} and {:?}", pair[0], pair[1]);
    }
}

#[test]
fn lost_lock_stops_the_command() {
    for (ignores_term, grace) in [(false, "400ms"), (true, "300ms")] {
        let mut cluster = LocalCluster::start(3).expect("redis-server");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let pidfile = dir.join("pid");
        // The command's child (`sleep`) writes its pid; it must be gone after a loss, whether the
        // command honours SIGTERM or needs SIGKILL.
        let trap = if ignores_term { "trap '' TERM;" } else { "" };
        let script = format!("{trap} sleep 60 & echo $! > {}; wait", pidfile.display());
        let child = quorumlock(&cluster.urls())
            .args([
                "run", "-r", "lossy", "--ttl", "1s", "--grace", grace, "--", "sh", "-c", &script,
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the command never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let sleeper: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        assert!(pid_alive(sleeper));
        cluster.kill(0).unwrap();
        cluster.kill(1).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 76, "{}", stderr(&out));
        assert!(stderr(&out).contains("lock lost"), "{}", stderr(&out));
        assert!(!pid_alive(sleeper), "the command's process group was not stopped");
    }
}

#[test]
fn exit_codes() {
    let cluster = LocalCluster::start(3).expect("redis-server");
    let urls = cluster.urls();
    let run = |extra: &[&str]| {
        let out = quorumlock(&urls).arg("run").args(extra).output().unwrap();
        (code(&out), stderr(&out))
    };
    assert_eq!(
        run(&["-r", "c", "--", "sh", "-c", "exit 3"]).0,
        3,
        "the command's own code"
    );
    assert_eq!(
        run(&["-r", "c", "--", "sh", "-c", "kill -9 $$"]).0,
        128 + 9,
        "signal"
    );
    assert_eq!(run(&["-r", "c", "--", "/nonexistent/cmd"]).0, 127);
    let tmp = tempfile::tempdir().unwrap();
    let not_executable = tmp.path().join("data.txt");
    std::fs::write(&not_executable, "not a program").unwrap();
    assert_eq!(run(&["-r", "c", "--", not_executable.to_str().unwrap()]).0, 126);
    assert_eq!(
        run(&["-r", "c", "--ttl", "soon", "--", "true"]).0,
        64,
        "bad duration"
    );
    assert_eq!(run(&["-r", "c"]).0, 64, "no command");
    assert_eq!(
        run(&["-r", "c", "--ttl", "10ms", "--", "true"]).0,
        64,
        "TTL too short for a guard"
    );

    // Held elsewhere: 75 at once with --no-wait, and after the wait with --wait.
    let holder = quorumlock(&urls)
        .args(["run", "-r", "held", "--ttl", "5s", "--", "sleep", "3"])
        .spawn()
        .unwrap();
    wait_until_held(&urls, "held");
    let (c, err) = run(&["-r", "held", "--no-wait", "--", "true"]);
    assert_eq!(c, 75, "{err}");
    assert!(err.contains("held elsewhere"), "{err}");
    assert_eq!(run(&["-r", "held", "--wait", "300ms", "--", "true"]).0, 75);
    let mut holder = holder;
    assert!(holder.wait().unwrap().success());

    // No nodes, a malformed node, nodes down.
    let out = quorumlock(&[])
        .args(["run", "-r", "c", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    let out = quorumlock(&["ftp://x".into()])
        .args(["run", "-r", "c", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 78);
    let dead = LocalCluster::start(3).expect("redis-server");
    let dead_urls = dead.urls();
    drop(dead);
    let out = quorumlock(&dead_urls)
        .args(["run", "-r", "c", "--no-wait", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 69, "{}", stderr(&out));
}

#[test]
fn fence_is_passed_and_grows() {
    let cluster = LocalCluster::start(3).expect("redis-server");
    let fence = || {
        let out = quorumlock(&cluster.urls())
            .args([
                "run",
                "-r",
                "ledger",
                "--fencing",
                "--",
                "sh",
                "-c",
                "echo $QUORUMLOCK_FENCE",
            ])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let (a, b) = (fence(), fence());
    assert!(b > a, "{b} after {a}");
}

#[test]
fn status_shows_holder_ttl_and_fence() {
    let mut cluster = LocalCluster::start(3).expect("redis-server");
    let urls = cluster.urls();
    let status = |json: bool| {
        let mut c = quorumlock(&urls);
        if json {
            c.arg("--json");
        }
        c.args(["status", "report"]).output().unwrap()
    };
    let out = status(true);
    assert_eq!(code(&out), 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["held"], false);
    assert_eq!(v["answered"], 3);

    let mut holder = quorumlock(&urls)
        .args([
            "run",
            "-r",
            "report",
            "--fencing",
            "--ttl",
            "10s",
            "--",
            "sh",
            "-c",
            "echo $QUORUMLOCK_HOLDER; sleep 2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let fingerprint = line.trim().to_owned();
    cluster.kill(2).unwrap();
    let out = status(true);
    assert_eq!(code(&out), 0, "a majority answered");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["held"], true, "{v}");
    assert_eq!(v["holder"], fingerprint.as_str());
    assert_eq!(v["holder_nodes"], 2);
    assert_eq!(v["nodes"][2]["state"], "error");
    let ttl = v["nodes"][0]["ttl_ms"].as_u64().unwrap();
    assert!(ttl > 0 && ttl <= 10_000, "{ttl}");
    assert!(v["max_fence"].as_u64().unwrap() > 0);
    let text = String::from_utf8(status(false).stdout).unwrap();
    assert!(
        text.contains(&format!("held by {fingerprint} on 2 of 3 nodes")),
        "{text}"
    );
    assert!(holder.wait().unwrap().success());
    cluster.kill(1).unwrap();
    assert_eq!(code(&status(false)), 69, "fewer than a quorum answered");
}

fn wait_until_held(urls: &[String], resource: &str) {
    let started = Instant::now();
    loop {
        let out = quorumlock(urls)
            .args(["--json", "status", resource])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["held"] == true {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never held: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
