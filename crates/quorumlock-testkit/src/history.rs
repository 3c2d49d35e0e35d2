//! A history of lock grants and the named properties checked against it.
//!
//! Times are `Instant`s, one monotonic timeline for every client in the process, so windows of
//! different clients compare without clock-sync error.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One successful acquisition.
#[derive(Clone, Debug)]
pub struct Grant {
    /// Who got it (for reports).
    pub client: String,
    /// What was locked.
    pub resource: String,
    /// When the acquire call was made.
    pub invoked: Instant,
    /// When it returned the lock.
    pub ok: Instant,
    /// The lock's own claim: `ok + remaining()` sampled at `ok`, moved by extensions.
    pub until: Instant,
    /// When `release` was *invoked* (the holder's belief ends there), if it was.
    pub released: Option<Instant>,
    /// The fencing token, if any.
    pub fence: Option<u64>,
}

impl Grant {
    /// The end of the window in which the holder may act as the only owner.
    pub fn window_end(&self) -> Instant {
        self.released.map_or(self.until, |r| r.min(self.until))
    }
}

/// A named property that did not hold, with the events around it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The property's name, e.g. `"mutual_exclusion"`.
    pub property: &'static str,
    /// What went wrong, as a textual timeline.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "always({}) violated:\n{}", self.property, self.detail)
    }
}

impl std::error::Error for Violation {}

/// An append-only record of grants, shared by the clients of a test.
#[derive(Debug)]
pub struct History {
    start: Instant,
    grants: Mutex<Vec<Grant>>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            grants: Mutex::new(Vec::new()),
        }
    }
}

/// Index of a grant in a [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantId(usize);

impl History {
    /// An empty history whose timeline starts now.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Grant>> {
        self.grants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a grant.
    pub fn record(&self, grant: Grant) -> GrantId {
        let mut g = self.lock();
        g.push(grant);
        GrantId(g.len() - 1)
    }

    /// Notes that the holder of `id` invoked release at `at`.
    pub fn released(&self, id: GrantId, at: Instant) {
        self.lock()[id.0].released = Some(at);
    }

    /// Moves the claim of `id` after a successful extension.
    pub fn extended(&self, id: GrantId, until: Instant) {
        self.lock()[id.0].until = until;
    }

    /// Number of grants recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// A copy of every grant.
    pub fn grants(&self) -> Vec<Grant> {
        self.lock().clone()
    }

    fn ms(&self, t: Instant) -> String {
        format!(
            "{:>10.3} ms",
            t.saturating_duration_since(self.start).as_secs_f64() * 1e3
        )
    }

    fn describe(&self, g: &Grant) -> String {
        format!(
            "  {} invoked, {} granted to {} (fence {:?}), window ends {}{}",
            self.ms(g.invoked),
            self.ms(g.ok),
            g.client,
            g.fence,
            self.ms(g.window_end()),
            if g.released.is_some() {
                " (released)"
            } else {
                " (expired)"
            }
        )
    }

    fn per_resource(&self) -> Vec<Vec<Grant>> {
        let mut all = self.grants();
        all.sort_by(|a, b| a.resource.cmp(&b.resource).then(a.ok.cmp(&b.ok)));
        let mut out: Vec<Vec<Grant>> = Vec::new();
        for g in all {
            match out.last_mut() {
                Some(group) if group[0].resource == g.resource => group.push(g),
                _ => out.push(vec![g]),
            }
        }
        out
    }

    /// P1, `mutual_exclusion`: for each resource, the windows `[ok, min(until, released))` of
    /// two grants never overlap. Returns the worst overlap as the violation.
    ///
    /// # Errors
    /// The first resource with an overlap, with both grants.
    pub fn check_exclusion(&self) -> Result<(), Violation> {
        for grants in self.per_resource() {
            let mut holder: Option<&Grant> = None;
            for g in &grants {
                if let Some(h) = holder {
                    if g.ok < h.window_end() {
                        let overlap: Duration = h.window_end() - g.ok;
                        return Err(Violation {
                            property: "mutual_exclusion",
                            detail: format!(
                                "resource {:?}: windows overlap by {overlap:?}\n{}\n{}",
                                g.resource,
                                self.describe(h),
                                self.describe(g)
                            ),
                        });
                    }
                }
                if holder.is_none_or(|h| g.window_end() > h.window_end()) {
                    holder = Some(g);
                }
            }
        }
        Ok(())
    }

