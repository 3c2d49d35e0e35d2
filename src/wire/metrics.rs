//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, behind the `metrics` cargo
//! feature. Every name, type and label is listed in docs/metrics.md; change both together.
//!
//! With the feature off, every function here is an empty `#[inline(always)]` body over
//! zero-sized types: no clock is read, no label is built, nothing is allocated or locked. What
//! remains is the shape of the call sites (an inner async fn behind `acquire`, `extend` and
//! `release`, a one-byte `Option` in each queued release obligation). With the feature on and no
//! recorder installed, the facade's no-op recorder is used.
//!
//! The call sites pass what they already have (an error kind, a node id, an outcome) and this
//! file turns it into names and labels, so that the instrumented modules gain one line each.

use crate::errors::error::{ErrorKind, NodeId, NodeOutcome};
use crate::wire::reply::Op;

#[cfg(feature = "metrics")]
mod on {
    use std::time::Instant;

    use super::{ErrorKind, NodeId, NodeOutcome, Op};

    const ACQUIRE_TOTAL: &str = "quorumlock_acquire_total";
    const ACQUIRE_DURATION: &str = "quorumlock_acquire_duration_seconds";
    const ATTEMPTS_TOTAL: &str = "quorumlock_acquire_attempts_total";
    const EXTEND_TOTAL: &str = "quorumlock_extend_total";
    const RELEASE_TOTAL: &str = "quorumlock_release_total";
    const GUARDS_LOST_TOTAL: &str = "quorumlock_guards_lost_total";
    const NODE_ERRORS_TOTAL: &str = "quorumlock_node_errors_total";
    const OBLIGATIONS_PENDING: &str = "quorumlock_release_obligations_pending";
    const OBLIGATIONS_EXPIRED_TOTAL: &str = "quorumlock_release_obligations_expired_total";

    /// Gives every quorumlock metric its help text and unit in the installed `metrics` recorder
    /// (exporters print them, as Prometheus' `# HELP` lines). Call it once, after installing the
    /// recorder; recording works without it. Only with the `metrics` cargo feature.
    ///
    /// The metrics, their labels and what they mean are listed in [docs/metrics.md].
    ///
    /// [docs/metrics.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/metrics.md
    pub fn describe_metrics() {
        use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        describe_counter!(
            ACQUIRE_TOTAL,
            "Acquisitions (acquire, try_acquire, acquire_many, guards), by outcome"
        );
        describe_histogram!(
            ACQUIRE_DURATION,
            Unit::Seconds,
            "Time from the acquire call to its outcome, retries included, by outcome"
        );
        describe_counter!(
            ATTEMPTS_TOTAL,
            "Single acquisition attempts, by outcome; outcome=contended is contention"
        );
        describe_counter!(
            EXTEND_TOTAL,
            "Lock extensions (Lock::extend and the guards' watchdogs), by outcome"
        );
        describe_counter!(
            RELEASE_TOTAL,
            "Lock releases, by outcome; dropped = released in the background on drop"
        );
        describe_counter!(GUARDS_LOST_TOTAL, "Guards whose lock was lost, by reason");
        describe_counter!(
            NODE_ERRORS_TOTAL,
            "Requests to one node that failed (timeouts, i/o, error replies), by node, op and outcome"
        );
        describe_gauge!(
            OBLIGATIONS_PENDING,
            "Releases still owed to a node (queued release obligations), by node"
        );
        describe_counter!(
            OBLIGATIONS_EXPIRED_TOTAL,
            "Release obligations given up without a definite answer because the key had certainly expired, by node"
        );
    }

    /// When an acquisition started.
    pub(crate) struct Timer(Instant);

    pub(crate) fn timer() -> Timer {
        Timer(Instant::now())
    }

    pub(crate) fn acquired(timer: Timer, outcome: Result<(), ErrorKind>) {
        let outcome = outcome.map_or_else(kind_label, |()| "granted");
        ::metrics::counter!(ACQUIRE_TOTAL, "outcome" => outcome).increment(1);
        ::metrics::histogram!(ACQUIRE_DURATION, "outcome" => outcome).record(timer.0.elapsed().as_secs_f64());
    }

    pub(crate) fn rejected(e: &crate::Error) {
        acquired(timer(), Err(e.kind()));
    }

    pub(crate) fn attempt(outcome: Result<(), ErrorKind>) {
        let outcome = outcome.map_or_else(kind_label, |()| "granted");
        ::metrics::counter!(ATTEMPTS_TOTAL, "outcome" => outcome).increment(1);
    }

    pub(crate) fn extended(outcome: Result<(), ErrorKind>) {
        let outcome = outcome.map_or_else(kind_label, |()| "extended");
        ::metrics::counter!(EXTEND_TOTAL, "outcome" => outcome).increment(1);
    }

    pub(crate) fn released(outcome: Result<&'static str, ErrorKind>) {
        let outcome = outcome.unwrap_or_else(kind_label);
        ::metrics::counter!(RELEASE_TOTAL, "outcome" => outcome).increment(1);
    }

    pub(crate) fn guard_lost(reason: &'static str) {
        ::metrics::counter!(GUARDS_LOST_TOTAL, "reason" => reason).increment(1);
    }

