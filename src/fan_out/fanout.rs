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

use std::marker::PhantomData;
use std::mem;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture, FutureExt};
use futures::stream::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::connection::node::Answer;
use crate::errors::error::NodeOutcome;
use crate::fan_out::calls::Calls;
use crate::fan_out::decision::Decision;
use crate::fan_out::undo::{needs_undo, undo_targets};
use crate::node_set::nodes::{NodeSet, Unsent};
use crate::pure::quorum::{Tally, Verdict, Vote};
use crate::wire::reply::{Op, Request};

type NodeCall = BoxFuture<'static, (usize, Answer)>;

/// One request sent to every node. Dropped, it lets the requests still in flight finish in the
/// background: a granted acquisition's late grants are part of the lock, and a release's
/// unfinished tries become obligations. The other drop behaviours are other types:
/// [`Unready`] (undo) and [`Tentative`] (abandon).
pub(crate) struct Fanout {
    nodes: Arc<NodeSet>,
    req: Arc<Request>,
    timeout: Duration,
    /// When every key this request may set has certainly expired: the end of any release
    /// obligation made for it.
    expires: Instant,
    pending: Calls<(usize, Answer)>,
    outcomes: Vec<Option<NodeOutcome>>,
    /// Per node, whether its request was never handed to a connection ([`Answer::sent`]);
    /// empty (unallocated) until one answer says so, which is rare.
    unsent: Vec<bool>,
    /// Per node, the fence its grant carried (fenced acquisitions only; empty otherwise).
    fences: Vec<Option<u64>>,
    tally: Tally,
}

/// One node's call. A release goes through the node set, so that a try without a definite
/// answer becomes an obligation.
fn call(
    nodes: &Arc<NodeSet>,
    index: usize,
    req: Arc<Request>,
    timeout: Duration,
    expires: Instant,
    owed: bool,
) -> NodeCall {
    let nodes = nodes.clone();
    async move {
        let answer = if req.op == Op::Release {
            nodes.release_on(index, req, timeout, expires, None, owed).await
        } else {
            nodes.node(index).execute(&req, timeout).await
        };
        (index, answer)
    }
    .boxed()
}

/// How a node's answer counts: a grant is yes, a refusal is refused, anything else failed.
fn vote(outcome: &NodeOutcome) -> Vote {
    match outcome {
        NodeOutcome::Granted => Vote::Yes,
        NodeOutcome::Refused => Vote::Refused,
        _ => Vote::Failed,
    }
}

/// Sets `v[index]` in a per-node vector that stays empty (unallocated) until its first value.
fn set_lazily<T: Clone + Default>(v: &mut Vec<T>, n: usize, index: usize, value: T) {
    if v.is_empty() {
        *v = vec![T::default(); n];
    }
    v[index] = value;
}

impl Fanout {
    /// Sends `req` to every node. The calls start when the fan-out is first polled.
    pub(crate) fn start(
        nodes: &Arc<NodeSet>,
        req: Arc<Request>,
        timeout: Duration,
        expires: Instant,
    ) -> Self {
        Self::start_owing(nodes, req, timeout, expires, None)
    }

    /// [`start`](Self::start) of a lock's release: nodes its acquisition never reached are
    /// owed no obligation ([`Unsent`]).
    pub(crate) fn start_release(
        nodes: &Arc<NodeSet>,
        req: Arc<Request>,
        timeout: Duration,
        expires: Instant,
        unsent: &Unsent,
    ) -> Self {
        Self::start_owing(nodes, req, timeout, expires, Some(unsent))
    }

    fn start_owing(
        nodes: &Arc<NodeSet>,
        req: Arc<Request>,
        timeout: Duration,
        expires: Instant,
        unsent: Option<&Unsent>,
    ) -> Self {
        let n = nodes.len();
        let pending = (0..n)
            .map(|i| {
                let owed = unsent.is_none_or(|u| u.owed(i));
                call(nodes, i, req.clone(), timeout, expires, owed)
            })
            .collect();
        Self {
            nodes: nodes.clone(),
            req,
            timeout,
            expires,
            pending,
            outcomes: vec![None; n],
            unsent: Vec::new(),
            fences: Vec::new(),
            tally: Tally::new(n),
        }
    }

