//! The per-node evidence of every decision: which node ([`NodeId`]) answered what
//! ([`NodeOutcome`]).

use std::fmt;
use std::sync::Arc;

/// One lock node, as shown in errors and logs: its address without credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NodeId {
    index: usize,
    addr: Arc<str>,
}

impl NodeId {
    pub(crate) fn new(index: usize, addr: String) -> Self {
        Self {
            index,
            addr: addr.into(),
        }
    }

    /// Position of the node in the list given to the builder.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The node's address (`redis://host:port`, `rediss://host:port/db`, `unix:/path`), never
    /// with user name or password.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({}: {})", self.index, self.addr)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// What one node answered to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeOutcome {
    /// The node did what was asked. What that was depends on the operation:
    ///
    /// - acquire: the node set the key to our token;
    /// - extend: the node prolonged our key;
    /// - release: the node **deleted** our key, so in a
    ///   [`ReleaseReport`](crate::ReleaseReport) `Granted` means "deleted here". A release that
    ///   finds the key absent or another owner's is [`Refused`](Self::Refused).
    Granted,
    /// The key is not ours on this node: held by another owner (acquire), or absent or another
    /// owner's (extend, release).
    Refused,
    /// No answer within the node timeout.
    Timeout,
    /// The connection could not be made or broke (refused, reset, closed).
    Io(Arc<str>),
    /// The node rejected our credentials or lacks a permission (`WRONGPASS`, `NOAUTH`,
    /// `NOPERM`, a script command denied by ACL).
    Denied(Arc<str>),
    /// The node answered with an error reply (`OOM`, `READONLY`, `BUSY`, `LOADING`, ...).
    Redis(Arc<str>),
    /// The node answered something this protocol never sends: counted as a failure, and the
    /// connection is dropped.
    Protocol(Arc<str>),
    /// The decision was taken before this node answered. Its request still completes (or times
    /// out) in the background, and anything it set is released.
    Pending,
    /// This node reaches the same redis-server as another configured node (same `run_id`): the
    /// node list is wrong, and the client refuses to lock until it is fixed (one server must
    /// never count twice towards a quorum).
    SameServer(Arc<str>),
}

impl NodeOutcome {
    /// `true` for the outcomes that say nothing about the key because the node could not be
    /// used: timeouts, I/O, denied, error replies, protocol errors, not yet answered.
    pub fn is_failure(&self) -> bool {
        !matches!(self, Self::Granted | Self::Refused)
    }

    /// An error reply with code `code` (`text` is the whole reply). A cluster's slot errors
    /// (`CROSSSLOT`, `MOVED`, `ASK`) also say what to do: they are what a Redis Cluster node
    /// given as a single server (`redis://`) answers to every lock script, whose keys are in
    /// different slots and mostly served elsewhere.
    pub(crate) fn error_reply(code: &str, text: Arc<str>) -> Self {
        match code {
            "CROSSSLOT" | "MOVED" | "ASK" => Self::Redis(
                format!(
                    "{text} (a Redis Cluster node: if it is given as redis://, list its cluster as \
                     one member, redis+cluster://host:port,host:port; see docs/scaling.md)"
                )
                .into(),
            ),
            _ => Self::Redis(text),
        }
    }
}

impl fmt::Display for NodeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Granted => f.write_str("granted"),
            Self::Refused => f.write_str("refused (not ours)"),
            Self::Timeout => f.write_str("timed out"),
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::Denied(e) => write!(f, "permission denied: {e}"),
            Self::Redis(e) => write!(f, "redis error: {e}"),
            Self::Protocol(e) => write!(f, "unexpected reply: {e}"),
            Self::Pending => {
                f.write_str("not waited for: the outcome was known without it (its request still completes)")
            }
            Self::SameServer(e) => write!(f, "misconfigured: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_errors_say_to_list_the_cluster_as_one_member() {
        for code in ["CROSSSLOT", "MOVED", "ASK"] {
            let text = NodeOutcome::error_reply(code, format!("{code} details").into()).to_string();
            assert!(
                text.starts_with(&format!("redis error: {code} details (")),
                "{text}"
            );
            assert!(text.contains("redis+cluster://"), "{text}");
        }
        let oom = NodeOutcome::error_reply("OOM", "OOM command not allowed".into());
        assert_eq!(oom, NodeOutcome::Redis("OOM command not allowed".into()));
    }
}
