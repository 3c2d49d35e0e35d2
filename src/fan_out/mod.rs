//! **fan-out**, above the node set: one request sent to every node, decided as soon as a majority has
//! answered either way.
//!
//! - `fanout`: the fan-out itself and what happens to the calls still in flight after the
//!   decision (finish, undo, abandon).
//! - `calls`: one fan-out's per-node calls as a stream of answers in the order they finish.
//! - `decision`: the verdict, the failure kind and the per-node report.
//! - `undo`: which nodes an undo must release, from the answers seen.
//!
//! May import: `pure`, `errors`, `wire`, `connection`, `node_set`.

pub(crate) mod calls;
pub(crate) mod decision;
pub(crate) mod fanout;
pub(crate) mod undo;
