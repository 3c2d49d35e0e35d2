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

/// A lock's fence counter keys (one per resource, in the order of its lock keys) and how long
/// each lives after its last write, in milliseconds (G3): every script that writes a counter
/// writes it with this TTL.
pub(crate) struct Counters {
    pub(crate) keys: Keys,
    pub(crate) horizon_ms: u64,
}

/// The default key prefix.
pub(crate) const DEFAULT_PREFIX: &str = "quorumlock:";

/// The plain lock key of `resource` (tests and `bench_internals`; the library names keys through
/// [`Layout`]).
#[cfg(any(test, feature = "bench-internals"))]
pub(crate) fn lock_key(prefix: &str, resource: &str) -> Vec<u8> {
    Layout::Plain.lock(prefix, resource).into()
}

/// The plain fence counter of `resource`. The `fence:` namespace differs from `lock:` in its
/// first byte, so no resource name makes a counter collide with a lock key.
#[cfg(test)]
pub(crate) fn fence_key(prefix: &str, resource: &str) -> Vec<u8> {
    Layout::Plain.fence(prefix, resource).into()
}

/// The tombstone of `token`: written by a release that found nothing of this token to delete,
/// read by every acquire script, so that an acquire request arriving after its release is
/// refused (docs/design.md, "Late bytes"). The `tomb:` namespace differs from `lock:` and
/// `fence:` in its first byte, and a token is 32 hex digits, so it never meets another key.
///
/// Shared: the lock, its requests and their undo all carry it, and a clone is then a count.
#[cfg(any(test, feature = "bench-internals"))]
pub(crate) fn tomb_key(prefix: &str, token: &str) -> std::sync::Arc<[u8]> {
    joined(&[prefix.as_bytes(), b"tomb:", token.as_bytes()])
}

fn joined(parts: &[&[u8]]) -> std::sync::Arc<[u8]> {
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

/// How keys are named on the members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `<prefix><namespace>:<resource>`: every member is one server.
    Plain,
    /// `<prefix><namespace>:{<tag>}<resource>`, when a member is a Redis Cluster: a script may
    /// only touch keys of one slot, so a lock's keys, its fence counters and its tombstone carry
    /// one hash tag. The tag is 16 hex digits of the resource's slot group ([`slot_group`]), so
    /// no resource name, braces included, can move a key to another slot, and the key still
    /// ends with the whole name (keys stay injective). docs/scaling.md.
    Tagged,
}

/// The part of a resource name that decides its slot on a cluster member: the content of its
/// own hash tag by Redis' rule (the first `{`, up to the first `}` after it, if not empty), so
/// that `{order:17}:items` and `{order:17}:payment` can be locked together; otherwise the whole
/// name.
pub(crate) fn slot_group(resource: &str) -> &str {
    let Some(open) = resource.find('{') else {
        return resource;
    };
    match resource[open + 1..].find('}') {
        Some(len) if len > 0 => &resource[open + 1..open + 1 + len],
        _ => resource,
    }
}

/// `{` + 16 hex digits + `}` for `resource`'s slot group: FNV-1a 64. Written out rather than
/// taken from a crate: the tag only spreads groups over slots, and must never change between
/// releases (it is part of every key on a cluster member).
fn hash_tag(resource: &str) -> [u8; 18] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in slot_group(resource).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut tag = [0u8; 18];
    tag[0] = b'{';
    tag[17] = b'}';
    for (i, d) in tag[1..17].iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((h >> (60 - 4 * i)) & 0xf) as usize];
    }
    tag
}

impl Layout {
    fn key(self, prefix: &str, namespace: &[u8], resource: &str, name: &[u8]) -> std::sync::Arc<[u8]> {
        match self {
            Self::Plain => joined(&[prefix.as_bytes(), namespace, name]),
            Self::Tagged => joined(&[prefix.as_bytes(), namespace, &hash_tag(resource), name]),
        }
    }

    /// The lock key of `resource`.
    pub(crate) fn lock(self, prefix: &str, resource: &str) -> Box<[u8]> {
        self.boxed(prefix, b"lock:", resource)
    }

    /// The fence counter of `resource`.
    pub(crate) fn fence(self, prefix: &str, resource: &str) -> Box<[u8]> {
        self.boxed(prefix, b"fence:", resource)
    }

    /// The waiting line of `resource` (wake-on-release): a sorted set of waiter ids by place.
    pub(crate) fn queue(self, prefix: &str, resource: &str) -> Box<[u8]> {
        self.boxed(prefix, b"queue:", resource)
    }

