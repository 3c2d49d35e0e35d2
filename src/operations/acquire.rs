//! Acquisition (DESIGN.md steps 1-6): the retry loop, and one attempt.
//!
//! An attempt draws a token, sends the acquire script to every node at once, decides at a
//! majority, and either hands out a [`Lock`] or undoes what it set before the next attempt
//! starts. The retry loop owns the waits between attempts: the [`Retry`] schedule, the wait for
//! the failed attempt's clean-up, and the wake-up hand-off of [`crate::node_set::wake`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::connection::link::NO_IO_DRIVER;
use crate::errors::error::{Error, ErrorKind, Operation};
use crate::fan_out::fanout::Unready;
use crate::node_set::nodes::{NodeSet, Unsent};
use crate::node_set::queue::{keep_place, lease_ms, may_hold_entry, Joined, Line};
use crate::node_set::waiters::PassOn;
use crate::node_set::wake::Waiter;
use crate::operations::fencing;
use crate::operations::lock::{Lock, LockParts};
use crate::pure::key::{slot_group, Counters, Keys, Layout};
use crate::pure::retry::{Retry, Stop};
use crate::pure::token::Token;
use crate::pure::validity::validity;
use crate::shared::{Shared, Ttl};
use crate::wire::reply::{LockRef, Request};

/// A failed attempt and the signal that its background clean-up is complete.
struct Failed {
    error: Error,
    cleanup: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Acquires `resources` (checked by [`resource_set`](crate::shared::resource_set)) for `ttl`,
/// retrying per `retry`, and measures the outcome (bad resource names included).
///
/// # Errors
/// As [`Redlock::acquire`](crate::Redlock::acquire).
///
/// # Cancel safety
/// As [`Redlock::acquire`](crate::Redlock::acquire): leak free, not cancel safe.
pub(crate) async fn acquire(
    shared: &Arc<Shared>,
    resources: Result<Arc<[Box<str>]>, Error>,
    ttl: Duration,
    retry: &Retry,
) -> Result<Lock, Error> {
    let timer = crate::wire::metrics::timer();
    let result = match resources {
        Ok(resources) => acquire_unmeasured(shared, resources, ttl, retry).await,
        Err(e) => Err(e),
    };
    crate::wire::metrics::acquired(timer, crate::wire::metrics::kind_of(&result));
    result
}

async fn acquire_unmeasured(
    shared: &Arc<Shared>,
    resources: Arc<[Box<str>]>,
    ttl: Duration,
    retry: &Retry,
) -> Result<Lock, Error> {
    // Before anything touches tokio (a timer, a connection, the wake-up's spawn).
    Error::require_runtime(Operation::Acquire)?;
    let ttl = shared.check_ttl(ttl, Operation::Acquire)?;
    if let Some(e) = shared.misconfigured(Operation::Acquire) {
        return Err(e);
    }
    let layout = shared.layout;
    if layout == Layout::Tagged {
        one_slot_group(&resources)?;
    }
    let keys: Keys = resources.iter().map(|r| layout.lock(&shared.prefix, r)).collect();
    let counters = shared.fencing.then(|| Counters {
        keys: fencing::fence_keys(layout, &shared.prefix, &resources),
        horizon_ms: shared.fence_horizon_ms,
    });
    let span = tracing::debug_span!(
        "quorumlock.acquire",
        resource = %resources.join(", "),
        ttl_ms = ttl.ms,
        attempt = tracing::field::Empty,
    );
    // Wake-on-release: interest in the first key (a multi-resource waiter is woken by its first
    // resource and otherwise polls).
    let waiter = shared.wake.as_ref().map(|hub| hub.waiter(&keys[0]));
    // Across processes, waiters of one resource are served in order (crate::node_set::queue); locks of
    // several resources keep the race between woken waiters.
    let line = match (&waiter, &*resources) {
        (Some(w), [resource]) => Some(Line::new(layout, &shared.prefix, resource, w.place())),
        _ => None,
    };
    let attempts = Attempts {
        shared,
        resources: &resources,
        keys: &keys,
        counters: counters.as_ref(),
        line: line.as_ref(),
        ttl,
    };
    crate::shared::in_span!(span, retry_loop(&attempts, retry, waiter.as_ref()))
}

/// On a Redis Cluster member a lock's keys must share one slot (one script touches them all), so
/// a lock of several resources needs them in one slot group.
fn one_slot_group(resources: &[Box<str>]) -> Result<(), Error> {
    let first = slot_group(&resources[0]);
    match resources.iter().find(|r| slot_group(r) != first) {
        None => Ok(()),
        Some(other) => Err(Error::invalid_input(
            Operation::Acquire,
            format!(
                "{:?} and {other:?} are in different slot groups: with a Redis Cluster member, the \
                 resources of one lock must share a hash tag, as in {{order:17}}:items and \
                 {{order:17}}:payment (docs/scaling.md)",
                resources[0]
            ),
        )),
    }
}

/// What every attempt of one acquisition shares.
struct Attempts<'a> {
    shared: &'a Arc<Shared>,
    resources: &'a Arc<[Box<str>]>,
    keys: &'a Keys,
    counters: Option<&'a Counters>,
    line: Option<&'a Line>,
    ttl: Ttl,
}

