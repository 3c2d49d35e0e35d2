//! [`RedlockBuilder`]: setters that never fail; every check happens in `build()`.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::identity::{same_endpoint, Identities};
use crate::connection::node::Node;
use crate::connection::url::{parse_member, redact, Endpoint, TlsOptions};
use crate::errors::error::{Error, NodeId};
use crate::node_set::nodes::NodeSet;
use crate::node_set::wake::WakeHub;
use crate::pure::key::{Layout, DEFAULT_PREFIX};
use crate::pure::retry::Retry;
use crate::shared::Shared;

/// Connect timeout when no node timeout is configured (the node timeout is then derived from
/// each call's TTL, but a connection outlives any one call).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The default [`RedlockBuilder::fence_horizon`]: far beyond any clock offset between servers
/// kept by NTP (milliseconds), short enough that per-entity counters do not pile up for days.
const DEFAULT_FENCE_HORIZON: Duration = Duration::from_secs(3600);

/// The shortest fence horizon accepted: a shorter one would have to trust clock offsets of
/// milliseconds, and a counter could expire between a grant and the re-send of its request.
const MIN_FENCE_HORIZON: Duration = Duration::from_secs(1);

/// Configures a [`Redlock`](crate::Redlock). Made by [`Redlock::builder`](crate::Redlock::builder).
///
/// ```
/// use std::time::Duration;
/// use quorumlock::{Redlock, Retry};
///
/// let redlock = Redlock::builder()
///     .nodes(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])
///     .node_timeout(Duration::from_millis(50))
///     .retry(Retry::wait(Duration::from_secs(10)))
///     .build()?; // no node needs to be up: connections are made on first use
/// assert_eq!(redlock.quorum(), 2);
/// # Ok::<(), quorumlock::Error>(())
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct RedlockBuilder {
    nodes: Vec<String>,
    node_timeout: Option<Duration>,
    drift_factor: f64,
    retry: Retry,
    max_hold: Option<Duration>,
    fencing: bool,
    fence_horizon: Duration,
    wake_on_release: bool,
    key_prefix: String,
    tls: TlsOptions,
    release_obligations: bool,
    accept_no_fault_tolerance: bool,
}

impl fmt::Debug for RedlockBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedlockBuilder")
            .field("nodes", &self.nodes.iter().map(|u| redact(u)).collect::<Vec<_>>())
            .field("node_timeout", &self.node_timeout)
            .field("drift_factor", &self.drift_factor)
            .field("retry", &self.retry)
            .field("max_hold", &self.max_hold)
            .field("fencing", &self.fencing)
            .field("fence_horizon", &self.fence_horizon)
            .field("wake_on_release", &self.wake_on_release)
            .field("key_prefix", &self.key_prefix)
            .field("tls_ca", &self.tls.ca_pem.is_some())
            .field("tls_client_cert", &self.tls.client.is_some())
            .field("danger_accept_invalid_tls_certs", &self.tls.accept_invalid)
            .field("release_obligations", &self.release_obligations)
            .field("accept_no_fault_tolerance", &self.accept_no_fault_tolerance)
            .finish()
    }
}

