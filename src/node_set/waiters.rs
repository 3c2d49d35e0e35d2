//! The local waiters of one key, for wake-on-release ([`crate::node_set::wake`]): which waiter a release
//! wakes (the first by place, once a quorum reported it), and the wake-up a waiter that leaves
//! without the lock hands on. Plain state behind a mutex; no I/O.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Length of the release id in front of each published key.
pub(crate) const ID_LEN: usize = 8;
/// Release ids remembered per key: a release's notices from N nodes may interleave with the
/// next release's.
const RECENT_IDS: usize = 8;

/// The local waiters of one key.
pub(crate) struct KeyWake {
    /// Reports a release id needs before it wakes anyone: the quorum.
    quorum: usize,
    state: Mutex<KeyState>,
}

#[derive(Default)]
pub(crate) struct KeyState {
    recent: [Release; RECENT_IDS],
    /// The waiters by place; the first is the one a release wakes.
    pub(crate) waiters: BTreeMap<u64, Arc<Notify>>,
}

/// What is known of one recent release of the key.
#[derive(Clone, Copy, Default)]
struct Release {
    id: Option<[u8; ID_LEN]>,
    reports: usize,
    woken: bool,
}

impl KeyWake {
    pub(crate) fn new(quorum: usize) -> Self {
        Self {
            quorum,
            state: Mutex::default(),
        }
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what is known of release `id` and wakes the first waiter once: when `reports`
    /// more nodes reported it and a quorum has now done so, or at once when `local` (this client
    /// released it on a majority).
    pub(crate) fn released(&self, id: [u8; ID_LEN], reports: usize, local: bool) {
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

impl KeyState {
    /// Removes the waiter at `place`; returns the waiter to hand its wake-up to, if any. A first
    /// waiter that leaves without the lock (it gave up, or was cancelled) may have been handed
    /// a release: it is passed on to the next, as tokio's `notify_one` does for a dropped
    /// waiter. (When none was handed, the next tries once more than it had to.)
    pub(crate) fn leave(&mut self, place: u64, granted: bool) -> Option<Arc<Notify>> {
        let was_first = self.waiters.keys().next() == Some(&place);
        self.waiters.remove(&place);
        let next = self.waiters.values().next().cloned();
        next.filter(|_| was_first && !granted)
    }
}

/// A wake-up handed to the next local waiter later than the drop of the [`Waiter`] that held
/// it: see [`Waiter::defer_pass_on`].
pub(crate) struct PassOn {
    pub(crate) wake: Arc<KeyWake>,
    pub(crate) from: u64,
}

impl PassOn {
    /// Wakes the key's first local waiter (not the one that handed it on, should it still be
    /// registered).
    pub(crate) fn run(self) {
        let next = self
            .wake
            .state()
            .waiters
            .iter()
            .find(|(p, _)| **p != self.from)
            .map(|(_, n)| n.clone());
        if let Some(next) = next {
            next.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A wake-up handed on later (after a leave) skips the waiter that handed it on, should it
    /// still be registered.
    #[tokio::test]
    async fn a_deferred_pass_on_wakes_the_next_waiter() {
        let (k, n) = key_with_waiters(1, &[10, 20]);
        let mut own = Box::pin(n[0].notified());
        own.as_mut().enable();
        let mut next = Box::pin(n[1].notified());
        next.as_mut().enable();
        PassOn {
            wake: Arc::new(k),
            from: 10,
        }
        .run();
        assert!(futures::poll!(next.as_mut()).is_ready());
        assert!(futures::poll!(own.as_mut()).is_pending());
    }
}
