//! The task that keeps a [`LockGuard`](crate::LockGuard)'s lock alive, and its schedule.
//!
//! The schedule is pure (instants in, decisions out) and property-tested; the task is a loop of
//! "sleep until the next renewal, extend, publish the new validity". Two rules matter for
//! safety: the guard is declared lost *before* its validity ends, because the last extension
//! attempt is only started if it can finish `margin` before `valid_until`; and a lost lock is
//! not released by the watchdog but handed back to the guard's owner, who may still be stopping
//! work that runs under it (see [`hold_lost`]).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::errors::error::{Error, ErrorKind, Operation};
use crate::operations::lock::Lock;

/// What the guard sees: the current validity, and why the lock was lost once it is.
#[derive(Clone, Debug)]
pub(crate) struct Status {
    pub(crate) valid_until: Instant,
    pub(crate) lost: Option<Error>,
}

/// What the watchdog does with the lock when told to stop.
pub(crate) const STOP_RELEASE: u8 = 0;
pub(crate) const STOP_FORGET: u8 = 1;

pub(crate) struct Control {
    pub(crate) stop: CancellationToken,
    pub(crate) mode: AtomicU8,
}

/// The renewal plan for a lock of `ttl` whose requests are bounded by `node_timeout`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    pub(crate) ttl: Duration,
    pub(crate) node_timeout: Duration,
    pub(crate) max_hold: Option<Duration>,
}

impl Schedule {
    /// Safety margin before `valid_until` by which `lost` must have been signalled: a tenth of
    /// the TTL within 10 ms..2 s, for scheduler delays between deciding and telling.
    pub(crate) fn margin(&self) -> Duration {
        (self.ttl / 10).clamp(Duration::from_millis(10), Duration::from_secs(2))
    }

    /// Whether the schedule can work: renewing with two thirds of the TTL left must leave room
    /// for at least two attempts, each bounded by the node timeout, before the margin.
    pub(crate) fn check(&self) -> Result<(), String> {
        if (self.node_timeout + self.margin()) * 3 > self.ttl {
            return Err(format!(
                "ttl {:?} is too short for a guard: node timeout {:?} plus margin {:?} must stay below a third of it",
                self.ttl,
                self.node_timeout,
                self.margin()
            ));
        }
        Ok(())
    }

    /// When to renew a lock valid until `until` that was last set for `ttl`: once a third of
    /// the TTL has passed (two thirds left), as Redisson's watchdog does.
    pub(crate) fn renew_at(&self, until: Instant, ttl: Duration) -> Instant {
        until.checked_sub(ttl * 2 / 3).unwrap_or(until)
    }

    /// Whether an extension started at `now` ends, in the worst case, `margin` before `until`.
    pub(crate) fn can_attempt(&self, now: Instant, until: Instant) -> bool {
        now + self.node_timeout + self.margin() <= until
    }

    /// The TTL of the next extension at `now`, given the hold began at `started`: the full TTL,
    /// or what is left before the cap. `None` once the cap leaves nothing worth extending for.
    pub(crate) fn next_ttl(&self, started: Instant, now: Instant) -> Option<Duration> {
        let Some(max) = self.max_hold else {
            return Some(self.ttl);
        };
        let left = (started + max).saturating_duration_since(now);
        (left > self.node_timeout + self.margin()).then_some(left.min(self.ttl))
    }
}

fn lost(message: String) -> Error {
    Error::new(ErrorKind::Lost, Operation::Extend).with_message(message)
}

/// Publishes the loss of `lock`, then keeps it, unextended, until the guard stops the task.
///
/// Releasing here would free the resource while the owner may still be running the work the
/// lock protects: it learns of the loss through `lost()` and needs time to stop (a process
/// group that has to be signalled and reaped). The owner releases when it is done, by
/// `release()` or by dropping the guard. An owner that never finishes cannot starve others:
/// nothing extends the keys any more, so they expire by their TTL.
async fn hold_lost(
    lock: Lock,
    status: &watch::Sender<Status>,
    control: &Control,
    err: Error,
) -> Option<Lock> {
    tracing::debug!(resource = %lock.resource(), error = %err, "guard lost");
    // The last validity claim stays published: it is still the bound before which no other
    // client can hold the lock, which an owner stopping its work needs. A majority that no
    // longer holds our token has already cut it to the moment of that answer.
    status.send_replace(Status {
        valid_until: lock.valid_until(),
        lost: Some(err),
    });
    control.stop.cancelled().await;
    stopped(lock, control)
}

