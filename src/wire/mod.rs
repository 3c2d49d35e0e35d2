//! **wire**, above errors: what goes to a node, how its answer is read, and what is counted
//! about it.
//!
//! - `scripts`: the Lua scripts, one `.lua` file each, hashed once.
//! - `reply`: requests as script calls, and what a reply means for each operation (a grant
//!   only by the caller's own token); `reply_tests` holds its unit tests.
//! - `metrics`: the `metrics` facade (feature `metrics`; compiles to nothing without it).
//!
//! May import: `pure`, `errors`.

pub(crate) mod metrics;
pub(crate) mod reply;
#[cfg(test)]
mod reply_tests;
pub(crate) mod scripts;
