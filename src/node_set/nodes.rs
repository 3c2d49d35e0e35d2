//! The node set: the N nodes, the background work that outlives any one call, and the release
//! obligations (DESIGN rule (c)).
//!
//! Everything below the client (the fan-out, lock handles, guards, the wake-up) takes a
//! `NodeSet` rather than the client.
//!
//! # Release obligations
//! A release, or the clean-up of a failed acquisition, on a node that may hold our token is an
//! obligation, not a single try. The first try is sent at once by whoever releases; if it does
//! not end in a definite answer (deleted, or nothing of ours there, which leaves a tombstone),
//! the request joins its node's queue. One worker task per node with a non-empty queue re-sends
//! them: it probes the node with one request, and only when that gets a definite answer sends
//! the rest, so a node that is down costs one request per pause, not one per obligation. Pauses
//! grow from 10 ms to 1 s and never outlast the earliest expiry. A connection in its reconnect
//! back-off fails a try at once; the worker then simply tries again after its pause, so an
//! obligation never ends because a reconnect was backing off.
//!
//! An obligation ends with a definite answer, or when its key has certainly expired: its
//! `expires` instant (when the last SET or PEXPIRE it may undo was sent, plus the node timeout
//! within which it may still be applied, the TTL and the drift allowance, on this client's
//! monotonic clock). Ending that way is logged (`warn`). The
//! workers are tracked, so [`NodeSet::shutdown`] waits for every obligation, bounded by the
//! TTLs.

use std::future::Future;
use std::mem;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use crate::connection::identity::Identities;
use crate::connection::node::{Answer, Node};
pub(crate) use crate::node_set::owed::{is_definite, Unsent};
use crate::node_set::owed::{Owed, Unfinished};
use crate::wire::reply::Request;

/// The nodes of one client and the work they owe.
pub(crate) struct NodeSet {
    nodes: Box<[Arc<Node>]>,
    queues: Box<[Mutex<Queue>]>,
    identities: Arc<Identities>,
    tracker: TaskTracker,
    /// Says once that the runtime dropped background work before it finished.
    unfinished: Unfinished,
    /// Per node, how many obligations are owed now (queued or being re-sent).
    owing: Box<[Arc<AtomicUsize>]>,
    /// `false` only in the negative control that shows the tests can see a lost release.
    obligations: bool,
}

/// One release that must still reach a node.
struct Obligation {
    req: Arc<Request>,
    timeout: Duration,
    expires: Instant,
    /// Told when the obligation ends (either way).
    done: Option<oneshot::Sender<()>>,
    /// Counts it in the pending-obligations gauge while it is queued (set by `oblige`; dropped
    /// with the obligation, however it ends).
    _queued: Option<crate::wire::metrics::Obligation>,
    /// Counts it in [`NodeSet::owed`] while it is owed (set by `oblige`).
    _owed: Option<Owed>,
}

#[derive(Default)]
struct Queue {
    items: Vec<Obligation>,
    /// Whether a worker task is draining this queue.
    working: bool,
    /// The last WARN of [`NodeSet::warn_expired`], and how many ended by expiry since.
    last_expiry_warning: Option<Instant>,
    expired_unreported: usize,
}

/// The shortest interval between two WARN lines of one node about releases given up.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Most obligations sent to one node at once once it answers again.
const BATCH: usize = 256;

fn lock(q: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // No critical section below can panic; a poisoned queue is still a valid queue.
    q.lock().unwrap_or_else(|p| p.into_inner())
}

