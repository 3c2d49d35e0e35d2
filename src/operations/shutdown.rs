//! [`ShutdownReport`]: what [`Redlock::shutdown_timeout`](crate::Redlock::shutdown_timeout)
//! left behind when it stopped waiting.

use std::fmt;
use std::time::{Duration, Instant};

use crate::errors::error::NodeId;
use crate::node_set::nodes::NodeSet;

/// Waits for the background jobs of `nodes` for at most `limit`, and reports what is left.
pub(crate) async fn shutdown_within(nodes: &NodeSet, limit: Duration) -> ShutdownReport {
    let start = Instant::now();
    let finished = nodes.shutdown_within(limit).await;
    ShutdownReport {
        owed: nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), nodes.owed(i)))
            .filter(|(_, owed)| *owed > 0)
            .collect(),
        jobs: if finished { 0 } else { nodes.background_jobs() },
        elapsed: start.elapsed(),
    }
}

/// What [`Redlock::shutdown_timeout`](crate::Redlock::shutdown_timeout) left behind when it
/// stopped waiting.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShutdownReport {
    owed: Vec<(NodeId, usize)>,
    jobs: usize,
    elapsed: Duration,
}

impl ShutdownReport {
    /// Whether every background job finished: nothing was left behind.
    pub fn is_complete(&self) -> bool {
        self.jobs == 0 && self.owed.is_empty()
    }

    /// The nodes that were still owed releases, and how many each: their keys expire by TTL.
    pub fn owed_releases(&self) -> &[(NodeId, usize)] {
        &self.owed
    }

    /// Background jobs (releases, clean-ups, requests in flight) still running.
    pub fn background_jobs(&self) -> usize {
        self.jobs
    }

    /// How long the shutdown waited.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_complete() {
            return write!(f, "every background job finished in {:?}", self.elapsed);
        }
        write!(
            f,
            "{} background jobs still running after {:?}",
            self.jobs, self.elapsed
        )?;
        for (node, owed) in &self.owed {
            write!(
                f,
                "; node {node} still owed {owed} releases (their keys expire by TTL)"
            )?;
        }
        Ok(())
    }
}
