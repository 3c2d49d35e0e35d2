//! **pure**, the lowest layer: the math and the schedules, plain functions and values with no
//! network, no clock and no imports from the rest of the crate (only `token` reads the OS's
//! random source), tested by unit and property tests.
//!
//! - `quorum`: vote counting, the majority, the verdict.
//! - `validity`: validity, clock drift, the minimum TTL.
//! - `retry`, `backoff`: the library's retry schedules (`Retry` for acquisitions; the watchdog's,
//!   a node's reconnect and the release obligations' pauses).
//! - `token`, `key`: tokens and their fingerprints; key names, their namespaces and the
//!   hash-tagged layout of cluster members.
//!
//! May import: nothing of the crate.
//!
//! The order of the layers is `LAYERS` in tests/module_graph.rs, which fails on an import from
//! a higher layer.

pub(crate) mod backoff;
pub(crate) mod key;
pub(crate) mod quorum;
pub(crate) mod retry;
pub(crate) mod token;
pub(crate) mod validity;
