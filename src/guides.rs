//! The guides of `docs/`, in the API documentation, so that they are one click from the types
//! they explain and are versioned with them. Each module is documentation only; its Rust
//! examples compile as doc tests.
//!
//! | guide | answers |
//! |---|---|
//! | [`guards`] | keeping a lock for work of unknown length: the watchdog, `lost()`, `with_lock`, `with_guard` |
//! | [`fencing`] | fencing tokens over the quorum: what they guarantee, under which conditions, how a store checks them |
//! | [`operations`] | running it: choosing N, TTL and node timeout, persistence, clocks, the ACL, TLS, the request path, sizing memory |
//! | [`scaling`] | members that are Redis Clusters, and spreading locks over shards |
//! | [`metrics`] | what the `metrics` feature records, and what to alert on |
//!
//! Links inside a guide point at files of the repository; the design, the guarantees and the
//! tests behind them are in `docs/design.md`, `docs/guarantees.md` and `docs/testing.md`.

#[doc = include_str!("../docs/guards.md")]
pub mod guards {}

#[doc = include_str!("../docs/fencing.md")]
pub mod fencing {}

#[doc = include_str!("../docs/operations.md")]
pub mod operations {}

#[doc = include_str!("../docs/scaling.md")]
pub mod scaling {}

#[doc = include_str!("../docs/metrics.md")]
pub mod metrics {}