    /// P10, `fencing_monotonic`: no two grants of a resource share a fence, and a grant that
    /// returned before another was invoked has the smaller fence.
    ///
    /// # Errors
    /// The first pair out of order.
    pub fn check_fences(&self) -> Result<(), Violation> {
        // O(n log n): a soak records hundreds of thousands of grants per resource.
        let violation = |a: &Grant, b: &Grant| Violation {
            property: "fencing_monotonic",
            detail: format!(
                "resource {:?}:\n{}\n{}",
                a.resource,
                self.describe(a),
                self.describe(b)
            ),
        };
        for grants in self.per_resource() {
            let fenced: Vec<&Grant> = grants.iter().filter(|g| g.fence.is_some()).collect();
            // Unique fences: sort by fence, compare neighbours.
            let mut by_fence = fenced.clone();
            by_fence.sort_by_key(|g| g.fence);
            if let Some(w) = by_fence.windows(2).find(|w| w[0].fence == w[1].fence) {
                return Err(violation(w[0], w[1]));
            }
            // Order: sweep the grants by invocation time; every grant that returned before b was
            // invoked must have a smaller fence than b's.
            let mut by_ok = fenced.clone();
            by_ok.sort_by_key(|g| g.ok);
            let mut by_invoked = fenced;
            by_invoked.sort_by_key(|g| g.invoked);
            let (mut next, mut max): (usize, Option<&Grant>) = (0, None);
            for b in by_invoked {
                while next < by_ok.len() && by_ok[next].ok < b.invoked {
                    if max.is_none_or(|m| by_ok[next].fence > m.fence) {
                        max = Some(by_ok[next]);
                    }
                    next += 1;
                }
                if let Some(a) = max {
                    if b.fence <= a.fence {
                        return Err(violation(a, b));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A fenced store in one Redis script, for witnesses in tests: `EVAL FENCED_WRITE 1 <key>
/// <fence>` stores the fence and answers 1 if it is at least the largest stored so far, and
/// answers 0 (storing nothing) otherwise. `>=`, not `>`: one holder writes many times.
pub const FENCED_WRITE: &str = "if tonumber(ARGV[1]) >= tonumber(redis.call('GET', KEYS[1]) or '0') then redis.call('SET', KEYS[1], ARGV[1]) return 1 end return 0";

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(h: &History, client: &str, ok_ms: u64, until_ms: u64, fence: u64) -> Grant {
        let t = |ms| h.start + Duration::from_millis(ms);
        Grant {
            client: client.into(),
            resource: "r".into(),
            invoked: t(ok_ms.saturating_sub(1)),
            ok: t(ok_ms),
            until: t(until_ms),
            released: None,
            fence: Some(fence),
        }
    }

    /// Negative controls: each checker fires on a history that breaks it.
    #[test]
    fn checkers_catch_what_they_claim_to() {
        let h = History::new();
        h.record(grant(&h, "a", 0, 100, 1));
        h.record(grant(&h, "b", 100, 200, 2));
        assert!(h.check_exclusion().is_ok());
        assert!(h.check_fences().is_ok());
        h.record(grant(&h, "c", 150, 300, 3));
        let v = h.check_exclusion().unwrap_err();
        assert_eq!(v.property, "mutual_exclusion");
        assert!(v.to_string().contains("overlap by 50ms"), "{v}");

        let h = History::new();
        h.record(grant(&h, "a", 0, 100, 5));
        h.record(grant(&h, "b", 200, 300, 4));
        assert_eq!(h.check_fences().unwrap_err().property, "fencing_monotonic");
    }

    /// The O(n log n) fence check agrees with the definition on a large history.
    #[test]
    fn fence_check_scales_and_catches_late_inversions() {
        let h = History::new();
        for i in 0..100_000u64 {
            h.record(grant(&h, "w", i * 2, i * 2 + 1, i + 1));
        }
        let t = std::time::Instant::now();
        assert!(h.check_fences().is_ok());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the check must not be quadratic"
        );
        h.record(grant(&h, "late", 500_000, 500_001, 7)); // fence far below earlier grants
        assert_eq!(h.check_fences().unwrap_err().property, "fencing_monotonic");
    }

    #[test]
    fn release_ends_the_window() {
        let h = History::new();
        let id = h.record(grant(&h, "a", 0, 1000, 1));
        h.released(id, h.start + Duration::from_millis(50));
        h.record(grant(&h, "b", 60, 1000, 2));
        assert!(h.check_exclusion().is_ok());
    }
}
