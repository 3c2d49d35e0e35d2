//! The per-node requests and how their replies are read: pure, no I/O.
//!
//! Only an exact answer counts: `+OK` grants an acquire, `:1` confirms an extend or release,
//! `$-1` / `:0` refuse. Anything else (a bulk "OK", `:2`, a nested array, a push) is a failure
//! vote, so a confused or hostile peer can never manufacture a grant (P15).

use std::sync::Arc;

use redis::{Cmd, RedisError, Value};

use crate::error::NodeOutcome;
use crate::key::Keys;
use crate::scripts::{ACQUIRE_FENCED, ACQUIRE_MANY, EXTEND, FENCE_RAISE, RELEASE};
use crate::token::Token;

/// The three operations sent to nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `SET key token NX PX ttl`: one resource.
    Acquire,
    /// The all-or-nothing script: several resources.
    AcquireMany,
    /// The fenced acquire script: answers the node's fence.
    AcquireFenced,
    /// Raising fence counters to the lock's fence (write-back).
    FenceRaise,
    Extend,
    Release,
}

/// One request, built once per attempt and shared by the per-node calls.
pub(crate) struct Request {
    pub(crate) op: Op,
    keys: Keys,
    /// Fence counter keys, for the fenced acquire (after the lock keys).
    fence_keys: Option<Keys>,
    pub(crate) token: Token,
    /// The TTL in ms, or the fence for a write-back.
    number: u64,
    primary: Cmd,
}

impl Request {
    fn new(op: Op, keys: Keys, fence_keys: Option<Keys>, token: Token, number: u64, primary: Cmd) -> Self {
        Self {
            op,
            keys,
            fence_keys,
            token,
            number,
            primary,
        }
    }

    pub(crate) fn acquire(keys: Keys, token: Token, ttl_ms: u64) -> Self {
        if let [key] = &*keys {
            // One resource: a plain SET, cheaper for the server than a script.
            let mut primary = redis::Cmd::with_capacity(6, key.len() + token.as_str().len() + 32);
            primary
                .arg("SET")
                .arg(&**key)
                .arg(token.as_str())
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms);
            return Self::new(Op::Acquire, keys, None, token, ttl_ms, primary);
        }
        let ttl = ttl_ms.to_string();
        let primary = ACQUIRE_MANY.evalsha(&keys, &[token.as_str().as_bytes(), ttl.as_bytes()]);
        Self::new(Op::AcquireMany, keys, None, token, ttl_ms, primary)
    }

    pub(crate) fn acquire_fenced(keys: Keys, fence_keys: Keys, token: Token, ttl_ms: u64) -> Self {
        let all: Vec<Box<[u8]>> = keys.iter().chain(fence_keys.iter()).cloned().collect();
        let ttl = ttl_ms.to_string();
        let primary = ACQUIRE_FENCED.evalsha(&all, &[token.as_str().as_bytes(), ttl.as_bytes()]);
        Self::new(Op::AcquireFenced, keys, Some(fence_keys), token, ttl_ms, primary)
    }

    pub(crate) fn fence_raise(fence_keys: Keys, token: Token, fence: u64) -> Self {
        let primary = FENCE_RAISE.evalsha(&fence_keys, &[fence.to_string().as_bytes()]);
        Self::new(Op::FenceRaise, fence_keys, None, token, fence, primary)
    }

    pub(crate) fn extend(keys: Keys, token: Token, ttl_ms: u64) -> Self {
        let ttl = ttl_ms.to_string();
        let primary = EXTEND.evalsha(&keys, &[token.as_str().as_bytes(), ttl.as_bytes()]);
        Self::new(Op::Extend, keys, None, token, ttl_ms, primary)
    }

    pub(crate) fn release(keys: Keys, token: Token) -> Self {
        let primary = RELEASE.evalsha(&keys, &[token.as_str().as_bytes()]);
        Self::new(Op::Release, keys, None, token, 0, primary)
    }

    /// A release that also publishes the deleted keys on `channel` (wake-on-release).
    /// The release id is the token's fingerprint (8 hex digits; the token itself is never
    /// published).
    pub(crate) fn release_notify(keys: Keys, token: Token, channel: Keys) -> Self {
        let id = token.fingerprint().to_string();
        let primary = RELEASE.evalsha(&keys, &[token.as_str().as_bytes(), &channel[0], id.as_bytes()]);
        Self::new(Op::Release, keys, Some(channel), token, 0, primary)
    }

    /// The release that undoes this request on a node (same lock keys, same token).
    pub(crate) fn undo(&self) -> Self {
        Self::release(self.keys.clone(), self.token.clone())
    }

    pub(crate) fn primary(&self) -> &Cmd {
        &self.primary
    }

    /// The `EVAL` form of a script request, for nodes that answered `NOSCRIPT`.
    pub(crate) fn fallback(&self) -> Option<Cmd> {
        let number = self.number.to_string();
        let token = self.token.as_str().as_bytes();
        Some(match self.op {
            Op::Acquire => return None,
            Op::AcquireMany => ACQUIRE_MANY.eval(&self.keys, &[token, number.as_bytes()]),
            Op::AcquireFenced => {
                let fence_keys = self.fence_keys.as_deref().unwrap_or_default();
                let all: Vec<Box<[u8]>> = self.keys.iter().chain(fence_keys).cloned().collect();
                ACQUIRE_FENCED.eval(&all, &[token, number.as_bytes()])
            }
            Op::FenceRaise => FENCE_RAISE.eval(&self.keys, &[number.as_bytes()]),
            Op::Extend => EXTEND.eval(&self.keys, &[token, number.as_bytes()]),
            Op::Release => match &self.fence_keys {
                // For a notifying release, `fence_keys` carries the channel instead.
                Some(channel) => {
                    let id = self.token.fingerprint().to_string();
                    RELEASE.eval(&self.keys, &[token, &channel[0], id.as_bytes()])
                }
                None => RELEASE.eval(&self.keys, &[token]),
            },
        })
    }
}

