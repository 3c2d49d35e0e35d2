//! [`LockGuard`]: a lock kept alive by a watchdog, with a signal for its loss.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::errors::error::{Error, ErrorKind, Operation};
use crate::node_set::nodes::NodeSet;
use crate::operations::lock::{Lock, ReleaseReport};
use crate::operations::watchdog::{self, Control, Schedule, Status, STOP_FORGET, STOP_RELEASE};
use crate::pure::token::Token;
use crate::shared::Shared;

/// A lock that a background watchdog keeps extending until it is released, dropped, lost, or
/// held for the configured maximum ([`RedlockBuilder::max_hold`](crate::RedlockBuilder::max_hold)).
///
/// The watchdog extends the lock once a third of its TTL has passed, and retries failed
/// extensions while one can still finish before the validity ends. When none can, when a
/// majority no longer holds its token, or when the maximum hold is reached, the guard is
/// **lost**: [`lost`](Self::lost) resolves (before the validity ends, never after another client
/// could hold the lock), [`is_valid`](Self::is_valid) turns false, and
/// [`lost_reason`](Self::lost_reason) tells why, with each node's outcome.
///
/// A lost guard is **not released by the watchdog**. It stops extending and keeps the keys that
/// may still hold its token until the owner releases or drops the guard, so that no other client
/// can take the lock while the owner is still stopping the work it protects. An owner that never
/// does cannot starve others: without extensions the keys expire by their TTL, at the latest at
/// [`valid_until`](Self::valid_until) plus the drift allowance.
///
/// # Releasing
/// [`release`](Self::release) stops the watchdog, releases, and reports each node's outcome;
/// call it (or drop the guard) once the protected work has stopped, including after a loss.
/// Dropping the guard stops the watchdog at once and releases in the background without blocking
/// (tracked by [`Redlock::shutdown`](crate::Redlock::shutdown)); with no tokio runtime left nothing is sent and the keys
/// expire by their TTL. [`forget`](Self::forget) stops the watchdog and keeps the keys until
/// their TTL.
///
/// A guard is one holder, like a [`Lock`]: it cannot be cloned (this does not compile):
///
/// ```compile_fail
/// fn needs_clone<T: Clone>() {}
/// needs_clone::<quorumlock::LockGuard>();
/// ```
#[must_use = "dropping the guard releases the lock"]
#[clippy::has_significant_drop]
pub struct LockGuard {
    resources: Arc<[Box<str>]>,
    token: Token,
    fence: Option<u64>,
    status: watch::Receiver<Status>,
    control: Arc<Control>,
    watchdog: Option<JoinHandle<Option<Lock>>>,
    /// Tracks the hand-over of a dropped guard's lock, so that shutdown() waits for it.
    nodes: Arc<NodeSet>,
}

impl LockGuard {
    /// The watchdog's plan for `ttl`, or why it cannot work.
    pub(crate) fn schedule(shared: &Shared, ttl: Duration) -> Result<Schedule, Error> {
        let t = shared.check_ttl(ttl, Operation::Acquire)?;
        let schedule = Schedule {
            ttl: t.effective,
            node_timeout: t.node_timeout,
            max_hold: shared.max_hold,
        };
        schedule
            .check()
            .map_err(|m| Error::invalid_input(Operation::Acquire, m))?;
        Ok(schedule)
    }

    pub(crate) fn start(shared: &Shared, lock: Lock, schedule: Schedule) -> Self {
        let (resources, token, fence) = lock.identity();
        let (tx, status) = watch::channel(Status {
            valid_until: lock.valid_until(),
            lost: None,
        });
        let control = Arc::new(Control {
            stop: CancellationToken::new(),
            mode: AtomicU8::new(STOP_RELEASE),
        });
        // Not tracked: shutdown() waits for releases, not for guards that are still held.
        let watchdog = tokio::spawn(watchdog::run(lock, schedule, tx, control.clone()));
        Self {
            resources,
            token,
            fence,
            status,
            control,
            watchdog: Some(watchdog),
            nodes: shared.nodes.clone(),
        }
    }

    /// The resource; for a guard of several resources, the first in sorted order.
    pub fn resource(&self) -> &str {
        &self.resources[0]
    }

    /// Every resource this guard holds, sorted, without duplicates.
    pub fn resources(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.resources.iter().map(|r| &**r)
    }

    /// The lock's token (see [`Lock::token`]).
    pub fn token(&self) -> &str {
        self.token.as_str()
    }

    /// A short name for the token that is safe to log: 8 hex digits, as in this crate's traces
    /// and in [`Redlock::inspect`](crate::Redlock::inspect).
    pub fn token_fingerprint(&self) -> String {
        self.token.fingerprint().to_string()
    }