    fn record(&mut self, index: usize, answer: Answer) {
        self.tally.record(vote(&answer.outcome));
        let n = self.outcomes.len();
        if answer.outcome == NodeOutcome::Granted && answer.fence.is_some() {
            set_lazily(&mut self.fences, n, index, answer.fence);
        }
        if !answer.sent {
            set_lazily(&mut self.unsent, n, index, true);
        }
        self.outcomes[index] = Some(answer.outcome);
    }

    /// The fences the grants recorded so far carried (fenced acquisitions only).
    pub(crate) fn granted_fences(&self) -> impl Iterator<Item = u64> + '_ {
        self.fences.iter().filter_map(|f| *f)
    }

    /// The nodes that answered so far, and whose answer makes `which` true.
    pub(crate) fn answered(&self, which: impl Fn(usize, &NodeOutcome) -> bool) -> Vec<usize> {
        let answered = |i: &usize| self.outcomes[*i].as_ref().is_some_and(|o| which(*i, o));
        (0..self.outcomes.len()).filter(answered).collect()
    }

    /// Whether node `i`'s request was handed to a connection, as far as its answer tells.
    pub(crate) fn was_sent(&self, i: usize) -> bool {
        self.unsent.get(i) != Some(&true)
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
    pub(crate) async fn decide(&mut self) -> Decision<'_> {
        while !self.settled() {
            match self.pending.next().await {
                Some((i, answer)) => self.record(i, answer),
                None => break,
            }
        }
        while let Some(Some((i, answer))) = self.pending.next().now_or_never() {
            self.record(i, answer);
        }
        Decision::new(self.tally.verdict(), self.tally, &self.nodes, &self.outcomes)
    }

    /// The background job that releases the token on every node that may hold it: those that
    /// granted (telling `granted_released` once they answered), those whose answer left it
    /// unsure, and the late answerers that need it.
    fn undo_job(
        &mut self,
        granted_released: Option<oneshot::Sender<()>>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let undo = Arc::new(self.req.undo());
        let (nodes, timeout, expires) = (self.nodes.clone(), self.timeout, self.expires);
        let pending = mem::take(&mut self.pending);
        let (granted, unsure) = undo_targets(&self.outcomes, &self.unsent);
        async move {
            let release = |i| call(&nodes, i, undo.clone(), timeout, expires, true);
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
                        call(&nodes, i, undo, timeout, expires, true).await;
                    }
                }
            });
            futures::join!(first, rest, late);
        }
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let pending = mem::take(&mut self.pending);
            self.nodes.spawn_background(pending.for_each(|_| async {}));
        }
    }
}

/// What a [`Guarded`] fan-out does with the requests still in flight when it is dropped before
/// being consumed.
pub(crate) trait DropPolicy {
    fn dropped(fan: Fanout);
}

/// A fan-out whose drop behaviour is `P`'s until a method of its own consumes it (compare
/// deadpool's `UnreadyObject`): [`Unready`] or [`Tentative`].
pub(crate) struct Guarded<P: DropPolicy>(Option<Fanout>, PhantomData<P>);

/// An acquisition's fan-out until its lock is handed out: dropped, by failure or by a caller
/// that went away, it releases the token on every node that may hold it (G5).
/// [`ready`](Guarded::ready) turns it into a plain [`Fanout`].
pub(crate) type Unready = Guarded<Undo>;

/// An extension's fan-out until it is decided: dropped, requests not yet written are never sent
/// (an extension cancelled by a release must not reach a node after it; redis-rs skips a queued
/// request whose caller is gone). [`finish_unless`](Guarded::finish_unless) lets a decided one
/// go on.
pub(crate) type Tentative = Guarded<Abandon>;