    /// The leases of the waiters in the line of `resource`: when each entry stops counting.
    pub(crate) fn lease(self, prefix: &str, resource: &str) -> Box<[u8]> {
        self.boxed(prefix, b"lease:", resource)
    }

    /// A key of `resource` made in one allocation (these go into a lock's `Arc<[Box<[u8]>]>`).
    fn boxed(self, prefix: &str, namespace: &[u8], resource: &str) -> Box<[u8]> {
        let tag = (self == Self::Tagged).then(|| hash_tag(resource));
        let tag: &[u8] = tag.as_ref().map_or(&[], |t| &t[..]);
        let mut k = Vec::with_capacity(prefix.len() + namespace.len() + tag.len() + resource.len());
        for part in [prefix.as_bytes(), namespace, tag, resource.as_bytes()] {
            k.extend_from_slice(part);
        }
        k.into_boxed_slice()
    }

    /// The tombstone of `token`, in the slot of `resource` (a lock's first resource: on a
    /// cluster member all of a lock's resources share one slot group).
    pub(crate) fn tomb(self, prefix: &str, resource: &str, token: &str) -> std::sync::Arc<[u8]> {
        self.key(prefix, b"tomb:", resource, token.as_bytes())
    }
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

        /// The waiting line's two keys meet no other key of any resource, in either layout.
        #[test]
        fn line_keys_never_collide_with_other_keys(a in any::<String>(), b in any::<String>(), t in "[0-9a-f]{32}") {
            for l in [Layout::Plain, Layout::Tagged] {
                let others = [l.lock(DEFAULT_PREFIX, &b), l.fence(DEFAULT_PREFIX, &b), l.tomb(DEFAULT_PREFIX, &b, &t).as_ref().into()];
                for line in [l.queue(DEFAULT_PREFIX, &a), l.lease(DEFAULT_PREFIX, &a)] {
                    prop_assert!(!others.contains(&line));
                }
                prop_assert_ne!(l.queue(DEFAULT_PREFIX, &a), l.lease(DEFAULT_PREFIX, &b));
                if a != b {
                    prop_assert_ne!(l.queue(DEFAULT_PREFIX, &a), l.queue(DEFAULT_PREFIX, &b));
                }
            }
        }

        #[test]
        fn hostile_names_stay_inside_the_key(r in "[\\x00-\\x7f\\]\\[{}\"'\\n]{0,64}") {
            let k = lock_key(DEFAULT_PREFIX, &r);
            prop_assert!(k.starts_with(b"quorumlock:lock:"));
            prop_assert!(k.ends_with(r.as_bytes()));
        }
    }

    #[test]
    fn slot_groups_follow_redis_hash_tag_rule() {
        assert_eq!(slot_group("{order:17}:items"), "order:17");
        assert_eq!(slot_group("x{a}{b}"), "a");
        assert_eq!(slot_group("{}x"), "{}x", "an empty tag is no tag");
        assert_eq!(slot_group("x{y"), "x{y");
        assert_eq!(slot_group("plain"), "plain");
    }

    proptest! {
        /// Tagged keys stay injective and keep one slot per lock: the tag is the first brace
        /// pair of the key whatever the name, and two names of one group share it.
        #[test]
        fn tagged_keys_are_injective_and_share_their_groups_tag(a in any::<String>(), b in any::<String>()) {
            let t = Layout::Tagged;
            if a != b {
                prop_assert_ne!(t.lock(DEFAULT_PREFIX, &a), t.lock(DEFAULT_PREFIX, &b));
            }
            let lock = t.lock(DEFAULT_PREFIX, &a);
            let fence = t.fence(DEFAULT_PREFIX, &a);
            let tomb = t.tomb(DEFAULT_PREFIX, &a, "0123456789abcdef0123456789abcdef");
            let tag = |k: &[u8]| {
                let open = k.iter().position(|c| *c == b'{').unwrap();
                let close = open + k[open..].iter().position(|c| *c == b'}').unwrap();
                k[open..=close].to_vec()
            };
            prop_assert_eq!(tag(&lock), hash_tag(&a).to_vec());
            prop_assert_eq!(tag(&fence), tag(&lock));
            prop_assert_eq!(tag(&tomb), tag(&lock));
            prop_assert_eq!(tag(&t.queue(DEFAULT_PREFIX, &a)), tag(&lock));
            prop_assert_eq!(tag(&t.lease(DEFAULT_PREFIX, &a)), tag(&lock));
            let grouped = format!("{{{}}}:{b}", slot_group(&a).replace('}', ""));
            prop_assume!(!slot_group(&a).contains('}') && !slot_group(&a).is_empty());
            prop_assert_eq!(slot_group(&grouped), slot_group(&a));
        }
    }
}