/// This acquisition's place in the waiting line, from its first attempt that may have joined it
/// (`joined`) until the lock is handed out. Dropped before that (the acquisition gave up,
/// failed, or its future was dropped), it leaves the line on every node, so that it does not
/// hold up the next waiter for the rest of its lease: once the last attempt's requests are done
/// (`after`, when it gave up), or at once (its future was dropped). A wake-up it may hold goes
/// to the next local waiter after the leave.
struct Place<'a> {
    line: &'a Line,
    nodes: &'a Arc<NodeSet>,
    timeout: Duration,
    joined: bool,
    after: Option<oneshot::Receiver<()>>,
    waiter: Option<&'a Waiter>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.joined {
            // Every node: an earlier attempt may have joined where the last one got no answer.
            let every = (0..self.nodes.len()).collect();
            let pass_on = self.waiter.and_then(Waiter::defer_pass_on);
            let then = move || pass_on.map_or((), PassOn::run);
            let after = self.after.take();
            self.line.leave(self.nodes, every, self.timeout, after, then);
        }
    }
}

async fn retry_loop(a: &Attempts<'_>, retry: &Retry, waiter: Option<&Waiter>) -> Result<Lock, Error> {
    let ttl = a.ttl;
    let start = Instant::now();
    let mut attempt = 0u32;
    let mut unreachable_in_a_row = 0u32;
    let mut place = a.line.map(|line| Place {
        line,
        nodes: &a.shared.nodes,
        timeout: ttl.node_timeout,
        joined: false,
        after: None,
        waiter,
    });
    loop {
        attempt += 1;
        tracing::Span::current().record("attempt", attempt);
        // Armed before the attempt, so a release between the refusal and the wait is not missed.
        let mut woken = waiter.map(Waiter::armed);
        // A fresh acquisition queues behind this client's waiters for the key (they are handed
        // the key one release at a time) rather than barging in; bounded by one retry delay,
        // after which it tries anyway. (A waiting line on the nodes already puts it behind
        // them: it joins at once instead.)
        if attempt == 1 && a.line.is_none() && waiter.is_some_and(Waiter::others_waiting) {
            if let (Some(w), Ok(delay)) = (
                woken.take(),
                retry.next_delay(1, Duration::ZERO, ttl.node_timeout, rand::random()),
            ) {
                let _ = tokio::time::timeout(delay, w).await;
            }
            woken = waiter.map(Waiter::armed);
        }
        // A refused waiter joins the line unless no attempt follows this one.
        let lease = a.line.map_or(0, |_| lease_ms(retry, attempt, ttl.node_timeout));
        let joined = Joined {
            before: place.as_ref().is_some_and(|p| p.joined),
            now: lease > 0,
        };
        if let Some(p) = place.as_mut() {
            // From the moment the request may be sent (a dropped attempt's request still lands).
            p.joined |= lease > 0;
        }
        let result = attempt_once(a, lease, joined).await;
        crate::wire::metrics::attempt(result.as_ref().map(drop).map_err(|f| f.error.kind()));
        let Failed { error, cleanup } = match result {
            Ok(lock) => {
                // The attempt asked every node that may hold the entry to leave.
                if let Some(p) = place.as_mut() {
                    p.joined = false;
                }
                if let Some(w) = waiter {
                    w.granted();
                }
                return Ok(lock);
            }
            Err(failed) => failed,
        };
        let elapsed = start.elapsed();
        unreachable_in_a_row = if error.is_quorum_unreachable() {
            unreachable_in_a_row.saturating_add(1)
        } else {
            0
        };
        // Every return below gives up, and `place` (if this waiter may have joined) leaves the
        // line as it is dropped, after this attempt's requests are done.
        if !error.is_retryable() || retry.gives_up_unreachable(unreachable_in_a_row) {
            if let Some(p) = place.as_mut() {
                p.after = cleanup;
            }
            return Err(error.with_attempts(attempt).with_elapsed(elapsed));
        }
        let stop = match retry.next_delay(attempt, elapsed, ttl.node_timeout, rand::random()) {
            Ok(delay) => {
                // The next attempt waits for this one's clean-up (late grants released), so our
                // own leftovers never refuse us; bounded by one node timeout.
                let cleanup = async {
                    if let Some(done) = cleanup {
                        let _ = tokio::time::timeout(ttl.node_timeout, done).await;
                    }
                };
                let pause = async {
                    match woken {
                        Some(w) if error.is_contended() => {
                            let _ = tokio::time::timeout(delay, w).await;
                        }
                        _ => tokio::time::sleep(delay).await,
                    }
                };
                // A waiter in the line renews its lease while it pauses, so that its lease (and
                // what a dead waiter costs the others) stays short whatever the retry delay.
                tokio::select! {
                    _ = async { tokio::join!(pause, cleanup) } => {}
                    () = keep_place(a.line, &a.shared.nodes, lease, ttl.node_timeout) => {}
                }
                if retry.fits(start.elapsed(), ttl.node_timeout) {
                    continue;
                }
                Stop::Deadline
            }
            Err(stop) => {
                if let Some(p) = place.as_mut() {
                    p.after = cleanup;
                }
                stop
            }
        };
        let elapsed = start.elapsed();
        return Err(match stop {
            Stop::Attempts => error.with_attempts(attempt).with_elapsed(elapsed),
            Stop::Deadline => Error::deadline(error, elapsed, attempt),
        });
    }
}

