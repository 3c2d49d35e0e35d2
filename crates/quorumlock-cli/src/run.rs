//! `quorumlock run`: hold a lock while a command runs.
//!
//! Order of events: acquire a guard (its watchdog renews the lock); start the command in its own
//! process group; wait for whichever comes first of the command's exit and the guard's loss.
//! On loss, SIGTERM the group, SIGKILL it after the grace period, exit 76. On exit, release and
//! exit with the command's code. Signals sent to `quorumlock` are passed on to the command,
//! which decides when to exit; the lock is held until it does.

use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use quorumlock::{Error, LockGuard, Retry};
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};

use crate::args::{Global, RunArgs};
use crate::exit;
use crate::status::client;

pub(crate) async fn main(global: &Global, args: &RunArgs) -> i32 {
    let started = Instant::now();
    let report = Report {
        json: global.json,
        resource: &args.resource,
    };
    let retry = if args.no_wait || args.wait.is_zero() {
        Retry::none()
    } else {
        Retry::new().attempts(u32::MAX).deadline(args.wait)
    };
    let redlock = match client(global, |b| {
        let b = b.fencing(args.fencing).retry(retry);
        match args.max_hold {
            Some(max) => b.max_hold(max),
            None => b,
        }
    }) {
        Ok(r) => r,
        Err(e) => return report.failed(&e, "cannot configure the client"),
    };
    let guard = match redlock.acquire_guard(&args.resource, args.ttl).await {
        Ok(g) => g,
        Err(e) => {
            redlock.shutdown().await;
            return report.failed(&e, "not acquired");
        }
    };
    let code = supervise(&guard, args, &report).await;
    let released = guard.release().await;
    if let Err(e) = &released {
        // The command's result stands; the lock expires by itself within the TTL. After a loss
        // the failure is expected and was already reported.
        if !global.json && code.code != exit::LOST {
            eprintln!("quorumlock: warning: release failed, the lock expires within its TTL: {e}");
        }
    }
    redlock.shutdown().await;
    report.finished(code, &released, started.elapsed());
    code.code
}

/// How the command ended.
#[derive(Clone, Copy, Debug)]
struct Ending {
    code: i32,
    outcome: &'static str,
    fence: Option<u64>,
}

async fn supervise(guard: &LockGuard, args: &RunArgs, report: &Report<'_>) -> Ending {
    let fence = guard.fencing_token();
    let ending = |code, outcome| Ending { code, outcome, fence };
    let mut command = tokio::process::Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .env("QUORUMLOCK_RESOURCE", &args.resource)
        .env("QUORUMLOCK_HOLDER", guard.token_fingerprint())
        // Its own group, so that a lost lock stops the whole tree (`sh -c` and its children).
        .process_group(0);
    if let Some(f) = fence {
        command.env("QUORUMLOCK_FENCE", f.to_string());
    }
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent. If this process
    // dies (even SIGKILL), the command gets SIGTERM instead of running on without the lock. The
    // signal follows the spawning thread, which here is the runtime's only thread: main.
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from));
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => exit::NOT_FOUND,
                _ => exit::CANNOT_EXECUTE,
            };
            report.say(&format!("cannot run {:?}: {e}", args.command[0]));
            return ending(code, "not_started");
        }
    };
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let forward = |sig: Signal| {
        if let Some(g) = group {
            let _ = killpg(g, sig);
        }
    };
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            forward(Signal::SIGKILL);
            let _ = child.wait().await;
            report.say("cannot install signal handlers");
            return ending(exit::SOFTWARE, "error");
        }
    };
    let lost = guard.lost();
    tokio::pin!(lost);
    loop {
        tokio::select! {
            // Loss first: if both are ready, part of the command may have run without the lock.
            biased;
            reason = &mut lost => {
                report.say(&format!("lock lost while the command ran ({reason}); stopping it"));
                forward(Signal::SIGTERM);
                if tokio::time::timeout(args.grace, child.wait()).await.is_err() {
                    forward(Signal::SIGKILL);
                    let _ = child.wait().await;
                }
                return ending(exit::LOST, "lost");
            }
            status = child.wait() => {
                return match status {
                    Ok(s) => ending(exit_code(s), "completed"),
                    Err(e) => {
                        report.say(&format!("lost track of the command: {e}"));
                        ending(exit::SOFTWARE, "error")
                    }
                };
            }
            _ = term.recv() => forward(Signal::SIGTERM),
            _ = int.recv() => forward(Signal::SIGINT),
            _ = hup.recv() => forward(Signal::SIGHUP),
        }
    }
}

/// The command's code, or 128 + the signal that killed it (as shells report it).
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(exit::SOFTWARE)
}

/// Messages on stderr: human text, or one JSON object with `--json`.
struct Report<'a> {
    json: bool,
    resource: &'a str,
}

impl Report<'_> {
    fn say(&self, message: &str) {
        if !self.json {
            eprintln!("quorumlock: {message}");
        }
    }

    fn failed(&self, e: &Error, what: &str) -> i32 {
        let code = exit::for_error(e);
        if self.json {
            let nodes: Vec<_> = e
                .nodes()
                .iter()
                .map(|(n, o)| json!({"node": n.addr(), "outcome": o.to_string()}))
                .collect();
            eprintln!(
                "{}",
                json!({"resource": self.resource, "outcome": exit::name(code), "exit_code": code,
                       "error": e.to_string(), "nodes": nodes})
            );
        } else {
            eprintln!("quorumlock: {what}: {e}");
        }
        code
    }

    fn finished(&self, ending: Ending, released: &Result<quorumlock::ReleaseReport, Error>, held: Duration) {
        if !self.json {
            return;
        }
        eprintln!(
            "{}",
            json!({
                "resource": self.resource,
                "outcome": ending.outcome,
                "exit_code": ending.code,
                "fence": ending.fence,
                "held_ms": u64::try_from(held.as_millis()).unwrap_or(u64::MAX),
                "released_nodes": released.as_ref().map(|r| r.deleted()).ok(),
            })
        );
    }
}
