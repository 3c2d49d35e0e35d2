//! [`Redlock`]: the client, and acquisition (DESIGN.md steps 1-6).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::builder::RedlockBuilder;
use crate::error::{Error, ErrorKind, NodeId, Operation};
use crate::fanout::{Fanout, OnDrop, ReportFmt};
use crate::guard::LockGuard;
use crate::key::{fence_key, lock_key, tomb_key, Keys, MAX_RESOURCE_LEN};
use crate::lock::{Lock, LockParts};
use crate::nodes::NodeSet;
use crate::quorum::{Tally, Verdict};
use crate::reply::{LockRef, Request};
use crate::retry::{Retry, Stop};
use crate::token::Token;
use crate::validity::{drift, min_ttl, validity, whole_millis, MAX_TTL};

/// A Redlock client: one lock service made of N independent Redis nodes.
///
/// Cheap to clone (an `Arc`); clones share the nodes' connections. Build one with
/// [`Redlock::builder`] and keep it for the life of the process.
///
/// ```no_run
/// # async fn demo() -> Result<(), quorumlock::Error> {
/// use std::time::Duration;
///
/// let redlock = quorumlock::Redlock::builder()
///     .nodes(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"])
///     .build()?;
/// let lock = redlock.acquire("invoice:1234", Duration::from_secs(10)).await?;
/// // ... at most one holder at a time runs this, for up to lock.remaining() ...
/// lock.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Redlock {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) nodes: Arc<NodeSet>,
    pub(crate) node_timeout: Option<Duration>,
    pub(crate) drift_factor: f64,
    pub(crate) retry: Retry,
    pub(crate) max_hold: Option<Duration>,
    pub(crate) fencing: bool,
    /// `<prefix>released`, when wake-on-release is on.
    pub(crate) wake_channel: Option<Keys>,
    pub(crate) wake: crate::wake::WakeHub,
    pub(crate) prefix: Box<str>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Issue 12: a lock dropped at the end of `main` otherwise stays for its whole TTL
        // without a word.
        let pending = self.nodes.background_jobs();
        if pending > 0 {
            tracing::warn!(
                pending,
                "Redlock dropped with releases still running in the background; they finish only \
                 while the tokio runtime runs: await Redlock::shutdown() before it ends, or their \
                 keys stay until their TTL",
            );
        }
    }
}

/// A TTL checked and turned into what the nodes are sent and what validity is computed from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ttl {
    pub(crate) ms: u64,
    /// The TTL in whole milliseconds, as the nodes see it.
    pub(crate) effective: Duration,
    pub(crate) drift: Duration,
    pub(crate) node_timeout: Duration,
}