/// Keeps `lock` alive until told to stop; if it is lost first, holds it unextended until then
/// ([`hold_lost`]). Returns the lock when stopped in release mode (the caller releases it),
/// `None` when forgotten.
pub(crate) async fn run(
    mut lock: Lock,
    schedule: Schedule,
    status: watch::Sender<Status>,
    control: Arc<Control>,
) -> Option<Lock> {
    let started = Instant::now();
    let mut last_ttl = schedule.ttl;
    // The last failed extension: its per-node outcomes explain a loss declared later.
    let mut last_failure: Option<Error> = None;
    'hold: loop {
        let until = lock.valid_until();
        let renew = schedule.renew_at(until, last_ttl);
        let capped = schedule.next_ttl(started, renew.max(Instant::now())).is_none();
        let wake = match (capped, schedule.max_hold) {
            // Capped: no more extensions. Declare the loss at the cap, or `margin` before the
            // validity ends if that comes first.
            (true, Some(max)) => (started + max).min(until.checked_sub(schedule.margin()).unwrap_or(until)),
            _ => renew,
        };
        tokio::select! {
            biased;
            () = control.stop.cancelled() => return stopped(lock, &control),
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        if capped {
            let max = schedule.max_hold.unwrap_or_default();
            let err = lost(format!("held for the maximum of {max:?} (max_hold)"));
            crate::wire::metrics::guard_lost(crate::wire::metrics::LOST_MAX_HOLD);
            return hold_lost(lock, &status, &control, err).await;
        }
        // Extend, retrying transient failures while an attempt can still end before the margin.
        loop {
            let now = Instant::now();
            if !schedule.can_attempt(now, lock.valid_until()) {
                let (why, reason) = if lock.is_valid() {
                    (
                        "no extension succeeded in time",
                        crate::wire::metrics::LOST_NOT_EXTENDED,
                    )
                } else {
                    (
                        "validity ended before the watchdog could extend (a blocked runtime?)",
                        crate::wire::metrics::LOST_VALIDITY_ENDED,
                    )
                };
                crate::wire::metrics::guard_lost(reason);
                let err = match last_failure.take() {
                    Some(last) => lost(format!("{why} (last extension failed: {})", last.kind()))
                        .with_resource(last.resource().unwrap_or_default())
                        .with_nodes(last.nodes().to_vec()),
                    None => {
                        lost(why.to_owned()).with_resource(&lock.resources().collect::<Vec<_>>().join(", "))
                    }
                };
                return hold_lost(lock, &status, &control, err).await;
            }
            let Some(ttl) = schedule.next_ttl(started, now) else {
                continue 'hold; // the cap arrived while retrying
            };
            let result = tokio::select! {
                biased;
                () = control.stop.cancelled() => return stopped(lock, &control),
                r = lock.extend(ttl) => r,
            };
            match result {
                Ok(()) => {
                    last_ttl = ttl;
                    last_failure = None;
                    status.send_replace(Status {
                        valid_until: lock.valid_until(),
                        lost: None,
                    });
                    continue 'hold;
                }
                Err(e) if e.is_lost() => {
                    crate::wire::metrics::guard_lost(crate::wire::metrics::LOST_NOT_HELD);
                    return hold_lost(lock, &status, &control, e).await;
                }
                Err(e) => {
                    tracing::debug!(resource = %lock.resource(), error = %e, "extension failed, retrying");
                    last_failure = Some(e);
                    // The failed extension may have shortened the validity claim; show it.
                    status.send_replace(Status {
                        valid_until: lock.valid_until(),
                        lost: None,
                    });
                    tokio::select! {
                        biased;
                        () = control.stop.cancelled() => return stopped(lock, &control),
                        () = tokio::time::sleep(crate::pure::backoff::extension_retry_delay(schedule.ttl)) => {}
                    }
                }
            }
        }
    }
}

fn stopped(lock: Lock, control: &Control) -> Option<Lock> {
    if control.mode.load(Ordering::Acquire) == STOP_FORGET {
        lock.forget();
        return None;
    }
    Some(lock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The last attempt the schedule allows ends at least `margin` before the validity, so
        /// `lost` is signalled while the lock is still ours.
        #[test]
        fn attempts_end_before_validity(ttl_ms in 3u64..100_000, nt_ms in 1u64..2_000, left_ms in 0u64..200_000) {
            let s = Schedule {
                ttl: Duration::from_millis(ttl_ms),
                node_timeout: Duration::from_millis(nt_ms),
                max_hold: None,
            };
            // A feasible schedule renews early enough for two attempts before the margin.
            if s.check().is_ok() {
                let until = Instant::now() + s.ttl;
                let renew = s.renew_at(until, s.ttl);
                prop_assert!(s.can_attempt(renew, until));
                prop_assert!(s.can_attempt(renew + s.node_timeout, until));
            }
            let now = Instant::now();
            let until = now + Duration::from_millis(left_ms);
            if s.can_attempt(now, until) {
                prop_assert!(now + s.node_timeout + s.margin() <= until);
                prop_assert!(s.margin() > Duration::ZERO);
            }
            // Renewal happens with two thirds of the TTL left, never after the validity.
            prop_assert!(s.renew_at(until, s.ttl) <= until);
        }

        #[test]
        fn cap_is_never_exceeded(ttl_ms in 10u64..100_000, max_ms in 0u64..1_000_000, at_ms in 0u64..2_000_000) {
            let s = Schedule {
                ttl: Duration::from_millis(ttl_ms),
                node_timeout: Duration::from_millis(50),
                max_hold: Some(Duration::from_millis(max_ms)),
            };
            let started = Instant::now();
            let now = started + Duration::from_millis(at_ms);
            if let Some(ttl) = s.next_ttl(started, now) {
                prop_assert!(ttl <= s.ttl);
                prop_assert!(now + ttl <= started + Duration::from_millis(max_ms));
            }
        }
    }
}
