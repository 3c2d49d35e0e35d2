//! [`Redlock::health`](crate::Redlock::health): every node's state, for a service's start-up
//! check and its readiness probe. Unlike `inspect` it is about the nodes, not a resource.

use std::fmt;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::errors::error::{Error, NodeId, NodeOutcome, Operation};
use crate::operations::inspect::Read;
use crate::shared::Shared;

/// The resource the probe reads: a read-only script call on its keys shows that the node is
/// reachable, accepts our credentials, lets us run scripts on our key prefix, and has (or
/// takes) our scripts. Reading a key changes nothing, whatever the name.
const PROBE: &str = "quorumlock-health-probe";

/// One node's state in a [`Health`] report, to tell which node is down, refuses our
/// credentials or is the same server as another. Made by
/// [`Redlock::health`](crate::Redlock::health).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeHealth {
    /// The node.
    pub node: NodeId,
    /// How long its answer took, or why it gave none that counts: unreachable
    /// ([`NodeOutcome::Timeout`], [`NodeOutcome::Io`]), refusing our credentials or ACL
    /// ([`NodeOutcome::Denied`]), an error reply, not Redis ([`NodeOutcome::Protocol`]), or the
    /// same server as another node ([`NodeOutcome::SameServer`]).
    pub state: Result<Duration, NodeOutcome>,
    /// The server identities it reached (`run_id`, or a cluster member's node ids): two nodes
    /// that show the same one are one server.
    pub server: Vec<String>,
}

impl NodeHealth {
    /// Whether the node can vote.
    pub fn is_ok(&self) -> bool {
        self.state.is_ok()
    }
}

/// Every node's state, for start-up checks and readiness probes. Made by
/// [`Redlock::health`](crate::Redlock::health).
#[derive(Clone, Debug)]
pub struct Health {
    quorum: usize,
    nodes: Vec<NodeHealth>,
}

impl Health {
    /// Every node, in configuration order.
    pub fn nodes(&self) -> &[NodeHealth] {
        &self.nodes
    }

    /// How many nodes can vote.
    pub fn healthy(&self) -> usize {
        self.nodes.iter().filter(|n| n.is_ok()).count()
    }

    /// Whether a majority can vote: locks can be taken (a readiness probe's answer).
    pub fn has_quorum(&self) -> bool {
        self.healthy() >= self.quorum
    }

    /// How many more nodes may fail before no lock can be taken (0 without a quorum).
    pub fn spare(&self) -> usize {
        self.healthy().saturating_sub(self.quorum)
    }

    /// Whether every node can vote (a start-up check's answer: all the fault tolerance
    /// configured is there).
    pub fn is_fully_healthy(&self) -> bool {
        self.healthy() == self.nodes.len()
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} nodes healthy (quorum {}, {} more may fail)",
            self.healthy(),
            self.nodes.len(),
            self.quorum,
            self.spare()
        )?;
        for n in &self.nodes {
            match &n.state {
                Ok(latency) => write!(f, "; {}: ok in {latency:?}", n.node)?,
                Err(why) => write!(f, "; {}: {why}", n.node)?,
            }
        }
        Ok(())
    }
}

/// Asks every node at once, each bounded by the node timeout (500 ms when none is set).
pub(crate) async fn health(shared: &Shared) -> Result<Health, Error> {
    Error::require_runtime(Operation::Inspect)?;
    let Read {
        primary,
        fallback,
        timeout,
        ..
    } = Read::of(shared, PROBE);
    let answers = join_all(shared.nodes.iter().map(|n| async {
        let start = Instant::now();
        let reply = n.query(&primary, &fallback, timeout).await;
        reply.map(|_| start.elapsed())
    }))
    .await;
    // A node that reaches the same server as another fails its connection with `SameServer`
    // (rule (e)), so it shows here as not ok.
    let nodes = shared
        .nodes
        .iter()
        .zip(answers)
        .enumerate()
        .map(|(i, (n, state))| NodeHealth {
            node: n.id.clone(),
            state,
            server: shared.nodes.identity(i),
        })
        .collect();
    Ok(Health {
        quorum: shared.quorum(),
        nodes,
    })
}
