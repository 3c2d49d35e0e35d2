//! Sending one request to every node at once and counting the votes.
//!
//! The decision is taken as soon as it is known; nodes that have not answered keep going. Their
//! futures are not cancelled: when a [`Fanout`] of an acquisition or a release is dropped
//! (decided, or its caller cancelled), whatever is still in flight is moved to a background task
//! that drives it to its end, each call bounded by the node timeout (DESIGN rule (b)). That task
//! then undoes what needs undoing with a release on that node, which is an obligation until it
//! gets a definite answer (rule (c)). A release may still overtake the request it undoes (a
//! connection replaced in between, a `NOSCRIPT` fallback): it then leaves a tombstone that makes
//! the late request harmless (rule (d)), so no ordering between connections is relied on.

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::{NodeId, NodeOutcome};
use crate::node::Answer;
use crate::nodes::NodeSet;
use crate::quorum::{Tally, Verdict, Vote};
use crate::reply::{Op, Request};

type NodeCall = BoxFuture<'static, (usize, Answer)>;

/// What happens to requests still in flight when the fan-out is dropped.
pub(crate) enum OnDrop {
    /// Let them finish (a granted acquisition's late grants are part of the lock; a release's
    /// unfinished tries become obligations).
    Finish,
    /// Release the token on every node that may hold it: an acquisition that failed or whose
    /// caller went away (G5).
    Undo,
    /// Drop them: requests not yet written are never sent (an extension cancelled by a release
    /// must not reach a node after it; redis-rs skips a queued request whose caller is gone).
    Abandon,
    /// Let them finish, unless the token is cancelled first: then drop the ones not yet sent
    /// (a decided extension's slower nodes, until the lock is released).
    FinishUnless(CancellationToken),
}

pub(crate) struct Fanout {
    nodes: Arc<NodeSet>,
    req: Arc<Request>,
    timeout: Duration,
    /// When every key this request may set has certainly expired: the end of any release
    /// obligation made for it.
    expires: Instant,
    pending: FuturesUnordered<NodeCall>,
    outcomes: Vec<Option<NodeOutcome>>,
    /// Per node, whether its request was handed to a connection (see [`Answer::sent`]).
    sent: Vec<bool>,
    /// The highest fence among the grants recorded so far (fenced acquire only).
    max_fence: Option<u64>,
    tally: Tally,
    on_drop: OnDrop,
}

fn vote(outcome: &NodeOutcome) -> Vote {
    match outcome {
        NodeOutcome::Granted => Vote::Yes,
        NodeOutcome::Refused => Vote::Refused,
        _ => Vote::Failed,
    }
}

/// One node's call. A release goes through the node set, so that a try without a definite
/// answer becomes an obligation.
fn call(
    nodes: &Arc<NodeSet>,
    index: usize,
    req: Arc<Request>,
    timeout: Duration,
    expires: Instant,
) -> NodeCall {
    let nodes = nodes.clone();
    async move {
        let answer = if req.op == Op::Release {
            nodes.release_on(index, req, timeout, expires, None).await
        } else {
            nodes.node(index).execute(&req, timeout).await
        };
        (index, answer)
    }
    .boxed()
}

/// Which nodes an undo must release at once, given the outcomes seen when the attempt failed
/// and whether each request was handed to a connection: every node that granted, or whose
/// answer says nothing about the key although the request went out (a timeout, an error, an
/// unexpected reply: it may have been applied). A node that refused holds nothing of ours; a
/// request that never left (no connection) changed nothing; a node that has not answered is
/// handled when it does. Returns (granted, unsure).
pub(crate) fn undo_targets(outcomes: &[Option<NodeOutcome>], sent: &[bool]) -> (Vec<usize>, Vec<usize>) {
    let (mut granted, mut unsure) = (Vec::new(), Vec::new());
    for (i, (o, sent)) in outcomes.iter().zip(sent).enumerate() {
        match o {
            Some(NodeOutcome::Granted) => granted.push(i),
            Some(NodeOutcome::Refused) | None => {}
            Some(_) if *sent => unsure.push(i),
            Some(_) => {}
        }
    }
    (granted, unsure)
}

/// Whether a request's late answer (after the decision) needs an undo.
fn needs_undo(answer: &Answer) -> bool {
    answer.outcome != NodeOutcome::Refused && answer.sent
}

impl Fanout {
    /// Sends `req` to every node. The calls start when the fan-out is first polled.
    pub(crate) fn start(
        nodes: &Arc<NodeSet>,
        req: Arc<Request>,
        timeout: Duration,
        expires: Instant,
        on_drop: OnDrop,
    ) -> Self {
        let n = nodes.len();
        let pending = (0..n)
            .map(|i| call(nodes, i, req.clone(), timeout, expires))
            .collect();
        Self {
            nodes: nodes.clone(),
            req,
            timeout,
            expires,
            pending,
            outcomes: vec![None; n],
            sent: vec![false; n],
            max_fence: None,
            tally: Tally::new(n),
            on_drop,
        }
    }

    fn record(&mut self, index: usize, answer: Answer) {
        self.tally.record(vote(&answer.outcome));
        if answer.outcome == NodeOutcome::Granted {
            self.max_fence = self.max_fence.max(answer.fence);
        }
        self.outcomes[index] = Some(answer.outcome);
        self.sent[index] = answer.sent;
    }

