//! One established connection to a member: the link (a server's multiplexed connection, or
//! redis-rs' cluster connection), its generation, and the signal that the client stopped
//! trusting it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use tokio::sync::Notify;

use crate::errors::error::NodeOutcome;
use crate::wire::reply::is_noscript;

/// An established connection. `closed` is set when the client stops trusting it (a protocol
/// error, a run of timeouts): every request still waiting on it gives up at once, so the last
/// handle is dropped and redis-rs closes the socket, instead of requests reading on a stream
/// that is known to be out of step.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) conn: Link,
    pub(crate) generation: u64,
    pub(crate) closed: Arc<Closed>,
}

/// The connection to one member.
#[derive(Clone)]
pub(crate) enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Link {
    pub(crate) async fn send(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            Self::Single(c) => c.send_packed_command(cmd).await,
            Self::Cluster(c) => c.req_packed_command(cmd).await,
        }
    }
}

/// A flag and a `Notify` rather than a `CancellationToken`: every request clones, polls and
/// drops one, and the token takes its tree's mutex for each of those (docs/benchmarks.md).
#[derive(Default)]
pub(crate) struct Closed {
    closed: AtomicBool,
    notify: Notify,
}

impl Closed {
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once the connection is closed, at once if it already is.
    pub(crate) async fn wait(&self) {
        // Made before the flag is read: `notify_waiters` wakes every `Notified` that exists
        // when it runs, so a close between the two is not missed.
        let notified = self.notify.notified();
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

/// Sends `primary`, and the script's `EVAL` form if the node answered `NOSCRIPT`. The `EVAL`
/// goes out after the `NOSCRIPT` reply, so requests issued meanwhile run before it; for an
/// acquire that is harmless because a release that ran first left a tombstone.
pub(crate) async fn send(
    conn: &mut Link,
    primary: &redis::Cmd,
    fallback: impl FnOnce() -> Option<redis::Cmd>,
) -> redis::RedisResult<redis::Value> {
    let reply = conn.send(primary).await;
    if is_noscript(&reply) {
        if let Some(fallback) = fallback() {
            return conn.send(&fallback).await;
        }
    }
    reply
}

/// What a connection attempt answers when the tokio runtime has no I/O driver.
pub(crate) const NO_IO_DRIVER: &str =
    "the tokio runtime has no I/O driver: build it with runtime::Builder::enable_all() (quorumlock \
     needs the time and I/O drivers)";

/// Runs a connection attempt, turning tokio's panic for a runtime without its I/O driver ("IO
/// is disabled", raised inside redis-rs' connect) into a failed attempt that says what to
/// enable ([`NO_IO_DRIVER`]): a lock call must not panic (G7). Any other panic goes on.
pub(crate) async fn without_driver_panic<F>(attempt: F) -> Result<Link, NodeOutcome>
where
    F: std::future::Future<Output = Result<Link, NodeOutcome>>,
{
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(attempt).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if text.contains("IO is disabled") {
                Err(NodeOutcome::Io(NO_IO_DRIVER.into()))
            } else {
                std::panic::resume_unwind(panic)
            }
        }
    }
}
