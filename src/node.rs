//! One lock node: a lazily made, shared, self-healing multiplexed connection.
//!
//! Written here rather than taken from redis-rs' `ConnectionManager` because that type keeps a
//! failed lazy connect forever when the failure is not an I/O error (a `WRONGPASS` at start-up
//! would never be retried), needs a runtime when it is created (our `build()` must not), and
//! has no hook to drop a connection after a protocol error or a run of timeouts.
//!
//! Every task shares the node's one connection (commands are pipelined on it, and a command
//! issued after another on the same connection is executed after it: the ordering rule that
//! keeps a release from overtaking the SET it undoes). The only lock is a short critical
//! section that clones the connection handle.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use redis::aio::MultiplexedConnection;

use crate::error::{NodeId, NodeOutcome};
use crate::reply::{
    breaks_connection, classify_error, classify_server_reply, classify_value, fence_of, is_noscript, Op,
    Request,
};

/// One node's answer.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) outcome: NodeOutcome,
    /// The fence, for a fenced acquire that was granted.
    pub(crate) fence: Option<u64>,
    /// The connection the request went out on, when that connection was already up when the
    /// request was issued: only then is every later request on it ordered after this one
    /// (two requests waiting for the same connect may go out in either order).
    pub(crate) generation: Option<u64>,
}

impl Answer {
    fn unsent(outcome: NodeOutcome) -> Self {
        Self {
            outcome,
            fence: None,
            generation: None,
        }
    }
}

/// After this many timeouts in a row the connection is dropped and re-made: a blackholed peer
/// would otherwise collect one pending reply slot per request forever (P14).
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// Reconnect back-off: 10 ms doubling to 500 ms. While it runs, calls fail at once with the last
/// connect error instead of hammering a node that is down.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(10u64 << failures.saturating_sub(1).min(6)).min(Duration::from_millis(500))
}

type ConnectResult = Result<(MultiplexedConnection, u64), NodeOutcome>;

enum Slot {
    Idle {
        failures: u32,
        retry_at: Option<Instant>,
        last_error: Option<NodeOutcome>,
    },
    Connecting(Shared<BoxFuture<'static, ConnectResult>>),
    Ready {
        conn: MultiplexedConnection,
        generation: u64,
    },
}

pub(crate) struct Node {
    pub(crate) id: NodeId,
    client: redis::Client,
    config: redis::AsyncConnectionConfig,
    connect_timeout: Duration,
    slot: Arc<Mutex<Slot>>,
    generations: AtomicU64,
    timeouts_in_a_row: AtomicU32,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's connection info would be redacted by redis-rs too, but print only our own
        // redacted address.
        f.debug_struct("Node").field("addr", &self.id.addr()).finish()
    }
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // The critical sections below cannot panic; if one ever did, the slot is still a valid state.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Node {
    pub(crate) fn new(id: NodeId, client: redis::Client, connect_timeout: Duration) -> Self {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            // We bound every call ourselves (node_timeout); redis-rs' own 500 ms default would
            // otherwise cut calls short when node_timeout is larger.
            .set_response_timeout(None);
        Self {
            id,
            client,
            config,
            connect_timeout,
            slot: Arc::new(Mutex::new(Slot::Idle {
                failures: 0,
                retry_at: None,
                last_error: None,
            })),
            generations: AtomicU64::new(0),
            timeouts_in_a_row: AtomicU32::new(0),
        }
    }

