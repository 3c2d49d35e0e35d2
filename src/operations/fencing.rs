//! Fencing tokens over a quorum (G6): which counters a lock uses, the fence a lock gets from its
//! grants, and the write-back that puts it on a majority before the lock is handed out.
//!
//! The rule itself runs on the nodes, in `scripts/acquire_fenced.lua` (a grant's fence is the
//! larger of every counter plus one and the server's clock in microseconds, stored in every
//! counter), in its copy for one resource in `scripts/acquire_queued.lua` (fenced locks with
//! wake-on-release, which go through the waiting line), and in `scripts/fence_raise.lua` (raise
//! a counter to the fence, never lower it). [`granted_fence`] and [`raised`] are the same rules
//! in Rust; a property test below holds them against `acquire_fenced.lua` and
//! `fence_raise.lua` on a `redis-server` (the copy in `acquire_queued.lua` has an example test,
//! `line::the_fenced_line_script_takes_fences_above_the_counter`). docs/fencing.md argues why the maximum
//! over a quorum of grants, written back to a quorum, orders holders.

use std::sync::Arc;
use std::time::Instant;

use crate::errors::error::{Error, ErrorKind, Operation};
use crate::fan_out::fanout::Fanout;
use crate::node_set::nodes::NodeSet;
use crate::pure::key::{Counters, Keys, Layout};
use crate::pure::validity::validity;
use crate::shared::Ttl;
use crate::wire::reply::{Arg, LockRef, Op, Request};
use crate::wire::scripts::{ACQUIRE_FENCED, FENCE_RAISE};

/// The fence counter keys of a lock on `resources` (sorted, as its lock keys are).
pub(crate) fn fence_keys(layout: Layout, prefix: &str, resources: &[Box<str>]) -> Keys {
    resources.iter().map(|r| layout.fence(prefix, r)).collect()
}

// The next two are the scripts' rules as a specification: the nodes run the Lua, the tests
// hold the two against each other.

/// The fence one node grants (`acquire_fenced.lua`): above every counter of the lock's
/// resources, and at least the server's clock in microseconds (`now_us`), so that counters lost
/// with a node's data still start above any fence given before (with clocks roughly in step).
#[cfg(test)]
pub(crate) fn granted_fence(counters: &[u64], now_us: u64) -> u64 {
    counters
        .iter()
        .map(|c| c.saturating_add(1))
        .fold(now_us, u64::max)
}

/// A counter after the write-back of `fence` (`fence_raise.lua`): raised, never lowered.
#[cfg(test)]
pub(crate) fn raised(counter: u64, fence: u64) -> u64 {
    counter.max(fence)
}

/// The lock's fence: the highest its grants gave. Every later quorum overlaps the majority this
/// is written back to, so every later grant is above it.
pub(crate) fn lock_fence(grants: impl Iterator<Item = u64>) -> u64 {
    grants.max().unwrap_or(0)
}

/// Writes `fence` back to the fence counters of a majority (raising, never lowering them), and
/// checks that validity is still left afterwards.
///
/// # Errors
/// Quorum not reached (the kind says why), or reached too late to leave validity.
///
/// # Cancel safety
/// Cancel safe: the requests already sent finish in the background; the caller's unready
/// acquisition then undoes the lock.
pub(crate) async fn write_back(
    nodes: &Arc<NodeSet>,
    lock: &LockRef,
    counters: &Counters,
    fence: u64,
    t0: Instant,
    expires: Instant,
    ttl: Ttl,
) -> Result<u64, Error> {
    let req = Arc::new(Request::fence_raise(lock, counters, fence));
    let mut fan = Fanout::start(nodes, req, ttl.node_timeout, expires);
    let decision = fan.decide().await;
    let elapsed = t0.elapsed();
    tracing::debug!(fence, verdict = ?decision.verdict, nodes = %decision.report_fmt(), "fence write-back decided");
    let kind = match (decision.reached(), validity(ttl.effective, elapsed, ttl.drift)) {
        (true, Some(_)) => return Ok(fence),
        (true, None) => ErrorKind::ValidityExhausted,
        (false, _) => decision.failure_kind(ErrorKind::QuorumUnreachable),
    };
    Err(decision
        .error(kind, Operation::Acquire)
        .with_message(format!("fence write-back of {fence} did not reach a majority"))
        .with_elapsed(elapsed))
}

impl Request {
    /// [`Request::acquire`] that also takes a fence from `counters` (`acquire_fenced.lua`).
    pub(crate) fn acquire_fenced(lock: &LockRef, counters: &Counters) -> Self {
        let args = [
            Arg::Bytes(lock.token.as_bytes()),
            Arg::Int(lock.ttl_ms),
            Arg::Int(counters.horizon_ms),
        ];
        let keys = Self::keys_then_tomb(lock, Some(&counters.keys));
        Self::new(Op::AcquireFenced, &ACQUIRE_FENCED, lock, keys, &args)
    }

