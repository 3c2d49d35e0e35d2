//! [`Shared`]: what every operation of one client reads: the node set, the configuration, and
//! the wake-up hub; and the input checks every operation starts with.
//!
//! The public [`Redlock`](crate::Redlock) is a thin handle over an `Arc<Shared>`; locks, guards,
//! the acquisition loop and `inspect` take the `Arc<Shared>` (never the client), so the layers
//! below the public API do not depend on it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::errors::error::{Error, ErrorKind, Operation};
use crate::node_set::nodes::NodeSet;
use crate::node_set::wake::WakeHub;
use crate::pure::key::{Layout, MAX_RESOURCE_LEN};
use crate::pure::retry::Retry;
use crate::pure::validity::{drift, whole_millis, MAX_TTL};

pub(crate) struct Shared {
    pub(crate) nodes: Arc<NodeSet>,
    pub(crate) node_timeout: Option<Duration>,
    pub(crate) drift_factor: f64,
    /// `min_ttl(drift_factor)`, computed once: every call checks its TTL against it.
    pub(crate) min_ttl: Duration,
    pub(crate) retry: Retry,
    pub(crate) max_hold: Option<Duration>,
    pub(crate) fencing: bool,
    /// How long a fence counter lives after its last write, in milliseconds (G3, G6:
    /// `RedlockBuilder::fence_horizon`).
    pub(crate) fence_horizon_ms: u64,
    /// Present when wake-on-release is on.
    pub(crate) wake: Option<Arc<WakeHub>>,
    pub(crate) prefix: Box<str>,
    /// Tagged when a member is a Redis Cluster: then every key carries its resource's hash tag.
    pub(crate) layout: Layout,
    /// Whether the warning about a TTL under two node timeouts was logged (once per client).
    pub(crate) short_ttl_warned: AtomicBool,
}

impl Drop for Shared {
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

impl Shared {
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
        let min = self.min_ttl;
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
        if effective < node_timeout.saturating_mul(2) && !self.short_ttl_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                ttl = ?effective,
                ?node_timeout,
                "a TTL under two node timeouts: a node that answers within its timeout can leave no \
                 validity, and a lock that is granted may be valid for a fraction of a millisecond; \
                 use a longer TTL or a shorter node timeout (said once per client)",
            );
        }
        Ok(Ttl {
            ms,
            effective,
            drift,
            node_timeout,
        })
    }

    /// The client's `Debug` fields: every setting all clients of a resource must share, and
    /// no secret (node addresses are redacted).
    pub(crate) fn describe<'a, 'b, 'c>(
        &self,
        d: &'a mut fmt::DebugStruct<'b, 'c>,
    ) -> &'a mut fmt::DebugStruct<'b, 'c> {
        d.field(
            "nodes",
            &self.nodes.iter().map(|n| n.id.addr()).collect::<Vec<_>>(),
        )
        .field("quorum", &self.quorum())
        .field("node_timeout", &self.node_timeout)
        .field("drift_factor", &self.drift_factor)
        .field("retry", &self.retry)
        .field("max_hold", &self.max_hold)
        .field("fencing", &self.fencing)
        .field("fence_horizon", &Duration::from_millis(self.fence_horizon_ms))
        .field("wake_on_release", &self.wake.is_some())
        .field("key_prefix", &self.prefix)
    }

    pub(crate) fn quorum(&self) -> usize {
        self.nodes.quorum()
    }

    /// The configuration error found while connecting (one server listed twice), if any.
    pub(crate) fn misconfigured(&self, op: Operation) -> Option<Error> {
        self.nodes
            .conflict()
            .map(|m| Error::new(ErrorKind::Config, op).with_message(m.to_string()))
    }
}

/// Checks resource names and puts them in key order without duplicates: two clients locking the
/// same set in different orders must build the same keys. A single name (the common case) is
/// put straight into the shared slice the lock keeps, without a vector in between.
pub(crate) fn resource_set<I, S>(resources: I, op: Operation) -> Result<Arc<[Box<str>]>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let check = |r: S| -> Result<Box<str>, Error> {
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
        Ok(r.into())
    };
    let mut resources = resources.into_iter();
    let Some(first) = resources.next() else {
        return Err(Error::invalid_input(op, "no resources given"));
    };
    let first = check(first)?;
    let Some(second) = resources.next() else {
        return Ok(std::iter::once(first).collect());
    };
    let mut set = Vec::with_capacity(2 + resources.size_hint().0);
    set.push(first);
    set.push(check(second)?);
    for r in resources {
        set.push(check(r)?);
    }
    set.sort_unstable();
    set.dedup();
    Ok(set.into())
}

/// Awaits `$fut` inside `$span`, or bare when the span is disabled (no subscriber wants it, the
/// usual case in production at `info`): `Instrumented` enters and exits its span on every poll
/// even then (about 650 instructions of a lock cycle; docs/benchmarks.md). A macro, not an async
/// fn, so that the future is built where it is awaited instead of moved into another one.
macro_rules! in_span {
    ($span:expr, $fut:expr) => {{
        let span: tracing::Span = $span;
        if span.is_disabled() {
            $fut.await
        } else {
            tracing::Instrument::instrument($fut, span).await
        }
    }};
}
pub(crate) use in_span;

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
    fn resource_sets_are_sorted_and_deduplicated() {
        let set = resource_set(["b", "a", "b"], Operation::Acquire).unwrap();
        assert_eq!(&*set, [Box::from("a"), Box::from("b")]);
        let one = resource_set(["a"], Operation::Acquire).unwrap();
        assert_eq!(&*one, [Box::from("a")]);
        assert!(resource_set(["a", ""], Operation::Acquire)
            .unwrap_err()
            .is_invalid());
        assert!(resource_set([""], Operation::Acquire).unwrap_err().is_invalid());
        assert!(resource_set(Vec::<&str>::new(), Operation::Acquire)
            .unwrap_err()
            .is_invalid());
    }
}
