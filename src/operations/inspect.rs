//! [`Redlock::inspect`](crate::Redlock::inspect): a read-only, per-node view of one resource, for operators and the
//! `quorumlock status` command. It never changes a key.

use std::time::Duration;

use futures::future::join_all;
use redis::Value;

use crate::errors::error::{Error, NodeId, NodeOutcome, Operation};
use crate::pure::token::fingerprint_of;
use crate::shared::{resource_set, Shared};
use crate::wire::scripts::INSPECT;

/// Bound on each node's answer when no node timeout is configured.
const DEFAULT_INSPECT_TIMEOUT: Duration = Duration::from_millis(500);

/// What one node holds for a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeState {
    /// No lock key.
    Free,
    /// A lock key: its holder's token fingerprint (8 hex digits, the same as in this crate's
    /// logs) and the remaining TTL (`None` if the key has no TTL, which this crate never
    /// writes).
    Held {
        /// Fingerprint of the stored token, never the token itself.
        holder: String,
        /// The key's remaining time to live on this node.
        ttl: Option<Duration>,
    },
    /// The node could not be read.
    Failed(NodeOutcome),
}

/// One node's view of a resource.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeView {
    /// The node.
    pub node: NodeId,
    /// Its lock key.
    pub state: NodeState,
    /// Its fence counter (`None` if the resource was never acquired with fencing there).
    pub fence: Option<u64>,
    /// For a Redis Cluster member, the address of the shard that serves the resource's keys
    /// (`None` for a single server, or when the cluster did not say).
    pub shard: Option<String>,
}

/// The state of one resource on every node, for operators and debugging (who holds it, until
/// when, with which fence). Made by [`Redlock::inspect`](crate::Redlock::inspect).
#[derive(Clone, Debug)]
pub struct Inspection {
    resource: String,
    quorum: usize,
    nodes: Vec<NodeView>,
}

impl Inspection {
    /// The resource inspected.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Nodes needed for a majority.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Every node, in configuration order.
    pub fn nodes(&self) -> &[NodeView] {
        &self.nodes
    }

    /// The holder seen on a majority of nodes, if any, with how many nodes hold it. Only a
    /// snapshot: the holder's own validity is shorter than the node TTLs.
    pub fn holder(&self) -> Option<(&str, usize)> {
        let mut best: Option<(&str, usize)> = None;
        for v in &self.nodes {
            if let NodeState::Held { holder, .. } = &v.state {
                let n = self.holding(holder);
                if best.is_none_or(|(_, m)| n > m) {
                    best = Some((holder, n));
                }
            }
        }
        best.filter(|(_, n)| *n >= self.quorum)
    }

    /// How many nodes hold `holder`'s token.
    fn holding(&self, holder: &str) -> usize {
        self.nodes
            .iter()
            .filter(|v| matches!(&v.state, NodeState::Held { holder: h, .. } if h == holder))
            .count()
    }

    /// How many nodes answered.
    pub fn answered(&self) -> usize {
        self.nodes
            .iter()
            .filter(|v| !matches!(v.state, NodeState::Failed(_)))
            .count()
    }

    /// The largest fence counter seen (the next fenced acquisition gets a larger token).
    pub fn max_fence(&self) -> Option<u64> {
        self.nodes.iter().filter_map(|v| v.fence).max()
    }
}

/// Reads `resource`'s lock key, its TTL and its fence counter on every node, concurrently, with
/// one read-only script call per node (see [`Redlock::inspect`](crate::Redlock::inspect)).
///
/// # Errors
/// An empty or too long resource name; node failures are per node.
///
/// # Cancel safety
/// Cancel safe: it only reads.
pub(crate) async fn inspect(shared: &Shared, resource: &str) -> Result<Inspection, Error> {
    Error::require_runtime(Operation::Inspect)?;
    resource_set([resource], Operation::Inspect)?;
    let Read {
        keys,
        primary,
        fallback,
        timeout,
    } = Read::of(shared, resource);
    let replies = join_all(shared.nodes.iter().map(|n| async {
        let reply = n.query(&primary, &fallback, timeout).await;
        let shard = match n.is_cluster() {
            true => shard_of(n, &keys[0], timeout).await,
            false => None,
        };
        (reply, shard)
    }))
    .await;
    let nodes = shared
        .nodes
        .iter()
        .zip(replies)
        .map(|(n, (reply, shard))| {
            let (state, fence) = match reply {
                Ok(value) => read(&value),
                Err(outcome) => (NodeState::Failed(outcome), None),
            };
            NodeView {
                node: n.id.clone(),
                state,
                fence,
                shard,
            }
        })
        .collect();
    Ok(Inspection {
        resource: resource.to_owned(),
        quorum: shared.quorum(),
        nodes,
    })
}

