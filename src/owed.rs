//! What the node set owes each node, and what it does not: the nodes an acquisition never
//! reached ([`Unsent`]), whose release owes nothing, and the count of releases still owed
//! ([`Owed`]), which `Redlock::shutdown_timeout` reports.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

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
