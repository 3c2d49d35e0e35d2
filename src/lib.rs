//! # quorumlock
//!
//! A distributed lock for async Rust, held by a **majority of N independent Redis nodes** (the
//! Redlock algorithm), with optional fencing tokens. It keeps working when any minority of lock
//! servers dies, tells you exactly why when it cannot, and leaves nothing behind: every key it
//! writes expires within a documented bound.
//!
//! ## Quickstart
//!
//! **It runs on [tokio](https://tokio.rs)**: call it inside a tokio runtime with the time and I/O
//! drivers enabled (`#[tokio::main]`, or `tokio::runtime::Builder` with `enable_all()`); not under
//! async-std, smol or `futures::executor::block_on`. Outside a tokio runtime, calls fail with
//! [`ErrorKind::NoRuntime`] instead of panicking. The same example opens the README
//! (`tests/crate_page.rs` keeps the two equal).
//!
//! ```rust,no_run
//! use std::time::Duration;
//! use quorumlock::{Redlock, Retry};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), quorumlock::Error> {
//!     let redlock = Redlock::builder()
//!         .nodes([
//!             "redis://10.0.1.10:6379", "redis://10.0.2.10:6379", "redis://10.0.3.10:6379",
//!             "redis://:secret@10.0.4.10:6379", "rediss://lock5.internal:6380",
//!         ])
//!         .retry(Retry::wait(Duration::from_secs(10))) // keep trying for up to 10 s (default: 5 s)
//!         .build()?; // contacts no node: a service can start while nodes are down
//!
//!     match redlock.acquire("payments:order-42", Duration::from_secs(30)).await {
//!         Ok(mut lock) => {
//!             // Exclusive until lock.valid_until(): check before each side effect.
//!             if lock.is_valid() {
//!                 charge_card().await;
//!             }
//!             lock.extend(Duration::from_secs(30)).await?; // compare-and-PEXPIRE on a majority
//!             lock.release().await?;                       // compare-and-delete, per-node report
//!         }
//!         Err(e) if e.is_contended() => println!("another worker has it"),
//!         Err(e) if e.is_quorum_unreachable() => eprintln!("lock service degraded: {e}"),
//!         Err(e) => return Err(e),
//!     }
//!     // Waits for releases still running in the background; without it, a lock dropped just
//!     // before `main` returns stays held on the nodes until its TTL ends.
//!     redlock.shutdown().await;
//!     Ok(())
//! }
//! # async fn charge_card() {}
//! ```
//!
//! [`Redlock::acquire`] waits deadline-first: it retries until its [`Retry`] policy's deadline
//! (5 s by default, [`Retry::wait`] to choose), with no cap on the number of attempts unless
//! you set one; [`Redlock::try_acquire`] makes one attempt.
//!
//! ## The public types
//!
//! | Item | What it is for |
//! |---|---|
//! | [`Redlock`] | The client: one lock service over N nodes. Acquires locks and guards, inspects resources, checks the nodes' health, shuts down. |
//! | [`RedlockBuilder`] | Configures a [`Redlock`]: nodes, timeouts, retry policy, fencing, wake-on-release, TLS, key prefix. |
//! | [`Retry`] | How an acquisition retries: a deadline, the delay between attempts, an optional attempt cap, failing fast on an outage. |
//! | [`Lock`] | A held lock: its validity, its fencing token, extend, release (also on drop). |
//! | [`LockGuard`] | A lock kept alive by a watchdog, with [`LockGuard::lost`] to stop work before the validity ends. |
//! | [`ReleaseReport`] | What a release did on each node. |
//! | [`Error`] | Every failure: its [`ErrorKind`] (what a caller branches on), its [`Operation`], and what each node ([`NodeId`]) answered ([`NodeOutcome`]). |
//! | [`Health`], [`NodeHealth`] | Every node's state, for start-up checks and readiness probes ([`Redlock::health`]). |
//! | [`Inspection`], [`NodeView`], [`NodeState`] | A read-only view of one resource on every node ([`Redlock::inspect`]). |
//! | [`ShutdownReport`] | What [`Redlock::shutdown_timeout`] left behind when it stopped waiting. |
//! | `describe_metrics` | With the `metrics` cargo feature: describes the library's metrics to the installed recorder ([`guides::metrics`]). |
//! | [`guides`] | The guides, as pages of these docs (a module with no code). |
//!
//! ## Beyond one lock
//!
//! [`Redlock::acquire_guard`] keeps a lock alive with a watchdog and tells you the moment it is
//! lost ([`LockGuard::lost`]); [`Redlock::with_lock`] runs work under a guard;
//! [`Redlock::acquire_many`] takes several resources at once; `.fencing(true)` gives every
//! acquisition a fencing token ([`Lock::fencing_token`]) that orders holders over the quorum.
//!
//! On a service's request path: [`Redlock::acquire_with`] a per-call [`Retry`] that fails fast on
//! an outage ([`Retry::fail_fast_when_unreachable`]), [`Error::is_transient`],
//! [`Redlock::with_guard`] (the work gets its fence and `lost()`), [`Redlock::health`] for start-up
//! and readiness checks, [`Redlock::shutdown_timeout`].
//!
//! ## Guarantees and guides
//!
//! What is guaranteed, and under which assumptions, is in [docs/design.md]: mutual exclusion
//! within the validity window (G1), ownership checks on release and extend (G2), expiry of a
//! crashed holder's lock (G3), tolerance of a minority of failed nodes with errors that name every
//! node (G4), no keys left behind by failed or cancelled acquisitions (G5), ordered fencing tokens
//! (G6, [docs/fencing.md]), typed errors for bad input (G7), and no secrets in output (G8).
//! [docs/guarantees.md] lists the tests behind each one, and [docs/chaos.md] shows how each is
//! tested under faults.
//!
//! The guides are part of these docs, in [`guides`]: [`guides::guards`] (guards, watchdogs,
//! `with_lock`), [`guides::fencing`], [`guides::operations`] (choosing N, TTL and timeouts; the
//! request path; TLS; ACLs; monitoring; sizing memory), [`guides::scaling`] (cluster members),
//! [`guides::metrics`] (the opt-in `metrics` cargo feature). Also [docs/cli.md] (the `quorumlock`
//! command line), [docs/benchmarks.md], and the [README] with runnable [examples].
//!
//! [docs/design.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/design.md
//! [docs/fencing.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/fencing.md
//! [docs/chaos.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/chaos.md
//! [docs/guarantees.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/guarantees.md
//! [docs/cli.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/cli.md
//! [docs/benchmarks.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/benchmarks.md
//! [README]: https://github.com/quorumlock/quorumlock/blob/main/README.md
//! [examples]: https://github.com/quorumlock/quorumlock/tree/main/examples
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]