    /// The write-back: raises `counters` to at least `fence` (`fence_raise.lua`).
    pub(crate) fn fence_raise(lock: &LockRef, counters: &Counters, fence: u64) -> Self {
        let keys = counters.keys.iter().map(|k| &**k);
        let args = [Arg::Int(fence), Arg::Int(counters.horizon_ms)];
        Self::new(Op::FenceRaise, &FENCE_RAISE, lock, keys, &args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quorumlock_testkit::LocalCluster;
    use redis::Commands;

    proptest! {
        #[test]
        fn a_grant_is_above_every_counter_and_the_clock(counters in prop::collection::vec(any::<u64>(), 1..5), now in any::<u64>()) {
            let f = granted_fence(&counters, now);
            prop_assert!(f >= now);
            for c in &counters {
                prop_assert!(f > *c || *c == u64::MAX);
            }
        }

        #[test]
        fn a_write_back_never_lowers(c in any::<u64>(), f in any::<u64>()) {
            prop_assert!(raised(c, f) >= c);
            prop_assert!(raised(c, f) >= f);
        }
    }

    fn server_time_us(con: &mut redis::Connection) -> u64 {
        let (s, us): (u64, u64) = redis::cmd("TIME").query(con).unwrap();
        s * 1_000_000 + us
    }

    /// The Rust rules above are the scripts' rules: random counters (some below the clock, some
    /// far above it) go through the real `acquire_fenced.lua` and `fence_raise.lua` on a
    /// redis-server, and what the server answers and stores must be what the model predicts.
    #[test]
    fn the_model_matches_the_scripts_on_a_real_server() {
        let cluster = LocalCluster::start(1).expect("redis-server");
        // proptest wants a `Fn`: the connection and the round counter sit in cells.
        let con = std::cell::RefCell::new(
            redis::Client::open(cluster.url(0))
                .unwrap()
                .get_connection()
                .unwrap(),
        );
        let clock = server_time_us(&mut con.borrow_mut());
        let counter = prop_oneof![
            Just(None),
            (0..clock).prop_map(Some),
            (clock..clock + 10_000_000_000).prop_map(Some),
        ];
        let case = (prop::collection::vec(counter, 1..4), 0u64..20_000_000_000);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
        let round = std::cell::Cell::new(0u64);
        runner
            .run(&case, |(counters, raise_to)| {
                round.set(round.get() + 1);
                let round = round.get();
                let con = &mut *con.borrow_mut();
                let n = counters.len();
                let res: Vec<String> = (0..n).map(|i| format!("r{round}-{i}")).collect();
                let lock_keys: Vec<Box<[u8]>> = res
                    .iter()
                    .map(|r| crate::pure::key::lock_key("t:", r).into_boxed_slice())
                    .collect();
                let counter_keys: Vec<Box<[u8]>> = fence_keys(
                    Layout::Plain,
                    "t:",
                    &res.iter().map(|r| r.as_str().into()).collect::<Vec<_>>(),
                )
                .to_vec();
                for (k, c) in counter_keys.iter().zip(&counters) {
                    if let Some(c) = c {
                        let _: () = con.set(&k[..], c).unwrap();
                    }
                }
                let mut keys = lock_keys.clone();
                keys.extend(counter_keys.iter().cloned());
                keys.push(crate::pure::key::tomb_key("t:", "0123456789abcdef0123456789abcdef")[..].into());
                let before = server_time_us(con);
                let (token, fence): (String, u64) = crate::wire::scripts::ACQUIRE_FENCED
                    .eval(&keys, &[b"tok", b"10000", b"60000"])
                    .query(con)
                    .unwrap();
                let after = server_time_us(con);
                prop_assert_eq!(token, "tok");
                let known: Vec<u64> = counters.iter().map(|c| c.unwrap_or(0)).collect();
                // The script read the clock between `before` and `after`.
                let (low, high) = (granted_fence(&known, before), granted_fence(&known, after));
                prop_assert!(low <= fence && fence <= high, "{low} <= {fence} <= {high}");
                for k in &counter_keys {
                    let stored: u64 = con.get(&k[..]).unwrap();
                    prop_assert_eq!(stored, fence);
                    let pttl: i64 = redis::cmd("PTTL").arg(&k[..]).query(con).unwrap();
                    prop_assert!(
                        0 < pttl && pttl <= 60_000,
                        "a counter lives one horizon: {}",
                        pttl
                    );
                }
                // The same request again (a cluster member's re-send): granted again, same
                // fence, nothing changed.
                let again: (String, u64) = crate::wire::scripts::ACQUIRE_FENCED
                    .eval(&keys, &[b"tok", b"10000", b"60000"])
                    .query(con)
                    .unwrap();
                prop_assert_eq!(again, ("tok".to_owned(), fence));
                let other: i64 = crate::wire::scripts::ACQUIRE_FENCED
                    .eval(&keys, &[b"other", b"10000", b"60000"])
                    .query(con)
                    .unwrap();
                prop_assert_eq!(other, 0, "another token is refused");
                let raise_keys: Vec<Box<[u8]>> = counter_keys.clone();
                let _: i64 = crate::wire::scripts::FENCE_RAISE
                    .eval(&raise_keys, &[raise_to.to_string().as_bytes(), b"90000"])
                    .query(con)
                    .unwrap();
                for k in &counter_keys {
                    let stored: u64 = con.get(&k[..]).unwrap();
                    prop_assert_eq!(stored, raised(fence, raise_to));
                    // A raise writes the counter again with the new horizon; no raise leaves it.
                    let pttl: i64 = redis::cmd("PTTL").arg(&k[..]).query(con).unwrap();
                    let (low, high) = if raise_to > fence {
                        (60_000, 90_000)
                    } else {
                        (0, 60_000)
                    };
                    prop_assert!(
                        low < pttl && pttl <= high,
                        "raise to {} over {}: pttl {}",
                        raise_to,
                        fence,
                        pttl
                    );
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn the_lock_fence_is_the_highest_grant() {
        assert_eq!(lock_fence([3, 9, 4].into_iter()), 9);
        assert_eq!(lock_fence(std::iter::empty()), 0);
    }
}
