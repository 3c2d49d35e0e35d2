//! Opt-in wake-up of waiters when a lock is released (`RedlockBuilder::wake_on_release`).
//!
//! An explicit release publishes each deleted key on `<prefix>released` from inside the release
//! script. A waiter that was refused waits for the retry delay *or* a notice for its key,
//! whichever comes first, so it retries moments after the holder lets go instead of up to a
//! whole retry delay later. Polling stays the fallback: a lost notice (a subscriber reconnecting,
//! a node down) costs latency, never correctness.
//!
//! One subscriber connection per node, started on first use and kept while the client lives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;

use crate::client::Inner;

#[derive(Default)]
pub(crate) struct WakeHub {
    waiters: Mutex<HashMap<Box<[u8]>, Arc<Notify>>>,
    started: OnceLock<()>,
}

/// A registered interest in one key; unregisters itself when the last waiter goes.
pub(crate) struct Waiter {
    inner: Arc<Inner>,
    key: Box<[u8]>,
    pub(crate) notify: Arc<Notify>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut map = self.inner.wake.waiters.lock().unwrap_or_else(|p| p.into_inner());
        // The map's reference and ours: nobody else waits for this key.
        if Arc::strong_count(&self.notify) <= 2 {
            map.remove(&self.key);
        }
    }
}

pub(crate) fn channel(prefix: &str) -> Vec<u8> {
    let mut c = prefix.as_bytes().to_vec();
    c.extend_from_slice(b"released");
    c
}

/// Registers interest in `key`, starting the subscribers on first use.
pub(crate) fn waiter(inner: &Arc<Inner>, key: &[u8]) -> Waiter {
    inner.wake.started.get_or_init(|| {
        for i in 0..inner.nodes.len() {
            tokio::spawn(subscribe(Arc::downgrade(inner), i));
        }
    });
    let notify = inner
        .wake
        .waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key.into())
        .or_default()
        .clone();
    Waiter {
        inner: inner.clone(),
        key: key.into(),
        notify,
    }
}

/// Keeps a subscription to node `i` while the client lives, reconnecting after failures.
async fn subscribe(inner: Weak<Inner>, i: usize) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let (client, channel) = (strong.nodes[i].client().clone(), channel(&strong.prefix));
        drop(strong);
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel[..]).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(2), connected).await {
            Ok(Ok(pubsub)) => {
                let mut messages = pubsub.into_on_message();
                loop {
                    // Wake up now and then to notice that the client is gone.
                    let next = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
                    let Some(strong) = inner.upgrade() else { return };
                    match next {
                        Ok(Some(msg)) => {
                            let map = strong.wake.waiters.lock().unwrap_or_else(|p| p.into_inner());
                            if let Some(n) = map.get(msg.get_payload_bytes()) {
                                n.notify_waiters();
                            }
                        }
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
