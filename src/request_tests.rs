//! Unit tests of the requests [`crate::reply::Request`] builds: byte for byte the script calls
//! they stand for, in both forms (`EVALSHA`, and `EVAL` after `NOSCRIPT`). They live in a file
//! of their own because reply.rs is at the size limit of `tests/module_graph.rs`.

use crate::key::{lock_key, tomb_key, Keys};
use crate::reply::{LockRef, Request};
use crate::scripts::{ACQUIRE, ACQUIRE_MANY, RELEASE};
use crate::token::Token;

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