    pub(crate) fn node_error(node: &NodeId, op: Option<Op>, outcome: &NodeOutcome) {
        let outcome = match outcome {
            NodeOutcome::Timeout => "timeout",
            NodeOutcome::Io(_) => "io",
            NodeOutcome::Denied(_) => "denied",
            NodeOutcome::Redis(_) => "redis",
            NodeOutcome::Protocol(_) => "protocol",
            NodeOutcome::SameServer(_) => "same_server",
            // Answers that say something about the key are not errors; `Pending` is never a
            // node's own answer.
            NodeOutcome::Granted | NodeOutcome::Refused | NodeOutcome::Pending => return,
        };
        ::metrics::counter!(
            NODE_ERRORS_TOTAL,
            "node" => node.addr().to_owned(),
            "op" => op_label(op),
            "outcome" => outcome,
        )
        .increment(1);
    }

    /// The `op` label: `None` is `Redlock::inspect`'s read-only query.
    fn op_label(op: Option<Op>) -> &'static str {
        match op {
            Some(Op::Acquire | Op::AcquireMany | Op::AcquireFenced) => "acquire",
            Some(Op::FenceRaise) => "fence_write_back",
            Some(Op::Extend) => "extend",
            Some(Op::Release) => "release",
            None => "inspect",
        }
    }

    /// One queued release obligation: counted in the pending gauge from its creation until it
    /// is dropped, whichever way it ends (definite answer, expiry, a runtime shutting down).
    pub(crate) struct Obligation(::metrics::Gauge);

    impl Obligation {
        pub(crate) fn new(node: &NodeId) -> Self {
            let gauge = ::metrics::gauge!(OBLIGATIONS_PENDING, "node" => node.addr().to_owned());
            gauge.increment(1.0);
            Self(gauge)
        }
    }

    impl Drop for Obligation {
        fn drop(&mut self) {
            self.0.decrement(1.0);
        }
    }

    pub(crate) fn obligation_expired(node: &NodeId) {
        ::metrics::counter!(OBLIGATIONS_EXPIRED_TOTAL, "node" => node.addr().to_owned()).increment(1);
    }

    /// The `outcome` label of a failure: the error kind in snake case.
    fn kind_label(kind: ErrorKind) -> &'static str {
        match kind {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Config => "config",
            ErrorKind::Contended => "contended",
            ErrorKind::QuorumUnreachable => "quorum_unreachable",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::ValidityExhausted => "validity_exhausted",
            ErrorKind::DeadlineExceeded => "deadline",
            ErrorKind::Lost => "lost",
            ErrorKind::Entropy => "entropy",
            ErrorKind::NoRuntime => "no_runtime",
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod off {
    use super::{ErrorKind, NodeId, NodeOutcome, Op};

    pub(crate) struct Timer;

    #[inline(always)]
    pub(crate) fn timer() -> Timer {
        Timer
    }

    #[inline(always)]
    pub(crate) fn acquired(_: Timer, _: Result<(), ErrorKind>) {}

    #[inline(always)]
    pub(crate) fn rejected(_: &crate::Error) {}

    #[inline(always)]
    pub(crate) fn attempt(_: Result<(), ErrorKind>) {}

    #[inline(always)]
    pub(crate) fn extended(_: Result<(), ErrorKind>) {}

    #[inline(always)]
    pub(crate) fn released(_: Result<&'static str, ErrorKind>) {}

    #[inline(always)]
    pub(crate) fn guard_lost(_: &'static str) {}

    #[inline(always)]
    pub(crate) fn node_error(_: &NodeId, _: Option<Op>, _: &NodeOutcome) {}

    pub(crate) struct Obligation;

    impl Obligation {
        #[inline(always)]
        pub(crate) fn new(_: &NodeId) -> Self {
            Self
        }
    }

    #[inline(always)]
    pub(crate) fn obligation_expired(_: &NodeId) {}
}

#[cfg(not(feature = "metrics"))]
pub(crate) use off::*;
#[cfg(feature = "metrics")]
pub use on::describe_metrics;
#[cfg(feature = "metrics")]
pub(crate) use on::*;

/// The outcome of a result, as the metric functions take it.
#[inline(always)]
pub(crate) fn kind_of<T>(result: &Result<T, crate::Error>) -> Result<(), ErrorKind> {
    result.as_ref().map(drop).map_err(crate::Error::kind)
}

// `release()`'s outcome labels, named once for the call sites and docs/metrics.md.
/// A majority deleted our key.
pub(crate) const RELEASED: &str = "released";
/// Every node answered and a majority held nothing of this lock: it had expired or been lost.
pub(crate) const RELEASED_NOT_HELD: &str = "not_held";
/// A `Lock` dropped without `release()`: released in the background, outcome not awaited.
pub(crate) const RELEASED_ON_DROP: &str = "dropped";

// Why a guard was lost (`quorumlock_guards_lost_total{reason}`).
/// `max_hold` was reached.
pub(crate) const LOST_MAX_HOLD: &str = "max_hold";
/// No extension succeeded while one could still finish before the validity ended.
pub(crate) const LOST_NOT_EXTENDED: &str = "not_extended";
/// The validity ended before the watchdog ran (a blocked runtime).
pub(crate) const LOST_VALIDITY_ENDED: &str = "validity_ended";
/// An extension found that a majority no longer holds our token.
pub(crate) const LOST_NOT_HELD: &str = "not_held";
