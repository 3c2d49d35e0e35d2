//! Unit tests of reply.rs that do not fit in it (it is at the size limit of
//! `tests/module_graph.rs`): the requests [`crate::wire::reply::Request`] builds, byte for byte the
//! script calls they stand for in both forms (`EVALSHA`, and `EVAL` after `NOSCRIPT`), and how
//! failed calls and error replies are read. cargo-mutants found these untested (issue 22).

use redis::{ErrorKind, RedisError, Value};

use crate::errors::error::NodeOutcome;
use crate::pure::key::{lock_key, tomb_key, Keys};
use crate::pure::token::Token;
use crate::wire::reply::{
    breaks_connection, classify_error, describe, fence_of, is_noscript, one_line, LockRef, Op, Request,
};
use crate::wire::scripts::{ACQUIRE, ACQUIRE_MANY, RELEASE};

fn lock(resources: &[&str]) -> LockRef {
    let keys: Keys = resources
        .iter()
        .map(|r| lock_key("quorumlock:", r).into_boxed_slice())
        .collect::<Vec<_>>()
        .into();
    let token = Token::generate().expect("entropy");
    LockRef {
        keys,
        tomb: tomb_key("quorumlock:", token.as_str()),
        token,
        ttl_ms: 30_000,
        always_tomb: false,
    }
}

/// The lock's keys, then its tombstone: the key list of acquire and release.
fn keys_and_tomb(lock: &LockRef) -> Vec<Box<[u8]>> {
    lock.keys
        .iter()
        .cloned()
        .chain([lock.tomb.to_vec().into_boxed_slice()])
        .collect()
}

#[test]
fn acquire_is_the_acquire_script_of_the_keys_then_the_tombstone() {
    for (resources, script) in [(&["r"][..], &*ACQUIRE), (&["a", "b"][..], &*ACQUIRE_MANY)] {
        let lock = lock(resources);
        let request = Request::acquire(&lock);
        let keys = keys_and_tomb(&lock);
        let args: [&[u8]; 2] = [lock.token.as_bytes(), b"30000"];
        assert_eq!(
            request.primary().get_packed_command(),
            script.evalsha(&keys, &args).get_packed_command(),
            "{resources:?}"
        );
        assert_eq!(
            request.fallback().get_packed_command(),
            script.eval(&keys, &args).get_packed_command(),
            "{resources:?}"
        );
    }
}

#[test]
fn release_and_undo_are_compare_and_delete_of_the_same_keys() {
    let lock = lock(&["r"]);
    let keys = keys_and_tomb(&lock);
    let plain: [&[u8]; 3] = [lock.token.as_bytes(), b"30000", b"0"];
    let release = RELEASE.evalsha(&keys, &plain).get_packed_command();
    assert_eq!(
        Request::release(&lock, None).primary().get_packed_command(),
        release
    );
    assert_eq!(
        Request::acquire(&lock).undo().primary().get_packed_command(),
        release
    );
    let id = lock.token.fingerprint().to_hex();
    let published: [&[u8]; 5] = [lock.token.as_bytes(), b"30000", b"0", b"quorumlock:released", &id];
    assert_eq!(
        Request::release(&lock, Some(b"quorumlock:released"))
            .primary()
            .get_packed_command(),
        RELEASE.evalsha(&keys, &published).get_packed_command()
    );
}

/// An error reply as redis-rs reads it off the wire.
fn error_reply(resp: &str) -> Value {
    redis::parse_redis_value(resp.as_bytes()).expect("a RESP error reply")
}

#[test]
fn texts_are_one_line_and_bounded() {
    assert_eq!(one_line("a\nb\tc"), "a b c");
    let exact = "x".repeat(120);
    assert_eq!(one_line(&exact), exact, "120 bytes fit");
    let long = one_line(&"x".repeat(200));
    assert_eq!((long.len(), long.ends_with("...")), (120, true));
    // Cut at a character boundary: two-byte characters, so 117 falls inside one.
    let wide = one_line(&"é".repeat(100));
    assert!(wide.len() <= 120 && wide.ends_with("..."), "{} bytes", wide.len());
    assert_eq!(describe(&Value::Int(7)), "int(7)");
}

#[test]
fn failed_calls_are_read_by_kind() {
    let auth = RedisError::from((ErrorKind::AuthenticationFailed, "auth"));
    assert!(matches!(classify_error(&auth), NodeOutcome::Denied(_)));
    let noperm = redis::make_extension_error("NOPERM".into(), Some("no permissions".into()));
    assert!(matches!(classify_error(&noperm), NodeOutcome::Denied(_)));
    let wrongtype = redis::make_extension_error("WRONGTYPE".into(), Some("kind".into()));
    assert!(matches!(classify_error(&wrongtype), NodeOutcome::Redis(_)));
    let parse = RedisError::from((ErrorKind::Parse, "garbage"));
    assert!(matches!(classify_error(&parse), NodeOutcome::Protocol(_)));
    let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    assert!(matches!(classify_error(&io), NodeOutcome::Io(_)));

    // The connection is made again after broken transport or an untrusted reply stream, not
    // after an error reply the server chose to send.
    assert!(breaks_connection(&io));
    // An I/O error that redis-rs would retry on the same connection (not "dropped", not
    // "unrecoverable") still breaks it here: the reply stream can no longer be trusted.
    let timed_out = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
    assert!(!timed_out.is_unrecoverable_error() && !timed_out.is_connection_dropped());
    assert!(breaks_connection(&timed_out));
    assert!(breaks_connection(&parse));
    assert!(breaks_connection(&RedisError::from((
        ErrorKind::Client,
        "client"
    ))));
    assert!(!breaks_connection(&wrongtype));
    assert!(!breaks_connection(&noperm));
}

#[test]
fn noscript_is_recognised_in_both_forms() {
    let noscript = "-NOSCRIPT No matching script. Please use EVAL.\r\n";
    assert!(is_noscript(&Ok(error_reply(noscript))));
    assert!(is_noscript(&Err(redis::make_extension_error(
        "NOSCRIPT".into(),
        None
    ))));
    assert!(!is_noscript(&Ok(error_reply("-ERR other\r\n"))));
    assert!(!is_noscript(&Err(redis::make_extension_error(
        "ERR".into(),
        None
    ))));
    assert!(!is_noscript(&Ok(Value::Int(1))));
}

#[test]
fn a_fence_is_positive() {
    let token = "t";
    let reply = |f| Value::Array(vec![Value::BulkString(b"t".to_vec()), Value::Int(f)]);
    assert_eq!(fence_of(Op::AcquireFenced, token, &reply(1)), Some(1));
    assert_eq!(fence_of(Op::AcquireFenced, token, &reply(0)), None);
}
