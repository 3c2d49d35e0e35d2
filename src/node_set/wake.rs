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
//! line on the nodes (`acquire_queued.lua`, [`crate::node_set::queue`]): the woken waiter of every
//! process tries, and only the one that began to wait first is granted. Waking the local
//! waiter with the earliest place (rather than the one that re-armed first) is what lets the
//! head of that line be the one woken.
//!
//! One subscriber connection per node, started on first use and kept while the client lives.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;

use crate::node_set::nodes::NodeSet;
use crate::node_set::queue::next_place;
use crate::node_set::waiters::{KeyWake, PassOn, ID_LEN};
use crate::pure::key::Keys;

/// The wake-up state of one client: its waiters per key, and the subscribers that feed them.
pub(crate) struct WakeHub {
    nodes: Arc<NodeSet>,
    /// `<prefix>released`, as the release script is given it.
    channel: Keys,
    keys: Mutex<HashMap<Box<[u8]>, Arc<KeyWake>>>,
    started: OnceLock<()>,
}

/// A registered interest in one key; unregisters itself when dropped.
pub(crate) struct Waiter {
    hub: Arc<WakeHub>,
    key: Box<[u8]>,
    wake: Arc<KeyWake>,
    place: u64,
    notify: Arc<Notify>,
    /// The wake-up this waiter may hold is used (granted) or handed on by a [`PassOn`]: its drop
    /// passes nothing on.
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

    /// The acquisition leaves without the lock while its entry may still head the key's waiting
    /// line on the nodes: a wake-up this first waiter may hold goes to the next local waiter
    /// when the returned [`PassOn`] runs (once the leave is done), not as this waiter is
    /// dropped, when the next would be refused by that entry and sleep a retry delay. `None`
    /// when there is nothing to hand on (not first, or granted).
    pub(crate) fn defer_pass_on(&self) -> Option<PassOn> {
        let first = self.wake.state().waiters.keys().next() == Some(&self.place);
        if !first || self.granted.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(PassOn {
            wake: self.wake.clone(),
            from: self.place,
        })
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
}
