//! Validity and clock-drift arithmetic (Redis Redlock spec): pure functions of `Duration`s.
//!
//! `validity = ttl - elapsed - drift`, with `drift = ttl * drift_factor + 2 ms`. Every operation
//! saturates or is checked, so no input can panic (rslock's `validity_time - 500` underflows).

use std::time::Duration;

/// The fixed part of the drift allowance: the spec's 2 ms for the granularity of Redis' expiry.
pub(crate) const DRIFT_FLOOR: Duration = Duration::from_millis(2);

/// Upper bound of accepted TTLs. Far below what `PX` accepts, and large enough that a lock
/// outliving it is a bug in the caller, not a use case.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The least validity a TTL must be able to leave (before any time is spent) to be accepted:
/// one millisecond, the resolution of Redis expiry. A TTL below [`min_ttl`] could never give a
/// lock, so it is refused at the call instead of failing every attempt with "validity
/// exhausted" until the retries run out.
pub(crate) const MIN_VALIDITY: Duration = Duration::from_millis(1);

/// The smallest whole-millisecond TTL that leaves [`MIN_VALIDITY`] after the drift allowance
/// for `factor` (in `[0, 1)`).
pub(crate) fn min_ttl(factor: f64) -> Duration {
    let leaves = |ms: u64| {
        let ttl = Duration::from_millis(ms);
        ttl.checked_sub(drift(ttl, factor))
            .is_some_and(|v| v >= MIN_VALIDITY)
    };
    // t - (t * factor + 2 ms) >= 1 ms  <=>  t >= 3 ms / (1 - factor); start just below the
    // estimate and step up, so float rounding cannot put us off by one.
    let estimate = (3.0 / (1.0 - factor.clamp(0.0, 0.999_999))).floor() as u64;
    let mut ms = estimate.saturating_sub(2).max(1);
    while !leaves(ms) && ms < u64::from(u32::MAX) {
        ms += 1;
    }
    Duration::from_millis(ms)
}

/// The clock-drift allowance for a lock of `ttl` (rounded up to whole nanoseconds).
///
/// `factor` must be finite and in `[0, 1)`; the builder rejects anything else. For robustness a
/// bad factor still gives a defined answer here: NaN counts as 0, negative as 0, and the result
/// saturates at `Duration::MAX`.
pub(crate) fn drift(ttl: Duration, factor: f64) -> Duration {
    let scaled = ttl.as_nanos() as f64 * factor;
    // `as` saturates (NaN -> 0, negative -> 0, too large -> u64::MAX): never panics.
    let nanos = scaled.ceil() as u64;
    Duration::from_nanos(nanos).saturating_add(DRIFT_FLOOR)
}

/// Time left of a lock that was asked for with `ttl`, `elapsed` after the attempt began, or
/// `None` if none is left (validity <= 0 means failure, never a grant).
pub(crate) fn validity(ttl: Duration, elapsed: Duration, drift: Duration) -> Option<Duration> {
    ttl.checked_sub(elapsed)?
        .checked_sub(drift)
        .filter(|v| !v.is_zero())
}

/// The TTL actually sent to Redis, which counts whole milliseconds. Rounding *down* keeps our
/// validity claim no longer than the key's real life on the servers.
pub(crate) fn whole_millis(ttl: Duration) -> (u64, Duration) {
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    (ms, Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_example() {
        // 10 s TTL, factor 0.01: drift = 100 ms + 2 ms.
        let d = drift(Duration::from_secs(10), 0.01);
        assert_eq!(d, Duration::from_millis(102));
        assert_eq!(
            validity(Duration::from_secs(10), Duration::from_millis(8), d),
            Some(Duration::from_millis(9890))
        );
    }

    #[test]
    fn min_ttl_is_the_first_that_leaves_validity() {
        assert_eq!(min_ttl(0.0), Duration::from_millis(3));
        assert_eq!(min_ttl(0.01), Duration::from_millis(4));
        assert_eq!(min_ttl(0.5), Duration::from_millis(6));
    }

    proptest! {
        #[test]
        fn min_ttl_leaves_validity_and_one_less_does_not(factor in 0.0f64..0.99) {
            let min = min_ttl(factor);
            prop_assert!(min.checked_sub(drift(min, factor)).is_some_and(|v| v >= MIN_VALIDITY));
            let below = min - Duration::from_millis(1);
            prop_assert!(below.checked_sub(drift(below, factor)).is_none_or(|v| v < MIN_VALIDITY));
        }
    }

    /// The documented limit of a TTL and of the fence horizon (docs/fencing.md): 30 days.
    #[test]
    fn max_ttl_is_thirty_days() {
        assert_eq!(MAX_TTL, Duration::from_secs(2_592_000));
    }

    #[test]
    fn edges_never_panic() {
        let ttls = [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::from_millis(499),
            Duration::from_millis(500),
            Duration::from_millis(u64::from(u32::MAX)),
            Duration::MAX,
        ];
        let factors = [0.0, 0.01, 0.5, 0.999, f64::NAN, -1.0, 1.0, 2.0, f64::INFINITY];
        for ttl in ttls {
            for f in factors {
                let d = drift(ttl, f);
                assert!(d >= DRIFT_FLOOR);
                let _ = validity(ttl, Duration::from_millis(500), d);
                let _ = validity(ttl, Duration::MAX, d);
            }
            let _ = whole_millis(ttl);
        }
        // A 2 ms TTL leaves nothing once the 2 ms floor is taken.
        assert_eq!(
            validity(
                Duration::from_millis(2),
                Duration::ZERO,
                drift(Duration::from_millis(2), 0.0)
            ),
            None
        );
    }

    proptest! {
        #[test]
        fn validity_is_honest_and_monotone(
            ttl_ms in 0u64..10_000_000,
            e1 in 0u64..20_000_000_000,
            e2 in 0u64..20_000_000_000,
            factor in 0.0f64..1.0,
        ) {
            let ttl = Duration::from_millis(ttl_ms);
            let d = drift(ttl, factor);
            let (early, late) = (Duration::from_nanos(e1.min(e2)), Duration::from_nanos(e1.max(e2)));
            let v_early = validity(ttl, early, d);
            let v_late = validity(ttl, late, d);
            // More elapsed time never leaves more validity.
            prop_assert!(v_late <= v_early || v_early.is_none() && v_late.is_none());
            if let Some(v) = v_late {
                // P2: validity + elapsed + drift never exceeds the TTL.
                prop_assert!(v + late + d <= ttl);
                prop_assert!(!v.is_zero());
            }
            // Drift grows with the TTL.
            prop_assert!(drift(ttl + Duration::from_millis(1), factor) >= d);
        }

        #[test]
        fn whole_millis_never_rounds_up(nanos in any::<u64>()) {
            let ttl = Duration::from_nanos(nanos);
            let (ms, eff) = whole_millis(ttl);
            prop_assert!(eff <= ttl);
            prop_assert_eq!(eff, Duration::from_millis(ms));
            prop_assert!(ttl - eff < Duration::from_millis(1));
        }
    }
}