    /// The fencing token, when fencing is enabled (see [`Lock::fencing_token`]); extensions
    /// never change it.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fence
    }

    /// When the current validity ends; moves forward with each extension. Once the guard is
    /// lost it stays at the end of the last validity claim (cut to the moment of the answer when
    /// a majority no longer held the token): no other client can hold the lock before then, so
    /// an owner stopping its work can use it as a deadline.
    pub fn valid_until(&self) -> Instant {
        self.status.borrow().valid_until
    }

    /// Time left of the current validity; zero once lost.
    pub fn remaining(&self) -> Duration {
        let s = self.status.borrow();
        match s.lost {
            Some(_) => Duration::ZERO,
            None => s.valid_until.saturating_duration_since(Instant::now()),
        }
    }

    /// Whether the lock is held: not lost, and the validity has not ended (even if the watchdog
    /// has not run, as when the runtime was blocked).
    pub fn is_valid(&self) -> bool {
        let s = self.status.borrow();
        s.lost.is_none() && Instant::now() < s.valid_until
    }

    /// Why the lock was lost, once it is.
    pub fn lost_reason(&self) -> Option<Error> {
        let s = self.status.borrow();
        match &s.lost {
            Some(e) => Some(e.clone()),
            None if Instant::now() >= s.valid_until => Some(validity_ended(&self.resources)),
            None => None,
        }
    }

    /// Resolves when the lock is lost, with the reason ([`ErrorKind::Lost`]): the watchdog could
    /// not extend it in time, a majority no longer holds our token, the maximum hold was reached,
    /// or the validity ended without an extension. Never resolves while the lock is held.
    ///
    /// Use it to stop work that must not outlive the lock:
    /// `tokio::select! { r = job => ..., e = guard.lost() => ... }`. The lock is not released
    /// when this resolves: release or drop the guard once the work has stopped.
    ///
    /// # Cancel safety
    /// Cancel safe; any number of callers may wait at once.
    pub async fn lost(&self) -> Error {
        let mut status = self.status.clone();
        loop {
            let until = {
                let s = status.borrow_and_update();
                if let Some(e) = &s.lost {
                    return e.clone();
                }
                s.valid_until
            };
            if Instant::now() >= until {
                return validity_ended(&self.resources);
            }
            tokio::select! {
                changed = status.changed() => {
                    if changed.is_err() {
                        // The watchdog is gone (a panic, or a runtime shutting down): the
                        // validity is all we still know.
                        tokio::time::sleep_until(until.into()).await;
                        return validity_ended(&self.resources);
                    }
                }
                () = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }

    /// Stops the watchdog and releases the lock; reports each node's outcome.
    ///
    /// A lost lock is released too (compare-and-delete, so keys another client took since are
    /// left alone), and this returns once the nodes have answered.
    ///
    /// # Errors
    /// [`ErrorKind::Lost`] with the loss's reason if the guard was lost before this call, whatever
    /// the release itself did (its outcome is logged at debug level); otherwise as
    /// [`Lock::release`].
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped, the release still happens in the background.
    pub async fn release(mut self) -> Result<ReleaseReport, Error> {
        self.control.stop.cancel();
        let Some(watchdog) = self.watchdog.take() else {
            return Err(validity_ended(&self.resources));
        };
        match watchdog.await {
            Ok(Some(lock)) => {
                let lost = self.status.borrow().lost.clone();
                let released = lock.release().await;
                match lost {
                    None => released,
                    Some(lost) => {
                        tracing::debug!(resource = %self.resources[0], outcome = ?released.map(|r| r.deleted()), "lost guard released");
                        Err(lost)
                    }
                }
            }
            Ok(None) => Err(self
                .lost_reason()
                .unwrap_or_else(|| validity_ended(&self.resources))),
            Err(join) => Err(Error::new(ErrorKind::Lost, Operation::Release)
                .with_resource(&self.resources.join(", "))
                .with_message(format!("watchdog task failed: {join}"))),
        }
    }

    /// Runs `work` with this guard in hand (its [`fencing_token`](Self::fencing_token) for the
    /// writes, its [`lost`](Self::lost) for work that wants to stop on its own terms), then
    /// releases. If the lock is lost first, `work` is dropped at its next await point and the
    /// loss returned (the guard is then dropped: released in the background). A failed release
    /// after `work` finished is logged; the keys then expire by TTL.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorumlock::Redlock) -> Result<(), quorumlock::Error> {
    /// use std::time::Duration;
    /// let guard = redlock.acquire_guard("payments:order-42", Duration::from_secs(10)).await?;
    /// let charged = guard
    ///     .run(async |g| {
    ///         let fence = g.fencing_token(); // send it with every write to the store
    ///         // ... charge once, refusing writes whose fence is below the store's ...
    ///         fence
    ///     })
    ///     .await?;
    /// # let _ = charged; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Lost`] if the lock was lost before `work` finished.
    ///
    /// # Cancel safety
    /// Dropping the future drops `work` and the guard, which releases in the background.
    pub async fn run<T>(self, work: impl AsyncFnOnce(&LockGuard) -> T) -> Result<T, Error> {
        let output = {
            let work = work(&self);
            tokio::select! {
                biased;
                lost = self.lost() => return Err(lost),
                output = work => output,
            }
        };
        if let Err(e) = self.release().await {
            tracing::warn!(error = %e, "release after the guarded work failed; keys expire by TTL");
        }
        Ok(output)
    }

    /// Stops the watchdog and keeps the lock until its TTL runs out: nothing is released.
    pub fn forget(mut self) {
        self.control.mode.store(STOP_FORGET, Ordering::Release);
        self.control.stop.cancel();
        self.watchdog = None;
    }
}

fn validity_ended(resources: &[Box<str>]) -> Error {
    Error::new(ErrorKind::Lost, Operation::Extend)
        .with_resource(&resources.join(", "))
        .with_message("the validity ended without an extension")
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.control.stop.cancel();
        if let Some(watchdog) = self.watchdog.take() {
            // The watchdog hands the lock back when it stops; dropping it there releases it in
            // the background. Tracked, so that shutdown() also waits for this hand-over.
            self.nodes.spawn_background(async move {
                drop(watchdog.await);
            });
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("resources", &self.resources)
            .field("token", &format_args!("{}", self.token.fingerprint()))
            .field("remaining", &self.remaining())
            .field("lost", &self.status.borrow().lost.is_some())
            .finish()
    }
}