pub(crate) struct Undo;
pub(crate) struct Abandon;

impl DropPolicy for Undo {
    fn dropped(mut fan: Fanout) {
        let job = fan.undo_job(None);
        fan.nodes.spawn_background(job);
    }
}

impl DropPolicy for Abandon {
    fn dropped(mut fan: Fanout) {
        drop(mem::take(&mut fan.pending));
    }
}

impl<P: DropPolicy> Guarded<P> {
    pub(crate) fn start(
        nodes: &Arc<NodeSet>,
        req: Arc<Request>,
        timeout: Duration,
        expires: Instant,
    ) -> Self {
        Self(Some(Fanout::start(nodes, req, timeout, expires)), PhantomData)
    }

    /// The fan-out, taken out of the guard so that its policy no longer applies.
    fn consume(mut self) -> Option<Fanout> {
        self.0.take()
    }
}

impl<P: DropPolicy> Drop for Guarded<P> {
    fn drop(&mut self) {
        if let Some(fan) = self.0.take() {
            P::dropped(fan);
        }
    }
}

impl<P: DropPolicy> Deref for Guarded<P> {
    type Target = Fanout;
    fn deref(&self) -> &Fanout {
        self.0.as_ref().expect("present until consumed")
    }
}

impl<P: DropPolicy> DerefMut for Guarded<P> {
    fn deref_mut(&mut self) -> &mut Fanout {
        self.0.as_mut().expect("present until consumed")
    }
}

impl Unready {
    /// Marks in `unsent` every node whose request is known never to have left, now and as
    /// late answers come in.
    pub(crate) fn track_unsent(&self, unsent: &Unsent) {
        for i in 0..self.outcomes.len() {
            if !self.was_sent(i) {
                unsent.mark(i);
            }
        }
    }

    /// As [`ready`](Self::ready), and `late` sees each answer that comes after the decision.
    pub(crate) fn ready_then(self, mut late: impl FnMut(usize, &Answer) + Send + 'static) {
        let Some(mut fan) = self.consume() else { return };
        if fan.pending.is_empty() {
            return;
        }
        let pending = mem::take(&mut fan.pending);
        fan.nodes.spawn_background(pending.for_each(move |(i, answer)| {
            late(i, &answer);
            futures::future::ready(())
        }));
    }

    /// Undoes a failed acquisition now: releases on every node that may hold the token.
    ///
    /// Returns two signals: the first fires once the nodes that granted before the decision
    /// have answered their release (the caller returns with those partial grants gone, without
    /// waiting on slow nodes); the second once every node's request and first release try are
    /// done (a retry waits for it, so it is never blocked by our own leftovers). Releases
    /// without a definite answer go on as obligations after that.
    pub(crate) fn undo(self) -> Option<(oneshot::Receiver<()>, oneshot::Receiver<()>)> {
        let mut fan = self.consume()?;
        let (granted_tx, granted_rx) = oneshot::channel();
        let (all_tx, all_rx) = oneshot::channel();
        let job = fan.undo_job(Some(granted_tx)).map(move |()| {
            let _ = all_tx.send(());
        });
        fan.nodes.spawn_background(job).then_some((granted_rx, all_rx))
    }
}

impl Tentative {
    /// Decided: the slower nodes' requests go on in the background until `stop` is cancelled
    /// (by the lock's release); then the ones not yet sent are dropped.
    pub(crate) fn finish_unless(self, stop: CancellationToken) {
        let Some(mut fan) = self.consume() else { return };
        if fan.pending.is_empty() {
            return;
        }
        let pending = mem::take(&mut fan.pending);
        fan.nodes.spawn_background(async move {
            tokio::select! {
                () = pending.for_each(|_| async {}) => {}
                () = stop.cancelled() => {}
            }
        });
    }
}
