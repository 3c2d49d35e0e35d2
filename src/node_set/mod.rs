//! **node set**, above connection: the N members together, and what outlives one call to them.
//!
//! - `nodes`: the N nodes, the background task tracker and the release obligations (a release
//!   that could not be sent is re-sent until it has a definite answer or the key has expired).
//! - `owed`: what is owed (`Unsent`, `Owed`).
//! - `waiters`, `wake`: this process's waiters on a key and the wake-up hand-off on release.
//! - `queue`: the waiting line of wake-on-release (places, entries, leases, the leave).
//!
//! May import: `pure`, `errors`, `wire`, `connection`.

pub(crate) mod nodes;
pub(crate) mod owed;
pub(crate) mod queue;
pub(crate) mod waiters;
pub(crate) mod wake;
