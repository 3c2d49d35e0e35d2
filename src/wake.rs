//! Opt-in wake-up of waiters when a lock is released (`RedlockBuilder::wake_on_release`).
//!
//! An explicit release publishes each deleted key on `<prefix>released` from inside the release
//! script, prefixed with an 8-byte release id (the token's fingerprint). A waiter that was
//! refused waits for the retry delay *or* a wake-up for its key, whichever comes first. Polling
//! stays the fallback: a lost notice (a subscriber reconnecting, a node down) costs latency,
//! never correctness.
//!
//! When: a waiter is woken once a **majority** of nodes reported the release (its notices carry
//! a release id, counted per id), because before that a majority may still hold the key and
//! the woken waiter would only be refused and sleep a whole retry delay. A release made by this
//! client that reached a majority wakes the next local waiter at once, without waiting for its
//! own notices to come back.
//!
//! Fairness and herds: each release wakes **one** local waiter per key, the one that began to
//! wait first (its *place*, below), not all of them: the others would only be refused again. A
//! fresh `acquire` of a key that earlier local waiters wait for queues behind them instead of
//! barging in, so a task that releases and re-acquires in a loop cannot starve the others.
//! Across processes, a single resource's waiters are served in order of place by the waiting
//! line on the nodes (`acquire_queued.lua`, [`crate::queue`]): the woken waiter of every
//! process tries, and only the one that began to wait first is granted. Waking the local
//! waiter with the earliest place (rather than the one that re-armed first) is what lets the
//! head of that line be the one woken.
//!
//! One subscriber connection per node, started on first use and kept while the client lives.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;

use crate::key::Keys;
use crate::nodes::NodeSet;
use crate::queue::next_place;

/// Length of the release id in front of each published key.
const ID_LEN: usize = 8;
/// Release ids remembered per key: a release's notices from N nodes may interleave with the
/// next release's.
const RECENT_IDS: usize = 8;

/// The wake-up state of one client: its waiters per key, and the subscribers that feed them.
pub(crate) struct WakeHub {
    nodes: Arc<NodeSet>,
    /// `<prefix>released`, as the release script is given it.
    channel: Keys,
    keys: Mutex<HashMap<Box<[u8]>, Arc<KeyWake>>>,
    started: OnceLock<()>,
}

/// The local waiters of one key.
struct KeyWake {
    /// Reports a release id needs before it wakes anyone: the quorum.
    quorum: usize,
    state: Mutex<KeyState>,
}

#[derive(Default)]
struct KeyState {
    recent: [Release; RECENT_IDS],
    /// The waiters by place; the first is the one a release wakes.
    waiters: BTreeMap<u64, Arc<Notify>>,
}

/// What is known of one recent release of the key.
#[derive(Clone, Copy, Default)]
struct Release {
    id: Option<[u8; ID_LEN]>,
    reports: usize,
    woken: bool,
}