impl NodeSet {
    pub(crate) fn new(nodes: Vec<Arc<Node>>, identities: Arc<Identities>, obligations: bool) -> Self {
        Self {
            queues: nodes.iter().map(|_| Mutex::default()).collect(),
            owing: nodes.iter().map(|_| Arc::default()).collect(),
            identities,
            tracker: TaskTracker::new(),
            unfinished: Unfinished::new(&nodes),
            nodes: nodes.into(),
            obligations,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn quorum(&self) -> usize {
        crate::pure::quorum::quorum(self.nodes.len())
    }

    pub(crate) fn node(&self, index: usize) -> &Arc<Node> {
        &self.nodes[index]
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &Arc<Node>> + '_ {
        self.nodes.iter()
    }

    /// The servers node `index` reached when it last connected (empty before).
    pub(crate) fn identity(&self, index: usize) -> Vec<String> {
        self.identities.of(index)
    }

    /// Two nodes found to be one server, if any (rule (e)).
    pub(crate) fn conflict(&self) -> Option<&Arc<str>> {
        self.identities.conflict()
    }

    /// Runs `job` on the current runtime, tracked so that [`shutdown`](Self::shutdown) waits for
    /// it. Without a runtime (dropped after shutdown, or outside tokio) nothing runs and the keys
    /// expire by their TTL; returns whether the job was spawned.
    pub(crate) fn spawn_background<F>(&self, job: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                self.tracker.spawn_on(self.unfinished.watch(job), &handle);
                true
            }
            Err(_) => {
                self.unfinished.report("no tokio runtime is running");
                false
            }
        }
    }

    /// How many background jobs (clean-ups, releases, obligation workers) are running.
    pub(crate) fn background_jobs(&self) -> usize {
        self.tracker.len()
    }

    /// Waits for every background job, obligations included.
    pub(crate) async fn shutdown(&self) {
        self.shutdown_within(Duration::MAX).await;
    }

    /// As [`shutdown`](Self::shutdown), for at most `limit`; returns whether every job finished.
    pub(crate) async fn shutdown_within(&self, limit: Duration) -> bool {
        self.tracker.close();
        let finished = tokio::time::timeout(limit, self.tracker.wait()).await.is_ok();
        self.tracker.reopen();
        finished
    }

    /// How many releases node `index` is still owed (queued or being re-sent).
    pub(crate) fn owed(&self, index: usize) -> usize {
        self.owing[index].load(Ordering::Relaxed)
    }