/// The read-only call of `inspect.lua` on `resource`'s keys (also `health`'s probe), and its
/// bound: the node timeout, 500 ms when none is configured.
pub(crate) struct Read {
    pub(crate) keys: Vec<Box<[u8]>>,
    pub(crate) primary: redis::Cmd,
    pub(crate) fallback: redis::Cmd,
    pub(crate) timeout: Duration,
}

impl Read {
    pub(crate) fn of(shared: &Shared, resource: &str) -> Self {
        let keys: Vec<Box<[u8]>> = vec![
            shared.layout.lock(&shared.prefix, resource),
            shared.layout.fence(&shared.prefix, resource),
        ];
        Self {
            primary: INSPECT.evalsha(&keys, &[]),
            fallback: INSPECT.eval(&keys, &[]),
            timeout: shared.node_timeout.unwrap_or(DEFAULT_INSPECT_TIMEOUT),
            keys,
        }
    }
}

/// The address of the shard of a cluster member that serves `key`: its slot (`CLUSTER KEYSLOT`)
/// looked up in the member's slot map (`CLUSTER SLOTS`). `None` if the cluster does not say.
async fn shard_of(
    node: &std::sync::Arc<crate::connection::node::Node>,
    key: &[u8],
    timeout: Duration,
) -> Option<String> {
    let keyslot = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).clone();
    let Ok(Value::Int(slot)) = node.query(&keyslot, &keyslot, timeout).await else {
        return None;
    };
    let slots = redis::cmd("CLUSTER").arg("SLOTS").clone();
    let Ok(Value::Array(ranges)) = node.query(&slots, &slots, timeout).await else {
        return None;
    };
    ranges.iter().find_map(|range| match range {
        Value::Array(r) => match r.as_slice() {
            [Value::Int(start), Value::Int(end), Value::Array(primary), ..]
                if (*start..=*end).contains(&slot) =>
            {
                match primary.as_slice() {
                    [Value::BulkString(host), Value::Int(port), ..] => {
                        Some(format!("{}:{port}", String::from_utf8_lossy(host)))
                    }
                    _ => None,
                }
            }
            _ => None,
        },
        _ => None,
    })
}

/// Reads the script's `{value, pttl, fence}` reply.
fn read(value: &Value) -> (NodeState, Option<u64>) {
    let Value::Array(parts) = value else {
        return (
            NodeState::Failed(NodeOutcome::Protocol("inspect: not an array".into())),
            None,
        );
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        _ => None,
    };
    let fence = parts.get(2).and_then(text).and_then(|s| s.parse().ok());
    let state = match (parts.first(), parts.get(1)) {
        (Some(Value::BulkString(b)), Some(Value::Int(pttl))) => NodeState::Held {
            holder: fingerprint_of(&String::from_utf8_lossy(b)).to_string(),
            ttl: u64::try_from(*pttl).ok().map(Duration::from_millis),
        },
        (Some(Value::Nil | Value::Boolean(false)), _) => NodeState::Free,
        _ => NodeState::Failed(NodeOutcome::Protocol("inspect: unexpected reply".into())),
    };
    (state, fence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_held_free_and_garbage() {
        let held = Value::Array(vec![
            Value::BulkString(b"abc".to_vec()),
            Value::Int(1500),
            Value::BulkString(b"42".to_vec()),
        ]);
        let (state, fence) = read(&held);
        assert_eq!(fence, Some(42));
        assert!(matches!(state, NodeState::Held { ttl: Some(t), .. } if t == Duration::from_millis(1500)));
        let free = Value::Array(vec![Value::Nil, Value::Int(-2), Value::Nil]);
        assert_eq!(read(&free), (NodeState::Free, None));
        assert!(matches!(
            read(&Value::Okay).0,
            NodeState::Failed(NodeOutcome::Protocol(_))
        ));
    }
}
