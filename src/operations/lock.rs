//! [`Lock`]: one successful acquisition, and its extension and release.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::errors::error::{Error, ErrorKind, NodeId, NodeOutcome, Operation};
use crate::fan_out::fanout::{Fanout, Tentative};
use crate::node_set::nodes::Unsent;
use crate::pure::token::Token;
use crate::pure::validity::validity;
use crate::shared::Shared;
use crate::wire::reply::{LockRef, Request};
use tokio_util::sync::CancellationToken;

/// A lock held on a majority of nodes until [`valid_until`](Lock::valid_until).
///
/// The holder may act as the only owner only while [`is_valid`](Lock::is_valid) is true.
///
/// # Releasing
/// [`release`](Lock::release) releases and reports each node's outcome. Dropping a `Lock`
/// releases it in the background without blocking (tracked by [`Redlock::shutdown`](crate::Redlock::shutdown)); with no
/// tokio runtime left, nothing is sent and the keys expire by their TTL. [`forget`](Lock::forget)
/// keeps the lock until its TTL on purpose.
///
/// A `Lock` is one holder: it cannot be cloned, and `release` consumes it. The compiler
/// enforces both; neither of these compiles:
///
/// ```compile_fail
/// fn needs_clone<T: Clone>() {}
/// needs_clone::<quorumlock::Lock>();
/// ```
///
/// ```compile_fail
/// async fn twice(lock: quorumlock::Lock) {
///     let _ = lock.release().await;
///     let _ = lock.release().await; // use after move
/// }
/// ```
#[must_use = "dropping a Lock releases it at once; bind it for as long as the work runs"]
pub struct Lock {
    shared: Arc<Shared>,
    resources: Arc<[Box<str>]>,
    /// Keys, token, tombstone and TTL, as every request of this lock needs them.
    lock: LockRef,
    valid_until: Instant,
    /// When every key of this lock has certainly expired on the nodes, whatever they applied:
    /// the end of its release obligations.
    expires: Instant,
    /// The node timeout of the acquisition, reused by the release.
    node_timeout: Duration,
    fence: Option<u64>,
    /// The nodes the acquisition never reached: their release is owed no obligation.
    unsent: Unsent,
    /// Cancelled when the release starts: extension requests still waiting to be sent are then
    /// dropped, so none leaves this client after `release()`. Made by the first extension: most
    /// locks are never extended.
    extensions: Option<CancellationToken>,
    armed: bool,
}

/// Everything a new [`Lock`] is made of.
pub(crate) struct LockParts {
    pub(crate) shared: Arc<Shared>,
    pub(crate) resources: Arc<[Box<str>]>,
    pub(crate) lock: LockRef,
    pub(crate) valid_until: Instant,
    pub(crate) expires: Instant,
    pub(crate) node_timeout: Duration,
    pub(crate) fence: Option<u64>,
    pub(crate) unsent: Unsent,
}

/// What a release did on each node.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReleaseReport {
    nodes: Vec<(NodeId, NodeOutcome)>,
    elapsed: Duration,
}

impl ReleaseReport {
    /// Each node's outcome. For a release, [`NodeOutcome::Granted`] means **this node deleted our
    /// key**; `Refused` means the key was absent or another owner's (expired, or never set there;
    /// a tombstone was left); `Pending` means it had not answered when a majority had (its
    /// release goes on in the background). [`deleted`](Self::deleted) counts the `Granted`
    /// entries.
    pub fn nodes(&self) -> &[(NodeId, NodeOutcome)] {
        &self.nodes
    }

    /// Number of nodes where our key was deleted.
    pub fn deleted(&self) -> usize {
        self.nodes
            .iter()
            .filter(|(_, o)| *o == NodeOutcome::Granted)
            .count()
    }

    /// Whether a majority still held the lock when it was released. `false` means it had
    /// expired (or been lost) before: work done near the end may have overlapped another holder.
    pub fn was_held(&self) -> bool {
        self.deleted() >= crate::pure::quorum::quorum(self.nodes.len())
    }

    /// Time the release took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

impl Lock {
    pub(crate) fn new(p: LockParts) -> Self {
        Self {
            shared: p.shared,
            resources: p.resources,
            lock: p.lock,
            valid_until: p.valid_until,
            expires: p.expires,
            node_timeout: p.node_timeout,
            fence: p.fence,
            unsent: p.unsent,
            extensions: None,
            armed: true,
        }
    }

    /// The resource name given to `acquire`; for a lock of several resources, the first in
    /// sorted order.
    pub fn resource(&self) -> &str {
        &self.resources[0]
    }

    /// Every resource this lock holds, sorted, without duplicates.
    pub fn resources(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.resources.iter().map(|r| &**r)
    }

