//! Vote counting for one fan-out: pure, no clock, no I/O.
//!
//! Every node answers at most once per fan-out. The tally decides as soon as the outcome is
//! known: quorum reached, or so many refusals and failures that quorum is impossible. It never
//! waits for the slow nodes in either case (DESIGN.md step 3).

/// The majority of `n` nodes: `n / 2 + 1`.
pub(crate) const fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// How one node's answer counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vote {
    /// The node did what was asked (set, extended, deleted).
    Yes,
    /// The node answered that the key is not ours (held elsewhere, or absent).
    Refused,
    /// No usable answer: timeout, I/O error, error reply, unexpected reply.
    Failed,
}

/// What the votes so far decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not decided yet: quorum is still possible and not yet reached.
    Pending,
    /// At least a quorum of nodes voted yes.
    Reached,
    /// Quorum can no longer be reached, whatever the unanswered nodes say.
    Impossible,
}

/// Running count of votes for `n` nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tally {
    n: usize,
    yes: usize,
    refused: usize,
    failed: usize,
}

impl Tally {
    pub(crate) const fn new(n: usize) -> Self {
        Self {
            n,
            yes: 0,
            refused: 0,
            failed: 0,
        }
    }

    pub(crate) fn record(&mut self, vote: Vote) {
        debug_assert!(self.answered() < self.n, "more votes than nodes");
        match vote {
            Vote::Yes => self.yes += 1,
            Vote::Refused => self.refused += 1,
            Vote::Failed => self.failed += 1,
        }
    }

    pub(crate) const fn answered(&self) -> usize {
        self.yes + self.refused + self.failed
    }

    pub(crate) fn verdict(&self) -> Verdict {
        let q = quorum(self.n);
        let unanswered = self.n - self.answered();
        if self.yes >= q {
            Verdict::Reached
        } else if self.yes + unanswered < q {
            Verdict::Impossible
        } else {
            Verdict::Pending
        }
    }

    /// Whether the failures alone rule out a quorum: fewer than a majority of nodes were
    /// reachable. This tells "too few nodes" apart from "held elsewhere": when the failures alone
    /// would not have stopped us, some other holder did.
    pub(crate) fn failures_preclude_quorum(&self) -> bool {
        self.n - self.failed < quorum(self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quorum_is_strict_majority() {
        for n in 1..=64usize {
            let q = quorum(n);
            assert!(2 * q > n, "two quorums must intersect for n={n}");
            assert!(2 * (q - 1) <= n, "quorum must be the smallest majority for n={n}");
        }
        assert_eq!([1, 2, 2, 3, 3, 4, 4], [1, 2, 3, 4, 5, 6, 7].map(quorum));
    }

    /// Brute-force model: the verdict for a full or partial outcome vector, computed by asking
    /// whether *some* completion of the unanswered nodes reaches quorum and whether *every*
    /// completion does.
    fn model(n: usize, answers: &[Option<Vote>]) -> Verdict {
        let yes = answers.iter().filter(|a| **a == Some(Vote::Yes)).count();
        let open = answers.iter().filter(|a| a.is_none()).count();
        let q = n / 2 + 1;
        let all_completions_reach = yes >= q; // worst case: every open node says no
        let some_completion_reaches = yes + open >= q; // best case: every open node says yes
        match (all_completions_reach, some_completion_reaches) {
            (true, _) => Verdict::Reached,
            (false, false) => Verdict::Impossible,
            (false, true) => Verdict::Pending,
        }
    }

    /// S14 (pure part): every vector of per-node outcomes, answered or not, for all N <= 9.
    #[test]
    fn verdict_matches_brute_force_model_exhaustively() {
        let choices = [None, Some(Vote::Yes), Some(Vote::Refused), Some(Vote::Failed)];
        for n in 1..=9usize {
            let total = 4usize.pow(n as u32);
            for mut code in 0..total {
                let mut answers = Vec::with_capacity(n);
                for _ in 0..n {
                    answers.push(choices[code % 4]);
                    code /= 4;
                }
                let mut tally = Tally::new(n);
                for vote in answers.iter().flatten() {
                    tally.record(*vote);
                }
                assert_eq!(tally.verdict(), model(n, &answers), "n={n} answers={answers:?}");
            }
        }
    }

    proptest! {
        /// Once decided, a verdict never changes, whatever arrives later: deciding early is safe.
        #[test]
        fn verdict_is_final_once_decided(votes in proptest::collection::vec(0u8..3, 1..12)) {
            let n = votes.len();
            let mut tally = Tally::new(n);
            let mut decided: Option<Verdict> = None;
            for v in votes {
                tally.record(match v { 0 => Vote::Yes, 1 => Vote::Refused, _ => Vote::Failed });
                let now = tally.verdict();
                if let Some(d) = decided {
                    prop_assert_eq!(d, now);
                } else if now != Verdict::Pending {
                    decided = Some(now);
                }
            }
            // With every node answered the verdict is never pending.
            prop_assert_ne!(tally.verdict(), Verdict::Pending);
        }

        #[test]
        fn failures_preclude_quorum_iff_fewer_than_majority_left(n in 1usize..12, failed in 0usize..12) {
            let failed = failed.min(n);
            let mut tally = Tally::new(n);
            for _ in 0..failed { tally.record(Vote::Failed); }
            prop_assert_eq!(tally.failures_preclude_quorum(), n - failed < n / 2 + 1);
        }
    }
}