    /// Runs `req` on this node, bounded by `timeout` (connecting included), and reads the reply.
    ///
    /// Cancel safety: dropping the future after the command was handed to the connection does
    /// not un-send it; callers that drop it must still release (they do: see `fanout`).
    pub(crate) async fn execute(self: &Arc<Self>, req: &Request, timeout: Duration) -> Answer {
        let attempt = async {
            let answer = self.execute_unbounded(req).await;
            // A release is an idempotent compare-and-delete: when its connection broke (a reset,
            // a restart), send it once more on a new connection, still within the timeout, or
            // the key would stay until its TTL. Never an acquire: a re-sent SET NX would be
            // refused by our own unacknowledged key.
            if req.op == Op::Release && matches!(answer.outcome, NodeOutcome::Io(_)) {
                return self.execute_unbounded(req).await;
            }
            answer
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let n = self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= TIMEOUTS_BEFORE_RECONNECT {
                    self.reset(None);
                }
                Answer::unsent(NodeOutcome::Timeout)
            }
        }
    }

    async fn execute_unbounded(self: &Arc<Self>, req: &Request) -> Answer {
        let (mut conn, generation, was_ready) = match self.connection().await {
            Ok(c) => c,
            Err(outcome) => return Answer::unsent(outcome),
        };
        let (reply, fell_back) = send(&mut conn, req.primary(), || req.fallback()).await;
        // The EVAL of a fallback goes out only after the NOSCRIPT reply, so a release issued
        // meanwhile on this connection runs *before* it: the request is then no longer ordered
        // ahead of later ones, and a late grant must be undone like one sent while connecting.
        let ordered = was_ready && !fell_back;
        match reply {
            Ok(value) => {
                self.timeouts_in_a_row.store(0, Ordering::Relaxed);
                let outcome = classify_value(req.op, &value);
                if matches!(outcome, NodeOutcome::Protocol(_)) {
                    // The stream may be out of step with our requests: never trust it again.
                    self.reset(Some(generation));
                }
                Answer {
                    fence: fence_of(req.op, &value),
                    outcome,
                    generation: ordered.then_some(generation),
                }
            }
            Err(e) => {
                if breaks_connection(&e) {
                    self.reset(Some(generation));
                } else {
                    // An error reply is still a live, in-step connection.
                    self.timeouts_in_a_row.store(0, Ordering::Relaxed);
                }
                Answer::unsent(classify_error(&e))
            }
        }
    }

    /// Runs a read-only script call and hands back its raw reply (for [`crate::Inspection`]).
    /// Same timeout, NOSCRIPT fallback and connection hygiene as [`execute`](Self::execute).
    pub(crate) async fn query(
        self: &Arc<Self>,
        primary: &redis::Cmd,
        fallback: &redis::Cmd,
        timeout: Duration,
    ) -> Result<redis::Value, NodeOutcome> {
        let attempt = async {
            let (mut conn, generation, _) = self.connection().await?;
            match send(&mut conn, primary, || Some(fallback.clone())).await.0 {
                Ok(redis::Value::ServerError(e)) => Err(classify_server_reply(&e)),
                Ok(value) => Ok(value),
                Err(e) => {
                    if breaks_connection(&e) {
                        self.reset(Some(generation));
                    }
                    Err(classify_error(&e))
                }
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(Err(NodeOutcome::Timeout))
    }

    /// The connection, its generation, and whether it was already up (one lock of the slot on
    /// the hot path).
    async fn connection(self: &Arc<Self>) -> Result<(MultiplexedConnection, u64, bool), NodeOutcome> {
        let connecting = {
            let mut slot = lock(&self.slot);
            match &*slot {
                Slot::Ready { conn, generation } => return Ok((conn.clone(), *generation, true)),
                Slot::Connecting(fut) => fut.clone(),
                Slot::Idle {
                    retry_at: Some(at),
                    last_error: Some(e),
                    ..
                } if Instant::now() < *at => {
                    return Err(e.clone());
                }
                Slot::Idle { failures, .. } => {
                    let fut = Self::connect(Arc::downgrade(self), *failures).boxed().shared();
                    *slot = Slot::Connecting(fut.clone());
                    fut
                }
            }
        };
        connecting
            .await
            .map(|(conn, generation)| (conn, generation, false))
    }

    /// Makes a connection and stores the result in the slot. Holds only a weak reference, so an
    /// abandoned connect does not keep a dropped client alive.
    async fn connect(node: Weak<Self>, failures: u32) -> ConnectResult {
        let Some(this) = node.upgrade() else {
            return Err(NodeOutcome::Io("client dropped".into()));
        };
        let client = this.client.clone();
        let config = this.config.clone();
        let connect_timeout = this.connect_timeout;
        drop(this);
        let result = match client.get_multiplexed_async_connection_with_config(&config).await {
            Ok(mut conn) => handshake(&mut conn, connect_timeout).await.map(|()| conn),
            Err(e) => Err(classify_error(&e)),
        };
        let Some(this) = node.upgrade() else {
            return Err(NodeOutcome::Io("client dropped".into()));
        };
        let mut slot = lock(&this.slot);
        match result {
            Ok(conn) => {
                let generation = this.generations.fetch_add(1, Ordering::Relaxed) + 1;
                this.timeouts_in_a_row.store(0, Ordering::Relaxed);
                *slot = Slot::Ready {
                    conn: conn.clone(),
                    generation,
                };
                tracing::debug!(node = %this.id, "connected");
                Ok((conn, generation))
            }
            Err(outcome) => {
                let failures = failures.saturating_add(1);
                tracing::debug!(node = %this.id, error = %outcome, failures, "connect failed");
                *slot = Slot::Idle {
                    failures,
                    retry_at: Some(Instant::now() + backoff(failures)),
                    last_error: Some(outcome.clone()),
                };
                Err(outcome)
            }
        }
    }

    /// The redis-rs client, for the release subscriber's own connection.
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The generation of the current connection, if one is up.
    pub(crate) fn generation(&self) -> Option<u64> {
        match &*lock(&self.slot) {
            Slot::Ready { generation, .. } => Some(*generation),
            _ => None,
        }
    }

    /// Drops the current connection so that the next call makes a new one. With
    /// `Some(generation)`, only if the slot still holds that connection: a late error from an
    /// old connection must not tear down its replacement.
    fn reset(&self, generation: Option<u64>) {
        let mut slot = lock(&self.slot);
        if let Slot::Ready {
            generation: current, ..
        } = &*slot
        {
            if generation.is_none_or(|g| g == *current) {
                tracing::debug!(node = %self.id, "dropping connection");
                *slot = Slot::Idle {
                    failures: 0,
                    retry_at: None,
                    last_error: None,
                };
                self.timeouts_in_a_row.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Sends `primary`, and the script's `EVAL` form if the node answered `NOSCRIPT`. Returns the
/// reply and whether the fallback was sent.
async fn send(
    conn: &mut MultiplexedConnection,
    primary: &redis::Cmd,
    fallback: impl FnOnce() -> Option<redis::Cmd>,
) -> (redis::RedisResult<redis::Value>, bool) {
    let reply = conn.send_packed_command(primary).await;
    if is_noscript(&reply) {
        if let Some(fallback) = fallback() {
            return (conn.send_packed_command(&fallback).await, true);
        }
    }
    (reply, false)
}

/// The first exchange on a new connection: `PING`, which must be answered by exactly `+PONG`.
/// Replies are matched to requests by order; a peer that sends anything before its first reply
/// (a greeting, a stale reply) would shift every later reply onto the wrong request, and a
/// stray `+OK` could then read as a grant. Such a connection is refused here instead.
async fn handshake(conn: &mut MultiplexedConnection, timeout: Duration) -> Result<(), NodeOutcome> {
    match tokio::time::timeout(timeout, conn.send_packed_command(&redis::cmd("PING"))).await {
        Ok(Ok(redis::Value::SimpleString(s))) if s == "PONG" => Ok(()),
        Ok(Ok(redis::Value::ServerError(e))) => {
            Err(classify_value(Op::Release, &redis::Value::ServerError(e)))
        }
        Ok(Ok(other)) => Err(NodeOutcome::Protocol(
            format!(
                "connection handshake: PING answered {}",
                crate::reply::describe(&other)
            )
            .into(),
        )),
        Ok(Err(e)) => Err(classify_error(&e)),
        Err(_) => Err(NodeOutcome::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(10));
        assert_eq!(backoff(1), Duration::from_millis(10));
        assert_eq!(backoff(2), Duration::from_millis(20));
        assert_eq!(backoff(7), Duration::from_millis(500));
        assert_eq!(backoff(u32::MAX), Duration::from_millis(500));
    }
}