    /// The highest fence granted so far (fenced acquire only).
    pub(crate) fn max_fence(&self) -> Option<u64> {
        self.max_fence
    }

    /// Whether waiting longer could change what the caller learns. A release that did not
    /// delete our key on a majority waits for every answer: "not ours" on a majority is a
    /// successful release of an expired lock, failures are not, and only the full count tells.
    fn settled(&self) -> bool {
        match self.tally.verdict() {
            Verdict::Reached => true,
            Verdict::Impossible => self.req.op != Op::Release,
            Verdict::Pending => false,
        }
    }

    /// Waits until the votes decide, then collects the answers that are already there without
    /// waiting for more.
    ///
    /// Cancel safety: cancel safe; a dropped fan-out hands its calls to the background.
    pub(crate) async fn decide(&mut self) -> Verdict {
        while !self.settled() {
            match self.pending.next().await {
                Some((i, answer)) => self.record(i, answer),
                None => break,
            }
        }
        self.collect_ready();
        self.tally.verdict()
    }

    fn collect_ready(&mut self) {
        while let Some(Some((i, answer))) = self.pending.next().now_or_never() {
            self.record(i, answer);
        }
    }

    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// How many nodes refused our credentials or permissions.
    pub(crate) fn denied(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Some(NodeOutcome::Denied(_))))
            .count()
    }

    /// Every node's outcome so far, in node order; unanswered nodes are `Pending`.
    pub(crate) fn report(&self) -> Vec<(NodeId, NodeOutcome)> {
        self.nodes
            .iter()
            .zip(&self.outcomes)
            .map(|(node, o)| (node.id.clone(), o.clone().unwrap_or(NodeOutcome::Pending)))
            .collect()
    }

    /// The acquisition this fan-out made is handed out: requests still in flight finish in the
    /// background, and their grants are part of the lock (its release reaches every node).
    pub(crate) fn ready(mut self) {
        self.on_drop = OnDrop::Finish;
    }

    /// A decided extension: its slower nodes' requests go on in the background until `stop` is
    /// cancelled (by the lock's release).
    pub(crate) fn finish_unless(mut self, stop: CancellationToken) {
        self.on_drop = OnDrop::FinishUnless(stop);
    }

    /// Undoes a failed acquisition now: releases on every node that may hold the token.
    ///
    /// Returns two signals: the first fires once the nodes that granted before the decision
    /// have answered their release (the caller returns with those partial grants gone, without
    /// waiting on slow nodes); the second once every node's request and first release try are
    /// done (a retry waits for it, so it is never blocked by our own leftovers). Releases
    /// without a definite answer go on as obligations after that.
    pub(crate) fn undo(mut self) -> Option<(oneshot::Receiver<()>, oneshot::Receiver<()>)> {
        let (granted_tx, granted_rx) = oneshot::channel();
        let (all_tx, all_rx) = oneshot::channel();
        let job = self.undo_job(Some(granted_tx));
        self.on_drop = OnDrop::Finish;
        let job = job.map(move |()| {
            let _ = all_tx.send(());
        });
        self.nodes.spawn_background(job).then_some((granted_rx, all_rx))
    }

    fn undo_job(
        &mut self,
        granted_released: Option<oneshot::Sender<()>>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let undo = Arc::new(self.req.undo());
        let (nodes, timeout, expires) = (self.nodes.clone(), self.timeout, self.expires);
        let pending = mem::take(&mut self.pending);
        let (granted, unsure) = undo_targets(&self.outcomes, &self.sent);
        async move {
            let release = |i| call(&nodes, i, undo.clone(), timeout, expires);
            let first = join_all(granted.into_iter().map(release)).map(|_| {
                if let Some(tx) = granted_released {
                    let _ = tx.send(());
                }
            });
            let rest = join_all(unsure.into_iter().map(release));
            let late = pending.for_each_concurrent(None, |(i, answer)| {
                let (nodes, undo) = (nodes.clone(), undo.clone());
                async move {
                    if needs_undo(&answer) {
                        call(&nodes, i, undo, timeout, expires).await;
                    }
                }
            });
            futures::join!(first, rest, late);
        }
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        match mem::replace(&mut self.on_drop, OnDrop::Abandon) {
            OnDrop::Undo => {
                let job = self.undo_job(None);
                self.nodes.spawn_background(job);
            }
            OnDrop::Finish if !self.pending.is_empty() => {
                let pending = mem::take(&mut self.pending);
                self.nodes.spawn_background(pending.for_each(|_| async {}));
            }
            OnDrop::FinishUnless(stop) if !self.pending.is_empty() => {
                let pending = mem::take(&mut self.pending);
                self.nodes.spawn_background(async move {
                    tokio::select! {
                        () = pending.for_each(|_| async {}) => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
            OnDrop::Finish | OnDrop::FinishUnless(_) | OnDrop::Abandon => {}
        }
    }
}

/// Formats a per-node report for logs: `addr=outcome, ...`.
pub(crate) struct ReportFmt<'a>(pub(crate) &'a [(NodeId, NodeOutcome)]);

impl fmt::Display for ReportFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, (node, outcome)) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{node}={outcome}")?;
        }
        Ok(())
    }
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
        let sent = [true, true, true, false, false, false, true, true];
        let (granted, unsure) = undo_targets(&outcomes, &sent);
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
