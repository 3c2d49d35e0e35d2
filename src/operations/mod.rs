//! **operations**, above the fan-out and `shared.rs` (at the top level of `src/`): what a caller
//! does with a lock, each built on [`crate::shared::Shared`] and, where it reaches the nodes,
//! on the fan-out (acquire, extend, release, fencing) or on the node set directly (inspect,
//! health: one read per node).
//!
//! - `acquire`: retrying an acquisition, and one attempt (plain, fenced, several resources,
//!   through the waiting line).
//! - `lock`: `Lock`, its extension and release, release on drop.
//! - `fencing`: which counters a lock uses, its fence, the write-back.
//! - `watchdog`, `guard`: `LockGuard` and the task that renews it.
//! - `inspect`, `health`: read-only views of a resource and of the nodes.
//! - `shutdown`: `ShutdownReport`.
//!
//! May import: `pure`, `errors`, `wire`, `connection`, `node_set`, `fan_out`, `shared`. Not the
//! builder or the client.

pub(crate) mod acquire;
pub(crate) mod fencing;
pub(crate) mod guard;
pub(crate) mod health;
pub(crate) mod inspect;
pub(crate) mod lock;
pub(crate) mod shutdown;
pub(crate) mod watchdog;
