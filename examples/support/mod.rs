//! Where the examples get their Redis nodes: the only part of them that is not lock code.
//!
//! An example asks for nodes by an environment variable: `QUORUMLOCK_NODES` for the lock nodes,
//! `QUORUMLOCK_STORE` for a shared store where an example needs one. When the variable is set,
//! its comma-separated URLs are used as they are; when it is not, a few `redis-server`
//! processes are started on free loopback ports (the `redis-server` binary must be installed:
//! `apt-get install -y redis-server`) and stopped when the returned handle is dropped.
//!
//! To copy an example into your service, replace `support::nodes(...)` with your own list of
//! node URLs; nothing else in it depends on this module. `quorumlock-testkit` (which starts the
//! local servers) is a test helper, not something a service needs.

use std::fmt;

use quorumlock_testkit::LocalCluster;

/// Why no nodes could be had; converts with `?` into any boxed error.
#[derive(Debug)]
pub struct NodesError(String);

impl fmt::Display for NodesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NodesError {}

/// The node URLs in `var`, or `n` fresh local nodes. The second value owns the local nodes
/// (`None` when `var` was set): keep it alive while the nodes are in use. The examples that
/// show node failures kill and restart nodes through it, so they skip that part with your nodes.
pub fn nodes(var: &str, n: usize) -> Result<(Vec<String>, Option<LocalCluster>), NodesError> {
    if let Ok(list) = std::env::var(var) {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if urls.is_empty() {
            return Err(NodesError(format!("{var} is set but lists no node URL")));
        }
        return Ok((urls, None));
    }
    let cluster = LocalCluster::start(n).map_err(|e| {
        NodesError(format!(
            "{var} is not set, and starting {n} local redis-server nodes failed: {e}"
        ))
    })?;
    Ok((cluster.urls(), Some(cluster)))
}