impl KeyWake {
    fn new(quorum: usize) -> Self {
        Self {
            quorum,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what is known of release `id` and wakes the first waiter once: when `reports`
    /// more nodes reported it and a quorum has now done so, or at once when `local` (this client
    /// released it on a majority).
    fn released(&self, id: [u8; ID_LEN], reports: usize, local: bool) {
        let mut state = self.state();
        let recent = &mut state.recent;
        let slot = match recent.iter().position(|r| r.id == Some(id)) {
            Some(i) => i,
            None => {
                recent.rotate_right(1);
                recent[0] = Release {
                    id: Some(id),
                    ..Release::default()
                };
                0
            }
        };
        let r = &mut recent[slot];
        r.reports += reports;
        if r.woken || !(local || r.reports >= self.quorum) {
            return;
        }
        r.woken = true;
        let first = state.waiters.values().next().cloned();
        drop(state);
        // A waiter that is not waiting right now (it is trying) keeps the wake-up as a permit.
        if let Some(first) = first {
            first.notify_one();
        }
    }
}

/// A registered interest in one key; unregisters itself when dropped.
pub(crate) struct Waiter {
    hub: Arc<WakeHub>,
    key: Box<[u8]>,
    wake: Arc<KeyWake>,
    place: u64,
    notify: Arc<Notify>,
    granted: AtomicBool,
}

impl Waiter {
    /// When this acquisition began to wait, as its place in the key's waiting line.
    pub(crate) fn place(&self) -> u64 {
        self.place
    }

    /// Whether acquisitions of this client that began earlier wait for the key (this one
    /// should queue behind them).
    pub(crate) fn others_waiting(&self) -> bool {
        self.wake.state().waiters.keys().next() != Some(&self.place)
    }

    /// A wake-up for the next release of the key, armed at once: a release between this call
    /// and the await is not missed. Await it pinned.
    pub(crate) fn armed(&self) -> impl Future<Output = ()> + '_ {
        let mut notified = Box::pin(self.notify.notified());
        notified.as_mut().enable();
        notified
    }

    /// The acquisition got its lock: a wake-up it was given was used.
    pub(crate) fn granted(&self) {
        self.granted.store(true, Ordering::Relaxed);
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut map = self.hub.keys.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.wake.state();
        let pass_on = state.leave(self.place, self.granted.load(Ordering::Relaxed));
        if state.waiters.is_empty() {
            map.remove(&self.key);
        }
        drop(state);
        drop(map);
        if let Some(next) = pass_on {
            next.notify_one();
        }
    }
}

impl KeyState {
    /// Removes the waiter at `place`; returns the waiter to hand its wake-up to, if any. A first
    /// waiter that leaves without the lock (it gave up, or was cancelled) may have been handed
    /// a release: it is passed on to the next, as tokio's `notify_one` does for a dropped
    /// waiter. (When none was handed, the next tries once more than it had to.)
    fn leave(&mut self, place: u64, granted: bool) -> Option<Arc<Notify>> {
        let was_first = self.waiters.keys().next() == Some(&place);
        self.waiters.remove(&place);
        let next = self.waiters.values().next().cloned();
        next.filter(|_| was_first && !granted)
    }
}

impl WakeHub {
    pub(crate) fn new(nodes: Arc<NodeSet>, prefix: &str) -> Self {
        let mut channel = prefix.as_bytes().to_vec();
        channel.extend_from_slice(b"released");
        Self {
            nodes,
            channel: vec![channel.into_boxed_slice()].into(),
            keys: Mutex::default(),
            started: OnceLock::new(),
        }
    }

    /// The channel releases publish on.
    pub(crate) fn channel(&self) -> &[u8] {
        &self.channel[0]
    }

    /// Registers interest in `key`, starting the subscribers on first use.
    pub(crate) fn waiter(self: &Arc<Self>, key: &[u8]) -> Waiter {
        self.started.get_or_init(|| {
            for i in 0..self.nodes.len() {
                tokio::spawn(subscribe(Arc::downgrade(self), i));
            }
        });
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let wake = map
            .entry(key.into())
            .or_insert_with(|| Arc::new(KeyWake::new(self.nodes.quorum())))
            .clone();
        let (place, notify) = (next_place(), Arc::new(Notify::new()));
        wake.state().waiters.insert(place, notify.clone());
        drop(map);
        Waiter {
            hub: self.clone(),
            key: key.into(),
            wake,
            place,
            notify,
            granted: AtomicBool::new(false),
        }
    }

    /// This client released `keys` (on a majority) with release id `id` (the token's fingerprint
    /// in hex, as the release script publishes it): hand each key to its next local waiter now;
    /// the notices that come back from the nodes are then duplicates.
    pub(crate) fn released_locally(&self, keys: &[Box<[u8]>], id: [u8; ID_LEN]) {
        let map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if let Some(w) = map.get(key) {
                w.released(id, 0, true);
            }
        }
    }

    /// A notice from one node.
    fn noticed(&self, payload: &[u8]) {
        let Some((id, key)) = parse_notice(payload) else {
            return;
        };
        let map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = map.get(key) {
            w.released(id, 1, false);
        }
    }
}

/// Splits a notice into release id and key.
fn parse_notice(payload: &[u8]) -> Option<([u8; ID_LEN], &[u8])> {
    let (id, key) = payload.split_at_checked(ID_LEN)?;
    Some((id.try_into().ok()?, key))
}

