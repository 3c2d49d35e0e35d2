//! `quorumlock run`: hold a lock while a command runs.
//!
//! Order of events: check that the stop rule can be met ([`StopPlan`]); acquire a guard (its
//! watchdog renews the lock); start the command in its own process group; wait until the command
//! and every other member of its group have exited, stopping the group on the way if the lock
//! cannot be renewed in time or `--max-hold` comes; only then release. Signals sent to
//! `quorumlock` are passed on to the group, which decides when to exit; the lock is held until it
//! has.

use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use humantime::format_duration;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use quorumlock::{Error, LockGuard, Retry};
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};

use crate::args::{Global, RunArgs};
use crate::exit;
use crate::status::client;
use crate::stop::StopPlan;

/// How often to look for the rest of the group once the command itself has exited, besides
/// each SIGCHLD: a member whose parent is not this process dies without telling us.
const GROUP_POLL: Duration = Duration::from_millis(100);

pub(crate) async fn main(global: &Global, args: &RunArgs) -> i32 {
    let started = Instant::now();
    let report = Report {
        json: global.json,
        resource: &args.resource,
    };
    if let Err(message) = crate::ttl::check(args.ttl, global.node_timeout) {
        return report.bad_arguments(&message);
    }
    let plan = match StopPlan::new(args.ttl, args.grace, args.max_hold) {
        Ok(p) => p,
        Err(message) => return report.bad_arguments(&message),
    };
    let retry = if args.no_wait || args.wait.is_zero() {
        Retry::none()
    } else {
        // The library starts an attempt only if it can end (one node timeout) before its
        // deadline, so it gives up as early as the deadline minus a node timeout. Its deadline
        // is the wait plus one node timeout, so that `--wait D` keeps trying for at least D.
        let node_timeout = crate::ttl::node_timeout(args.ttl, global.node_timeout);
        Retry::wait(args.wait.saturating_add(node_timeout))
    };
    let redlock = match client(global, |b| {
        let b = b.fencing(args.fencing).retry(retry);
        match plan.library_cap() {
            Some(cap) => b.max_hold(cap),
            None => b,
        }
    }) {
        Ok(r) => r,
        Err(e) => return report.failed(&e, "cannot configure the client"),
    };
    let guard = match redlock.acquire_guard(&args.resource, args.ttl).await {
        Ok(g) => g,
        Err(e) => {
            finish(&redlock).await;
            return report.failed(&e, "not acquired");
        }
    };
    // Before the watchdog task first runs, so never later than the library's own hold start.
    let held_since = Instant::now();
    let code = supervise(&guard, args, &plan, held_since, &report).await;
    // Only now, with the command's whole group gone, may another holder start.
    let released = guard.release().await;
    if let Err(e) = &released {
        // The command's result stands; the lock expires by itself within the TTL. After a loss
        // the failure is expected and was already reported.
        if !global.json && code.code != exit::LOST {
            eprintln!("quorumlock: warning: release failed, the lock expires within its TTL: {e}");
        }
    }
    finish(&redlock).await;
    report.finished(code, &released, started.elapsed());
    code.code
}

/// Longest wait at exit for releases still being re-sent to a node that does not answer.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Waits for the background releases (a failed attempt's clean-up, the slower nodes of the
/// release), at most [`EXIT_WAIT`]: with a node down, the library re-sends a release until the
/// key has certainly expired, and a command line must not hang for a whole TTL after its
/// command ended. What is still pending then expires by its TTL.
async fn finish(redlock: &quorumlock::Redlock) {
    // Timing out is not an error: the pending releases' keys expire by their TTL.
    let _ = tokio::time::timeout(EXIT_WAIT, redlock.shutdown()).await;
}

/// How the command ended.
#[derive(Clone, Copy, Debug)]
struct Ending {
    code: i32,
    outcome: &'static str,
    fence: Option<u64>,
}

