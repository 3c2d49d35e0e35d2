//! A whole-keyspace audit: every key a lock client wrote under its prefix, checked against the
//! bound of its kind (G3: every key the library writes carries a TTL with a documented bound).
//!
//! The check is pure: the caller reads the nodes (`KEYS <prefix>*` and `PTTL` of each, with
//! its own connections, never through the client under test) and hands the samples over, so
//! the same check serves single servers, cluster members and the chaos runner.
//!
//! ```
//! use std::time::Duration;
//! use quorumlock_testkit::audit::{check, Bounds, Sample};
//!
//! let bounds = Bounds::uniform(Duration::from_secs(10));
//! let fine = Sample::new(0, "quorumlock:lock:job", 9_000);
//! let stuck = Sample::new(1, "quorumlock:fence:job", -1); // no TTL
//! let found = check("quorumlock:", &bounds, [fine, stuck]).unwrap_err();
//! assert_eq!(found.len(), 1);
//! assert!(found[0].to_string().contains("no TTL"));
//! ```

use std::fmt;
use std::time::Duration;

/// The kinds of key a quorumlock client writes, by the namespace after its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// `lock:<resource>`: a held lock; lives at most its TTL (or its last extension's).
    Lock,
    /// `tomb:<token>`: a released token's tombstone; lives one lock TTL.
    Tomb,
    /// `fence:<resource>`: a fence counter; lives the fence horizon after its last write.
    Fence,
    /// `queue:<resource>`: a waiting line; lives as long as its longest lease.
    Queue,
    /// `lease:<resource>`: the leases of a waiting line's entries; as [`Kind::Queue`].
    Lease,
}

impl Kind {
    /// Every kind, in namespace order.
    pub const ALL: [Kind; 5] = [Kind::Lock, Kind::Tomb, Kind::Fence, Kind::Queue, Kind::Lease];

    /// The namespace of this kind (what follows the prefix, colon included).
    pub fn namespace(self) -> &'static str {
        match self {
            Kind::Lock => "lock:",
            Kind::Tomb => "tomb:",
            Kind::Fence => "fence:",
            Kind::Queue => "queue:",
            Kind::Lease => "lease:",
        }
    }

    /// The kind of `key` under `prefix`, or `None` for a key of no known kind.
    pub fn of(prefix: &str, key: &str) -> Option<Kind> {
        let rest = key.strip_prefix(prefix)?;
        Kind::ALL.into_iter().find(|k| rest.starts_with(k.namespace()))
    }
}

/// The longest TTL each kind of key may have: what the documentation promises, for the
/// configuration under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Lock keys: the longest TTL (or extension) the test uses.
    pub lock: Duration,
    /// Tombstones: the longest lock TTL the test uses.
    pub tomb: Duration,
    /// Fence counters: the fence horizon.
    pub fence: Duration,
    /// Waiting lines and their leases: the longest lease.
    pub line: Duration,
}

/// The bounds a test stays within unless it says otherwise, and what [`crate::LocalCluster`]
/// audits when dropped: no lock or tombstone for more than two minutes, fence counters the
/// library's default horizon (1 h), a waiting line at most its longest lease (250 ms + 3 node
/// timeouts + 100 ms, node timeouts at most 1 s).
pub const TEST_BOUNDS: Bounds = Bounds {
    lock: Duration::from_secs(120),
    tomb: Duration::from_secs(120),
    fence: Duration::from_secs(3600),
    line: Duration::from_millis(3_350),
};

impl Bounds {
    /// The same bound for every kind.
    pub fn uniform(bound: Duration) -> Self {
        Self {
            lock: bound,
            tomb: bound,
            fence: bound,
            line: bound,
        }
    }

    /// The bound of `kind`.
    pub fn of(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Lock => self.lock,
            Kind::Tomb => self.tomb,
            Kind::Fence => self.fence,
            Kind::Queue | Kind::Lease => self.line,
        }
    }
}

/// One key as a node reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Which node (index in the cluster).
    pub node: usize,
    /// The key.
    pub key: String,
    /// Its `PTTL` reply: milliseconds left, -1 without a TTL, -2 gone since it was listed.
    pub pttl: i64,
}

