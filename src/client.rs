//! [`Redlock`]: the public client, a thin handle over [`Shared`]; its operations delegate to
//! `acquire.rs` (DESIGN.md steps 1-6), `lock.rs`, `guard.rs` and `inspect.rs`, and `build()`
//! finishes the [`RedlockBuilder`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::builder::RedlockBuilder;
use crate::errors::error::{Error, NodeId, Operation};
use crate::operations::acquire::acquire;
use crate::operations::guard::LockGuard;
use crate::operations::health::Health;
use crate::operations::inspect::{inspect, Inspection};
use crate::operations::lock::Lock;
use crate::operations::shutdown::ShutdownReport;
use crate::pure::retry::Retry;
use crate::shared::{resource_set, Shared};

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
    shared: Arc<Shared>,
}

impl RedlockBuilder {
    /// Checks the configuration and makes the client. Contacts no node: connections are made on
    /// first use and re-made after failures, so a service can start while nodes are down.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for: no nodes; a URL that does not parse,
    /// has an unknown scheme or a fragment (`#insecure` is accepted only with
    /// [`danger_accept_invalid_tls_certs`](RedlockBuilder::danger_accept_invalid_tls_certs)); TLS files
    /// that cannot be read or parsed;
    /// the same server twice (same host and port, whatever the database; `localhost` and
    /// `127.0.0.1` and IPv4-mapped IPv6 addresses count as one host — other aliases of one
    /// server are refused on first connection, by its `run_id`); a drift factor that is NaN, negative or not below 1; a zero node
    /// timeout; a retry policy with zero attempts or a zero deadline. Messages never contain
    /// passwords.
    pub fn build(self) -> Result<Redlock, Error> {
        Ok(Redlock {
            shared: Arc::new(self.into_shared()?),
        })
    }
}

impl Redlock {
    /// Starts configuring a client. See [`RedlockBuilder`] for the options and their defaults.
    pub fn builder() -> RedlockBuilder {
        RedlockBuilder::new()
    }

