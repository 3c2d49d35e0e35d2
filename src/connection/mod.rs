//! **connection**, above wire: one member of the quorum and the connection to it.
//!
//! - `url`: URL and TLS parsing, and what a member is (`Endpoint`: one server or a Redis
//!   Cluster).
//! - `identity`: a server's identity (`run_id`, cluster node ids) and the check that no server
//!   is counted twice.
//! - `link`: one established connection (multiplexed or cluster) and its closed signal.
//! - `reachability`: a node's last state, logged once per change.
//! - `node`: one member's lazy, self-healing connection, its timeout and reset.
//!
//! May import: `pure`, `errors`, `wire`.

pub(crate) mod identity;
pub(crate) mod link;
pub(crate) mod node;
pub(crate) mod reachability;
pub(crate) mod url;
