//! When `quorumlock run` stops its command: the rule, the argument checks that make it
//! satisfiable, and the deadlines it gives.
//!
//! The rule: the command's process group must be dead before the lock's validity ends, so
//! SIGKILL goes out a kill margin before it; SIGTERM goes out `grace` before SIGKILL. Both are
//! computed from the guard's current `valid_until`, which each extension moves forward, so a
//! healthy lock never reaches them. With `--max-hold M`, SIGTERM goes out at `M - grace` and
//! SIGKILL at `M` at the latest.

use std::time::{Duration, Instant};

use humantime::format_duration;

/// The grace period when `--grace` is not given, unless the TTL or the hold cap needs less.
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Room between SIGKILL and the end of the validity: for this process's timer firing late on a
/// loaded machine and for the kernel tearing the group down. A tenth of the TTL within
/// 100 ms..2 s.
pub(crate) fn kill_margin(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// The checked stop rule of one `run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StopPlan {
    pub(crate) grace: Duration,
    pub(crate) kill_margin: Duration,
    pub(crate) max_hold: Option<Duration>,
    ttl: Duration,
}

impl StopPlan {
    /// Checks the arguments against the rule. The limits:
    /// - `grace + kill_margin <= ttl / 2`: the watchdog renews with two thirds of the TTL left,
    ///   so a healthy lock is renewed before its SIGTERM deadline comes, with a sixth of the TTL
    ///   for renewal attempts in between;
    /// - `grace < max_hold`: SIGTERM goes out at `max_hold - grace`.
    ///
    /// Without `--grace`, the grace is 5 s or the largest these limits allow, whichever is less
    /// (with a cap, at most half of it).
    ///
    /// # Errors
    /// Every limit the arguments break, each naming the arguments and the limit.
    pub(crate) fn new(
        ttl: Duration,
        grace: Option<Duration>,
        max_hold: Option<Duration>,
    ) -> Result<Self, String> {
        let kill_margin = kill_margin(ttl);
        let half = ttl / 2;
        let Some(room) = half.checked_sub(kill_margin) else {
            return Err(format!(
                "--ttl {} is too short for run: half of it ({}) must leave room for the kill margin ({}); \
                 use a TTL of at least 200ms",
                format_duration(ttl),
                format_duration(half),
                format_duration(kill_margin),
            ));
        };
        let grace = match grace {
            Some(g) => g,
            None => {
                let cap = max_hold.map_or(Duration::MAX, |m| m / 2);
                DEFAULT_GRACE.min(room).min(cap)
            }
        };
        let mut broken = Vec::new();
        if let Some(m) = max_hold {
            if grace >= m {
                broken.push(format!(
                    "--grace {} must be shorter than --max-hold {}: SIGTERM goes out at max-hold minus grace",
                    format_duration(grace),
                    format_duration(m),
                ));
            }
        }
        if grace > room {
            broken.push(format!(
                "--grace {} is too long for --ttl {}: grace plus the kill margin ({}) must be at most half \
                 the TTL ({}), so that the command is dead before the lock's validity ends while the \
                 watchdog still has time to renew it; with this TTL the grace can be at most {}",
                format_duration(grace),
                format_duration(ttl),
                format_duration(kill_margin),
                format_duration(half),
                format_duration(room),
            ));
        }
        if !broken.is_empty() {
            return Err(broken.join("; "));
        }
        Ok(Self {
            grace,
            kill_margin,
            max_hold,
            ttl,
        })
    }

    /// The cap to give the library's watchdog: past `max_hold` by the kill margin and more than
    /// the drift allowance, so that the lock stays valid until this process's own deadlines at
    /// `max_hold` have passed, and a group that cannot be killed still loses the lock by TTL.
    pub(crate) fn library_cap(&self) -> Option<Duration> {
        self.max_hold
            .map(|m| m + self.kill_margin + self.ttl / 50 + Duration::from_millis(10))
    }