// The layers of `src/` (rustfmt keeps these in alphabetical order; their order from the bottom
// up is `LAYERS` in tests/module_graph.rs and the module map of docs/design.md): a module
// imports only from its own layer or below, which that test checks.
mod builder;
mod client;
mod connection;
mod errors;
mod fan_out;
pub mod guides;
mod node_set;
mod operations;
mod pure;
mod shared;
mod wire;

#[cfg(feature = "metrics")]
pub use crate::wire::metrics::describe_metrics;
pub use builder::RedlockBuilder;
pub use client::Redlock;
pub use errors::error::{Error, ErrorKind, NodeId, NodeOutcome, Operation};
pub use operations::guard::LockGuard;
pub use operations::health::{Health, NodeHealth};
pub use operations::inspect::{Inspection, NodeState, NodeView};
pub use operations::lock::{Lock, ReleaseReport};
pub use operations::shutdown::ShutdownReport;
pub use pure::retry::Retry;

/// Not part of the API: the pure per-attempt code, wrapped for `benches/pure.rs`
/// (`cargo bench --features bench-internals --bench pure`).
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_internals {
    use std::time::Duration;

    /// Tallies `votes` (0 yes, 1 refused, 2 failed) for `n` nodes, stopping at the first
    /// decision like the fan-out does; returns 0 pending, 1 reached, 2 impossible.
    pub fn decide(n: usize, votes: &[u8]) -> u8 {
        use crate::pure::quorum::{Tally, Verdict, Vote};
        let mut t = Tally::new(n);
        for v in votes {
            t.record(match v {
                0 => Vote::Yes,
                1 => Vote::Refused,
                _ => Vote::Failed,
            });
            match t.verdict() {
                Verdict::Pending => {}
                Verdict::Reached => return 1,
                Verdict::Impossible => return 2,
            }
        }
        0
    }

    /// The validity left after `elapsed` of a `ttl` with drift factor `factor`.
    pub fn validity(ttl: Duration, elapsed: Duration, factor: f64) -> Option<Duration> {
        crate::pure::validity::validity(ttl, elapsed, crate::pure::validity::drift(ttl, factor))
    }

    /// Whether `value` grants a single-resource acquisition of `token`.
    pub fn grants_acquire(token: &str, value: &redis::Value) -> bool {
        crate::wire::reply::classify_value(crate::wire::reply::Op::Acquire, token, value)
            == crate::NodeOutcome::Granted
    }

    /// Draws a lock token (one getrandom call).
    pub fn token() -> usize {
        crate::pure::token::Token::generate().map_or(0, |t| t.as_str().len())
    }

    /// Builds the single-resource acquire command for `resource`.
    pub fn acquire_command(resource: &str) -> usize {
        let keys: crate::pure::key::Keys =
            vec![crate::pure::key::lock_key("quorumlock:", resource).into_boxed_slice()].into();
        let token = crate::pure::token::Token::generate().expect("entropy");
        let lock = crate::wire::reply::LockRef {
            keys,
            tomb: crate::pure::key::tomb_key("quorumlock:", token.as_str()),
            token,
            ttl_ms: 10_000,
            always_tomb: false,
        };
        crate::wire::reply::Request::acquire(&lock)
            .primary()
            .get_packed_command()
            .len()
    }
}

// Compiles the README's and guides' examples as doc tests, so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/guards.md")]
struct GuardsGuideDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/fencing.md")]
struct FencingGuideDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/operations.md")]
struct OperationsGuideDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/scaling.md")]
struct ScalingGuideDoctests;