/// Keeps a subscription to node `i` while the client lives, reconnecting after failures.
async fn subscribe(hub: Weak<WakeHub>, i: usize) {
    loop {
        let Some(strong) = hub.upgrade() else { return };
        let (client, channel) = (strong.nodes.node(i).client().clone(), strong.channel.clone());
        drop(strong);
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel[0][..]).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(2), connected).await {
            Ok(Ok(pubsub)) => {
                let mut messages = pubsub.into_on_message();
                loop {
                    // Wake up now and then to notice that the client is gone.
                    let next = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
                    let Some(strong) = hub.upgrade() else { return };
                    match next {
                        Ok(Some(msg)) => strong.noticed(msg.get_payload_bytes()),
                        Ok(None) => break, // connection closed: reconnect
                        Err(_) => {}       // idle
                    }
                }
            }
            _ => tracing::debug!(node = i, "release subscriber could not connect; polling only"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_split_into_id_and_key() {
        assert_eq!(
            parse_notice(b"0123abcdquorumlock:lock:x"),
            Some((*b"0123abcd", &b"quorumlock:lock:x"[..]))
        );
        assert_eq!(parse_notice(b"short"), None);
    }

    /// A key with local waiters at `places`, and their notifications.
    fn key_with_waiters(quorum: usize, places: &[u64]) -> (KeyWake, Vec<Arc<Notify>>) {
        let k = KeyWake::new(quorum);
        let notifies: Vec<_> = places.iter().map(|_| Arc::new(Notify::new())).collect();
        for (p, n) in places.iter().zip(&notifies) {
            k.state().waiters.insert(*p, n.clone());
        }
        (k, notifies)
    }

    #[tokio::test]
    async fn one_wake_per_release_once_a_majority_reported_it() {
        let (k, n) = key_with_waiters(3, &[1, 2]);
        let first = n[0].notified();
        let second = n[1].notified();
        tokio::pin!(first, second);
        first.as_mut().enable();
        second.as_mut().enable();
        k.released(*b"aaaaaaaa", 1, false);
        k.released(*b"aaaaaaaa", 1, false);
        assert!(
            futures::poll!(first.as_mut()).is_pending(),
            "two of five nodes reported: a majority may still hold the key"
        );
        k.released(*b"aaaaaaaa", 1, false);
        assert!(
            futures::poll!(first.as_mut()).is_ready(),
            "a majority reported: the first waiter is woken"
        );
        k.released(*b"aaaaaaaa", 1, false);
        k.released(*b"aaaaaaaa", 1, false);
        assert!(
            futures::poll!(second.as_mut()).is_pending(),
            "one release, one wake-up"
        );
        // The first waiter got the lock and left.
        k.state().waiters.remove(&1);
        k.released(*b"bbbbbbbb", 0, true);
        assert!(
            futures::poll!(second.as_mut()).is_ready(),
            "a release made by this client wakes the next at once"
        );
        // Its notices that come back later wake nobody.
        let third = n[1].notified();
        tokio::pin!(third);
        third.as_mut().enable();
        for _ in 0..5 {
            k.released(*b"bbbbbbbb", 1, false);
        }
        assert!(futures::poll!(third.as_mut()).is_pending());
    }

    /// The waiter woken is the one that began to wait first, not the one that armed first:
    /// after a refusal a waiter re-arms, and across processes only the head of the waiting line
    /// can be granted, so waking any other local waiter would leave the head asleep.
    #[tokio::test]
    async fn the_earliest_place_is_woken_whatever_the_arming_order() {
        let (k, n) = key_with_waiters(1, &[20, 10]);
        let later = n[0].notified();
        tokio::pin!(later);
        later.as_mut().enable();
        let earlier = n[1].notified();
        tokio::pin!(earlier);
        earlier.as_mut().enable();
        k.released(*b"aaaaaaaa", 1, false);
        assert!(futures::poll!(earlier.as_mut()).is_ready());
        assert!(futures::poll!(later.as_mut()).is_pending());
    }

    /// A first waiter dropped without the lock hands its wake-up on; one that got the lock, or
    /// was not first, does not (the next is not woken for nothing).
    #[tokio::test]
    async fn a_first_waiter_leaving_without_the_lock_passes_its_wake_up_on() {
        let (k, n) = key_with_waiters(1, &[10, 20, 30]);
        let woken = |i: usize| {
            let mut f = Box::pin(n[i].notified());
            f.as_mut().enable();
            f
        };
        let (mut second, mut third) = (woken(1), woken(2));
        assert!(k.state().leave(20, false).is_none(), "not first");
        let next = k.state().leave(10, false).expect("first, without the lock");
        next.notify_one();
        assert!(futures::poll!(third.as_mut()).is_ready(), "30 is first now");
        assert!(futures::poll!(second.as_mut()).is_pending());
        let (k, _) = key_with_waiters(1, &[10, 20]);
        assert!(k.state().leave(10, true).is_none(), "the lock used the wake-up");
        assert!(k.state().leave(20, false).is_none(), "nobody left to wake");
    }
}
