//! Sending one request to every node at once and counting the votes.
//!
//! The decision is taken as soon as it is known; nodes that have not answered keep going. Their
//! futures are never cancelled: when a [`Fanout`] is dropped (decided, or its caller cancelled),
//! whatever is still in flight is moved to a background task that drives it to its end, each
//! call bounded by the node timeout. That task then undoes what needs undoing with a release on
//! the same node, issued after the request it undoes, so it can never overtake it (DESIGN.md
//! rules (a) and (b)).

use std::fmt;
use std::mem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::oneshot;

use crate::client::Inner;
use crate::error::{NodeId, NodeOutcome};
use crate::node::Answer;
use crate::quorum::{Tally, Verdict, Vote};
use crate::reply::{Op, Request};

type NodeCall = BoxFuture<'static, (usize, Answer)>;

/// What happens to requests still in flight when the fan-out is dropped.
pub(crate) enum OnDrop {
    /// Let them finish; nothing to undo (extend, release).
    Finish,
    /// Release the token on every node that may hold it: an acquisition that failed or whose
    /// caller went away (G5).
    Undo,
    /// A granted acquisition: late grants are part of the lock, unless the lock was released
    /// meanwhile, in which case they are undone.
    UndoIfReleased(Arc<AtomicBool>),
}

pub(crate) struct Fanout {
    inner: Arc<Inner>,
    req: Arc<Request>,
    timeout: Duration,
    pending: FuturesUnordered<NodeCall>,
    outcomes: Vec<Option<NodeOutcome>>,
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

fn call(inner: &Arc<Inner>, index: usize, req: Arc<Request>, timeout: Duration) -> NodeCall {
    let node = inner.nodes[index].clone();
    async move { (index, node.execute(&req, timeout).await) }.boxed()
}

impl Fanout {
    /// Sends `req` to every node. The calls start when the fan-out is first polled.
    pub(crate) fn start(inner: &Arc<Inner>, req: Arc<Request>, timeout: Duration, on_drop: OnDrop) -> Self {
        let n = inner.nodes.len();
        let pending = (0..n).map(|i| call(inner, i, req.clone(), timeout)).collect();
        Self {
            inner: inner.clone(),
            req,
            timeout,
            pending,
            outcomes: vec![None; n],
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
        while let Some(Some((i, answer))) = self.pending.next().now_or_never() {
            self.record(i, answer);
        }
        self.tally.verdict()
    }

    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
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
        self.inner
            .nodes
            .iter()
            .zip(&self.outcomes)
            .map(|(node, o)| (node.id.clone(), o.clone().unwrap_or(NodeOutcome::Pending)))
            .collect()
    }

    pub(crate) fn set_on_drop(&mut self, on_drop: OnDrop) {
        self.on_drop = on_drop;
    }

    /// Undoes a failed acquisition now: releases on every node that may hold the token.
    ///
    /// Returns two signals: the first fires once the nodes that granted before the decision
    /// have answered their release (the caller returns with those partial grants gone, without
    /// waiting on slow nodes); the second once every node's request and release are done (a
    /// retry waits for it, so it is never blocked by our own leftovers).
    pub(crate) fn undo(mut self) -> Option<(oneshot::Receiver<()>, oneshot::Receiver<()>)> {
        let (granted_tx, granted_rx) = oneshot::channel();
        let (all_tx, all_rx) = oneshot::channel();
        let job = self.undo_job(Some(granted_tx));
        self.on_drop = OnDrop::Finish;
        let job = job.map(move |()| {
            let _ = all_tx.send(());
        });
        self.inner.spawn_background(job).then_some((granted_rx, all_rx))
    }

    fn undo_job(
        &mut self,
        granted_released: Option<oneshot::Sender<()>>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let undo = Arc::new(self.req.undo());
        let (inner, timeout) = (self.inner.clone(), self.timeout);
        let pending = mem::take(&mut self.pending);
        let (mut granted, mut unsure) = (Vec::new(), Vec::new());
        for (i, o) in self.outcomes.iter().enumerate() {
            match o {
                Some(NodeOutcome::Granted) => granted.push(i),
                // Refused: the key is someone else's; it holds nothing of ours (no release needed,
                // which halves server work under contention).
                Some(NodeOutcome::Refused) | None => {}
                // Timeout, error, unexpected reply: the SET may have been applied.
                Some(_) => unsure.push(i),
            }
        }
        async move {
            let first = join_all(
                granted
                    .into_iter()
                    .map(|i| call(&inner, i, undo.clone(), timeout)),
            )
            .map(|_| {
                if let Some(tx) = granted_released {
                    let _ = tx.send(());
                }
            });
            let rest = join_all(unsure.into_iter().map(|i| call(&inner, i, undo.clone(), timeout)));
            let late = pending.for_each_concurrent(None, |(i, Answer { outcome, .. })| {
                let (inner, undo) = (inner.clone(), undo.clone());
                async move {
                    if outcome != NodeOutcome::Refused {
                        call(&inner, i, undo, timeout).await;
                    }
                }
            });
            futures::join!(first, rest, late);
        }
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        match mem::replace(&mut self.on_drop, OnDrop::Finish) {
            OnDrop::Undo => {
                let job = self.undo_job(None);
                self.inner.spawn_background(job);
            }
            OnDrop::Finish if !self.pending.is_empty() => {
                let pending = mem::take(&mut self.pending);
                self.inner.spawn_background(pending.for_each(|_| async {}));
            }
            OnDrop::UndoIfReleased(released) if !self.pending.is_empty() => {
                let pending = mem::take(&mut self.pending);
                let (inner, timeout, undo) = (self.inner.clone(), self.timeout, Arc::new(self.req.undo()));
                self.inner
                    .spawn_background(pending.for_each_concurrent(None, move |(i, answer)| {
                        // The lock's release sets the flag before sending. If we read `false`,
                        // that release is sent after this reply arrived, so after the SET was
                        // applied, and it removes the key itself. If we read `true`, the
                        // release may have gone out first, unless the SET went out on the
                        // connection the node still has: then the release, issued later on
                        // that same connection, was executed after it.
                        let same_connection =
                            answer.generation.is_some() && answer.generation == inner.nodes[i].generation();
                        let undo_it = answer.outcome != NodeOutcome::Refused
                            && released.load(Ordering::SeqCst)
                            && !same_connection;
                        let (inner, undo) = (inner.clone(), undo.clone());
                        async move {
                            if undo_it {
                                call(&inner, i, undo, timeout).await;
                            }
                        }
                    }));
            }
            OnDrop::Finish | OnDrop::UndoIfReleased(_) => {}
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
