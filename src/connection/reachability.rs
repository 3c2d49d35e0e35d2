//! What a node's connection attempts said last, so that its logs say each change once: WARN
//! when it becomes unreachable, ERROR when it refuses us, INFO when it is back (issue 21: a
//! line per lock during an outage drowned the logs).

use std::sync::atomic::{AtomicU8, Ordering};

use crate::errors::error::{NodeId, NodeOutcome};

/// A node's state as its connection attempts tell it, for logs that say each change once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Health {
    Unknown = 0,
    Up = 1,
    /// Unreachable: refused, reset, timed out. Usually passes.
    Down = 2,
    /// Reached, but it refuses us (credentials, ACL) or is not a Redis server: needs a person.
    Misconfigured = 3,
}

/// A node's last [`Health`], as one atomic.
#[derive(Debug, Default)]
pub(crate) struct Reachability(AtomicU8);

impl Reachability {
    /// Logs a change of this node's state once: WARN when it becomes unreachable, ERROR when it
    /// refuses us or is not Redis (a person must act), INFO when it is back. Repeated failures in
    /// the same state are at DEBUG only (issue 21: logs an operator can read).
    pub(crate) fn changed_to(&self, node: &NodeId, health: Health, error: Option<&NodeOutcome>) {
        let before = self.0.swap(health as u8, Ordering::Relaxed);
        if before == health as u8 {
            return;
        }
        let error = error.map(ToString::to_string).unwrap_or_default();
        match health {
            Health::Up if before != Health::Unknown as u8 => {
                tracing::info!(node = %node, "node reachable again");
            }
            Health::Up | Health::Unknown => {}
            Health::Down => tracing::warn!(
                node = %node,
                %error,
                "node unreachable: locks go on while a majority answers; said once, until it is back",
            ),
            Health::Misconfigured => tracing::error!(
                node = %node,
                %error,
                "node refuses this client (credentials, ACL) or is not a Redis server: it cannot count \
                 towards any quorum until the configuration is fixed",
            ),
        }
    }
}
