//! The TTLs `quorumlock run` accepts, checked before anything is sent, so that a bad `--ttl` is
//! a usage error that states the limit instead of a library error under "not acquired".
//!
//! The limits are the library's, restated here because it offers no call that checks them
//! without contacting the nodes: a TTL of at most 30 days (`Redlock::acquire`), the guard's
//! rule that the node timeout plus the watchdog's margin (a tenth of the TTL, 10 ms..2 s) stay
//! below a third of the TTL (`Redlock::acquire_guard`), with the default node timeout of 1% of
//! the TTL within 50 ms..1 s (`RedlockBuilder::node_timeout`), all counted in the whole
//! milliseconds the nodes are sent. `tests/rough_edges.rs` runs the binary on both sides of the
//! computed minimum, so a change in the library's rule shows up there. The stop rule of
//! [`StopPlan`] is the other lower bound.

use std::time::Duration;

use humantime::format_duration;

use crate::stop::StopPlan;

/// The library's largest TTL.
const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The node timeout the library uses for `ttl`: the one given, or 1% of the TTL within
/// 50 ms..1 s.
pub(crate) fn node_timeout(ttl: Duration, given: Option<Duration>) -> Duration {
    given.unwrap_or_else(|| (whole_ms(ttl) / 100).clamp(Duration::from_millis(50), Duration::from_secs(1)))
}

/// The TTL as the nodes get it: rounded down to whole milliseconds.
fn whole_ms(ttl: Duration) -> Duration {
    Duration::from_millis(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// Whether a guard of `ttl` leaves its watchdog room (`Redlock::acquire_guard`).
fn guard_fits(ttl: Duration, given: Option<Duration>) -> bool {
    let ttl = whole_ms(ttl);
    let margin = (ttl / 10).clamp(Duration::from_millis(10), Duration::from_secs(2));
    node_timeout(ttl, given)
        .checked_add(margin)
        .and_then(|d| d.checked_mul(3))
        .is_some_and(|needed| needed <= ttl)
}

/// Whether `run` can work with `ttl`: the guard's rule and the stop rule (with no grace).
fn fits(ttl: Duration, given: Option<Duration>) -> bool {
    guard_fits(ttl, given) && StopPlan::new(ttl, Some(Duration::ZERO), None).is_ok()
}

/// The shortest whole-millisecond TTL `run` accepts with this node timeout; `None` if even the
/// longest is too short. Both rules only get easier as the TTL grows, so a binary search finds
/// the boundary.
pub(crate) fn min_ttl(given: Option<Duration>) -> Option<Duration> {
    let max_ms = u64::try_from(MAX_TTL.as_millis()).unwrap_or(u64::MAX);
    if !fits(MAX_TTL, given) {
        return None;
    }
    let (mut too_short, mut enough) = (0u64, max_ms);
    while enough - too_short > 1 {
        let mid = too_short + (enough - too_short) / 2;
        if fits(Duration::from_millis(mid), given) {
            enough = mid;
        } else {
            too_short = mid;
        }
    }
    Some(Duration::from_millis(enough))
}

/// Checks `--ttl` against the limits above.
///
/// # Errors
/// The limit it breaks, in the form `--ttl 100ms is too short: the minimum is 215ms`.
pub(crate) fn check(ttl: Duration, given: Option<Duration>) -> Result<(), String> {
    let with = given.map_or_else(String::new, |t| {
        format!(" with --node-timeout {}", format_duration(t))
    });
    if ttl > MAX_TTL {
        return Err(format!(
            "--ttl {} is too long: the maximum is {}",
            format_duration(ttl),
            format_duration(MAX_TTL)
        ));
    }
    let Some(min) = min_ttl(given) else {
        return Err(format!(
            "no TTL works{with}: the node timeout plus a safety margin must stay below a third of \
             the TTL, and the TTL at most {}",
            format_duration(MAX_TTL)
        ));
    };
    if !fits(ttl, given) {
        return Err(format!(
            "--ttl {} is too short: the minimum is {}{with} (the lock is renewed while the command runs, \
             and the TTL must leave room for renewals and for stopping the command before it expires)",
            format_duration(ttl),
            format_duration(min),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn minimum_with_the_default_and_a_given_node_timeout() {
        // Default node timeout 50 ms: (50 + t/10) * 3 <= t from t = 214.3 ms on.
        assert_eq!(min_ttl(None), Some(215 * MS));
        // 1 s: (1000 + t/10) * 3 <= t from t = 4285.7 ms on.
        assert_eq!(min_ttl(Some(1000 * MS)), Some(4286 * MS));
        // A short node timeout: the stop rule's 200 ms is the bound.
        assert_eq!(min_ttl(Some(MS)), Some(200 * MS));
        assert_eq!(min_ttl(Some(Duration::from_secs(365 * 24 * 3600))), None);
    }

    #[test]
    fn messages_state_the_limit_in_the_users_units() {
        let e = check(100 * MS, None).unwrap_err();
        assert!(
            e.starts_with("--ttl 100ms is too short: the minimum is 215ms ("),
            "{e}"
        );
        let e = check(Duration::ZERO, None).unwrap_err();
        assert!(e.starts_with("--ttl 0s is too short"), "{e}");
        let e = check(2000 * MS, Some(1000 * MS)).unwrap_err();
        assert!(
            e.contains("the minimum is 4s 286ms with --node-timeout 1s"),
            "{e}"
        );
        let e = check(MAX_TTL + MS, None).unwrap_err();
        assert!(e.contains("the maximum is 30days"), "{e}");
        assert!(check(215 * MS, None).is_ok());
        assert!(check(MAX_TTL, None).is_ok());
    }
}