impl Sample {
    /// A sample of `key` on `node` whose `PTTL` was `pttl`.
    pub fn new(node: usize, key: impl Into<String>, pttl: i64) -> Self {
        Self {
            node,
            key: key.into(),
            pttl,
        }
    }
}

/// A key that breaks its bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The key as sampled.
    pub sample: Sample,
    /// Its kind, if it has a known one.
    pub kind: Option<Kind>,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The key has no TTL: it would stay for ever.
    NoTtl,
    /// The key lives longer than its kind's bound.
    OverBound(Duration),
    /// The key is under the prefix but of no kind the library writes.
    UnknownKind,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.sample;
        let kind = self.kind.map_or("unknown".to_owned(), |k| format!("{k:?}"));
        match &self.problem {
            Problem::NoTtl => write!(f, "node {}: {} ({kind}) has no TTL", s.node, s.key),
            Problem::OverBound(b) => write!(
                f,
                "node {}: {} ({kind}) lives {} ms, over its bound of {} ms",
                s.node,
                s.key,
                s.pttl,
                b.as_millis()
            ),
            Problem::UnknownKind => write!(f, "node {}: {} is of no kind the library writes", s.node, s.key),
        }
    }
}

/// Checks every sampled key under `prefix` against its kind's bound. Keys outside the prefix
/// are not the library's and are passed over; a key gone since it was listed (`PTTL` -2) is fine.
///
/// # Errors
/// Every key without a TTL, over its bound, or of no known kind.
pub fn check(
    prefix: &str,
    bounds: &Bounds,
    samples: impl IntoIterator<Item = Sample>,
) -> Result<(), Vec<Finding>> {
    let findings: Vec<Finding> = samples
        .into_iter()
        .filter(|s| s.key.starts_with(prefix) && s.pttl != -2)
        .filter_map(|sample| {
            let kind = Kind::of(prefix, &sample.key);
            let problem = match kind {
                None => Problem::UnknownKind,
                Some(_) if sample.pttl < 0 => Problem::NoTtl,
                Some(k) => {
                    let bound = bounds.of(k);
                    if u128::try_from(sample.pttl).unwrap_or(0) > bound.as_millis() {
                        Problem::OverBound(bound)
                    } else {
                        return None;
                    }
                }
            };
            Some(Finding {
                sample,
                kind,
                problem,
            })
        })
        .collect();
    if findings.is_empty() {
        Ok(())
    } else {
        Err(findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "quorumlock:";

    /// The audit can fail: for every kind, a key without a TTL and a key over its bound are
    /// found, and one within its bound is not.
    #[test]
    fn every_kind_is_caught_without_a_ttl_and_over_its_bound() {
        let bounds = Bounds {
            lock: Duration::from_secs(1),
            tomb: Duration::from_secs(2),
            fence: Duration::from_secs(3),
            line: Duration::from_secs(4),
        };
        for kind in Kind::ALL {
            let key = format!("{P}{}r", kind.namespace());
            let limit = i64::try_from(bounds.of(kind).as_millis()).unwrap();
            assert_eq!(
                check(P, &bounds, [Sample::new(0, &key, limit)]),
                Ok(()),
                "{kind:?}"
            );
            for (pttl, problem) in [
                (-1, Problem::NoTtl),
                (limit + 1, Problem::OverBound(bounds.of(kind))),
            ] {
                let found = check(P, &bounds, [Sample::new(2, &key, pttl)]).unwrap_err();
                assert_eq!(found.len(), 1);
                assert_eq!(found[0].kind, Some(kind));
                assert_eq!(found[0].problem, problem, "{kind:?} with pttl {pttl}");
            }
        }
    }

    #[test]
    fn unknown_keys_under_the_prefix_are_findings_and_others_are_not_ours() {
        let b = Bounds::uniform(Duration::from_secs(1));
        let found = check(P, &b, [Sample::new(0, "quorumlock:other:x", 10)]).unwrap_err();
        assert_eq!(found[0].problem, Problem::UnknownKind);
        assert_eq!(check(P, &b, [Sample::new(0, "app:cache", -1)]), Ok(()));
        assert_eq!(check(P, &b, [Sample::new(0, "quorumlock:lock:gone", -2)]), Ok(()));
    }
}
