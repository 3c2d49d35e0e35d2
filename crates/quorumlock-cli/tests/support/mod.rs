//! Helpers shared by the CLI test binaries: the real `quorumlock` binary pointed at a node list,
//! and readers for its outcome.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};

/// The `quorumlock` binary with `QUORUMLOCK_NODES` set to `nodes`, the default key prefix and
/// no standard input.
pub fn quorumlock(nodes: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quorumlock"));
    c.env("QUORUMLOCK_NODES", nodes.join(","))
        .env_remove("QUORUMLOCK_KEY_PREFIX")
        .stdin(Stdio::null());
    c
}

/// The exit code; a run killed by a signal fails the test.
pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {out:?}"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