/// The fence a node answered to a fenced acquire: a positive integer.
pub(crate) fn fence_of(op: Op, value: &Value) -> Option<u64> {
    match (op, value) {
        (Op::AcquireFenced, Value::Int(f)) if *f > 0 => u64::try_from(*f).ok(),
        _ => None,
    }
}

/// Reads a reply to `op`.
pub(crate) fn classify_value(op: Op, value: &Value) -> NodeOutcome {
    match (op, value) {
        (Op::Acquire, Value::Okay) => NodeOutcome::Granted,
        (Op::Acquire, Value::Nil) => NodeOutcome::Refused,
        (Op::AcquireMany | Op::Extend | Op::Release | Op::FenceRaise, Value::Int(1)) => NodeOutcome::Granted,
        (Op::AcquireMany | Op::Extend | Op::Release | Op::AcquireFenced, Value::Int(0)) => {
            NodeOutcome::Refused
        }
        (Op::AcquireFenced, Value::Int(f)) if *f > 0 => NodeOutcome::Granted,
        (_, Value::ServerError(e)) => classify_server_reply(e),
        (_, other) => NodeOutcome::Protocol(describe(other).into()),
    }
}

pub(crate) fn describe(v: &Value) -> String {
    // Bounded: a hostile reply may be huge, and this text ends up in errors and logs.
    let mut s = format!("{v:?}");
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
        _ => NodeOutcome::Redis(text),
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
        type Case = (Op, Value, fn(&NodeOutcome) -> bool);
        let cases: Vec<Case> = vec![
            (Op::Acquire, Value::Okay, |o| *o == Granted),
            (Op::Acquire, Value::Nil, |o| *o == Refused),
            (Op::Acquire, Value::BulkString(b"OK".to_vec()), |o| {
                matches!(o, Protocol(_))
            }),
            (Op::Acquire, Value::SimpleString("QUEUED".into()), |o| {
                matches!(o, Protocol(_))
            }),
            (Op::Acquire, Value::Int(1), |o| matches!(o, Protocol(_))),
            (Op::Acquire, Value::Array(vec![Value::Okay]), |o| {
                matches!(o, Protocol(_))
            }),
            (Op::Release, Value::Int(1), |o| *o == Granted),
            (Op::Release, Value::Int(0), |o| *o == Refused),
            (Op::Release, Value::Int(2), |o| matches!(o, Protocol(_))),
            (Op::Release, Value::Int(-1), |o| matches!(o, Protocol(_))),
            (Op::Release, Value::BulkString(b"1".to_vec()), |o| {
                matches!(o, Protocol(_))
            }),
            (Op::Extend, Value::Double(1.0), |o| matches!(o, Protocol(_))),
            (Op::Extend, Value::Boolean(true), |o| matches!(o, Protocol(_))),
            (Op::Extend, Value::Okay, |o| matches!(o, Protocol(_))),
            (Op::Extend, Value::Nil, |o| matches!(o, Protocol(_))),
            (Op::AcquireMany, Value::Int(1), |o| *o == Granted),
            (Op::AcquireMany, Value::Int(0), |o| *o == Refused),
            (Op::AcquireMany, Value::Okay, |o| matches!(o, Protocol(_))),
            (Op::AcquireFenced, Value::Int(1_700_000_000_000_000), |o| {
                *o == Granted
            }),
            (Op::AcquireFenced, Value::Int(0), |o| *o == Refused),
            (Op::AcquireFenced, Value::Int(-5), |o| matches!(o, Protocol(_))),
            (Op::AcquireFenced, Value::Okay, |o| matches!(o, Protocol(_))),
            (Op::FenceRaise, Value::Int(1), |o| *o == Granted),
            (Op::FenceRaise, Value::Int(0), |o| matches!(o, Protocol(_))),
        ];
        for (op, v, ok) in cases {
            let got = classify_value(op, &v);
            assert!(ok(&got), "{op:?} {v:?} -> {got:?}");
        }
    }

    #[test]
    fn huge_replies_are_described_briefly() {
        let v = Value::BulkString(vec![b'x'; 1 << 20]);
        match classify_value(Op::Acquire, &v) {
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
