//! The waiting line of wake-on-release: one per resource on every node, so that waiters of
//! different processes are served in the order they began to wait (docs/design.md, "The
//! waiting line").
//!
//! Without it each release wakes one waiter per process, they race, and a waiter that keeps
//! losing waits for many releases (S3 in docs/benchmarks.md). With it, an acquisition of one
//! resource (fenced or not) by a client with wake-on-release is `scripts/acquire_queued.lua`: a
//! free key is set only for the waiter at the head of the line, and a refused waiter joins the
//! line at its *place* (when it began to wait: the same on every node, so the head is the same
//! waiter everywhere) with a *lease*, renewed by each attempt and every [`RENEW_EVERY`] while
//! it pauses. A waiter that stops trying without leaving (its process died, its leave was
//! lost) holds the line up until its lease ends: a few node timeouts, whatever its retry
//! policy. One that gives up leaves every node once its last requests are done, one that is
//! dropped leaves every node at once, and one that gets the lock leaves the nodes that did not
//! grant it and may hold its entry ([`may_hold_entry`]); a single try never joins, so never
//! leaves.
//!
//! The line decides only who is served first. A grant still needs the key free and a majority,
//! so nothing here can weaken mutual exclusion; what it can cost is liveness: one
//! lease and a retry delay per stalled waiter, and a clock far ahead can starve its process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use crate::errors::error::NodeOutcome;
use crate::node_set::nodes::NodeSet;
use crate::pure::key::{Counters, Keys, Layout};
use crate::pure::retry::Retry;
use crate::wire::reply::{Arg, LockRef, Op, Request};
use crate::wire::scripts::{ACQUIRE_QUEUED, QUEUE_LEAVE, QUEUE_RENEW};

/// Added to a lease beyond the longest gap between two words of a live waiter: a process
/// descheduled for a moment should not lose its place.
const LEASE_SLACK: Duration = Duration::from_millis(100);

/// How often a waiter that may be in the line renews its lease while it pauses between
/// attempts ([`Line::renew`]). The lease, and so what a dead waiter can cost the others, is this
/// plus a few node timeouts, whatever the retry policy.
pub(crate) const RENEW_EVERY: Duration = Duration::from_millis(250);

/// The pause before a leave is sent again to nodes that gave no answer.
const LEAVE_AGAIN_AFTER: Duration = Duration::from_millis(50);

/// One acquisition's entry in the line of its resource.
#[derive(Clone)]
pub(crate) struct Line {
    /// The line and its leases.
    keys: Keys,
    /// The waiter's id: random, the same for every attempt (tokens are not).
    id: [u8; 16],
    place: u64,
}

impl Line {
    pub(crate) fn new(layout: Layout, prefix: &str, resource: &str, place: u64) -> Self {
        let mut id = [0u8; 16];
        let hex = format!("{:016x}", rand::random::<u64>());
        id.copy_from_slice(hex.as_bytes());
        Self {
            keys: vec![layout.queue(prefix, resource), layout.lease(prefix, resource)].into(),
            id,
            place,
        }
    }

    /// Renews this waiter's lease (`lease_ms`) on every node where it still has an entry, in
    /// the background (tracked, so `shutdown` waits for it; each call bounded by `timeout`).
    /// Never joins: a renewal that arrives after the waiter left or was served changes nothing.
    /// Best effort: a lost renewal costs the waiter its place only if the next one, or its next
    /// attempt, is lost too.
    pub(crate) fn renew(&self, nodes: &Arc<NodeSet>, lease_ms: u64, timeout: Duration) {
        let lease = lease_ms.to_string();
        let args: [&[u8]; 2] = [&self.id, lease.as_bytes()];
        let (primary, fallback) = (
            QUEUE_RENEW.evalsha(&self.keys, &args),
            QUEUE_RENEW.eval(&self.keys, &args),
        );
        let set = nodes.clone();
        nodes.spawn_background(async move {
            let calls = set.iter().map(|node| node.query(&primary, &fallback, timeout));
            futures::future::join_all(calls).await;
        });
    }