/// Runs the command and returns once it and every member of its process group have exited.
async fn supervise(
    guard: &LockGuard,
    args: &RunArgs,
    plan: &StopPlan,
    held_since: Instant,
    report: &Report<'_>,
) -> Ending {
    let fence = guard.fencing_token();
    let ending = |code, outcome| Ending { code, outcome, fence };
    // Members of the group whose parent exits are re-parented to us instead of to init, so we
    // can reap them: a zombie still counts as a member, and an init that does not reap (a
    // container's) would keep the group alive forever.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        report.say(&format!("cannot become a subreaper: {e}"));
        return ending(exit::SOFTWARE, "not_started");
    }
    let (mut term, mut int, mut hup, mut chld) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::child()),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        _ => {
            report.say("cannot install signal handlers");
            return ending(exit::SOFTWARE, "not_started");
        }
    };
    let mut command = tokio::process::Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .env("QUORUMLOCK_RESOURCE", &args.resource)
        .env("QUORUMLOCK_HOLDER", guard.token_fingerprint())
        // Its own group, so that a stop reaches the whole tree (`sh -c` and its children), and
        // so that we can tell when the whole tree is gone.
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
    let Some(group) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
    else {
        // Not reachable: a child just spawned and not yet waited for has an id.
        report.say("lost track of the command");
        let _ = child.wait().await;
        return ending(exit::SOFTWARE, "error");
    };
    let signal_group = |sig: Signal| {
        let _ = killpg(group, sig);
    };
    let lost = guard.lost();
    tokio::pin!(lost);
    let mut lost_reason: Option<Error> = None;
    // The command's own status, once tokio has reaped it.
    let mut status: Option<std::io::Result<ExitStatus>> = None;
    // Set once the lock made us stop the group: SIGTERM, then SIGKILL.
    let mut termed = false;
    let mut killed = false;
    loop {
        // Only after tokio reaped the command: `waitpid(-group)` would otherwise take the
        // command's status from it.
        if status.is_some() && group_gone(group) {
            break;
        }
        let now = Instant::now();
        let valid_until = guard.valid_until();
        let due = plan.deadlines(held_since, valid_until);
        if !killed && now >= due.kill {
            let why = stop_reason(lost_reason.as_ref(), &due, plan, valid_until, now);
            report.say(&if termed {
                format!("{why}; the command's process group still runs: SIGKILL")
            } else {
                format!("{why}; no time left for a grace period: SIGKILL to the command's process group")
            });
            termed = true;
            killed = true;
        } else if !termed && now >= due.term {
            let why = stop_reason(lost_reason.as_ref(), &due, plan, valid_until, now);
            report.say(&format!(
                "{why}; stopping the command: SIGTERM now, SIGKILL in {} if its process group still runs",
                format_duration(round_ms(due.kill.saturating_duration_since(now)))
            ));
            signal_group(Signal::SIGTERM);
            termed = true;
        }
        if killed {
            // Again on every turn: a member forked while the first one was on its way is hit too.
            signal_group(Signal::SIGKILL);
        }
        let next = if termed { due.kill } else { due.term };
        tokio::select! {
            biased;
            reason = &mut lost, if lost_reason.is_none() => {
                // No more extensions: the deadlines now follow the final validity.
                lost_reason = Some(reason);
            }
            s = child.wait(), if status.is_none() => {
                if s.is_ok() && !group_gone(group) {
                    report.say("the command exited; waiting for the rest of its process group before releasing");
                }
                status = Some(s);
            }
            () = tokio::time::sleep_until(next.into()), if !killed => {}
            _ = chld.recv(), if status.is_some() => {}
            () = tokio::time::sleep(GROUP_POLL), if status.is_some() || killed => {}
            _ = term.recv() => signal_group(Signal::SIGTERM),
            _ = int.recv() => signal_group(Signal::SIGINT),
            _ = hup.recv() => signal_group(Signal::SIGHUP),
        }
    }
    if termed {
        return ending(exit::LOST, "lost");
    }
    match status {
        Some(Ok(s)) => ending(exit_code(s), "completed"),
        Some(Err(e)) => {
            report.say(&format!("lost track of the command: {e}"));
            ending(exit::SOFTWARE, "error")
        }
        None => ending(exit::SOFTWARE, "error"),
    }
}

/// Why the group is being stopped.
fn stop_reason(
    lost: Option<&Error>,
    due: &crate::stop::Deadlines,
    plan: &StopPlan,
    valid_until: Instant,
    now: Instant,
) -> String {
    match (lost, due.capped) {
        (_, true) => format!(
            "held for the maximum of {} (--max-hold)",
            format_duration(plan.max_hold.unwrap_or_default())
        ),
        (Some(reason), false) => format!("lock lost ({reason})"),
        (None, false) => format!(
            "lock lost: not renewed in time, its validity ends in {}",
            format_duration(round_ms(valid_until.saturating_duration_since(now)))
        ),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether every member of `group` has exited and been reaped. Reaps the members that are our
/// children (the subreaper makes orphaned members ours). Call only after the group leader (the
/// command) was reaped by tokio.
fn group_gone(group: Pid) -> bool {
    let members = Pid::from_raw(-group.as_raw());
    // Stops at "none exited yet" or ECHILD (no children of ours left in the group).
    while let Ok(s) = waitpid(members, Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
    // Only ESRCH means gone (zombies still count): EPERM is a member we may not signal.
    killpg(group, None) == Err(Errno::ESRCH)
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

    fn bad_arguments(&self, message: &str) -> i32 {
        let code = exit::USAGE;
        if self.json {
            eprintln!(
                "{}",
                json!({"resource": self.resource, "outcome": exit::name(code), "exit_code": code,
                       "error": message})
            );
        } else {
            eprintln!("quorumlock: bad arguments: {message}");
        }
        code
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
