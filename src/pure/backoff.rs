//! The background schedules: how long the watchdog, a node's reconnect and a node's release
//! obligations pause between tries. Pure functions of how many tries failed; each grows (no
//! hammering of a dead node), never pauses zero (no busy loop) and is capped (a node that
//! comes back is found soon). Acquisition's own schedule is [`crate::pure::retry::Retry`].

use std::time::Duration;

/// The watchdog's pause between attempts after a failed extension of a lock of `ttl`: a
/// twentieth of the TTL within 10 ms..1 s, so several attempts fit in the third of the TTL
/// before the validity ends.
pub(crate) fn extension_retry_delay(ttl: Duration) -> Duration {
    (ttl / 20).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// A node's wait before it tries to connect again after `failures` failed connects in a row:
/// 10 ms doubling to 500 ms. While it runs, calls fail at once with the last connect error
/// instead of hammering a node that is down.
pub(crate) fn reconnect_backoff(failures: u32) -> Duration {
    Duration::from_millis(10u64 << failures.saturating_sub(1).min(6)).min(Duration::from_millis(500))
}

/// Pause between a node's rounds of release obligations while it gives no definite answer:
/// 10 ms doubling to 1 s. The worker probes with one request per round, so a dead node costs
/// one request per pause.
pub(crate) fn obligation_pause(rounds_without_progress: u32) -> Duration {
    Duration::from_millis(10u64 << rounds_without_progress.min(7)).min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The three background schedules never pause zero (no busy loop), grow with failures
        /// (no hammering of a dead node), and stay capped (a node that comes back is found soon).
        #[test]
        fn background_schedules_grow_within_bounds(a in 0u32..10_000, b in 0u32..10_000, ttl_ms in 0u64..10_000_000) {
            let (lo, hi) = (a.min(b), a.max(b));
            for (f, floor, cap) in [
                (reconnect_backoff as fn(u32) -> Duration, 10, 500),
                (obligation_pause, 10, 1000),
            ] {
                prop_assert!(f(lo) <= f(hi));
                prop_assert!(f(lo) >= Duration::from_millis(floor));
                prop_assert!(f(hi) <= Duration::from_millis(cap));
            }
            let d = extension_retry_delay(Duration::from_millis(ttl_ms));
            prop_assert!(d >= Duration::from_millis(10) && d <= Duration::from_secs(1));
            if (200..=20_000).contains(&ttl_ms) {
                prop_assert_eq!(d, Duration::from_millis(ttl_ms) / 20);
            }
        }
    }

    #[test]
    fn reconnect_backoff_doubles_to_its_cap() {
        let waits = [0, 1, 2, 7, u32::MAX].map(|f| reconnect_backoff(f).as_millis());
        assert_eq!(waits, [10, 10, 20, 500, 500]);
    }
}
