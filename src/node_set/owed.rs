//! What the node set owes each node, and what it does not: the nodes an acquisition never
//! reached ([`Unsent`]), whose release owes nothing, and the count of releases still owed
//! ([`Owed`]), which `Redlock::shutdown_timeout` reports.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::connection::node::Node;
use crate::errors::error::NodeOutcome;

/// Whether a release's answer ends its obligation: the key is gone (deleted now, or not ours,
/// which left a tombstone).
pub(crate) fn is_definite(outcome: &NodeOutcome) -> bool {
    matches!(outcome, NodeOutcome::Granted | NodeOutcome::Refused)
}

/// Background work (releases, clean-ups) that a runtime dropped before it finished, or that
/// could not start because no runtime was running: its keys expire by TTL, and an operator
/// should hear of it. Said once per client at WARN (issue 21: a lock alive at the end of `main`
/// was released in some runs, and in others stayed its whole TTL, once with nothing logged).
#[derive(Clone, Debug)]
pub(crate) struct Unfinished(Arc<(AtomicBool, String)>);

impl Unfinished {
    pub(crate) fn new(nodes: &[Arc<Node>]) -> Self {
        let names: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
        Self(Arc::new((AtomicBool::new(false), names.join(", "))))
    }

    /// `job`, reporting if it is dropped before it finishes (a runtime shutting down drops
    /// every task it still has).
    pub(crate) fn watch<F: Future<Output = ()>>(&self, job: F) -> impl Future<Output = ()> {
        struct Guard(Option<Unfinished>);
        impl Drop for Guard {
            fn drop(&mut self) {
                if let Some(u) = self.0.take() {
                    u.report("the tokio runtime shut down first");
                }
            }
        }
        let guard = Guard(Some(self.clone()));
        async move {
            let mut guard = guard;
            job.await;
            guard.0.take();
        }
    }

    pub(crate) fn report(&self, why: &str) {
        if !self.0 .0.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                nodes = %self.0 .1,
                "background releases or clean-ups did not run ({why}): their keys expire by TTL; \
                 await Redlock::shutdown() (or shutdown_timeout) before the runtime ends (said once \
                 per client)",
            );
        }
    }
}

/// Per node, whether an acquisition's request is known never to have left this client (its
/// answer said no connection could be had). Such a node holds nothing of the lock, so its
/// release owes it nothing once the release's own first try did not leave either: `shutdown`
/// then need not wait a TTL for a node that never accepted a connection (issue 21). A node
/// whose request may still leave (no answer yet) is not marked.
#[derive(Clone, Debug)]
pub(crate) struct Unsent(Arc<[AtomicBool]>);

impl Unsent {
    pub(crate) fn new(n: usize) -> Self {
        Self((0..n).map(|_| AtomicBool::new(false)).collect())
    }

    pub(crate) fn mark(&self, index: usize) {
        if let Some(flag) = self.0.get(index) {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a release of node `index` is owed even if it cannot be sent now.
    pub(crate) fn owed(&self, index: usize) -> bool {
        !self.0.get(index).is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

/// One owed obligation in its node's count; dropped with the obligation, however it ends.
pub(crate) struct Owed(Arc<AtomicUsize>);

impl Owed {
    pub(crate) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deleted_or_not_ours_ends_an_obligation() {
        assert!(is_definite(&NodeOutcome::Granted));
        assert!(is_definite(&NodeOutcome::Refused));
        for o in [
            NodeOutcome::Timeout,
            NodeOutcome::Io("reset".into()),
            NodeOutcome::Denied("NOPERM".into()),
            NodeOutcome::Redis("OOM".into()),
            NodeOutcome::Protocol("?".into()),
            NodeOutcome::Pending,
        ] {
            assert!(!is_definite(&o), "{o:?}");
        }
    }
}
