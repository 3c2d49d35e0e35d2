//! The per-node requests and how their replies are read: pure, no I/O.
//!
//! Only an exact answer counts: an acquire is granted by its own token (a fenced acquire by
//! `[token, fence]` with a positive fence), `:1` confirms an extend or release, `:0` refuses.
//! Anything else (`+OK`, `:1` to an acquire, another token, a nested array, a push) is a failure
//! vote, so neither a confused or hostile peer nor a duplicated reply can manufacture a grant.

use std::sync::Arc;

use redis::{Cmd, RedisError, Value};

use crate::errors::error::NodeOutcome;
use crate::pure::key::Keys;
use crate::pure::token::Token;
use crate::wire::scripts::{Script, ACQUIRE, ACQUIRE_MANY, EXTEND, RELEASE};

/// The operations sent to nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// The acquire script of one resource (`acquire.lua`).
    Acquire,
    /// The all-or-nothing script: several resources.
    AcquireMany,
    /// The fenced acquire script: answers the node's fence.
    AcquireFenced,
    /// Raising fence counters to the lock's fence (write-back).
    FenceRaise,
    /// Compare-and-PEXPIRE.
    Extend,
    /// Compare-and-delete, leaving a tombstone when nothing was ours.
    Release,
}

/// One request, built once per attempt and shared by the per-node calls. Every request is a
/// script call: `EVALSHA`, and the `EVAL` form made from it for a node that answers `NOSCRIPT`.
pub(crate) struct Request {
    pub(crate) op: Op,
    script: &'static Script,
    /// The lock's token (also in `lock`), read with every reply.
    pub(crate) token: Token,
    /// What the release that undoes this request needs (all shared or inline: no allocation).
    lock: LockRef,
    primary: Cmd,
}

/// The request parts that identify the lock: its keys, its token, its tombstone, its TTL.
#[derive(Clone)]
pub(crate) struct LockRef {
    pub(crate) keys: Keys,
    pub(crate) tomb: Arc<[u8]>,
    pub(crate) token: Token,
    pub(crate) ttl_ms: u64,
    /// Whether its releases leave a tombstone even where they deleted the key: on a Redis
    /// Cluster member a request may be sent again after the release (release.lua).
    pub(crate) always_tomb: bool,
}

/// A script argument. A number is written by redis-rs in decimal, without a `String`.
#[derive(Clone, Copy)]
pub(crate) enum Arg<'a> {
    Bytes(&'a [u8]),
    Int(u64),
}

impl Arg<'_> {
    fn len(&self) -> usize {
        match self {
            Arg::Bytes(b) => b.len(),
            Arg::Int(_) => 20,
        }
    }
}

impl Request {
    /// The command is written straight from the lock's parts: a request's cost is that of its
    /// `Cmd` (two allocations) and nothing else (docs/benchmarks.md).
    pub(crate) fn new<'a>(
        op: Op,
        script: &'static Script,
        lock: &LockRef,
        keys: impl Iterator<Item = &'a [u8]> + Clone,
        args: &[Arg<'_>],
    ) -> Self {
        let n_keys = keys.clone().count();
        let bytes = keys.clone().map(<[u8]>::len).sum::<usize>() + args.iter().map(Arg::len).sum::<usize>();
        let mut primary = script.evalsha_start(n_keys, n_keys + args.len(), bytes);
        for k in keys {
            primary.arg(k);
        }
        for a in args {
            match *a {
                Arg::Bytes(b) => primary.arg(b),
                Arg::Int(n) => primary.arg(n),
            };
        }
        Self {
            op,
            script,
            token: lock.token.clone(),
            lock: lock.clone(),
            primary,
        }
    }