/// The node timeout used when none is configured: 1% of the TTL, within 50 ms..1 s. The spec
/// suggests 5-50 ms for a 10 s TTL on a LAN; 50 ms is the floor because scheduler noise on a
/// busy host reaches tens of milliseconds, and a first connection (TLS, AUTH) is made inside
/// this bound too.
pub(crate) fn default_node_timeout(ttl: Duration) -> Duration {
    (ttl / 100).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

impl Inner {
    pub(crate) fn check_ttl(&self, ttl: Duration, op: Operation) -> Result<Ttl, Error> {
        if ttl > MAX_TTL {
            return Err(Error::invalid_input(
                op,
                format!("ttl {ttl:?} is above the maximum of {MAX_TTL:?}"),
            ));
        }
        let (ms, effective) = whole_millis(ttl);
        if ms == 0 {
            return Err(Error::invalid_input(
                op,
                format!("ttl {ttl:?} is below 1 ms, the resolution of Redis expiry"),
            ));
        }
        let drift = drift(effective, self.drift_factor);
        let min = min_ttl(self.drift_factor);
        if effective < min {
            return Err(Error::invalid_input(
                op,
                format!(
                    "ttl {effective:?} is below the minimum of {min:?}: the clock-drift allowance of \
                     {drift:?} would leave less than 1 ms of validity, so no attempt could succeed"
                ),
            ));
        }
        let node_timeout = self
            .node_timeout
            .unwrap_or_else(|| default_node_timeout(effective));
        Ok(Ttl {
            ms,
            effective,
            drift,
            node_timeout,
        })
    }

    pub(crate) fn quorum(&self) -> usize {
        self.nodes.quorum()
    }

    /// Runs `job` in the background, tracked by [`Redlock::shutdown`] (see
    /// [`NodeSet::spawn_background`]).
    pub(crate) fn spawn_background<F>(&self, job: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.nodes.spawn_background(job)
    }

    /// The configuration error found while connecting (one server listed twice), if any.
    fn misconfigured(&self, op: Operation) -> Option<Error> {
        self.nodes
            .conflict()
            .map(|m| Error::new(ErrorKind::Config, op).with_message(m.to_string()))
    }
}

/// A failed attempt and the signal that its background clean-up is complete.
struct Failed {
    error: Error,
    cleanup: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// The failure kind when quorum was impossible, from the votes: the failures alone ruling out a
/// quorum means too few nodes; otherwise someone else holds the key.
pub(crate) fn failure_kind(tally: &Tally, denied: usize, n: usize, refused_kind: ErrorKind) -> ErrorKind {
    if n - denied < crate::quorum::quorum(n) {
        ErrorKind::Unauthorized
    } else if tally.failures_preclude_quorum() {
        ErrorKind::QuorumUnreachable
    } else {
        refused_kind
    }
}

/// Checks resource names and puts them in key order without duplicates: two clients locking the
/// same set in different orders must build the same keys.
pub(crate) fn resource_set<I, S>(resources: I, op: Operation) -> Result<Box<[Box<str>]>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut set: Vec<Box<str>> = Vec::new();
    for r in resources {
        let r = r.as_ref();
        if r.is_empty() {
            return Err(Error::invalid_input(op, "the resource name is empty"));
        }
        if r.len() > MAX_RESOURCE_LEN {
            return Err(Error::invalid_input(
                op,
                format!(
                    "the resource name is {} bytes, above the maximum of {MAX_RESOURCE_LEN}",
                    r.len()
                ),
            ));
        }
        set.push(r.into());
    }
    if set.is_empty() {
        return Err(Error::invalid_input(op, "no resources given"));
    }
    set.sort_unstable();
    set.dedup();
    Ok(set.into())
}

impl Redlock {
    /// Starts configuring a client. See [`RedlockBuilder`] for the options and their defaults.
    pub fn builder() -> RedlockBuilder {
        RedlockBuilder::new()
    }

    /// Acquires `resource` for `ttl`, retrying per the configured [`Retry`] policy.
    ///
    /// Each attempt draws a fresh token, sends `SET key token NX PX ttl` to every node at once,
    /// and succeeds when a majority granted it with validity left:
    /// `ttl - elapsed - (ttl * drift_factor + 2 ms) > 0`. A failed attempt releases whatever it
    /// set before the next one starts.
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidInput`]: empty or oversized resource, TTL of 0, above 30 days, or too
    ///   short to leave validity after the drift allowance. No node is contacted.
    /// - [`ErrorKind::Contended`]: another owner holds it (after the last attempt).
    /// - [`ErrorKind::QuorumUnreachable`]: fewer than a majority of nodes usable.
    /// - [`ErrorKind::Unauthorized`]: too many nodes refused the credentials; not retried.
    /// - [`ErrorKind::ValidityExhausted`]: quorum came too late to leave validity.
    /// - [`ErrorKind::DeadlineExceeded`]: the retry deadline passed; [`Error::last_cause`] says why
    ///   the last attempt failed.
    ///
    /// Every error from an attempt lists each node's outcome ([`Error::nodes`]).
    ///
    /// # Cancel safety
    /// Not cancel safe in the sense that dropping the future loses any lock it was about to
    /// return. It is leak free: keys already set, or set by requests still in flight, are
    /// released in the background (tracked by [`Redlock::shutdown`]); with no runtime left they
    /// expire by their TTL.
    pub async fn acquire(&self, resource: &str, ttl: Duration) -> Result<Lock, Error> {
        self.acquire_with(
            resource_set([resource], Operation::Acquire),
            ttl,
            &self.inner.retry,
        )
        .await
    }

    /// Makes exactly one acquisition attempt: never waits for a holder to let go.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), without [`ErrorKind::DeadlineExceeded`].
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire(&self, resource: &str, ttl: Duration) -> Result<Lock, Error> {
        self.acquire_with(resource_set([resource], Operation::Acquire), ttl, &Retry::none())
            .await
    }

    /// Acquires several resources as one lock: on each node all of them or none, atomically (one
    /// script per node), with the same quorum rule as [`acquire`](Self::acquire). Duplicates are
    /// merged and the order does not matter, so two clients asking for overlapping sets never
    /// both succeed, and neither can deadlock the other.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); [`ErrorKind::InvalidInput`] also for an empty set.
    /// [`ErrorKind::Contended`] means at least one of the resources is held elsewhere.
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_many<I, S>(&self, resources: I, ttl: Duration) -> Result<Lock, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.acquire_with(
            resource_set(resources, Operation::Acquire),
            ttl,
            &self.inner.retry,
        )
        .await
    }

    /// One attempt of [`acquire_many`](Self::acquire_many).
    ///
    /// # Errors
    /// As [`acquire_many`](Self::acquire_many), without [`ErrorKind::DeadlineExceeded`].
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire_many<I, S>(&self, resources: I, ttl: Duration) -> Result<Lock, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.acquire_with(resource_set(resources, Operation::Acquire), ttl, &Retry::none())
            .await
    }

    /// Every acquisition goes through here, so that its outcome and latency are measured once
    /// (bad resource names included).
    pub(crate) async fn acquire_with(
        &self,
        resources: Result<Box<[Box<str>]>, Error>,
        ttl: Duration,
        retry: &Retry,
    ) -> Result<Lock, Error> {
        let timer = crate::metrics::timer();
        let result = match resources {
            Ok(resources) => self.acquire_unmeasured(resources, ttl, retry).await,
            Err(e) => Err(e),
        };
        crate::metrics::acquired(timer, crate::metrics::kind_of(&result));
        result
    }

    async fn acquire_unmeasured(
        &self,
        resources: Box<[Box<str>]>,
        ttl: Duration,
        retry: &Retry,
    ) -> Result<Lock, Error> {
        // Before anything touches tokio (a timer, a connection, the wake-up's spawn).
        Error::require_runtime(Operation::Acquire)?;
        let ttl = self.inner.check_ttl(ttl, Operation::Acquire)?;
        if let Some(e) = self.inner.misconfigured(Operation::Acquire) {
            return Err(e);
        }
        let prefix = &self.inner.prefix;
        let keys: Keys = resources
            .iter()
            .map(|r| lock_key(prefix, r).into_boxed_slice())
            .collect();
        let fence_keys: Option<Keys> = self.inner.fencing.then(|| {
            resources
                .iter()
                .map(|r| fence_key(prefix, r).into_boxed_slice())
                .collect()
        });
        let span = tracing::debug_span!(
            "quorumlock.acquire",
            resource = %resources.join(", "),
            ttl_ms = ttl.ms,
            attempt = tracing::field::Empty,
        );
        let resources: Arc<[Box<str>]> = resources.into();
        async move {
            let start = Instant::now();
            let mut attempt = 0u32;
            // Wake-on-release: interest in the first key (a multi-resource waiter is woken by its
            // first resource and otherwise polls).
            let waiter = self
                .inner
                .wake_channel
                .as_ref()
                .map(|_| crate::wake::waiter(&self.inner, &keys[0]));
            loop {
                attempt += 1;
                tracing::Span::current().record("attempt", attempt);
                // Armed before the attempt, so a release between the refusal and the wait is
                // not missed.
                let mut notified = std::pin::pin!(waiter.as_ref().map(|w| w.wake.notify.notified()));
                if let Some(n) = notified.as_mut().as_pin_mut() {
                    n.enable();
                }
                // A fresh acquisition queues behind this client's waiters for the key (they are
                // handed the key one release at a time) rather than barging in; bounded by one
                // retry delay, after which it tries anyway.
                if attempt == 1 && waiter.as_ref().is_some_and(crate::wake::Waiter::others_waiting) {
                    if let (Some(n), Ok(delay)) = (
                        notified.as_mut().as_pin_mut(),
                        retry.next_delay(1, Duration::ZERO, ttl.node_timeout, rand::random()),
                    ) {
                        let _ = tokio::time::timeout(delay, n).await;
                    }
                    notified.set(waiter.as_ref().map(|w| w.wake.notify.notified()));
                    if let Some(n) = notified.as_mut().as_pin_mut() {
                        n.enable();
                    }
                }
                let result = self.attempt(&resources, &keys, fence_keys.as_ref(), ttl).await;
                crate::metrics::attempt(result.as_ref().map(drop).map_err(|f| f.error.kind()));
                let Failed { error, cleanup } = match result {
                    Ok(lock) => return Ok(lock),
                    Err(failed) => failed,
                };
                let elapsed = start.elapsed();
                if !error.is_retryable() {
                    return Err(error.with_attempts(attempt).with_elapsed(elapsed));
                }
                let stop = match retry.next_delay(attempt, elapsed, ttl.node_timeout, rand::random()) {
                    Ok(delay) => {
                        // The next attempt waits for this one's clean-up (late grants released),
                        // so our own leftovers never refuse us; bounded by one node timeout.
                        let cleanup = async {
                            if let Some(done) = cleanup {
                                let _ = tokio::time::timeout(ttl.node_timeout, done).await;
                            }
                        };
                        let pause = async {
                            match notified.as_mut().as_pin_mut() {
                                Some(n) if error.is_contended() => {
                                    tokio::select! {
                                        () = tokio::time::sleep(delay) => {}
                                        () = n => {}
                                    }
                                }
                                _ => tokio::time::sleep(delay).await,
                            }
                        };
                        tokio::join!(pause, cleanup);
                        if retry.fits(start.elapsed(), ttl.node_timeout) {
                            continue;
                        }
                        Stop::Deadline
                    }
                    Err(stop) => stop,
                };
                let elapsed = start.elapsed();
                return Err(match stop {
                    Stop::Attempts => error.with_attempts(attempt).with_elapsed(elapsed),
                    Stop::Deadline => Error::deadline(error, elapsed, attempt),
                });
            }
        }
        .instrument(span)
        .await
    }

    /// One attempt (DESIGN.md steps 1-5, and the fence write-back of G6).
    async fn attempt(
        &self,
        resources: &Arc<[Box<str>]>,
        keys: &Keys,
        fence_keys: Option<&Keys>,
        ttl: Ttl,
    ) -> Result<Lock, Failed> {
        let inner = &self.inner;
        let token = Token::generate().map_err(|e| Failed {
            error: Error::new(ErrorKind::Entropy, Operation::Acquire).with_message(e.to_string()),
            cleanup: None,
        })?;
        let fingerprint = token.fingerprint();
        // Step 1: the clock starts before anything is sent, so time spent paused before or
        // during the sends counts against validity.
        let t0 = Instant::now();
        // The end of any release obligation for this attempt: a request sent at t0 may still be
        // applied up to a node timeout later (later than that we stopped waiting for it), and
        // its key then lives one TTL, plus the drift allowance for a server clock that runs
        // slow. (The model checker found the bound without the node timeout too short:
        // docs/model.md.)
        let expires = t0 + ttl.node_timeout + ttl.effective + ttl.drift;
        let lock = LockRef {
            keys: keys.clone(),
            tomb: tomb_key(&inner.prefix, token.as_str()),
            token,
            ttl_ms: ttl.ms,
        };
        let req = Arc::new(match fence_keys {
            Some(fk) => Request::acquire_fenced(&lock, fk),
            None => Request::acquire(&lock),
        });
        // Until the lock is handed out, a dropped fan-out undoes everything (the "unready"
        // guard), also while the fence is being written back.
        let mut fan = Fanout::start(&inner.nodes, req, ttl.node_timeout, expires, OnDrop::Undo);
        let verdict = fan.decide().await;
        let elapsed = t0.elapsed();
        let left = validity(ttl.effective, elapsed, ttl.drift);
        let report = fan.report();
        tracing::debug!(
            token = %fingerprint,
            ?verdict,
            elapsed_us = elapsed.as_micros() as u64,
            validity_ms = left.map_or(0, |v| v.as_millis() as u64),
            nodes = %ReportFmt(&report),
            "attempt decided",
        );
        let mut outcome = match (verdict, left) {
            // One server listed twice: no quorum of this client can be trusted (rule (e)).
            _ if inner.nodes.conflict().is_some() => Err(inner
                .misconfigured(Operation::Acquire)
                .unwrap_or_else(|| Error::new(ErrorKind::Config, Operation::Acquire))),
            (Verdict::Reached, Some(_)) => Ok(None),
            (Verdict::Reached, None) => Err(Error::new(ErrorKind::ValidityExhausted, Operation::Acquire)),
            _ => Err(Error::new(
                failure_kind(fan.tally(), fan.denied(), inner.nodes.len(), ErrorKind::Contended),
                Operation::Acquire,
            )),
        }
        .map_err(|e| e.with_nodes(report).with_elapsed(elapsed));
        if let (Ok(_), Some(fence_keys)) = (&outcome, fence_keys) {
            // G6: the lock's fence is the highest its grants gave; it must be on a majority
            // before the lock is handed out, so that every later quorum sees it.
            let fence = fan.max_fence().unwrap_or(0);
            outcome = self
                .write_back(&lock, fence_keys, fence, t0, expires, ttl)
                .await
                .map(Some);
        }
        let fence = match outcome {
            Ok(fence) => fence,
            Err(error) => {
                let error = error.with_resource(&resources.join(", "));
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
        // Late grants are part of the lock: its release reaches every node, and one that
        // overtakes a late grant leaves a tombstone that refuses it.
        fan.ready();
        // ttl.effective > ttl.drift was checked, and both are far below Instant's range.
        let valid_until = t0 + (ttl.effective - ttl.drift);
        Ok(Lock::new(LockParts {
            client: self.clone(),
            resources: resources.clone(),
            lock,
            valid_until,
            expires,
            node_timeout: ttl.node_timeout,
            fence,
        }))
    }

    /// Writes `fence` back to the fence counters of a majority (raising, never lowering them),
    /// and checks that validity is still left afterwards.
    async fn write_back(
        &self,
        lock: &LockRef,
        fence_keys: &Keys,
        fence: u64,
        t0: Instant,
        expires: Instant,
        ttl: Ttl,
    ) -> Result<u64, Error> {
        let req = Arc::new(Request::fence_raise(lock, fence_keys, fence));
        let mut fan = Fanout::start(&self.inner.nodes, req, ttl.node_timeout, expires, OnDrop::Finish);
        let verdict = fan.decide().await;
        let elapsed = t0.elapsed();
        let report = fan.report();
        tracing::debug!(fence, ?verdict, nodes = %ReportFmt(&report), "fence write-back decided");
        let kind = match (verdict, validity(ttl.effective, elapsed, ttl.drift)) {
            (Verdict::Reached, Some(_)) => return Ok(fence),
            (Verdict::Reached, None) => ErrorKind::ValidityExhausted,
            _ => failure_kind(
                fan.tally(),
                fan.denied(),
                self.inner.nodes.len(),
                ErrorKind::QuorumUnreachable,
            ),
        };
        Err(Error::new(kind, Operation::Acquire)
            .with_message(format!("fence write-back of {fence} did not reach a majority"))
            .with_nodes(report)
            .with_elapsed(elapsed))
    }

    /// Acquires `resource` as [`acquire`](Self::acquire) does and keeps it held with a watchdog
    /// that extends it before it expires; see [`LockGuard`].
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); also [`ErrorKind::InvalidInput`] when the TTL leaves the
    /// watchdog no room: the node timeout plus a safety margin (a tenth of the TTL, 10 ms..2 s)
    /// must stay below a third of the TTL.
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_guard(&self, resource: &str, ttl: Duration) -> Result<LockGuard, Error> {
        let schedule = LockGuard::schedule(self, ttl).inspect_err(crate::metrics::rejected)?;
        let lock = self.acquire(resource, ttl).await?;
        Ok(LockGuard::start(self, lock, schedule))
    }

    /// [`acquire_many`](Self::acquire_many) kept alive by a watchdog; see [`LockGuard`].
    ///
    /// # Errors
    /// As [`acquire_many`](Self::acquire_many).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_many_guard<I, S>(&self, resources: I, ttl: Duration) -> Result<LockGuard, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let schedule = LockGuard::schedule(self, ttl).inspect_err(crate::metrics::rejected)?;
        let lock = self.acquire_many(resources, ttl).await?;
        Ok(LockGuard::start(self, lock, schedule))
    }

    /// Runs `work` while holding `resource` under a [`LockGuard`], and releases it afterwards.
    ///
    /// If the lock is lost while `work` runs, `work` is dropped at its next await point and the
    /// loss is returned: code after that point never runs without the lock. Otherwise the lock
    /// is released and `work`'s output returned (a failed release is logged; the keys then expire
    /// by TTL).
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorumlock::Redlock) -> Result<(), quorumlock::Error> {
    /// use std::time::Duration;
    /// let rows = redlock
    ///     .with_lock("nightly-report", Duration::from_secs(30), async {
    ///         // long work; the watchdog keeps the lock meanwhile
    ///         42
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire) when the lock cannot be taken; [`ErrorKind::Lost`] when it
    /// was lost while `work` ran.
    ///
    /// # Cancel safety
    /// Dropping the future drops `work` and the guard, which releases the lock in the
    /// background.
    pub async fn with_lock<F>(&self, resource: &str, ttl: Duration, work: F) -> Result<F::Output, Error>
    where
        F: Future,
    {
        let guard = self.acquire_guard(resource, ttl).await?;
        tokio::select! {
            biased;
            lost = guard.lost() => Err(lost),
            output = work => {
                if let Err(e) = guard.release().await {
                    tracing::warn!(resource, error = %e, "release after with_lock failed; keys expire by TTL");
                }
                Ok(output)
            }
        }
    }

    /// Waits until every background job started so far has finished: releases from dropped
    /// locks, clean-up after failed or cancelled acquisitions, requests still in flight when a
    /// decision was taken, and the release obligations: a release that got no definite answer
    /// is re-sent until the node answers or the key has certainly expired. With every node
    /// answering this takes about one round trip; with a node down it can take until
    /// `t + node_timeout + ttl + drift` of the latest acquisition or extension in flight (a TTL
    /// and a little more; bound the wait with `tokio::time::timeout` if you must exit
    /// sooner: what is still pending then expires by its TTL).
    ///
    /// Call it before a runtime shuts down: a runtime that shuts down drops tasks still queued,
    /// and their keys then expire only by TTL. The client stays usable afterwards.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future stops the wait, not the jobs.
    pub async fn shutdown(&self) {
        self.inner.nodes.shutdown().await;
    }

    /// The nodes, in the order they were configured.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = &NodeId> + '_ {
        self.inner.nodes.iter().map(|n| &n.id)
    }

    /// How many nodes must agree: `N / 2 + 1`.
    pub fn quorum(&self) -> usize {
        self.inner.quorum()
    }
}

impl fmt::Debug for Redlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("Redlock")
            .field("nodes", &i.nodes.iter().map(|n| n.id.addr()).collect::<Vec<_>>())
            .field("quorum", &i.quorum())
            .field("node_timeout", &i.node_timeout)
            .field("drift_factor", &i.drift_factor)
            .field("retry", &i.retry)
            .field("max_hold", &i.max_hold)
            .field("key_prefix", &i.prefix)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_node_timeout_follows_ttl_within_bounds() {
        assert_eq!(
            default_node_timeout(Duration::from_secs(10)),
            Duration::from_millis(100)
        );
        assert_eq!(
            default_node_timeout(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
        assert_eq!(
            default_node_timeout(Duration::from_secs(3600)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn failure_kind_separates_contention_from_unreachable() {
        use crate::quorum::Vote;
        let tally = |votes: &[Vote]| {
            let mut t = Tally::new(votes.len());
            votes.iter().for_each(|v| t.record(*v));
            t
        };
        let (y, r, f) = (Vote::Yes, Vote::Refused, Vote::Failed);
        // 3 of 5 down: too few nodes, even though one refused.
        assert_eq!(
            failure_kind(&tally(&[r, f, f, f, y]), 0, 5, ErrorKind::Contended),
            ErrorKind::QuorumUnreachable
        );
        // All up, two holders: contention.
        assert_eq!(
            failure_kind(&tally(&[r, r, r, y, y]), 0, 5, ErrorKind::Contended),
            ErrorKind::Contended
        );
        // Mixed, failures alone would not stop us: contention.
        assert_eq!(
            failure_kind(&tally(&[r, r, f, y, y]), 0, 5, ErrorKind::Contended),
            ErrorKind::Contended
        );
        // Credentials refused by a majority.
        assert_eq!(
            failure_kind(&tally(&[f, f, f, y, y]), 3, 5, ErrorKind::Contended),
            ErrorKind::Unauthorized
        );
    }
}