impl Default for RedlockBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RedlockBuilder {
    /// A builder with the defaults below and no nodes.
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            node_timeout: None,
            drift_factor: 0.01,
            retry: Retry::new(),
            max_hold: None,
            fencing: false,
            fence_horizon: DEFAULT_FENCE_HORIZON,
            wake_on_release: false,
            key_prefix: DEFAULT_PREFIX.to_owned(),
            tls: TlsOptions::default(),
            release_obligations: true,
            accept_no_fault_tolerance: false,
        }
    }

    /// Adds lock nodes by URL: `redis://host:port`, `redis://user:password@host:port/db`,
    /// `rediss://...` (TLS with rustls and the WebPKI roots), `unix:///path/redis.sock` or
    /// `redis+unix:///path`. Use an odd number (3, 5, 7) of independent servers: not replicas of
    /// each other. Default: none (`build()` then fails).
    pub fn nodes<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.nodes.extend(urls.into_iter().map(|u| u.as_ref().to_owned()));
        self
    }

    /// Adds one lock node by URL (see [`nodes`](Self::nodes)).
    pub fn node(self, url: impl AsRef<str>) -> Self {
        self.nodes([url])
    }

    /// Bound on each request to one node, connecting included. Shorter keeps an acquisition fast
    /// when a node is slow or down; too short turns ordinary latency into failures. Default: 1%
    /// of each call's TTL, within 50 ms..1 s (100 ms for a 10 s TTL).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = Some(timeout);
        self
    }

    /// The assumed bound on clock-rate difference between this host and the nodes, as a fraction
    /// of the TTL. Validity is shortened by `ttl * factor + 2 ms`. Must be in `[0, 1)`. Default:
    /// 0.01 (the Redis spec's value).
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// The retry policy of [`Redlock::acquire`](crate::Redlock::acquire). Default: [`Retry::new`]: retry until a 5 s
    /// deadline, 50-250 ms apart, no cap on the number of attempts (the same as
    /// `Retry::wait(Duration::from_secs(5))`).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The longest a [`LockGuard`](crate::LockGuard) keeps its lock by extending it. At the cap
    /// the guard stops extending and reports itself lost (reason: max hold); the lock is
    /// released when the guard is released or dropped, or expires by its TTL, so a holder that is
    /// stuck but alive cannot starve everyone (the Redlock spec asks to limit re-acquisition).
    /// Default: no cap.
    pub fn max_hold(mut self, max: Duration) -> Self {
        self.max_hold = Some(max);
        self
    }

    /// Fencing tokens (G6): each acquisition returns a `u64` that is larger than that of every
    /// acquisition of the same resource that returned before it began
    /// ([`Lock::fencing_token`](crate::Lock::fencing_token)). Costs a script instead of a plain
    /// `SET` and one more round trip (the write-back to a majority) per acquisition, and one
    /// counter key per resource (`<prefix>fence:<resource>`), which lives for the
    /// [`fence_horizon`](Self::fence_horizon) after its last write. All clients of a resource
    /// must agree on this setting. Default: off.
    pub fn fencing(mut self, enabled: bool) -> Self {
        self.fencing = enabled;
        self
    }

    /// How long a fence counter lives on a node after it was last written (each grant and each
    /// write-back that raises it writes it again). A counter that expired is taken up again from
    /// the server's clock in microseconds, which has moved on by the horizon since the counter's
    /// last write, so fences keep increasing (G6) as long as **the horizon is longer than the
    /// largest clock offset between lock servers** and no server clock steps back
    /// (docs/fencing.md, "Counters expire"). Longer costs memory: one counter per distinct
    /// resource locked within the horizon, on each node (docs/operations.md, "Sizing memory").
    /// Must be within 1 s..=30 days. Default: 1 hour.
    pub fn fence_horizon(mut self, horizon: Duration) -> Self {
        self.fence_horizon = horizon;
        self
    }

    /// Wake waiters when a lock is released: releases publish the deleted keys on
    /// `<prefix>released`, and an `acquire` refused because the resource is held waits for its
    /// retry delay *or* a wake-up, whichever comes first. Each release wakes one of this
    /// client's waiters, the one that began to wait first, and a new `acquire` of a key that
    /// waiters already wait for queues behind them: within a client the lock is handed over in
    /// turn, without a herd of retries. Across clients (processes, machines), the waiters of one
    /// resource (fenced or not) are served in the order they began to wait, by a waiting line
    /// kept on the nodes. A waiter that gets its lock, gives up or whose future is dropped leaves
    /// the line; one whose process dies (or whose leave is lost) holds it up until its lease
    /// ends: 250 ms + 3 node timeouts + 100 ms after its last attempt or renewal (0.5-3.35 s
    /// with the default node timeouts), whatever its retry policy, since a waiter renews its
    /// lease every 250 ms while it pauses. The next waiter may then wait one more retry delay
    /// (docs/design.md, "The waiting line"). Cuts the wait under contention
    /// from about half a retry delay to about a round trip; polling stays the fallback, so a
    /// lost notice costs only latency. Costs one subscriber connection per node (started on
    /// first wait) and needs `PUBLISH` / `SUBSCRIBE` permissions on the channel, and the
    /// sorted-set commands of the line (docs/operations.md, "ACL"). Default: off.
    pub fn wake_on_release(mut self, enabled: bool) -> Self {
        self.wake_on_release = enabled;
        self
    }

    /// Prefix of every key this client writes; lock keys are `<prefix>lock:<resource>`.
    /// Clients that should exclude each other must use the same prefix. Default: `quorumlock:`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Trust these CA certificates (PEM, one or more) for every `rediss://` node, instead of the
    /// WebPKI roots. A node can name its own file with `?tls_ca=/path/ca.pem` in its URL.
    /// Host names are still verified against the certificates. Default: the WebPKI roots.
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.ca_pem = Some(pem.into());
        self
    }

    /// Present this client certificate and key (PEM) to every `rediss://` node (mutual TLS, for
    /// servers with `tls-auth-clients yes`). A node can name its own files with
    /// `?tls_cert=/path/cert.pem&tls_key=/path/key.pem` in its URL. Default: none.
    pub fn tls_client_cert(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.tls.client = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Allow node URLs ending in `#insecure`, which turns off **all** certificate checks for that
    /// node: any server, or anyone between us and it, can then impersonate it and grant or deny
    /// locks. Only for tests against self-signed servers. Default: off, and such URLs are refused.
    pub fn danger_accept_invalid_tls_certs(mut self, allow: bool) -> Self {
        self.tls.accept_invalid = allow;
        self
    }

    /// Fewer than three nodes give no fault tolerance: with one, its loss stops every lock; with
    /// two, so does the loss of either (a majority of two is two). `build()` accepts such a
    /// configuration with one WARN; `true` says it is meant (a development setup, or a single
    /// Redis where availability is not the point) and leaves the warning out. Default: `false`.
    pub fn accept_no_fault_tolerance(mut self, accept: bool) -> Self {
        self.accept_no_fault_tolerance = accept;
        self
    }

    /// **Negative control for tests only; never in production.** With `false`, a release (or the
    /// clean-up of a failed acquisition) that gets no definite answer on its first try is given
    /// up instead of being re-sent until a definite answer or the key's expiry (G5 is then
    /// broken on purpose). The chaos run and `tests/redlock/construction.rs` use it to show that
    /// their leak checks can fail. Default: `true`.
    #[doc(hidden)]
    pub fn negative_control_release_obligations(mut self, enabled: bool) -> Self {
        self.release_obligations = enabled;
        self
    }

    /// Checks the configuration and makes what the client shares; `build()` (in client.rs)
    /// wraps it. Contacts no node.
    pub(crate) fn into_shared(self) -> Result<Shared, Error> {
        if self.nodes.is_empty() {
            return Err(Error::config(
                "no nodes: give at least one URL (an odd number of 3 or more for fault tolerance)",
            ));
        }
        if !(self.drift_factor.is_finite() && (0.0..1.0).contains(&self.drift_factor)) {
            return Err(Error::config(format!(
                "drift factor {} is not in [0, 1)",
                self.drift_factor
            )));
        }
        if self.max_hold == Some(Duration::ZERO) {
            return Err(Error::config("max_hold must be positive"));
        }
        if self.node_timeout == Some(Duration::ZERO) {
            return Err(Error::config("node timeout must be positive"));
        }
        if !(MIN_FENCE_HORIZON..=crate::pure::validity::MAX_TTL).contains(&self.fence_horizon) {
            return Err(Error::config(format!(
                "fence horizon {:?} is not within 1 s..=30 days: it must outlast the largest clock \
                 offset between lock servers (docs/fencing.md)",
                self.fence_horizon
            )));
        }
        self.retry.validate().map_err(Error::config)?;
        let connect_timeout = self.node_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let mut parsed: Vec<(String, Endpoint)> = Vec::with_capacity(self.nodes.len());
        for (index, raw) in self.nodes.iter().enumerate() {
            let (addr, endpoint) = parse_member(index, raw, &self.tls, connect_timeout)?;
            // Rule (e): one server counts once. Same host (by its normal form) and port is one
            // server, whatever the database; other aliases, and one cluster reached through
            // two different shards, are caught when connecting.
            let other = parsed.iter().enumerate().find(|(_, (_, e))| {
                e.addrs()
                    .iter()
                    .any(|a| endpoint.addrs().iter().any(|b| same_endpoint(a, b)))
            });
            if let Some((other, (other_addr, _))) = other {
                return Err(Error::config(format!(
                    "nodes {other} ({other_addr}) and {index} ({addr}) are the same server listed \
                     twice: list each redis-server once (two databases of one server are one node)"
                )));
            }
            parsed.push((addr, endpoint));
        }
        if parsed.len() < 3 && !self.accept_no_fault_tolerance {
            tracing::warn!(
                nodes = parsed.len(),
                "fewer than 3 lock nodes: the loss of any one stops every lock (no fault tolerance); \
                 use 3 or 5 independent servers, or say it is meant with \
                 RedlockBuilder::accept_no_fault_tolerance(true)",
            );
        }
        let clustered = parsed.iter().any(|(_, e)| matches!(e, Endpoint::Cluster { .. }));
        if clustered && self.key_prefix.contains(['{', '}']) {
            return Err(Error::config(format!(
                "key prefix {:?} contains a brace: with a Redis Cluster member every key carries a \
                 hash tag, and a brace in the prefix would move it",
                self.key_prefix
            )));
        }
        let identities = Arc::new(Identities::new(parsed.iter().map(|(a, _)| a.clone()).collect()));
        let nodes = parsed
            .into_iter()
            .enumerate()
            .map(|(index, (addr, endpoint))| {
                Arc::new(Node::new(
                    NodeId::new(index, addr),
                    endpoint,
                    connect_timeout,
                    identities.clone(),
                ))
            })
            .collect();
        let nodes = Arc::new(NodeSet::new(nodes, identities, self.release_obligations));
        Ok(Shared {
            wake: self
                .wake_on_release
                .then(|| Arc::new(WakeHub::new(nodes.clone(), &self.key_prefix))),
            nodes,
            node_timeout: self.node_timeout,
            drift_factor: self.drift_factor,
            min_ttl: crate::pure::validity::min_ttl(self.drift_factor),
            retry: self.retry,
            max_hold: self.max_hold,
            fencing: self.fencing,
            fence_horizon_ms: u64::try_from(self.fence_horizon.as_millis()).unwrap_or(u64::MAX),
            layout: if clustered { Layout::Tagged } else { Layout::Plain },
            short_ttl_warned: AtomicBool::new(false),
            prefix: self.key_prefix.into(),
        })
    }
}
