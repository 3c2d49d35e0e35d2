//! Which nodes a failed or dropped acquisition must release: pure rules over the answers seen,
//! used by [`crate::fan_out::fanout`]'s undo (G5: nothing a failed attempt set is left behind).

use crate::connection::node::Answer;
use crate::errors::error::NodeOutcome;

/// Which nodes an undo must release at once, given the outcomes seen when the attempt failed
/// and which requests were never handed to a connection (`unsent`, empty if none; shorter
/// than `outcomes` means false for the rest): every node that granted, or whose
/// answer says nothing about the key although the request went out (a timeout, an error, an
/// unexpected reply: it may have been applied). A node that refused holds nothing of ours; a
/// request that never left (no connection) changed nothing; a node that has not answered is
/// handled when it does. Returns (granted, unsure).
pub(crate) fn undo_targets(outcomes: &[Option<NodeOutcome>], unsent: &[bool]) -> (Vec<usize>, Vec<usize>) {
    let (mut granted, mut unsure) = (Vec::new(), Vec::new());
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Some(NodeOutcome::Granted) => granted.push(i),
            Some(NodeOutcome::Refused) | None => {}
            Some(_) if unsent.get(i) != Some(&true) => unsure.push(i),
            Some(_) => {}
        }
    }
    (granted, unsure)
}

/// Whether a request's late answer (after the decision) needs an undo.
pub(crate) fn needs_undo(answer: &Answer) -> bool {
    answer.outcome != NodeOutcome::Refused && answer.sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_releases_grants_and_sent_unknowns_only() {
        use NodeOutcome::*;
        let outcomes = [
            Some(Granted),
            Some(Refused),
            Some(Timeout),
            Some(Timeout),
            Some(Io("reset".into())),
            None,
            Some(Protocol("?".into())),
            Some(Granted),
        ];
        let unsent = [false, false, false, true, true, true, false, false];
        let (granted, unsure) = undo_targets(&outcomes, &unsent);
        assert_eq!(
            undo_targets(&outcomes, &[]),
            (vec![0, 7], vec![2, 3, 4, 6]),
            "all sent"
        );
        assert_eq!(granted, [0, 7]);
        // A timeout or error after the request left may have been applied; one before it left
        // (no connection) cannot; a refusal holds nothing of ours; no answer yet waits.
        assert_eq!(unsure, [2, 6]);
    }

    #[test]
    fn a_late_answer_is_undone_unless_refused_or_never_sent() {
        let answer = |outcome, sent| Answer {
            outcome,
            fence: None,
            sent,
        };
        assert!(needs_undo(&answer(NodeOutcome::Granted, true)));
        assert!(needs_undo(&answer(NodeOutcome::Timeout, true)));
        assert!(!needs_undo(&answer(NodeOutcome::Refused, true)));
        assert!(!needs_undo(&answer(NodeOutcome::Io("refused".into()), false)));
    }
}