    pub(crate) fn keys_then_tomb<'a>(
        lock: &'a LockRef,
        middle: Option<&'a Keys>,
    ) -> impl Iterator<Item = &'a [u8]> + Clone {
        let middle: &[Box<[u8]>] = middle.map_or(&[], |m| m);
        lock.keys
            .iter()
            .chain(middle)
            .map(|k| &**k)
            .chain(std::iter::once(&*lock.tomb))
    }

    /// Acquires the lock's keys (one resource, or several all-or-nothing), unless its token
    /// has a tombstone on the node.
    pub(crate) fn acquire(lock: &LockRef) -> Self {
        let (op, script) = if lock.keys.len() == 1 {
            (Op::Acquire, &*ACQUIRE)
        } else {
            (Op::AcquireMany, &*ACQUIRE_MANY)
        };
        let args = [Arg::Bytes(lock.token.as_bytes()), Arg::Int(lock.ttl_ms)];
        Self::new(op, script, lock, Self::keys_then_tomb(lock, None), &args)
    }

    pub(crate) fn extend(lock: &LockRef, ttl_ms: u64) -> Self {
        let args = [Arg::Bytes(lock.token.as_bytes()), Arg::Int(ttl_ms)];
        Self::new(Op::Extend, &EXTEND, lock, lock.keys.iter().map(|k| &**k), &args)
    }

    /// Compare-and-delete; where nothing was ours, a tombstone that lives one TTL. With
    /// `channel`, each deleted key is also published there (wake-on-release), preceded by the
    /// release id: the token's fingerprint (8 hex digits; the token itself is never published).
    pub(crate) fn release(lock: &LockRef, channel: Option<&[u8]>) -> Self {
        let keys = Self::keys_then_tomb(lock, None);
        let id = channel
            .map(|_| lock.token.fingerprint().to_hex())
            .unwrap_or_default();
        let args = [
            Arg::Bytes(lock.token.as_bytes()),
            Arg::Int(lock.ttl_ms),
            Arg::Bytes(if lock.always_tomb { b"1" } else { b"0" }),
            Arg::Bytes(channel.unwrap_or_default()),
            Arg::Bytes(&id),
        ];
        let args = if channel.is_some() { &args[..] } else { &args[..3] };
        Self::new(Op::Release, &RELEASE, lock, keys, args)
    }

    /// The release that undoes this request on a node (same lock keys, same token).
    pub(crate) fn undo(&self) -> Self {
        Self::release(&self.lock, None)
    }

    pub(crate) fn primary(&self) -> &Cmd {
        &self.primary
    }

    /// The `EVAL` form, for nodes that answered `NOSCRIPT`.
    pub(crate) fn fallback(&self) -> Cmd {
        self.script.eval_of(&self.primary)
    }
}

/// The fence a node answered to a granted fenced acquire of `token`: a positive integer.
pub(crate) fn fence_of(op: Op, token: &str, value: &Value) -> Option<u64> {
    match (op, value) {
        (Op::AcquireFenced, Value::Array(items)) => match items.as_slice() {
            [Value::BulkString(t), Value::Int(f)] if t == token.as_bytes() && *f > 0 => {
                u64::try_from(*f).ok()
            }
            _ => None,
        },
        _ => None,
    }
}

/// Reads a reply to `op` for the request carrying `token`.
///
/// An acquisition is granted only by a reply that names its own token, so a stray or duplicated
/// reply (a `:1` meant for another request) can never read as a grant.
pub(crate) fn classify_value(op: Op, token: &str, value: &Value) -> NodeOutcome {
    match (op, value) {
        (Op::Acquire | Op::AcquireMany, Value::BulkString(t)) if t == token.as_bytes() => {
            NodeOutcome::Granted
        }
        (Op::AcquireFenced, _) if fence_of(op, token, value).is_some() => NodeOutcome::Granted,
        (Op::Extend | Op::Release | Op::FenceRaise, Value::Int(1)) => NodeOutcome::Granted,
        (Op::Acquire | Op::AcquireMany | Op::Extend | Op::Release | Op::AcquireFenced, Value::Int(0)) => {
            NodeOutcome::Refused
        }
        (_, Value::ServerError(e)) => classify_server_reply(e),
        (_, other) => NodeOutcome::Protocol(describe(other).into()),
    }
}

