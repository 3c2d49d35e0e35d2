//! Every retry schedule of the crate, as pure functions, in one place:
//!
//! - [`Retry`]: how `acquire` retries a failed attempt (the caller's policy): a function of
//!   the attempt count, the time spent and a random number;
//! - [`extension_retry_delay`]: how a guard's watchdog retries a failed extension;
//! - [`reconnect_backoff`]: how long a node waits before it tries to connect again;
//! - [`obligation_pause`]: how often a release obligation is re-sent to a node that gives no
//!   definite answer.

use std::time::Duration;

/// How `acquire` retries: until a deadline, with a random delay between attempts, and
/// optionally at most a number of attempts.
///
/// Waiting is deadline-first: the default policy, and [`Retry::wait`], keep retrying until the
/// deadline and cap nothing else, so "wait up to 10 s" is `Retry::wait(Duration::from_secs(10))`.
/// [`attempts`](Retry::attempts) adds a cap on the number of attempts for callers that want
/// one; whichever bound is reached first ends the wait.
///
/// The delay before each retry is drawn uniformly from `[delay, delay + jitter)`, so clients
/// that collided once do not collide again in lockstep. An attempt is only started if it can
/// finish (one node timeout) before the deadline, and the last pause is shortened so that the
/// last attempt starts as late as that allows. So a contended `acquire` gives up no earlier than
/// the deadline minus one node timeout, and returns within the deadline plus at most one node
/// timeout spent waiting for the previous attempt's clean-up.
///
/// ```
/// use std::time::Duration;
/// use quorumlock::Retry;
///
/// // Keep trying for 10 s, 20-100 ms apart, however many attempts that takes.
/// let patient = Retry::wait(Duration::from_secs(10))
///     .delay(Duration::from_millis(20), Duration::from_millis(80));
/// assert_eq!(patient.max_duration(), Some(Duration::from_secs(10)));
/// assert_eq!(patient.max_attempts(), u32::MAX); // no cap
///
/// // At most 3 attempts, and never past 5 s.
/// let brief = Retry::new().attempts(3);
/// assert_eq!(brief.max_attempts(), 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// `u32::MAX` stands for "no cap": at 50 ms or more per attempt it is over six years away.
    attempts: u32,
    delay: Duration,
    jitter: Duration,
    deadline: Option<Duration>,
    /// Attempts in a row that found too few nodes reachable before giving up; `u32::MAX`: no
    /// cap (the deadline decides).
    unreachable: u32,
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

/// The default deadline of [`Retry::new`].
const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

impl Retry {
    /// The default policy: retry until 5 s have passed, 50-250 ms between attempts, no cap on
    /// the number of attempts. The same as `Retry::wait(Duration::from_secs(5))`.
    pub const fn new() -> Self {
        Self {
            attempts: u32::MAX,
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(200),
            deadline: Some(DEFAULT_DEADLINE),
            unreachable: u32::MAX,
        }
    }

    /// Retry until `deadline` has passed, counted from the call, with the default delays and no
    /// cap on the number of attempts. A zero deadline is rejected by `build()`.
    pub const fn wait(deadline: Duration) -> Self {
        Self::new().deadline(deadline)
    }