    /// Acquires `resource` for `ttl`, retrying per the configured [`Retry`] policy.
    ///
    /// Each attempt draws a fresh token, sends the acquire script (in effect
    /// `SET key token NX PX ttl`, refused where this token was already released) to every node
    /// at once, and succeeds when a majority granted it with validity left:
    /// `ttl - elapsed - (ttl * drift_factor + 2 ms) > 0`. A failed attempt releases whatever it
    /// set before the next one starts.
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput): empty or oversized resource, TTL of 0, above 30 days, or too
    ///   short to leave validity after the drift allowance. No node is contacted.
    /// - [`ErrorKind::Contended`](crate::ErrorKind::Contended): another owner holds it (after the last attempt); with
    ///   [`wake_on_release`](crate::RedlockBuilder::wake_on_release), also when the key is free
    ///   but a waiter that began earlier is ahead in its waiting line.
    /// - [`ErrorKind::QuorumUnreachable`](crate::ErrorKind::QuorumUnreachable): fewer than a majority of nodes usable.
    /// - [`ErrorKind::Unauthorized`](crate::ErrorKind::Unauthorized): too many nodes refused the credentials; not retried.
    /// - [`ErrorKind::ValidityExhausted`](crate::ErrorKind::ValidityExhausted): quorum came too late to leave validity.
    /// - [`ErrorKind::DeadlineExceeded`](crate::ErrorKind::DeadlineExceeded): the retry deadline passed; [`Error::last_cause`] says why
    ///   the last attempt failed.
    ///
    /// Every error from an attempt lists each node's outcome ([`Error::nodes`]).
    ///
    /// # Cancel safety
    /// Not cancel safe in the sense that dropping the future loses any lock it was about to
    /// return. It is leak free: keys already set, or set by requests still in flight, are
    /// released in the background (tracked by [`Redlock::shutdown`]); with no runtime left they
    /// expire by their TTL. A waiter dropped with wake-on-release leaves its waiting line the
    /// same way.
    pub async fn acquire(&self, resource: &str, ttl: Duration) -> Result<Lock, Error> {
        acquire(
            &self.shared,
            resource_set([resource], Operation::Acquire),
            ttl,
            &self.shared.retry,
        )
        .await
    }

    /// [`acquire`](Self::acquire) with `retry` instead of the client's policy, so that one
    /// client serves a request path (short, failing fast on an outage) and a background job
    /// (patient) alike.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorumlock::Redlock) -> Result<(), quorumlock::Error> {
    /// # use {std::time::Duration, quorumlock::Retry};
    /// let request_path = Retry::wait(Duration::from_millis(500)).fail_fast_when_unreachable(1);
    /// let lock = redlock.acquire_with("order:42", Duration::from_secs(5), &request_path).await?;
    /// # lock.release().await?; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); [`ErrorKind::Config`](crate::ErrorKind::Config) for a
    /// policy `build()` would refuse (zero attempts, a zero deadline).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_with(&self, resource: &str, ttl: Duration, retry: &Retry) -> Result<Lock, Error> {
        retry.validate().map_err(Error::config)?;
        acquire(
            &self.shared,
            resource_set([resource], Operation::Acquire),
            ttl,
            retry,
        )
        .await
    }

    /// Makes exactly one acquisition attempt: never waits for a holder to let go. With
    /// wake-on-release it does not join the waiting line, and a free key is still refused while
    /// a waiter that began earlier is ahead in it.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), without [`ErrorKind::DeadlineExceeded`](crate::ErrorKind::DeadlineExceeded).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire(&self, resource: &str, ttl: Duration) -> Result<Lock, Error> {
        acquire(
            &self.shared,
            resource_set([resource], Operation::Acquire),
            ttl,
            &Retry::none(),
        )
        .await
    }

    /// Acquires several resources as one lock: on each node all of them or none, atomically (one
    /// script per node), with the same quorum rule as [`acquire`](Self::acquire). Duplicates are
    /// merged and the order does not matter, so two clients asking for overlapping sets never
    /// both succeed, and neither can deadlock the other.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) also for an empty set.
    /// [`ErrorKind::Contended`](crate::ErrorKind::Contended) means at least one of the resources is held elsewhere.
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_many<I, S>(&self, resources: I, ttl: Duration) -> Result<Lock, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        acquire(
            &self.shared,
            resource_set(resources, Operation::Acquire),
            ttl,
            &self.shared.retry,
        )
        .await
    }

    /// One attempt of [`acquire_many`](Self::acquire_many).
    ///
    /// # Errors
    /// As [`acquire_many`](Self::acquire_many), without [`ErrorKind::DeadlineExceeded`](crate::ErrorKind::DeadlineExceeded).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire_many<I, S>(&self, resources: I, ttl: Duration) -> Result<Lock, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        acquire(
            &self.shared,
            resource_set(resources, Operation::Acquire),
            ttl,
            &Retry::none(),
        )
        .await
    }

    /// Acquires `resource` as [`acquire`](Self::acquire) does and keeps it held with a watchdog
    /// that extends it before it expires; see [`LockGuard`].
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); also [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when the TTL leaves the
    /// watchdog no room: the node timeout plus a safety margin (a tenth of the TTL, 10 ms..2 s)
    /// must stay below a third of the TTL.
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_guard(&self, resource: &str, ttl: Duration) -> Result<LockGuard, Error> {
        let schedule = LockGuard::schedule(&self.shared, ttl).inspect_err(crate::wire::metrics::rejected)?;
        let lock = self.acquire(resource, ttl).await?;
        Ok(LockGuard::start(&self.shared, lock, schedule))
    }

    /// [`try_acquire`](Self::try_acquire) kept alive by a watchdog: one attempt, then a guard
    /// as [`acquire_guard`](Self::acquire_guard) gives.
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire), and as [`acquire_guard`](Self::acquire_guard) for
    /// a TTL that leaves the watchdog no room.
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire_guard(&self, resource: &str, ttl: Duration) -> Result<LockGuard, Error> {
        let schedule = LockGuard::schedule(&self.shared, ttl).inspect_err(crate::wire::metrics::rejected)?;
        let lock = self.try_acquire(resource, ttl).await?;
        Ok(LockGuard::start(&self.shared, lock, schedule))
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
        let schedule = LockGuard::schedule(&self.shared, ttl).inspect_err(crate::wire::metrics::rejected)?;
        let lock = self.acquire_many(resources, ttl).await?;
        Ok(LockGuard::start(&self.shared, lock, schedule))
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
    /// As [`acquire`](Self::acquire) when the lock cannot be taken; [`ErrorKind::Lost`](crate::ErrorKind::Lost) when it
    /// was lost while `work` ran.
    ///
    /// # Cancel safety
    /// Dropping the future drops `work` and the guard, which releases the lock in the
    /// background.
    pub async fn with_lock<F>(&self, resource: &str, ttl: Duration, work: F) -> Result<F::Output, Error>
    where
        F: Future,
    {
        self.acquire_guard(resource, ttl)
            .await?
            .run(async |_| work.await)
            .await
    }

    /// [`with_lock`](Self::with_lock) with the guard handed to `work`: its fence and its
    /// [`lost`](LockGuard::lost) signal ([`LockGuard::run`] has an example).
    ///
    /// # Errors
    /// As [`with_lock`](Self::with_lock).
    ///
    /// # Cancel safety
    /// As [`with_lock`](Self::with_lock).
    pub async fn with_guard<T>(
        &self,
        resource: &str,
        ttl: Duration,
        work: impl AsyncFnOnce(&LockGuard) -> T,
    ) -> Result<T, Error> {
        self.acquire_guard(resource, ttl).await?.run(work).await
    }

    /// Waits until every background job started so far has finished: releases from dropped
    /// locks, clean-up after failed or cancelled acquisitions, requests still in flight when a
    /// decision was taken, and the release obligations: a release that got no definite answer
    /// is re-sent until the node answers or the key has certainly expired (a node the lock never
    /// reached is owed nothing). About one round trip with every node answering; with a node
    /// that went down holding our keys, up to a TTL: [`shutdown_timeout`](Self::shutdown_timeout)
    /// bounds the wait. Call it before the runtime shuts down (that drops queued tasks, whose
    /// keys then expire by TTL). The client stays usable afterwards.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future stops the wait, not the jobs.
    pub async fn shutdown(&self) {
        self.shared.nodes.shutdown().await;
    }

    /// [`shutdown`](Self::shutdown), waiting at most `limit`, and says what it left behind: per
    /// node, the releases still owed (their keys then expire by TTL), and how many background
    /// jobs were still running. For a service that must exit within a grace period.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorumlock::Redlock) {
    /// let report = redlock.shutdown_timeout(std::time::Duration::from_secs(2)).await;
    /// if !report.is_complete() { eprintln!("exiting with work left: {report}") }
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future stops the wait, not the jobs.
    pub async fn shutdown_timeout(&self, limit: Duration) -> ShutdownReport {
        crate::operations::shutdown::shutdown_within(&self.shared.nodes, limit).await
    }

    /// Asks every node at once whether it can vote: reachable, accepting our credentials and
    /// ACL, running our scripts on our key prefix, and not the same server as another node.
    /// For a service's start-up check (all the fault tolerance configured is there:
    /// [`Health::is_fully_healthy`]) and its readiness probe (locks can be taken:
    /// [`Health::has_quorum`]). Each node is bounded by the node timeout (500 ms when none is
    /// configured); it reads one key and changes nothing.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorumlock::Redlock) -> Result<(), quorumlock::Error> {
    /// let health = redlock.health().await?;
    /// if !health.is_fully_healthy() { eprintln!("less fault tolerance than configured: {health}") }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::NoRuntime`](crate::ErrorKind::NoRuntime) outside a tokio runtime. A node
    /// that fails is reported in [`Health::nodes`], not as an error.
    pub async fn health(&self) -> Result<Health, Error> {
        crate::operations::health::health(&self.shared).await
    }

    /// Reads `resource`'s lock key, its TTL and its fence counter on every node, concurrently,
    /// with one read-only script call per node. Nodes that fail are reported per node.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorumlock::Redlock) -> Result<(), quorumlock::Error> {
    /// let view = redlock.inspect("invoice:1234").await?;
    /// match view.holder() {
    ///     Some((who, nodes)) => println!("held by {who} on {nodes} nodes"),
    ///     None => println!("not held by a majority"),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for an empty or too long
    /// resource name. Node failures are not errors: they are in [`NodeView::state`](crate::NodeView::state).
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn inspect(&self, resource: &str) -> Result<Inspection, Error> {
        inspect(&self.shared, resource).await
    }

    /// The nodes, in the order they were configured.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = &NodeId> + '_ {
        self.shared.nodes.iter().map(|n| &n.id)
    }

    /// How many nodes must agree: `N / 2 + 1`.
    pub fn quorum(&self) -> usize {
        self.shared.quorum()
    }
}

impl fmt::Debug for Redlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.describe(&mut f.debug_struct("Redlock")).finish()
    }
}