    /// The deadlines for a lock valid until `valid_until`, held since `held_since`.
    pub(crate) fn deadlines(&self, held_since: Instant, valid_until: Instant) -> Deadlines {
        let kill_by_validity = before(valid_until, self.kill_margin);
        let (kill, capped) = match self.max_hold {
            Some(m) if held_since + m <= kill_by_validity => (held_since + m, true),
            _ => (kill_by_validity, false),
        };
        Deadlines {
            term: before(kill, self.grace),
            kill,
            capped,
        }
    }
}

/// When to send SIGTERM and SIGKILL, and whether the hold cap (rather than the validity) sets
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadlines {
    pub(crate) term: Instant,
    pub(crate) kill: Instant,
    pub(crate) capped: bool,
}

/// `t - d`, or now if the monotonic clock does not reach that far back (only just after boot).
fn before(t: Instant, d: Duration) -> Instant {
    t.checked_sub(d).unwrap_or_else(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_reported_scenario_is_refused_naming_both_limits() {
        let e = StopPlan::new(3000 * MS, Some(3000 * MS), Some(1000 * MS)).unwrap_err();
        assert!(e.contains("--grace 3s must be shorter than --max-hold 1s"), "{e}");
        assert!(e.contains("--grace 3s is too long for --ttl 3s"), "{e}");
        assert!(e.contains("at most 1s 200ms"), "{e}");
    }

    #[test]
    fn limits() {
        // 3 s TTL: kill margin 300 ms, so the grace may reach 1.2 s.
        assert!(StopPlan::new(3000 * MS, Some(1200 * MS), None).is_ok());
        assert!(StopPlan::new(3000 * MS, Some(1201 * MS), None).is_err());
        assert!(StopPlan::new(3000 * MS, Some(999 * MS), Some(1000 * MS)).is_ok());
        assert!(StopPlan::new(3000 * MS, Some(1000 * MS), Some(1000 * MS)).is_err());
        // Short TTLs: the kill margin is at least 100 ms, so 200 ms is the shortest TTL.
        assert!(StopPlan::new(200 * MS, Some(Duration::ZERO), None).is_ok());
        let e = StopPlan::new(199 * MS, None, None).unwrap_err();
        assert!(e.contains("at least 200ms"), "{e}");
    }

    #[test]
    fn default_grace_fits_the_ttl_and_the_cap() {
        let g = |ttl_ms: u32, cap_ms: Option<u32>| {
            StopPlan::new(ttl_ms * MS, None, cap_ms.map(|c| c * MS))
                .unwrap()
                .grace
        };
        assert_eq!(g(30_000, None), DEFAULT_GRACE);
        assert_eq!(g(10_000, None), 4000 * MS);
        assert_eq!(g(2000, None), 800 * MS);
        assert_eq!(g(30_000, Some(4000)), 2000 * MS);
    }

    #[test]
    fn deadlines_follow_the_validity_and_the_cap() {
        let plan = StopPlan::new(3000 * MS, Some(1000 * MS), Some(10_000 * MS)).unwrap();
        let t0 = Instant::now();
        // Far from the cap: the validity sets them, and they move with it.
        let d = plan.deadlines(t0, t0 + 3000 * MS);
        assert_eq!(
            (d.kill, d.term, d.capped),
            (t0 + 2700 * MS, t0 + 1700 * MS, false)
        );
        let d = plan.deadlines(t0, t0 + 4000 * MS);
        assert_eq!(d.kill, t0 + 3700 * MS);
        // Near the cap: SIGKILL at the cap, SIGTERM a grace before it.
        let d = plan.deadlines(t0, t0 + 10_500 * MS);
        assert_eq!(
            (d.kill, d.term, d.capped),
            (t0 + 10_000 * MS, t0 + 9000 * MS, true)
        );
        // The library's cap keeps the validity past our own deadlines.
        let cap = plan.library_cap().unwrap();
        assert!(cap >= 10_000 * MS + plan.kill_margin + 3000 * MS / 100 + 2 * MS);
    }
}