/// `text` on one line and at most 120 bytes: it ends up in errors, logs and `quorumlock status`
/// tables.
pub(crate) fn one_line(text: &str) -> String {
    bounded(
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    )
}

pub(crate) fn describe(v: &Value) -> String {
    // Bounded: a hostile reply may be huge, and this text ends up in errors and logs.
    bounded(format!("{v:?}"))
}

fn bounded(mut s: String) -> String {
    if s.len() > 120 {
        let mut cut = 117;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Reads an error reply that came back as a value (`Value::ServerError`).
pub(crate) fn classify_server_reply(e: &redis::ServerError) -> NodeOutcome {
    classify_server_error(e.code(), e.details().unwrap_or(""))
}

fn classify_server_error(code: &str, detail: &str) -> NodeOutcome {
    let text: Arc<str> = if detail.is_empty() {
        code.into()
    } else {
        format!("{code} {detail}").into()
    };
    // ACL failures inside scripts come back as plain ERR with this wording (redis 7.0).
    let acl_in_script = detail.contains("can't run this command") || detail.contains("no permissions");
    match code {
        "WRONGPASS" | "NOAUTH" | "NOPERM" => NodeOutcome::Denied(text),
        _ if acl_in_script => NodeOutcome::Denied(text),
        _ => NodeOutcome::error_reply(code, text),
    }
}

/// Reads a failed call.
pub(crate) fn classify_error(e: &RedisError) -> NodeOutcome {
    use redis::ErrorKind as K;
    if e.is_timeout() {
        return NodeOutcome::Timeout;
    }
    match (e.kind(), e.code()) {
        (K::AuthenticationFailed, _) => NodeOutcome::Denied(e.to_string().into()),
        (_, Some(code)) => classify_server_error(code, e.detail().unwrap_or("")),
        (K::Parse | K::UnexpectedReturnType, _) => NodeOutcome::Protocol(e.to_string().into()),
        _ => NodeOutcome::Io(e.to_string().into()),
    }
}

/// Whether the connection should be dropped and re-made after this error: broken transport,
/// or a reply stream we no longer trust.
pub(crate) fn breaks_connection(e: &RedisError) -> bool {
    use redis::ErrorKind as K;
    e.is_unrecoverable_error()
        || e.is_io_error()
        || e.is_connection_dropped()
        || matches!(e.kind(), K::Parse | K::UnexpectedReturnType | K::Client)
}

/// Whether a script call failed because the node does not have the script cached. redis-rs
/// hands error replies back either as `Err` or as `Ok(Value::ServerError)`; both count.
pub(crate) fn is_noscript(reply: &Result<Value, RedisError>) -> bool {
    match reply {
        Err(e) => e.code() == Some("NOSCRIPT"),
        Ok(Value::ServerError(e)) => e.code() == "NOSCRIPT",
        Ok(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_replies_count() {
        use NodeOutcome::*;
        const T: &str = "0123456789abcdef0123456789abcdef";
        let tok = || Value::BulkString(T.as_bytes().to_vec());
        let other = || Value::BulkString(b"fedcba9876543210fedcba9876543210".to_vec());
        type Case = (Op, Value, fn(&NodeOutcome) -> bool);
        let cases: Vec<Case> = vec![
            (Op::Acquire, tok(), |o| *o == Granted),
            (Op::Acquire, Value::Int(0), |o| *o == Refused),
            (Op::Acquire, other(), |o| matches!(o, Protocol(_))),
            (Op::Acquire, Value::Int(1), |o| matches!(o, Protocol(_))),
            (Op::Acquire, Value::Okay, |o| matches!(o, Protocol(_))),
            (Op::Acquire, Value::Nil, |o| matches!(o, Protocol(_))),
            (Op::Acquire, Value::SimpleString(T.into()), |o| {
                matches!(o, Protocol(_))
            }),
            (Op::Acquire, Value::SimpleString("QUEUED".into()), |o| {
                matches!(o, Protocol(_))
            }),
            (Op::Acquire, Value::Array(vec![tok()]), |o| {
                matches!(o, Protocol(_))
            }),
            (Op::Release, Value::Int(1), |o| *o == Granted),
            (Op::Release, Value::Int(0), |o| *o == Refused),
            (Op::Release, Value::Int(2), |o| matches!(o, Protocol(_))),
            (Op::Release, Value::Int(-1), |o| matches!(o, Protocol(_))),
            (Op::Release, Value::BulkString(b"1".to_vec()), |o| {
                matches!(o, Protocol(_))
            }),
            (Op::Release, tok(), |o| matches!(o, Protocol(_))),
            (Op::Extend, Value::Double(1.0), |o| matches!(o, Protocol(_))),
            (Op::Extend, Value::Boolean(true), |o| matches!(o, Protocol(_))),
            (Op::Extend, Value::Okay, |o| matches!(o, Protocol(_))),
            (Op::Extend, Value::Nil, |o| matches!(o, Protocol(_))),
            (Op::AcquireMany, tok(), |o| *o == Granted),
            (Op::AcquireMany, Value::Int(1), |o| matches!(o, Protocol(_))),
            (Op::AcquireMany, Value::Int(0), |o| *o == Refused),
            (Op::AcquireMany, Value::Okay, |o| matches!(o, Protocol(_))),
            (
                Op::AcquireFenced,
                Value::Array(vec![tok(), Value::Int(1_700_000_000_000_000)]),
                |o| *o == Granted,
            ),
            (
                Op::AcquireFenced,
                Value::Array(vec![other(), Value::Int(7)]),
                |o| matches!(o, Protocol(_)),
            ),
            (
                Op::AcquireFenced,
                Value::Array(vec![tok(), Value::Int(-5)]),
                |o| matches!(o, Protocol(_)),
            ),
            (Op::AcquireFenced, Value::Int(1), |o| matches!(o, Protocol(_))),
            (Op::AcquireFenced, Value::Int(0), |o| *o == Refused),
            (Op::AcquireFenced, Value::Okay, |o| matches!(o, Protocol(_))),
            (Op::FenceRaise, Value::Int(1), |o| *o == Granted),
            (Op::FenceRaise, Value::Int(0), |o| matches!(o, Protocol(_))),
        ];
        for (op, v, ok) in cases {
            let got = classify_value(op, T, &v);
            assert!(ok(&got), "{op:?} {v:?} -> {got:?}");
        }
        assert_eq!(
            fence_of(Op::AcquireFenced, T, &Value::Array(vec![tok(), Value::Int(42)])),
            Some(42)
        );
    }

    #[test]
    fn huge_replies_are_described_briefly() {
        let v = Value::BulkString(vec![b'x'; 1 << 20]);
        match classify_value(Op::Acquire, "t", &v) {
            NodeOutcome::Protocol(s) => assert!(s.len() <= 120),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn permission_errors_are_denied_not_contended() {
        for (code, detail) in [
            ("WRONGPASS", "invalid username-password pair or user is disabled."),
            ("NOAUTH", "Authentication required."),
            ("NOPERM", "this user has no permissions to access one of the keys"),
            (
                "ERR",
                "The user executing the script can't run this command or subcommand",
            ),
        ] {
            assert!(
                matches!(classify_server_error(code, detail), NodeOutcome::Denied(_)),
                "{code}"
            );
        }
        assert!(matches!(
            classify_server_error("OOM", "command not allowed"),
            NodeOutcome::Redis(_)
        ));
        assert!(matches!(
            classify_server_error("READONLY", "x"),
            NodeOutcome::Redis(_)
        ));
    }
}
