//! Test kit for distributed locks on real Redis servers.
//!
//! [`LocalCluster`] starts N independent `redis-server` processes on free loopback ports, each in
//! its own temporary directory, and lets a test kill -9 a node, restart it on the same port (with
//! or without its data), pause it (SIGSTOP) and resume it. Children die with the test process
//! (`PR_SET_PDEATHSIG`) and when the cluster is dropped.
//!
//! [`Proxy`] sits in front of one node and injects network faults per direction: latency,
//! hold (pause), drop (blackhole), connection resets (real RSTs), and dropping requests that
//! contain a pattern; it also counts requests by pattern. It passes a close on only after the
//! bytes sent before it, as TCP does, and it can hold the requests of the connections open now
//! and deliver them later, after newer connections' traffic ([`Proxy::hold_requests`],
//! [`Proxy::deliver_held`]): late bytes, as from a retransmission.
//!
//! With [`ClusterOptions::shards`], each member is instead a Redis Cluster of several primary
//! shards (optionally with replicas) on loopback, with per-shard kill, restart, pause and
//! failover, and slot moves that stop half-way so clients see `-ASK` redirections
//! ([`LocalCluster::begin_move_slot`]).
//!
//! [`audit::check`] checks every key a client wrote under its prefix (locks, tombstones, fence
//! counters, waiting lines) against the TTL bound of its kind.
//!
//! This crate does not depend on `quorumlock`, so it can test any lock client.
//!
//! ```no_run
//! use quorumlock_testkit::LocalCluster;
//!
//! let mut cluster = LocalCluster::start(5).expect("redis-server");
//! let urls = cluster.urls(); // ["redis://127.0.0.1:PORT", ...]
//! cluster.kill(0).unwrap();
//! cluster.restart(0).unwrap();
//! ```
#![warn(missing_docs, missing_debug_implementations)]

pub mod audit;
mod cluster;
mod history;
mod proxy;
mod resp;
mod shards;
mod slots;
mod spawner;
mod tls;

pub use cluster::{nodes_from_env_or_local, ClusterOptions, Error, LocalCluster, Persistence};
pub use history::{Grant, GrantId, History, Violation, FENCED_WRITE};
pub use proxy::{Counter, Delivered, Direction, Fault, Proxy};
pub use resp::Reply;
pub use slots::{key_slot, SlotMove, SLOTS};
pub use tls::{ServerTls, TestPki};

/// A token's fingerprint as the library logs it (docs/design.md, "Token fingerprints"): 32-bit
/// FNV-1a over the UTF-8 bytes, as 8 lowercase hex digits. Computed here from the definition,
/// independently of the library, so a test that matches a key to a log line checks the
/// definition too.
pub fn fingerprint(token: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in token.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprint_is_fnv1a_32() {
        // The FNV specification's test vectors.
        assert_eq!(super::fingerprint(""), "811c9dc5");
        assert_eq!(super::fingerprint("foobar"), "bf9cf968");
    }
}
