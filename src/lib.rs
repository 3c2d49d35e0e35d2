//! # quorumlock
//!
//! Redlock for async Rust: a distributed lock held by a majority of N independent Redis nodes,
//! so it survives the loss of any minority of them. CI tests against Redis 7.0; Valkey passes
//! the basic-lock test (`tests/valkey.rs`, run by hand against Valkey 9.1).
//!
//! **It runs on [tokio](https://tokio.rs)** and needs a tokio runtime with its time and I/O
//! drivers enabled (`#[tokio::main]`, or `tokio::runtime::Builder` with `enable_all()`): its
//! connections, timeouts and background releases are tokio's. It does not run under other
//! executors (async-std, smol, `futures::executor::block_on`). Outside a tokio runtime, calls
//! fail with [`ErrorKind::NoRuntime`] instead of panicking.
//!
//! ```no_run
//! use std::time::Duration;
//! use quorumlock::{Redlock, Retry};
//!
//! # async fn demo() -> Result<(), quorumlock::Error> {
//! let redlock = Redlock::builder()
//!     .nodes(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379",
//!             "redis://10.0.0.4:6379", "redis://10.0.0.5:6379"])
//!     .retry(Retry::wait(Duration::from_secs(10))) // keep trying for up to 10 s
//!     .build()?;
//!
//! match redlock.acquire("payments:order-42", Duration::from_secs(10)).await {
//!     Ok(lock) => {
//!         // We are the only holder until lock.valid_until().
//!         lock.release().await?;
//!     }
//!     Err(e) if e.is_contended() => println!("someone else is processing it"),
//!     Err(e) => return Err(e),
//! }
//! // Waits for background releases (of dropped locks, failed attempts) before the runtime
//! // stops; without it, a lock dropped just before exit stays held until its TTL ends.
//! redlock.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! [`Redlock::acquire`] waits deadline-first: it retries until its [`Retry`] policy's deadline
//! (5 s by default, [`Retry::wait`] to choose), with no cap on the number of attempts unless
//! you set one; [`Redlock::try_acquire`] makes one attempt.
//!
//! Beyond one lock: [`Redlock::acquire_guard`] keeps a lock alive with a watchdog and tells you
//! the moment it is lost ([`LockGuard::lost`]); [`Redlock::with_lock`] runs work under a guard;
//! [`Redlock::acquire_many`] takes several resources at once; `.fencing(true)` gives every
//! acquisition a fencing token ([`Lock::fencing_token`]) that orders holders over the quorum.
//!
//! What is guaranteed, and under which assumptions, is in [docs/design.md]: mutual exclusion
//! within the validity window (G1), ownership checks on release and extend (G2), expiry of a
//! crashed holder's lock (G3), tolerance of a minority of failed nodes with errors that name
//! every node (G4), no keys left behind by failed or cancelled acquisitions (G5), ordered
//! fencing tokens (G6, [docs/fencing.md]), typed errors for bad input (G7), and no secrets in
//! output (G8). [docs/chaos.md] shows how each is tested under faults.
//!
//! On a service's request path: [`Redlock::acquire_with`] a per-call [`Retry`] that fails fast
//! on an outage ([`Retry::fail_fast_when_unreachable`]), [`Error::is_transient`],
//! [`Redlock::with_guard`] (the work gets its fence and `lost()`), [`Redlock::health`] for
//! start-up and readiness checks, [`Redlock::shutdown_timeout`].
//!
//! The guides are part of these docs, in [`guides`]: [`guides::guards`] (guards, watchdogs,
//! `with_lock`), [`guides::fencing`], [`guides::operations`] (choosing N, TTL and timeouts; the
//! request path; TLS; ACLs; monitoring; sizing memory), [`guides::scaling`] (cluster members),
//! [`guides::metrics`] (the opt-in `metrics` cargo feature). Also [docs/cli.md] (the
//! `quorumlock` command line), [docs/benchmarks.md], and the [README] with runnable
//! [examples].
//!
//! [docs/design.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/design.md
//! [docs/fencing.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/fencing.md
//! [docs/chaos.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/chaos.md
//! [docs/guards.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/guards.md
//! [docs/operations.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/operations.md
//! [docs/metrics.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/metrics.md
//! [docs/cli.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/cli.md
//! [docs/benchmarks.md]: https://github.com/quorumlock/quorumlock/blob/main/docs/benchmarks.md
//! [README]: https://github.com/quorumlock/quorumlock/blob/main/README.md
//! [examples]: https://github.com/quorumlock/quorumlock/tree/main/examples
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]

// The layers of `src/`, from the bottom up (docs/design.md, "Module map"): a module imports
// only from its own layer or below, checked by `tests/module_graph.rs`.
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
