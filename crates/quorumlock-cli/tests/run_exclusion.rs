//! `quorumlock run` never lets a second command start while the first command, or anything left
//! in its process group, still runs: not when the first is stopped for `--max-hold`, not when it
//! ignores SIGTERM or stops slowly after it, not when it leaves a background child behind.
//!
//! Each command appends CLOCK_REALTIME readings (`date +%s%N`) to a file while it runs, every
//! 20 ms and once more as it ends if it can; the second command writes one reading as it starts.
//! Every reading of the first must come before the second's start. An overlap shorter than one
//! beat (about 20 ms plus a `date` process) could hide between two readings; anything longer
//! shows as a reading after the start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use quorumlock_testkit::LocalCluster;

mod support;
use support::{code, stderr};

/// The binary with its output as these tests read it: stdout dropped, stderr captured.
fn quorumlock(nodes: &[String]) -> Command {
    let mut c = support::quorumlock(nodes);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn readings(path: &Path) -> Vec<u128> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        // A line cut short by SIGKILL is ignored: the lines before it bound the command's life.
        .filter(|l| l.len() >= 19)
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills a process group when dropped, so that a failing test (or the unfixed `run`, which
/// leaves a background child behind) does not leave TERM-ignoring loops running.
struct GroupKiller(PathBuf);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Ok(pgid) = std::fs::read_to_string(&self.0) {
            if let Ok(pgid) = pgid.trim().parse::<i32>() {
                if pgid > 1 {
                    // SAFETY: kill(2) with a negative pid signals that group only.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
            }
        }
    }
}

/// The outcome of one first-holder / second-waiter round.
struct Round {
    first: Output,
    second: Option<Output>,
    beats: Vec<u128>,
    second_start: Option<u128>,
}

/// Starts `first` (args of `run` before `--`, and an `sh -c` body that beats into `$BEATS`),
/// waits for its first reading, then starts a second `run` of the same resource that records
/// its start, and waits for both.
fn round(cluster: &LocalCluster, first_args: &[&str], body: &str) -> Round {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (beats, start, pgid) = (dir.join("beats"), dir.join("start"), dir.join("pgid"));
    let _killer = GroupKiller(pgid.clone());
    let script = format!("echo $$ > {}; {body}", pgid.display());
    let mut first = quorumlock(&cluster.urls())
        .args(["run", "-r", "exclusive"])
        .args(first_args)
        .args(["--", "sh", "-c", &script])
        .env("BEATS", &beats)
        .spawn()
        .unwrap();
    let began = Instant::now();
    loop {
        if !readings(&beats).is_empty() {
            break;
        }
        if first.try_wait().unwrap().is_some() {
            // Refused or failed before its command wrote anything: no second round.
            return Round {
                first: first.wait_with_output().unwrap(),
                second: None,
                beats: readings(&beats),
                second_start: None,
            };
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the first command never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = quorumlock(&cluster.urls())
        .args(["run", "-r", "exclusive", "--ttl", "3s", "--wait", "30s", "--"])
        .args(["sh", "-c", &format!("date +%s%N > {}", start.display())])
        .spawn()
        .unwrap();
    let first = wait_bounded(first, "first");
    let second = wait_bounded(second, "second");
    Round {
        first,
        second: Some(second),
        beats: readings(&beats),
        second_start: readings(&start).first().copied(),
    }
}

fn wait_bounded(mut child: Child, name: &str) -> Output {
    let began = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if began.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the {name} run did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

impl Round {
    /// Every reading of the first command precedes the second command's start.
    fn assert_no_overlap(&self) {
        let second = self.second.as_ref().expect("a second run");
        assert_eq!(code(second), 0, "second run: {}", stderr(second));
        let start = self.second_start.expect("the second command ran");
        let last = *self.beats.iter().max().expect("the first command beat");
        assert!(
            last < start,
            "the second command started while the first still ran: {} ms of overlap \
             ({} readings after the start); first run said: {}",
            (last - start) as f64 / 1e6,
            self.beats.iter().filter(|&&b| b > start).count(),
            stderr(&self.first),
        );
    }
}

/// Beats every 20 ms, forever.
const LOOP: &str = "while :; do date +%s%N >> \"$BEATS\"; sleep 0.02; done";

/// The reported scenario: 3 s TTL, 1 s hold cap, 3 s grace, a command that ignores SIGTERM. The
/// grace cannot fit before the cap, so the arguments are refused; if they were accepted, no
/// second command could start before the first was dead.
#[test]
fn reported_scenario_is_refused_or_never_overlaps() {
    let cluster = LocalCluster::start(3).expect("redis-server");
    let r = round(
        &cluster,
        &["--ttl", "3s", "--max-hold", "1s", "--grace", "3s"],
        &format!("trap '' TERM; {LOOP}"),
    );
    if r.second.is_none() {
        assert_eq!(code(&r.first), 64, "{}", stderr(&r.first));
        assert!(r.beats.is_empty(), "the command ran");
        let err = stderr(&r.first);
        assert!(
            err.contains("--grace 3s") && err.contains("--max-hold 1s"),
            "{err}"
        );
        return;
    }
    r.assert_no_overlap();
}

/// A command that ignores SIGTERM is killed at the hold cap; only then may another start.
#[test]
fn term_ignoring_command_is_dead_before_the_next_starts() {
    let cluster = LocalCluster::start(3).expect("redis-server");
    let r = round(
        &cluster,
        &["--ttl", "3s", "--max-hold", "1s", "--grace", "500ms"],
        &format!("trap '' TERM; {LOOP}"),
    );
    assert_eq!(code(&r.first), 76, "{}", stderr(&r.first));
    r.assert_no_overlap();
}

/// A command that honours SIGTERM but takes 500 ms to stop keeps the lock until it is done.
#[test]
fn slowly_stopping_command_keeps_the_lock_until_it_ends() {
    let cluster = LocalCluster::start(3).expect("redis-server");
    let r = round(
        &cluster,
        &["--ttl", "3s", "--max-hold", "1500ms", "--grace", "1s"],
        &format!("trap 'sleep 0.5; date +%s%N >> \"$BEATS\"; exit 0' TERM; {LOOP}"),
    );
    assert_eq!(code(&r.first), 76, "{}", stderr(&r.first));
    // It ended on its own, after its trap's last reading: no SIGKILL was needed.
    assert!(r.beats.len() >= 2, "too few readings: {:?}", r.beats.len());
    r.assert_no_overlap();
}

/// A command that exits at once but leaves a background child in its group: the lock is held
/// until that child is gone too, whether it ends by itself or has to be killed at the cap.
#[test]
fn background_child_in_the_group_keeps_the_lock() {
    let cluster = LocalCluster::start(3).expect("redis-server");
    // Ends by itself after about 40 beats; the command's own code stands. A 6 s TTL leaves the
    // watchdog a whole second to renew before a stop would be due, so a slow machine does not
    // turn this into a stop.
    let r = round(
        &cluster,
        &["--ttl", "6s"],
        "(for i in $(seq 40); do date +%s%N >> \"$BEATS\"; sleep 0.02; done) & exit 3",
    );
    assert_eq!(code(&r.first), 3, "{}", stderr(&r.first));
    assert!(r.beats.len() >= 40, "the background child was cut short");
    r.assert_no_overlap();

    // Ignores SIGTERM and never ends: stopped by the hold cap, and the run reports it.
    let r = round(
        &cluster,
        &["--ttl", "2s", "--max-hold", "1500ms", "--grace", "300ms"],
        &format!("(trap '' TERM; {LOOP}) & exit 0"),
    );
    assert_eq!(code(&r.first), 76, "{}", stderr(&r.first));
    r.assert_no_overlap();
}