    /// Sends the release `req` to node `index` once, bounded by `timeout`, and returns that
    /// answer. If it is not definite, the release becomes an obligation of this node set, kept
    /// until a definite answer or `expires`; `done` (if any) is told when it ends. Not when
    /// the release was not `owed` (the acquisition never reached the node) and this try did
    /// not leave either: nothing of ours can be there.
    ///
    /// Cancel safety: if the future is dropped before the first answer, the obligation is
    /// handed over at once, so a release is never lost by cancelling its caller.
    pub(crate) async fn release_on(
        self: &Arc<Self>,
        index: usize,
        req: Arc<Request>,
        timeout: Duration,
        expires: Instant,
        done: Option<oneshot::Sender<()>>,
        owed: bool,
    ) -> Answer {
        struct Handover<'a> {
            set: &'a Arc<NodeSet>,
            index: usize,
            obligation: Option<Obligation>,
        }
        impl Drop for Handover<'_> {
            fn drop(&mut self) {
                if let Some(o) = self.obligation.take() {
                    self.set.oblige(self.index, o);
                }
            }
        }
        let mut handover = Handover {
            set: self,
            index,
            obligation: Some(Obligation {
                req: req.clone(),
                timeout,
                expires,
                done,
                _queued: None,
                _owed: None,
            }),
        };
        let answer = self.nodes[index].execute(&req, timeout).await;
        if is_definite(&answer.outcome) || (!owed && !answer.sent) {
            if let Some(done) = handover.obligation.take().and_then(|o| o.done) {
                let _ = done.send(());
            }
        }
        // Otherwise dropping the hand-over queues the obligation.
        answer
    }

    fn oblige(self: &Arc<Self>, index: usize, mut obligation: Obligation) {
        if !self.obligations {
            tracing::debug!(node = %self.nodes[index].id, "negative control: release given up after one try");
            return;
        }
        obligation._queued = Some(crate::wire::metrics::Obligation::new(&self.nodes[index].id));
        obligation._owed = Some(Owed::new(&self.owing[index]));
        let start = {
            let mut q = lock(&self.queues[index]);
            q.items.push(obligation);
            !mem::replace(&mut q.working, true)
        };
        if start && !self.spawn_background(self.clone().work(index)) {
            let mut q = lock(&self.queues[index]);
            q.working = false;
            let dropped = mem::take(&mut q.items).len();
            tracing::warn!(
                node = %self.nodes[index].id,
                dropped,
                "no tokio runtime: release obligations dropped, their keys expire by TTL",
            );
        }
    }

    /// One WARN per node at most every [`WARN_EVERY`] for obligations that ended by expiry,
    /// with their count: a line per lock flooded the logs in an outage (issue 21).
    fn warn_expired(&self, index: usize, expired: usize, now: Instant) {
        let mut q = lock(&self.queues[index]);
        q.expired_unreported += expired;
        if q.last_expiry_warning
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            return;
        }
        let dropped = mem::take(&mut q.expired_unreported);
        q.last_expiry_warning = Some(now);
        drop(q);
        tracing::warn!(
            node = %self.nodes[index].id,
            dropped,
            "releases given up on this node: their keys have certainly expired (TTL passed) without a \
             definite answer; nothing is left behind, but the node was unreachable (at most one such \
             line per node every 10 s, the rest at DEBUG)",
        );
    }

    /// Drains node `index`'s queue until it is empty.
    async fn work(self: Arc<Self>, index: usize) {
        let node = &self.nodes[index];
        let mut idle_rounds = 0u32;
        loop {
            let mut batch = {
                let mut q = lock(&self.queues[index]);
                if q.items.is_empty() {
                    q.working = false;
                    return;
                }
                mem::take(&mut q.items)
            };
            let now = Instant::now();
            let mut expired = 0usize;
            batch.retain_mut(|o| {
                if o.expires > now {
                    return true;
                }
                tracing::debug!(
                    node = %node.id,
                    token = %o.req.token.fingerprint(),
                    "release obligation dropped: the key has certainly expired (TTL passed) without a definite answer",
                );
                crate::wire::metrics::obligation_expired(&node.id);
                expired += 1;
                if let Some(done) = o.done.take() {
                    let _ = done.send(());
                }
                false
            });
            if expired > 0 {
                self.warn_expired(index, expired, now);
            }
            let mut pending = Vec::with_capacity(batch.len());
            let mut progress = false;
            // Probe with one request; send the rest only if the node answers definitely.
            let mut items = batch.into_iter();
            if let Some(probe) = items.next() {
                let answer = node.execute(&probe.req, probe.timeout).await;
                if is_definite(&answer.outcome) {
                    progress = true;
                    finish(probe);
                    let rest: Vec<Obligation> = items.by_ref().collect();
                    for chunk in chunk_owned(rest, BATCH) {
                        let answers = join_all(chunk.iter().map(|o| node.execute(&o.req, o.timeout))).await;
                        for (o, a) in chunk.into_iter().zip(answers) {
                            if is_definite(&a.outcome) {
                                finish(o);
                            } else {
                                pending.push(o);
                            }
                        }
                    }
                } else {
                    pending.push(probe);
                }
            }
            pending.extend(items);
            if pending.is_empty() {
                idle_rounds = 0;
                continue;
            }
            idle_rounds = if progress {
                0
            } else {
                idle_rounds.saturating_add(1)
            };
            let earliest = pending.iter().map(|o| o.expires).min();
            lock(&self.queues[index]).items.append(&mut pending);
            let mut pause = crate::pure::backoff::obligation_pause(idle_rounds);
            if let Some(earliest) = earliest {
                pause = pause.min(earliest.saturating_duration_since(Instant::now()));
            }
            tokio::time::sleep(pause).await;
        }
    }
}

fn finish(o: Obligation) {
    if let Some(done) = o.done {
        let _ = done.send(());
    }
}

/// Splits `items` into owned chunks of at most `size`.
fn chunk_owned<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        out.push(it.by_ref().take(size).collect());
    }
    out
}

impl std::fmt::Debug for NodeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.nodes.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_every_item_in_order() {
        let chunks = chunk_owned((0..600).collect::<Vec<_>>(), 256);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [256, 256, 88]);
        assert_eq!(chunks.concat(), (0..600).collect::<Vec<_>>());
    }
}
