//! **errors**, above pure: what a caller is told when something fails.
//!
//! - `kind`: `ErrorKind` and `Operation`.
//! - `outcome`: `NodeId` and `NodeOutcome`, what one node answered.
//! - `error`: the `Error` that carries them, naming each node.
//!
//! May import: `pure`.

pub(crate) mod error;
pub(crate) mod kind;
pub(crate) mod outcome;
