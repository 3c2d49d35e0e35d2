//! The retry policy of [`Redlock::acquire`](crate::Redlock::acquire) and its schedule, a pure
//! function of the attempt count, the time spent and a random number.

use std::time::Duration;

/// How `acquire` retries: a bounded number of attempts, a random delay between them, and an
/// overall deadline.
///
/// The delay before each retry is drawn uniformly from `[delay, delay + jitter)`, so clients
/// that collided once do not collide again in lockstep. An attempt is only started if it can
/// finish (one node timeout) before the deadline, so `acquire` returns within the deadline plus
/// at most one node timeout of clean-up.
///
/// ```
/// use std::time::Duration;
/// use quorumlock::Retry;
///
/// let patient = Retry::new()
///     .attempts(50)
///     .delay(Duration::from_millis(20), Duration::from_millis(80))
///     .deadline(Duration::from_secs(10));
/// assert_eq!(patient.max_attempts(), 50);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    attempts: u32,
    delay: Duration,
    jitter: Duration,
    deadline: Option<Duration>,
}

impl Default for Retry {
    fn default() -> Self {
        Self::new()
    }
}

/// Why the schedule ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Attempts,
    Deadline,
}

impl Retry {
    /// The default policy: 10 attempts, 50-250 ms between them, 5 s deadline.
    pub const fn new() -> Self {
        Self {
            attempts: 10,
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(200),
            deadline: Some(Duration::from_secs(5)),
        }
    }

    /// Exactly one attempt: what [`Redlock::try_acquire`](crate::Redlock::try_acquire) does.
    pub const fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::new()
        }
    }

    /// Total number of attempts, the first included. Default: 10. Zero is rejected by
    /// `build()`.
    pub const fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// The delay before a retry is uniform in `[delay, delay + jitter)`. Default: 50 ms and
    /// 200 ms.
    pub const fn delay(mut self, delay: Duration, jitter: Duration) -> Self {
        self.delay = delay;
        self.jitter = jitter;
        self
    }

    /// No attempt is started that could not finish before `deadline`, counted from the call.
    /// Default: 5 s.
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Only the attempt count bounds the retries.
    pub const fn no_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// The configured number of attempts.
    pub const fn max_attempts(&self) -> u32 {
        self.attempts
    }

    /// The configured deadline.
    pub const fn max_duration(&self) -> Option<Duration> {
        self.deadline
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.attempts == 0 {
            return Err("retry policy: attempts must be at least 1".into());
        }
        if self.deadline == Some(Duration::ZERO) {
            return Err("retry policy: deadline must be positive".into());
        }
        if self.delay.checked_add(self.jitter).is_none() {
            return Err("retry policy: delay + jitter overflows".into());
        }
        Ok(())
    }

    /// Whether an attempt taking up to `attempt_bound` may start `elapsed` after the call.
    pub(crate) fn fits(&self, elapsed: Duration, attempt_bound: Duration) -> bool {
        self.deadline
            .is_none_or(|d| elapsed.saturating_add(attempt_bound) <= d)
    }

    /// The pause before the next attempt, after `done` attempts that took `elapsed` in total,
    /// for attempts that each take at most `attempt_bound`. `unit` is a random number in
    /// `[0, 1)`; values outside are clamped.
    pub(crate) fn next_delay(
        &self,
        done: u32,
        elapsed: Duration,
        attempt_bound: Duration,
        unit: f64,
    ) -> Result<Duration, Stop> {
        if done >= self.attempts {
            return Err(Stop::Attempts);
        }
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let delay = self.delay.saturating_add(self.jitter.mul_f64(unit));
        if !self.fits(elapsed.saturating_add(delay), attempt_bound) {
            return Err(Stop::Deadline);
        }
        Ok(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The schedule never exceeds its bounds: attempt count, delay window, deadline.
        #[test]
        fn schedule_stays_within_bounds(
            attempts in 1u32..40,
            delay_ms in 0u64..500,
            jitter_ms in 0u64..500,
            deadline_ms in 1u64..10_000,
            bound_ms in 0u64..1_000,
            units in proptest::collection::vec(0.0f64..1.0, 40),
        ) {
            let policy = Retry::new()
                .attempts(attempts)
                .delay(Duration::from_millis(delay_ms), Duration::from_millis(jitter_ms))
                .deadline(Duration::from_millis(deadline_ms));
            let bound = Duration::from_millis(bound_ms);
            // Simulate: each attempt takes exactly `bound`.
            let mut elapsed = bound;
            let mut done = 1;
            loop {
                match policy.next_delay(done, elapsed, bound, units[done as usize % units.len()]) {
                    Ok(d) => {
                        prop_assert!(d >= Duration::from_millis(delay_ms));
                        prop_assert!(d <= Duration::from_millis(delay_ms + jitter_ms));
                        elapsed += d + bound;
                        done += 1;
                        prop_assert!(elapsed <= Duration::from_millis(deadline_ms));
                    }
                    Err(Stop::Attempts) => { prop_assert_eq!(done, attempts); break; }
                    Err(Stop::Deadline) => { prop_assert!(done < attempts); break; }
                }
                prop_assert!(done <= attempts);
            }
        }
    }

    #[test]
    fn hostile_units_are_clamped() {
        let p = Retry::new();
        for u in [f64::NAN, -1.0, 2.0, f64::INFINITY] {
            let d = p.next_delay(1, Duration::ZERO, Duration::ZERO, u).unwrap();
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(250));
        }
    }

    #[test]
    fn validation() {
        assert!(Retry::new().attempts(0).validate().is_err());
        assert!(Retry::new().deadline(Duration::ZERO).validate().is_err());
        assert!(Retry::new()
            .delay(Duration::MAX, Duration::from_secs(1))
            .validate()
            .is_err());
        assert!(Retry::new().validate().is_ok());
        assert!(Retry::none().no_deadline().validate().is_ok());
    }
}