    /// Asks `nodes` (indices) to drop this waiter's entry, in the background (tracked, so
    /// `shutdown` waits for it), once `after` fires or is dropped (bounded by `timeout`); then
    /// runs `then`. A node that gives no answer is asked again until the entry has lapsed (one
    /// lease), so that a leave lost to one timeout does not hold the line for a lease. An entry
    /// whose leave overtook the request that made it still ends with its lease.
    pub(crate) fn leave(
        &self,
        nodes: &Arc<NodeSet>,
        which: Vec<usize>,
        timeout: Duration,
        after: Option<oneshot::Receiver<()>>,
        then: impl FnOnce() + Send + 'static,
    ) {
        if which.is_empty() {
            then();
            return;
        }
        let args: [&[u8]; 1] = [&self.id];
        let (primary, fallback) = (
            QUEUE_LEAVE.evalsha(&self.keys, &args),
            QUEUE_LEAVE.eval(&self.keys, &args),
        );
        let set = nodes.clone();
        nodes.spawn_background(async move {
            if let Some(after) = after {
                let _ = tokio::time::timeout(timeout, after).await;
            }
            // Re-sent to the nodes that gave no answer (a timeout on a busy host, a reset) until
            // the entry has lapsed anyway: one lease from now bounds what is left of it. The
            // wake-up hand-on (`then`) waits only for the first round.
            let lapsed = Instant::now() + lease_for(timeout);
            let mut then = Some(then);
            let mut left = which;
            loop {
                let calls = left
                    .iter()
                    .map(|&i| set.node(i).query(&primary, &fallback, timeout));
                let answers = futures::future::join_all(calls).await;
                if let Some(then) = then.take() {
                    then();
                }
                left = left
                    .into_iter()
                    .zip(answers)
                    .filter_map(|(i, answer)| answer.is_err().then_some(i))
                    .collect();
                if left.is_empty() || Instant::now() >= lapsed {
                    break;
                }
                tokio::time::sleep(LEAVE_AGAIN_AFTER).await;
            }
        });
    }
}

/// Renews `line`'s lease (`lease_ms`) every [`RENEW_EVERY`] for as long as it is polled; never
/// returns. Pending for ever without a line, or with no lease (the waiter did not join).
pub(crate) async fn keep_place(line: Option<&Line>, nodes: &Arc<NodeSet>, lease_ms: u64, timeout: Duration) {
    match line {
        Some(line) if lease_ms > 0 => loop {
            tokio::time::sleep(RENEW_EVERY).await;
            line.renew(nodes, lease_ms, timeout);
        },
        _ => std::future::pending().await,
    }
}

/// Places are microseconds since 1970 by this machine's clock, strictly increasing within the
/// process (so two waiters never share one and local order is start order). Waiters of other
/// processes are ordered by their own clocks: a clock that runs behind moves its waiters
/// forward in the line (fairness only: which waiter is served never decides whether a key is
/// free).
pub(crate) fn next_place() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or_default();
    now.max(prev + 1)
}

/// Where a waiter may have an entry in the line: `before`, if an earlier attempt may have joined
/// (on any node); `now`, if this attempt may join (where its request arrives).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Joined {
    pub(crate) before: bool,
    pub(crate) now: bool,
}

impl Joined {
    pub(crate) fn any(self) -> bool {
        self.before || self.now
    }
}

/// Whether a node whose answer to a granted attempt was `outcome` may still hold the waiter's
/// entry, so that it is asked to leave: not a grant (a granting node removed the entry), and
/// either an earlier attempt may have joined there, or this one may have (its request was
/// handed to a connection: `sent`).
pub(crate) fn may_hold_entry(outcome: &NodeOutcome, sent: bool, joined: Joined) -> bool {
    *outcome != NodeOutcome::Granted && (joined.before || (joined.now && sent))
}

/// How long a refused waiter keeps its place without a word from it, in milliseconds: 0 when
/// `attempt` is the last the schedule allows (that waiter does not join), otherwise
/// [`lease_for`] of the node timeout. It does not depend on the retry policy: a waiter that
/// pauses longer than [`RENEW_EVERY`] renews its lease meanwhile.
pub(crate) fn lease_ms(retry: &Retry, attempt: u32, node_timeout: Duration) -> u64 {
    match retry.next_delay(attempt, Duration::ZERO, node_timeout, 1.0) {
        Ok(_) => u64::try_from(lease_for(node_timeout).as_millis()).unwrap_or(u64::MAX),
        Err(_) => 0,
    }
}

