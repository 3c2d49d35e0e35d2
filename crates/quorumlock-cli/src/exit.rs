//! Exit codes. The ones the tool itself decides follow `sysexits.h` where one fits, so that they
//! stay clear of the small codes commands usually return. `quorumlock run` otherwise exits with
//! its command's code (128 + signal number if the command was killed by a signal).

use quorumlock::{Error, ErrorKind};

/// Bad arguments (EX_USAGE).
pub(crate) const USAGE: i32 = 64;
/// Fewer than a majority of nodes reachable or answering in time (EX_UNAVAILABLE).
pub(crate) const UNREACHABLE: i32 = 69;
/// Internal failure, such as the runtime not starting (EX_SOFTWARE).
pub(crate) const SOFTWARE: i32 = 70;
/// Not acquired: the resource is held by someone else (for `--wait`: until the wait ended)
/// (EX_TEMPFAIL).
pub(crate) const NOT_ACQUIRED: i32 = 75;
/// The lock was lost while the command ran; the command was stopped.
pub(crate) const LOST: i32 = 76;
/// The nodes refused our credentials or permissions (EX_NOPERM).
pub(crate) const DENIED: i32 = 77;
/// Unusable configuration: no nodes, a malformed URL (EX_CONFIG).
pub(crate) const CONFIG: i32 = 78;
/// The command was found but could not be executed (as in POSIX shells).
pub(crate) const CANNOT_EXECUTE: i32 = 126;
/// The command was not found (as in POSIX shells).
pub(crate) const NOT_FOUND: i32 = 127;

/// The exit code for a failed acquisition or client construction.
pub(crate) fn for_error(e: &Error) -> i32 {
    let kind = match e.kind() {
        ErrorKind::DeadlineExceeded => e.last_cause().unwrap_or(ErrorKind::Contended),
        k => k,
    };
    match kind {
        ErrorKind::Contended => NOT_ACQUIRED,
        ErrorKind::InvalidInput => USAGE,
        ErrorKind::Config => CONFIG,
        ErrorKind::Unauthorized => DENIED,
        ErrorKind::Lost => LOST,
        // Unreachable, validity used up by slow nodes, entropy: the service is not usable now.
        _ => UNREACHABLE,
    }
}

/// The outcome's name in `--json` output.
pub(crate) fn name(code: i32) -> &'static str {
    match code {
        USAGE => "bad_arguments",
        UNREACHABLE => "unreachable",
        NOT_ACQUIRED => "not_acquired",
        LOST => "lost",
        DENIED => "denied",
        CONFIG => "config",
        _ => "error",
    }
}