    pub(crate) fn identity(&self) -> (Arc<[Box<str>]>, Token, Option<u64>) {
        (self.resources.clone(), self.lock.token.clone(), self.fence)
    }

    fn resource_text(&self) -> String {
        self.resources.join(", ")
    }

    /// This acquisition's token: 128 random bits as 32 hex digits, unique per acquisition. It is
    /// the value stored under the lock key. Anyone who has it can release the lock: do not log it.
    pub fn token(&self) -> &str {
        self.lock.token.as_str()
    }

    /// A short name for the token that is safe to log: 8 hex digits, as in this crate's traces
    /// and in [`Redlock::inspect`](crate::Redlock::inspect).
    pub fn token_fingerprint(&self) -> String {
        self.lock.token.fingerprint().to_string()
    }

    /// The fencing token, when the client was built with
    /// [`fencing(true)`](crate::RedlockBuilder::fencing); `None` otherwise.
    ///
    /// If this acquisition returned before another one for the same resource began, the other's
    /// fence is larger (G6, under the conditions in `docs/fencing.md`). Pass it to the resource
    /// you protect and have it refuse writes with a fence below the largest it has seen.
    /// Extensions never change it.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fence
    }

    /// When the validity ends: `t0 + ttl - drift`, with `t0` taken before the first request
    /// was sent. After this instant another client may hold the lock.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// Time left before [`valid_until`](Self::valid_until); zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.valid_until.saturating_duration_since(Instant::now())
    }

    /// Whether the validity has not yet ended.
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// Sets the lock's TTL to `ttl` from now on every node where it still holds our token
    /// (compare-and-`PEXPIRE`; an expired key is never re-created). Succeeds with a majority and
    /// validity left; the new validity is measured from this call's start.
    ///
    /// # Errors
    /// - [`ErrorKind::Lost`]: called after [`valid_until`](Self::valid_until) (no node is
    ///   contacted), or too many nodes no longer hold our token. `is_valid()` is then false.
    /// - [`ErrorKind::QuorumUnreachable`] / [`ErrorKind::Unauthorized`]: too few nodes answered;
    ///   the lock stays valid until its previous `valid_until` at most.
    /// - [`ErrorKind::ValidityExhausted`]: a majority extended it, too late to leave validity.
    /// - [`ErrorKind::InvalidInput`]: a TTL as rejected by `acquire`.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled extension leaves `valid_until` unchanged or shorter, never longer
    /// than what the nodes hold. Requests already sent still complete in the background.
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        // Mirrors `quorumlock.acquire`: the fingerprint names the lock, never the token.
        let span = tracing::debug_span!(
            "quorumlock.extend",
            resource = %self.resource_text(),
            token = %self.lock.token.fingerprint(),
            ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        );
        let result = crate::shared::in_span!(span, self.extend_unmeasured(ttl));
        crate::wire::metrics::extended(crate::wire::metrics::kind_of(&result));
        result
    }

    async fn extend_unmeasured(&mut self, ttl: Duration) -> Result<(), Error> {
        Error::require_runtime(Operation::Extend)?;
        let ttl = self.shared.check_ttl(ttl, Operation::Extend)?;
        let t0 = Instant::now();
        if t0 >= self.valid_until {
            return Err(Error::new(ErrorKind::Lost, Operation::Extend)
                .with_resource(&self.resource_text())
                .with_message("validity had already ended"));
        }
        // A node may apply the new, possibly shorter, TTL even if the extension fails, so from
        // here on the claim is at most what a shorter TTL leaves.
        let claim_if_applied = t0 + (ttl.effective - ttl.drift);
        let shortened = self.valid_until.min(claim_if_applied);
        // Keys may now live until this extension's TTL runs out, counted from when it may still
        // be applied (even if the extension fails, some nodes may have applied it): the release
        // obligations last that long.
        self.expires = self
            .expires
            .max(t0 + ttl.node_timeout + ttl.effective + ttl.drift);
        let req = Arc::new(Request::extend(&self.lock, ttl.ms));
        // Tentative: an extension cancelled by the release (the watchdog's) must not be sent
        // after it, for instance once a connection being made comes up.
        let mut fan = Tentative::start(&self.shared.nodes, req, ttl.node_timeout, self.expires);
        self.valid_until = shortened;
        let decision = fan.decide().await;
        let elapsed = t0.elapsed();
        tracing::debug!(
            verdict = ?decision.verdict, elapsed_us = elapsed.as_micros() as u64,
            nodes = %decision.report_fmt(), "extend decided",
        );
        let result = match (decision.reached(), validity(ttl.effective, elapsed, ttl.drift)) {
            (true, Some(_)) => Ok(()),
            (true, None) => Err(decision.error(ErrorKind::ValidityExhausted, Operation::Extend)),
            (false, _) => Err(decision.error(decision.failure_kind(ErrorKind::Lost), Operation::Extend)),
        };
        // Decided: the slower nodes still get the extension, unless the lock is released first.
        fan.finish_unless(self.extensions.get_or_insert_with(CancellationToken::new).clone());
        match result {
            Ok(()) => {
                self.valid_until = claim_if_applied;
                Ok(())
            }
            Err(e) => {
                if e.kind() == ErrorKind::Lost {
                    self.valid_until = Instant::now();
                }
                Err(e.with_resource(&self.resource_text()).with_elapsed(elapsed))
            }
        }
    }

    /// Releases the lock on every node (compare-and-delete: a key holding another token is never
    /// touched) and reports what each node did. Returns as soon as a majority deleted our key
    /// (the other nodes finish in the background); otherwise once every node answered, and
    /// succeeds if a majority holds nothing of this lock (see [`ReleaseReport::was_held`]).
    ///
    /// # Errors
    /// [`ErrorKind::QuorumUnreachable`] or [`ErrorKind::Unauthorized`] when fewer than a majority
    /// answered: the lock may then stay held until its TTL runs out.
    ///
    /// # Cancel safety
    /// Cancel safe: the release requests are sent even if the future is dropped.
    pub async fn release(self) -> Result<ReleaseReport, Error> {
        let span = tracing::debug_span!(
            "quorumlock.release",
            resource = %self.resource_text(),
            token = %self.lock.token.fingerprint(),
        );
        let result = crate::shared::in_span!(span, self.release_unmeasured());
        crate::wire::metrics::released(match &result {
            Ok(report) if report.was_held() => Ok(crate::wire::metrics::RELEASED),
            Ok(_) => Ok(crate::wire::metrics::RELEASED_NOT_HELD),
            Err(e) => Err(e.kind()),
        });
        result
    }

    async fn release_unmeasured(mut self) -> Result<ReleaseReport, Error> {
        // Without a runtime nothing can be sent: the lock is dropped (nothing is released) and
        // its keys expire by TTL.
        Error::require_runtime(Operation::Release)?;
        let shared = self.shared.clone();
        let mut fan = self.start_release();
        let t0 = Instant::now();
        let decision = fan.decide().await;
        let elapsed = t0.elapsed();
        tracing::debug!(
            verdict = ?decision.verdict, elapsed_us = elapsed.as_micros() as u64,
            nodes = %decision.report_fmt(), "release decided",
        );
        if decision.reached() {
            if let Some(hub) = &shared.wake {
                hub.released_locally(&self.lock.keys, self.lock.token.fingerprint().to_hex());
            }
        }
        // Reached: a majority deleted our key. Otherwise every node has answered (see
        // `Fanout::settled`), and a majority that holds nothing of ours is still a release.
        if decision.reached() || !decision.failures_preclude_quorum() {
            return Ok(ReleaseReport {
                nodes: decision.report(),
                elapsed,
            });
        }
        let kind = decision.failure_kind(ErrorKind::QuorumUnreachable);
        Err(decision
            .error(kind, Operation::Release)
            .with_resource(&self.resource_text())
            .with_elapsed(elapsed))
    }

    fn start_release(&mut self) -> Fanout {
        self.armed = false;
        if let Some(extensions) = &self.extensions {
            extensions.cancel();
        }
        self.valid_until = self.valid_until.min(Instant::now());
        let channel = self.shared.wake.as_ref().map(|hub| hub.channel());
        let req = Arc::new(Request::release(&self.lock, channel));
        // Each node's release is an obligation (nodes.rs) until it gets a definite answer; a
        // dropped fan-out lets the tries in flight finish.
        Fanout::start_release(
            &self.shared.nodes,
            req,
            self.node_timeout,
            self.expires,
            &self.unsent,
        )
    }

    /// Keeps the lock until its TTL runs out: nothing is released now or on drop. For a holder
    /// that wants the resource to stay taken for the whole period (a job that must run at most
    /// once per TTL).
    pub fn forget(mut self) {
        self.armed = false;
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.armed {
            crate::wire::metrics::released(Ok(crate::wire::metrics::RELEASED_ON_DROP));
            // Dropping the fan-out moves its requests to a background task.
            drop(self.start_release());
        }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("resources", &self.resources)
            .field("token", &format_args!("{}", self.lock.token.fingerprint()))
            .field("fence", &self.fence)
            .field("remaining", &self.remaining())
            .finish()
    }
}