/// A waiter's lease: the longest gap between two of its words on a node while it lives. After
/// an attempt's request is applied, its decision can take a node timeout and the clean-up
/// wait another before the pause begins; the first renewal is sent [`RENEW_EVERY`] into the
/// pause and may take a node timeout to arrive; plus [`LEASE_SLACK`]. Capped at the longest
/// TTL, so `PEXPIRE` in the script always takes it.
pub(crate) fn lease_for(node_timeout: Duration) -> Duration {
    RENEW_EVERY
        .saturating_add(node_timeout.saturating_mul(3))
        .saturating_add(LEASE_SLACK)
        .min(crate::pure::validity::MAX_TTL)
}

impl Request {
    /// [`Request::acquire`] of one resource, or with `counters` [`Request::acquire_fenced`],
    /// served in waiting order: joins or renews `line` when refused (`lease_ms` 0: does not
    /// join).
    pub(crate) fn acquire_queued(
        lock: &LockRef,
        counters: Option<&Counters>,
        line: &Line,
        lease_ms: u64,
    ) -> Self {
        let fence: &[Box<[u8]>] = counters.map_or(&[], |c| &c.keys);
        let keys = Self::keys_then_tomb(lock, None)
            .chain(line.keys.iter().map(|k| &**k))
            .chain(fence.iter().map(|k| &**k));
        let args = [
            Arg::Bytes(lock.token.as_bytes()),
            Arg::Int(lock.ttl_ms),
            Arg::Bytes(&line.id),
            Arg::Int(line.place),
            Arg::Int(lease_ms),
            Arg::Int(counters.map_or(0, |c| c.horizon_ms)),
        ];
        let op = if counters.is_some() {
            Op::AcquireFenced
        } else {
            Op::Acquire
        };
        Self::new(op, &ACQUIRE_QUEUED, lock, keys, &args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_attempt_does_not_join_and_the_lease_ignores_the_pause() {
        let nt = Duration::from_millis(50);
        let retry = Retry::new()
            .attempts(3)
            .delay(Duration::from_millis(200), Duration::from_millis(100));
        assert_eq!(lease_ms(&retry, 1, nt), 250 + 150 + 100);
        assert_eq!(lease_ms(&retry, 2, nt), 500);
        assert_eq!(lease_ms(&retry, 3, nt), 0, "no attempt follows the third");
        assert_eq!(lease_ms(&Retry::none(), 1, nt), 0, "try_acquire never joins");
        // Issue 20: an hour between attempts does not lengthen the lease (renewals keep the
        // place), and neither does a delay of `Duration::MAX`.
        let slow = Retry::wait(Duration::from_secs(3600)).delay(Duration::from_secs(600), Duration::ZERO);
        assert_eq!(lease_ms(&slow, 1, nt), 500);
        let endless = Retry::new().no_deadline().delay(Duration::MAX, Duration::ZERO);
        assert_eq!(lease_ms(&endless, 1, nt), 500);
        assert_eq!(
            lease_for(Duration::MAX),
            crate::pure::validity::MAX_TTL,
            "a huge node timeout is capped"
        );
    }

    #[test]
    fn a_granted_waiter_leaves_only_where_it_may_have_joined() {
        use NodeOutcome::{Granted, Refused, Timeout};
        let (first, later, single) = (
            Joined {
                before: false,
                now: true,
            },
            Joined {
                before: true,
                now: true,
            },
            Joined {
                before: false,
                now: false,
            },
        );
        assert!(may_hold_entry(&Refused, true, first));
        assert!(may_hold_entry(&Timeout, true, first), "it may have been applied");
        assert!(
            !may_hold_entry(&Timeout, false, first),
            "never sent, never joined"
        );
        assert!(
            may_hold_entry(&Timeout, false, later),
            "an earlier attempt may have joined"
        );
        assert!(
            !may_hold_entry(&Granted, true, later),
            "a grant removed the entry"
        );
        assert!(
            !may_hold_entry(&Refused, true, single),
            "a single try never joins"
        );
        assert!(!single.any() && first.any() && later.any());
    }

    #[test]
    fn waiter_ids_are_hex_and_differ() {
        let a = Line::new(Layout::Plain, "quorumlock:", "r", 1);
        let b = Line::new(Layout::Plain, "quorumlock:", "r", 1);
        assert!(a.id.iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a.id, b.id);
        assert_eq!(&*a.keys[0], b"quorumlock:queue:r");
        assert_eq!(&*a.keys[1], b"quorumlock:lease:r");
    }

    #[test]
    fn places_strictly_increase() {
        let mut last = 0;
        for _ in 0..1000 {
            let p = next_place();
            assert!(p > last);
            last = p;
        }
    }
}