    /// Exactly one attempt: what [`Redlock::try_acquire`](crate::Redlock::try_acquire) does.
    pub const fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::new()
        }
    }

    /// At most `attempts` attempts, the first included, even if the deadline has not passed.
    /// Default: no cap (`u32::MAX`). Zero is rejected by `build()`.
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

    /// Retry until `deadline` has passed, counted from the call: no attempt is started that
    /// could not finish (one node timeout) before it. Default: 5 s.
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// No deadline: only the attempt count bounds the retries. Without an
    /// [`attempts`](Self::attempts) cap as well, `acquire` then waits until it gets the lock or
    /// its future is dropped (a `tokio::time::timeout` around it is the usual way to bound it).
    pub const fn no_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// Give up after `attempts` attempts in a row that found too few nodes reachable (an
    /// outage: timeouts, refused connections, error replies; not contention), with
    /// [`ErrorKind::QuorumUnreachable`](crate::ErrorKind::QuorumUnreachable) and every node's
    /// reason, instead of retrying until the deadline. A request path that should wait for a
    /// busy resource but answer at once when the lock servers are down:
    ///
    /// ```
    /// use std::time::Duration;
    /// use quorumlock::Retry;
    ///
    /// let request_path = Retry::wait(Duration::from_secs(2)).fail_fast_when_unreachable(1);
    /// # let _ = request_path;
    /// ```
    ///
    /// An attempt refused because the resource is held resets the count. Default: no such cap.
    /// Zero is rejected by `build()` (and by the call that takes the policy).
    pub const fn fail_fast_when_unreachable(mut self, attempts: u32) -> Self {
        self.unreachable = attempts;
        self
    }

    /// Whether `in_a_row` attempts that found too few nodes reachable end the schedule.
    pub(crate) fn gives_up_unreachable(&self, in_a_row: u32) -> bool {
        in_a_row >= self.unreachable
    }

    /// The configured cap on attempts; `u32::MAX` when there is none.
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
        if self.unreachable == 0 {
            return Err("retry policy: fail_fast_when_unreachable must be at least 1".into());
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
    ///
    /// Deadline-first: when the drawn delay would start the next attempt too late to finish
    /// before the deadline, the delay is shortened so that the attempt starts at the last moment
    /// that still fits, rather than giving up early by up to a whole delay. The schedule stops
    /// only when no later start fits (or the attempt cap is reached).
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
        let Some(deadline) = self.deadline else {
            return Ok(delay);
        };
        // The latest moment an attempt may start and still finish by the deadline.
        let latest = deadline.checked_sub(attempt_bound).ok_or(Stop::Deadline)?;
        // Strictly before `latest`: a zero pause at `latest` could repeat forever if attempts
        // took no time (they always do in practice, but the schedule must end on its own).
        match latest.checked_sub(elapsed) {
            Some(slack) if !slack.is_zero() => Ok(delay.min(slack)),
            _ => Err(Stop::Deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    proptest! {
        /// The schedule keeps every bound: each attempt starts in time to finish before the
        /// deadline, each pause is in the delay window (or is the shortened last one), the cap
        /// is never passed, and a deadline stop comes only when no later start would fit.
        #[test]
        fn schedule_stays_within_bounds_and_waits_until_the_deadline(
            attempts in prop_oneof![Just(u32::MAX), 1u32..40],
            delay_ms in 0u64..500,
            jitter_ms in 0u64..500,
            deadline_ms in 1u64..10_000,
            bound_ms in 1u64..1_000,
            units in proptest::collection::vec(0.0f64..1.0, 40),
            // How much of its bound each simulated attempt takes (at least 1 ms: a real
            // attempt always takes some time).
            shares in proptest::collection::vec(0.0f64..=1.0, 40),
        ) {
            let policy = Retry::new()
                .attempts(attempts)
                .delay(ms(delay_ms), ms(jitter_ms))
                .deadline(ms(deadline_ms));
            let bound = ms(bound_ms);
            let deadline = ms(deadline_ms);
            let took = |k: u32| bound.mul_f64(shares[k as usize % shares.len()]).max(MS);
            // The first attempt is always made.
            let mut elapsed = took(0);
            let mut done = 1;
            loop {
                match policy.next_delay(done, elapsed, bound, units[done as usize % units.len()]) {
                    Ok(d) => {
                        prop_assert!(d <= ms(delay_ms + jitter_ms));
                        let start = elapsed + d;
                        prop_assert!(policy.fits(start, bound), "start {start:?} does not fit");
                        prop_assert!(start + bound <= deadline);
                        if d < ms(delay_ms) {
                            // Shortened: exactly the last start that fits.
                            prop_assert_eq!(start + bound, deadline);
                        }
                        elapsed = start + took(done);
                        done += 1;
                    }
                    Err(Stop::Attempts) => {
                        prop_assert_eq!(done, attempts);
                        break;
                    }
                    Err(Stop::Deadline) => {
                        prop_assert!(done < attempts);
                        // Deadline-first: it gave up only once no attempt could start in time.
                        prop_assert!(elapsed + bound >= deadline, "gave up early at {elapsed:?}");
                        break;
                    }
                }
                prop_assert!(done <= attempts);
            }
        }

        /// Without a deadline only the cap ends the schedule, and each pause is in the window.
        #[test]
        fn without_a_deadline_only_the_cap_stops(
            attempts in 1u32..1_000,
            delay_ms in 0u64..500,
            jitter_ms in 0u64..500,
            elapsed_s in 0u64..1_000_000,
            unit in 0.0f64..1.0,
        ) {
            let policy = Retry::new()
                .attempts(attempts)
                .delay(ms(delay_ms), ms(jitter_ms))
                .no_deadline();
            let elapsed = Duration::from_secs(elapsed_s);
            for done in 1..attempts {
                let d = policy.next_delay(done, elapsed, Duration::from_secs(1), unit).unwrap();
                prop_assert!(d >= ms(delay_ms) && d <= ms(delay_ms + jitter_ms));
            }
            prop_assert_eq!(
                policy.next_delay(attempts, elapsed, Duration::from_secs(1), unit),
                Err(Stop::Attempts)
            );
        }
    }

    /// Issue 12 §2.1: the default was documented as a 5 s deadline but stopped after 10 attempts
    /// (about 1.4 s). Simulated with the longest delays and 1 ms attempts under a 100 ms node
    /// timeout (a 10 s TTL's default), it now keeps trying until the last attempt that fits.
    #[test]
    fn default_policy_waits_its_whole_deadline() {
        let policy = Retry::default();
        assert_eq!(policy, Retry::wait(Duration::from_secs(5)));
        assert_eq!(policy.max_attempts(), u32::MAX);
        assert_eq!(policy.max_duration(), Some(Duration::from_secs(5)));
        let bound = ms(100);
        let mut elapsed = MS;
        let mut done = 1;
        while let Ok(d) = policy.next_delay(done, elapsed, bound, 0.999) {
            elapsed += d + MS;
            done += 1;
        }
        assert_eq!(
            policy.next_delay(done, elapsed, bound, 0.999),
            Err(Stop::Deadline)
        );
        // The last attempt started at 4.9 s (5 s minus the node timeout) and took 1 ms.
        assert_eq!(elapsed, ms(4901), "after {done} attempts");
        assert!(done > 10, "{done} attempts");
    }

    /// The README's `Retry::wait(10 s)` keeps going past any attempt count the old default had.
    #[test]
    fn wait_is_capped_by_its_deadline_only() {
        let policy = Retry::wait(Duration::from_secs(10));
        assert_eq!(policy.max_attempts(), u32::MAX);
        assert_eq!(
            policy.next_delay(1_000_000, ms(9_850), ms(100), 0.0),
            Ok(ms(50)),
            "a pause that ends exactly at the last start is kept"
        );
        assert_eq!(
            policy.next_delay(1_000_000, ms(9_880), ms(100), 0.0),
            Ok(ms(20)),
            "the last pause is shortened to the last start that fits"
        );
        assert_eq!(policy.next_delay(1, ms(9_900), ms(100), 0.0), Err(Stop::Deadline));
        assert_eq!(
            policy.next_delay(1, Duration::ZERO, Duration::from_secs(11), 0.0),
            Err(Stop::Deadline),
            "no attempt fits when one node timeout exceeds the deadline"
        );
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
        assert!(Retry::wait(Duration::ZERO).validate().is_err());
        assert!(Retry::new()
            .delay(Duration::MAX, Duration::from_secs(1))
            .validate()
            .is_err());
        assert!(Retry::new().validate().is_ok());
        assert!(Retry::none().no_deadline().validate().is_ok());
        let one = Retry::none().next_delay(1, Duration::ZERO, ms(100), 0.5);
        assert_eq!(one, Err(Stop::Attempts), "try_acquire makes one attempt");
        // Fail-fast ends the schedule at the n-th unreachable attempt in a row, not before.
        let fast = Retry::new().fail_fast_when_unreachable(2);
        assert!(!fast.gives_up_unreachable(1) && fast.gives_up_unreachable(2));
        assert!(!Retry::new().gives_up_unreachable(1_000), "no cap by default");
        let d = Retry::wait(ms(1_000));
        assert!(
            d.fits(ms(400), ms(600)) && !d.fits(ms(401), ms(600)),
            "an attempt ends by the deadline"
        );
        assert!(Retry::new().no_deadline().fits(Duration::MAX, ms(1)));
    }
}
