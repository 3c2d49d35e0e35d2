//! [`Decision`]: what one fan-out's votes decided, and everything its caller derives from them
//! (the error kind when quorum was not reached, the per-node report), in one value.
//!
//! Acquisition, fence write-back, extension and release all end a fan-out the same way: take the
//! verdict, log it, and on failure name the cause and attach each node's outcome. That sequence
//! lives here once.

use std::fmt;

use crate::errors::error::{Error, ErrorKind, NodeId, NodeOutcome, Operation};
use crate::node_set::nodes::NodeSet;
use crate::pure::quorum::{Tally, Verdict};

/// The outcome of one fan-out at the moment its votes decided, borrowed from the fan-out.
pub(crate) struct Decision<'a> {
    pub(crate) verdict: Verdict,
    tally: Tally,
    nodes: &'a NodeSet,
    /// Per node, in node order; `None` for a node that had not answered yet.
    outcomes: &'a [Option<NodeOutcome>],
}

impl<'a> Decision<'a> {
    pub(crate) fn new(
        verdict: Verdict,
        tally: Tally,
        nodes: &'a NodeSet,
        outcomes: &'a [Option<NodeOutcome>],
    ) -> Self {
        Self {
            verdict,
            tally,
            nodes,
            outcomes,
        }
    }

    pub(crate) fn reached(&self) -> bool {
        self.verdict == Verdict::Reached
    }

    /// Whether the failures alone rule out a quorum (fewer than a majority reachable).
    pub(crate) fn failures_preclude_quorum(&self) -> bool {
        self.tally.failures_preclude_quorum()
    }

    /// How many nodes refused our credentials or permissions.
    fn denied(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Some(NodeOutcome::Denied(_))))
            .count()
    }

    /// Why quorum was not reached; `refused` is the kind for "the nodes answered, and said no"
    /// (contended for an acquisition, lost for an extension).
    pub(crate) fn failure_kind(&self, refused: ErrorKind) -> ErrorKind {
        failure_kind(&self.tally, self.denied(), self.outcomes.len(), refused)
    }

    /// Whether a node could not connect because the tokio runtime has no I/O driver.
    pub(crate) fn no_io_driver(&self) -> bool {
        self.outcomes.iter().any(
            |o| matches!(o, Some(NodeOutcome::Io(text)) if &**text == crate::connection::link::NO_IO_DRIVER),
        )
    }

    /// Every node's outcome, in node order; unanswered nodes are `Pending`.
    pub(crate) fn report(&self) -> Vec<(NodeId, NodeOutcome)> {
        self.nodes
            .iter()
            .zip(self.outcomes)
            .map(|(node, o)| (node.id.clone(), o.clone().unwrap_or(NodeOutcome::Pending)))
            .collect()
    }

    /// The report for a log line, formatted only if the line is written: `addr=outcome, ...`.
    pub(crate) fn report_fmt(&self) -> impl fmt::Display + '_ {
        ReportFmt(self)
    }

    /// An error of `kind` for `op` carrying each node's outcome.
    pub(crate) fn error(&self, kind: ErrorKind, op: Operation) -> Error {
        Error::new(kind, op).with_nodes(self.report())
    }
}

struct ReportFmt<'d, 'a>(&'d Decision<'a>);

impl fmt::Display for ReportFmt<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        for (k, (node, o)) in d.nodes.iter().zip(d.outcomes).enumerate() {
            if k > 0 {
                f.write_str(", ")?;
            }
            match o {
                Some(o) => write!(f, "{}={o}", node.id)?,
                None => write!(f, "{}={}", node.id, NodeOutcome::Pending)?,
            }
        }
        Ok(())
    }
}