/// One attempt (DESIGN.md steps 1-5, and the fence write-back of G6). `lease`: see
/// [`Request::acquire_queued`] (unused without a waiting line); `joined`: where this waiter may
/// have an entry in the line, to leave once it is granted.
async fn attempt_once(a: &Attempts<'_>, lease: u64, joined: Joined) -> Result<Lock, Failed> {
    let (shared, ttl) = (a.shared, a.ttl);
    let token = Token::generate().map_err(|e| Failed {
        error: Error::new(ErrorKind::Entropy, Operation::Acquire).with_message(e.to_string()),
        cleanup: None,
    })?;
    // Step 1: the clock starts before anything is sent, so time spent paused before or during
    // the sends counts against validity.
    let t0 = Instant::now();
    // The end of any release obligation for this attempt: a request sent at t0 may still be
    // applied up to a node timeout later (later than that we stopped waiting for it), and its
    // key then lives one TTL, plus the drift allowance for a server clock that runs slow. (The
    // model checker found the bound without the node timeout too short: docs/model.md.)
    let expires = t0 + ttl.node_timeout + ttl.effective + ttl.drift;
    let lock = LockRef {
        keys: a.keys.clone(),
        tomb: shared
            .layout
            .tomb(&shared.prefix, &a.resources[0], token.as_str()),
        token,
        ttl_ms: ttl.ms,
        always_tomb: shared.layout == Layout::Tagged,
    };
    let req = Arc::new(match (a.counters, a.line) {
        (counters, Some(line)) => Request::acquire_queued(&lock, counters, line, lease),
        (Some(c), None) => Request::acquire_fenced(&lock, c),
        (None, None) => Request::acquire(&lock),
    });
    // Until the lock is handed out, a dropped fan-out undoes everything, also while the fence
    // is being written back.
    let mut fan = Unready::start(&shared.nodes, req, ttl.node_timeout, expires);
    let decision = fan.decide().await;
    let elapsed = t0.elapsed();
    let left = validity(ttl.effective, elapsed, ttl.drift);
    tracing::debug!(
        token = %lock.token.fingerprint(),
        verdict = ?decision.verdict,
        elapsed_us = elapsed.as_micros() as u64,
        validity_ms = left.map_or(0, |v| v.as_millis() as u64),
        nodes = %decision.report_fmt(),
        "attempt decided",
    );
    let outcome = match (decision.reached(), left) {
        _ if decision.no_io_driver() => {
            Err(Error::new(ErrorKind::NoRuntime, Operation::Acquire).with_message(NO_IO_DRIVER))
        }
        // One server listed twice: no quorum of this client can be trusted (rule (e)).
        _ if shared.nodes.conflict().is_some() => Err(shared
            .misconfigured(Operation::Acquire)
            .unwrap_or_else(|| Error::new(ErrorKind::Config, Operation::Acquire))
            .with_nodes(decision.report())),
        (true, Some(_)) => Ok(()),
        (true, None) => Err(decision.error(ErrorKind::ValidityExhausted, Operation::Acquire)),
        (false, _) => Err(decision.error(decision.failure_kind(ErrorKind::Contended), Operation::Acquire)),
    };
    let outcome = match (outcome, a.counters) {
        (Ok(()), Some(counters)) => {
            // G6: the lock's fence is the highest its grants gave; it must be on a majority
            // before the lock is handed out, so that every later quorum sees it.
            let fence = fencing::lock_fence(fan.granted_fences());
            fencing::write_back(&shared.nodes, &lock, counters, fence, t0, expires, ttl)
                .await
                .map(Some)
        }
        (Ok(()), None) => Ok(None),
        (Err(e), _) => Err(e.with_elapsed(elapsed)),
    };
    let fence = match outcome {
        Ok(fence) => fence,
        Err(error) => {
            let error = error.with_resource(&a.resources.join(", "));
            let cleanup = match fan.undo() {
                Some((granted_released, all_done)) => {
                    // Bounded by the node timeout: the nodes that granted answered moments ago.
                    let _ = granted_released.await;
                    Some(all_done)
                }
                None => None,
            };
            return Err(Failed { error, cleanup });
        }
    };
    // A node that did not grant may hold this waiter's entry (`may_hold_entry`): it must not
    // hold the line up for the next waiter. Nodes that answered before the decision are asked
    // now, in one batch; a later answer is read when it comes. The leave goes out after the
    // acquire; should it still overtake it (a connection being made or replaced), the entry
    // holds the line up until its lease ends.
    // Late grants are part of the lock: its release reaches every node, and one that overtakes a
    // late grant leaves a tombstone that refuses it.
    // A node the acquisition never reached holds nothing: its release owes it nothing (`Unsent`).
    let unsent = Unsent::new(shared.nodes.len());
    fan.track_unsent(&unsent);
    let late_unsent = unsent.clone();
    let leave = match a.line {
        Some(line) if joined.any() => {
            let now = fan.answered(|i, o| may_hold_entry(o, fan.was_sent(i), joined));
            line.leave(&shared.nodes, now, ttl.node_timeout, None, || ());
            Some((line.clone(), shared.nodes.clone(), ttl.node_timeout))
        }
        _ => None,
    };
    fan.ready_then(move |i, answer| {
        if !answer.sent {
            late_unsent.mark(i);
        }
        if let Some((line, nodes, timeout)) = &leave {
            if may_hold_entry(&answer.outcome, answer.sent, joined) {
                line.leave(nodes, vec![i], *timeout, None, || ());
            }
        }
    });
    // ttl.effective > ttl.drift was checked, and both are far below Instant's range.
    let valid_until = t0 + (ttl.effective - ttl.drift);
    Ok(Lock::new(LockParts {
        shared: shared.clone(),
        resources: a.resources.clone(),
        lock,
        valid_until,
        expires,
        node_timeout: ttl.node_timeout,
        fence,
        unsent,
    }))
}
