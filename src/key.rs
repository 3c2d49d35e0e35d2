//! Key construction. Every key this crate writes is `<prefix><namespace>:<resource>`, with a
//! fixed set of namespaces of which none is a prefix of another, so two different
//! (namespace, resource) pairs never give the same key (tested below). Resources only ever go
//! into `KEYS[]`, never into script text.

/// Longest accepted resource name, in bytes. Redis allows 512 MiB keys; a name this long is
/// a bug in the caller, and every command carries it to every node.
pub(crate) const MAX_RESOURCE_LEN: usize = 64 * 1024;

/// The keys of one lock: one per resource, sorted, without duplicates. Shared by the lock handle
/// and every request made for it.
pub(crate) type Keys = std::sync::Arc<[Box<[u8]>]>;

/// The default key prefix.
pub(crate) const DEFAULT_PREFIX: &str = "quorumlock:";

pub(crate) fn lock_key(prefix: &str, resource: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 5 + resource.len());
    k.extend_from_slice(prefix.as_bytes());
    k.extend_from_slice(b"lock:");
    k.extend_from_slice(resource.as_bytes());
    k
}

/// The fence counter of `resource`. The `fence:` namespace differs from `lock:` in its first
/// byte, so no resource name makes a counter collide with a lock key.
pub(crate) fn fence_key(prefix: &str, resource: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 6 + resource.len());
    k.extend_from_slice(prefix.as_bytes());
    k.extend_from_slice(b"fence:");
    k.extend_from_slice(resource.as_bytes());
    k
}

/// The tombstone of `token`: written by a release that found nothing of this token to delete,
/// read by every acquire script, so that an acquire request arriving after its release is
/// refused (docs/design.md, "Late bytes"). The `tomb:` namespace differs from `lock:` and
/// `fence:` in its first byte, and a token is 32 hex digits, so it never meets another key.
///
/// Shared: the lock, its requests and their undo all carry it, and a clone is then a count.
pub(crate) fn tomb_key(prefix: &str, token: &str) -> std::sync::Arc<[u8]> {
    let parts: [&[u8]; 3] = [prefix.as_bytes(), b"tomb:", token.as_bytes()];
    // Made at its final size in one allocation (an exact-size iterator), then filled: collecting
    // the bytes themselves went through a Vec and cost more than the rest of the request.
    let mut key: std::sync::Arc<[u8]> = std::iter::repeat_n(0, parts.iter().map(|p| p.len()).sum()).collect();
    if let Some(mut rest) = std::sync::Arc::get_mut(&mut key) {
        for part in parts {
            let (head, tail) = rest.split_at_mut(part.len());
            head.copy_from_slice(part);
            rest = tail;
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tomb_key_is_prefix_namespace_token() {
        assert_eq!(&*tomb_key("quorumlock:", "0123abcd"), b"quorumlock:tomb:0123abcd");
        assert_eq!(&*tomb_key("", "t"), b"tomb:t");
    }

    proptest! {
        #[test]
        fn lock_keys_are_injective(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            prop_assert_ne!(lock_key(DEFAULT_PREFIX, &a), lock_key(DEFAULT_PREFIX, &b));
        }

        /// Counters never collide with lock keys, whatever the names (docs/testing.md, "Key construction": `x:fence`
        /// must not meet the counter of `x`).
        #[test]
        fn fence_keys_never_collide_with_lock_keys(a in any::<String>(), b in any::<String>()) {
            prop_assert_ne!(fence_key(DEFAULT_PREFIX, &a), lock_key(DEFAULT_PREFIX, &b));
            if a != b {
                prop_assert_ne!(fence_key(DEFAULT_PREFIX, &a), fence_key(DEFAULT_PREFIX, &b));
            }
        }

        #[test]
        fn tombstones_never_collide_with_lock_or_fence_keys(r in any::<String>(), t in "[0-9a-f]{32}") {
            let tomb = tomb_key(DEFAULT_PREFIX, &t);
            prop_assert_ne!(&*tomb, &lock_key(DEFAULT_PREFIX, &r)[..]);
            prop_assert_ne!(&*tomb, &fence_key(DEFAULT_PREFIX, &r)[..]);
        }

        #[test]
        fn hostile_names_stay_inside_the_key(r in "[\\x00-\\x7f\\]\\[{}\"'\\n]{0,64}") {
            let k = lock_key(DEFAULT_PREFIX, &r);
            prop_assert!(k.starts_with(b"quorumlock:lock:"));
            prop_assert!(k.ends_with(r.as_bytes()));
        }
    }
}