/// The failure kind when quorum was impossible, from the votes: credentials refused by so many
/// nodes that the rest cannot make a quorum; else the failures alone ruling out a quorum means
/// too few nodes; otherwise the nodes said no (`refused`).
pub(crate) fn failure_kind(tally: &Tally, denied: usize, n: usize, refused: ErrorKind) -> ErrorKind {
    if n - denied < crate::pure::quorum::quorum(n) {
        ErrorKind::Unauthorized
    } else if tally.failures_preclude_quorum() {
        ErrorKind::QuorumUnreachable
    } else {
        refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::identity::Identities;
    use crate::connection::node::Node;
    use crate::pure::quorum::Vote;
    use std::sync::Arc;
    use std::time::Duration;

    /// `n` nodes on loopback ports nothing listens on, never connected: for unit tests of what is
    /// derived from a fan-out's answers.
    fn node_set(n: usize) -> NodeSet {
        let addrs: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", 1 + i)).collect();
        let identities = Arc::new(Identities::new(addrs.clone()));
        let nodes = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let tls = crate::connection::url::TlsOptions::default();
                let (shown, endpoint) = crate::connection::url::parse_member(
                    i,
                    &format!("redis://{addr}"),
                    &tls,
                    Duration::from_secs(1),
                )
                .unwrap();
                let id = crate::errors::error::NodeId::new(i, shown);
                Arc::new(Node::new(
                    id,
                    endpoint,
                    Duration::from_secs(1),
                    identities.clone(),
                ))
            })
            .collect();
        NodeSet::new(nodes, identities, true)
    }

    /// A decision of `votes` (in node order; `None`: not answered) over nodes that are never
    /// connected, with each vote's outcome as a fan-out records it.
    fn decide(nodes: &NodeSet, outcomes: &[Option<NodeOutcome>]) -> (Verdict, Tally) {
        let mut tally = Tally::new(outcomes.len());
        for o in outcomes.iter().flatten() {
            tally.record(match o {
                NodeOutcome::Granted => Vote::Yes,
                NodeOutcome::Refused => Vote::Refused,
                _ => Vote::Failed,
            });
        }
        assert_eq!(nodes.iter().count(), outcomes.len());
        (tally.verdict(), tally)
    }

    #[test]
    fn a_decision_reports_what_its_votes_say() {
        let nodes = node_set(3);
        let denied = NodeOutcome::Denied("NOPERM".into());
        let cases: [(&[Option<NodeOutcome>], bool, bool, ErrorKind); 4] = [
            (
                &[Some(NodeOutcome::Granted), Some(NodeOutcome::Granted), None],
                true,
                false,
                ErrorKind::Contended,
            ),
            (
                &[Some(NodeOutcome::Refused), Some(NodeOutcome::Refused), None],
                false,
                false,
                ErrorKind::Contended,
            ),
            (
                &[Some(NodeOutcome::Timeout), Some(NodeOutcome::Timeout), None],
                false,
                true,
                ErrorKind::QuorumUnreachable,
            ),
            (
                &[Some(denied.clone()), Some(denied.clone()), None],
                false,
                true,
                ErrorKind::Unauthorized,
            ),
        ];
        for (outcomes, reached, precluded, kind) in cases {
            let (verdict, tally) = decide(&nodes, outcomes);
            let d = Decision::new(verdict, tally, &nodes, outcomes);
            assert_eq!(d.reached(), reached, "{outcomes:?}");
            assert_eq!(d.failures_preclude_quorum(), precluded, "{outcomes:?}");
            if !reached {
                assert_eq!(d.failure_kind(ErrorKind::Contended), kind, "{outcomes:?}");
            }
            assert!(!d.no_io_driver());
            // Every node in order, the unanswered one as pending, in the report and its line.
            let report = d.report();
            assert_eq!(report.len(), 3);
            for (k, (id, o)) in report.iter().enumerate() {
                assert_eq!(id.index(), k);
                assert_eq!(Some(o), outcomes[k].as_ref().or(Some(&NodeOutcome::Pending)));
            }
            let line = d.report_fmt().to_string();
            let expected: Vec<String> = report.iter().map(|(id, o)| format!("{id}={o}")).collect();
            assert_eq!(line, expected.join(", "));
            let err = d.error(kind, Operation::Acquire);
            assert_eq!(err.nodes().len(), 3);
        }
        assert_eq!(
            Decision::new(
                Verdict::Impossible,
                Tally::new(3),
                &nodes,
                &[Some(denied.clone()), Some(denied), None]
            )
            .denied(),
            2
        );
        let no_driver = [
            Some(NodeOutcome::Io(crate::connection::link::NO_IO_DRIVER.into())),
            None,
            None,
        ];
        let (verdict, tally) = decide(&nodes, &no_driver);
        assert!(Decision::new(verdict, tally, &nodes, &no_driver).no_io_driver());
    }

    #[test]
    fn failure_kind_separates_contention_from_unreachable() {
        let tally = |votes: &[Vote]| {
            let mut t = Tally::new(votes.len());
            votes.iter().for_each(|v| t.record(*v));
            t
        };
        let (y, r, f) = (Vote::Yes, Vote::Refused, Vote::Failed);
        // 3 of 5 down: too few nodes, even though one refused.
        assert_eq!(
            failure_kind(&tally(&[r, f, f, f, y]), 0, 5, ErrorKind::Contended),
            ErrorKind::QuorumUnreachable
        );
        // All up, two holders: contention.
        assert_eq!(
            failure_kind(&tally(&[r, r, r, y, y]), 0, 5, ErrorKind::Contended),
            ErrorKind::Contended
        );
        // Mixed, failures alone would not stop us: contention.
        assert_eq!(
            failure_kind(&tally(&[r, r, f, y, y]), 0, 5, ErrorKind::Contended),
            ErrorKind::Contended
        );
        // Credentials refused by a minority: the rest could still make a quorum.
        assert_eq!(
            failure_kind(&tally(&[f, f, r, r, y]), 2, 5, ErrorKind::Contended),
            ErrorKind::Contended
        );
        // Credentials refused by a majority.
        assert_eq!(
            failure_kind(&tally(&[f, f, f, y, y]), 3, 5, ErrorKind::Contended),
            ErrorKind::Unauthorized
        );
        // The refusal kind is the caller's: an extension refused is a lost lock.
        assert_eq!(
            failure_kind(&tally(&[r, r, y]), 0, 3, ErrorKind::Lost),
            ErrorKind::Lost
        );
    }
}
