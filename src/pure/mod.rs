//! Layer 1, **pure**: the math and the schedules, with no I/O and no imports from the rest of
//! the crate (each file is plain functions and values, property-tested).
//!
//! - `quorum`: vote counting, the majority, the verdict.
//! - `validity`: validity, clock drift, the minimum TTL.
//! - `retry`, `backoff`: the library's retry schedules (`Retry` for acquisitions; the watchdog's,
//!   a node's reconnect and the release obligations' pauses).
//! - `token`, `key`: tokens and their fingerprints; key names, their namespaces and the
//!   hash-tagged layout of cluster members.
//!
//! May import: nothing of the crate (`tests/module_graph.rs` fails on an import from a higher
//! layer).

pub(crate) mod backoff;
pub(crate) mod key;
pub(crate) mod quorum;
pub(crate) mod retry;
pub(crate) mod token;
pub(crate) mod validity;
