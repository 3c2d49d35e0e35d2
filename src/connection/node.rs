//! One lock node (a member of the quorum): a lazily made, shared, self-healing connection. A
//! member is one redis-server (a multiplexed connection) or a Redis Cluster (redis-rs' cluster
//! connection, which routes each request to the shard serving its keys and follows `MOVED` and
//! `ASK`); everything above this module sees one member either way.
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

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};

use crate::connection::identity::{cluster_handshake, handshake, Identities};
use crate::connection::link::{send, Conn, Link};
use crate::connection::reachability::{Health, Reachability};
use crate::connection::url::Endpoint;
use crate::errors::error::{NodeId, NodeOutcome};
use crate::wire::reply::{
    breaks_connection, classify_error, classify_server_reply, classify_value, fence_of, Request,
};

/// One node's answer.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) outcome: NodeOutcome,
    /// The fence, for a fenced acquire that was granted.
    pub(crate) fence: Option<u64>,
    /// Whether the request was handed to a connection. One that never was (no connection could
    /// be had: refused, backing off, timed out while connecting) cannot have changed anything
    /// on the node, so an acquisition's clean-up skips that node.
    pub(crate) sent: bool,
}

impl Answer {
    /// An answer that carries no reply: a timeout, a broken or refused connection.
    fn failure(outcome: NodeOutcome, sent: bool) -> Self {
        Self {
            outcome,
            fence: None,
            sent,
        }
    }
}

/// After this many timeouts in a row the connection is dropped and re-made: a blackholed peer
/// would otherwise collect one pending reply slot per request forever (P14).
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

type ConnectResult = Result<Conn, NodeOutcome>;

enum Slot {
    Idle {
        failures: u32,
        retry_at: Option<Instant>,
        last_error: Option<NodeOutcome>,
    },
    Connecting(Shared<BoxFuture<'static, ConnectResult>>),
    Ready(Conn),
}

pub(crate) struct Node {
    pub(crate) id: NodeId,
    endpoint: Endpoint,
    config: redis::AsyncConnectionConfig,
    connect_timeout: Duration,
    slot: Arc<Mutex<Slot>>,
    generations: AtomicU64,
    timeouts_in_a_row: AtomicU32,
    /// The servers behind every node of the set, to refuse one server counted twice.
    identities: Arc<Identities>,
    /// What the last connection attempt said: logged only when it changes.
    reachability: Reachability,
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
    pub(crate) fn new(
        id: NodeId,
        endpoint: Endpoint,
        connect_timeout: Duration,
        identities: Arc<Identities>,
    ) -> Self {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            // We bound every call ourselves (node_timeout); redis-rs' own 500 ms default would
            // otherwise cut calls short when node_timeout is larger.
            .set_response_timeout(None);
        Self {
            id,
            endpoint,
            config,
            connect_timeout,
            slot: Arc::new(Mutex::new(Slot::Idle {
                failures: 0,
                retry_at: None,
                last_error: None,
            })),
            generations: AtomicU64::new(0),
            timeouts_in_a_row: AtomicU32::new(0),
            identities,
            reachability: Reachability::default(),
        }
    }

    /// Runs `req` on this node once, bounded by `timeout` (connecting included), and reads the
    /// reply. Never retries: re-sending is the release obligations' business (`nodes.rs`), and a
    /// re-sent acquire would be refused by our own unacknowledged key.
    ///
    /// Cancel safety: dropping the future after the command was handed to the connection does
    /// not un-send it; callers that drop it must still release (they do: see `fanout`).
    pub(crate) async fn execute(self: &Arc<Self>, req: &Request, timeout: Duration) -> Answer {
        // Set once the request is handed to a connection; read after a timeout, which drops the
        // call wherever it was.
        let sent = AtomicBool::new(false);
        let answer = match tokio::time::timeout(timeout, self.execute_unbounded(req, &sent)).await {
            Ok(answer) => answer,
            Err(_) => {
                let n = self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= TIMEOUTS_BEFORE_RECONNECT {
                    self.reset(None);
                }
                Answer::failure(NodeOutcome::Timeout, sent.load(Ordering::Relaxed))
            }
        };
        crate::wire::metrics::node_error(&self.id, Some(req.op), &answer.outcome);
        answer
    }

    async fn execute_unbounded(self: &Arc<Self>, req: &Request, sent: &AtomicBool) -> Answer {
        let Conn {
            mut conn,
            generation,
            closed,
        } = match self.connection().await {
            Ok(c) => c,
            Err(outcome) => return Answer::failure(outcome, false),
        };
        sent.store(true, Ordering::Relaxed);
        let reply = tokio::select! {
            biased;
            () = closed.wait() => {
                return Answer::failure(NodeOutcome::Io("connection closed by the client after a fault".into()), true);
            }
            reply = send(&mut conn, req.primary(), || Some(req.fallback())) => reply,
        };
        match reply {
            Ok(value) => {
                self.timeouts_in_a_row.store(0, Ordering::Relaxed);
                let outcome = classify_value(req.op, req.token.as_str(), &value);
                if matches!(outcome, NodeOutcome::Protocol(_)) {
                    // The stream may be out of step with our requests: never trust it again.
                    self.reset(Some(generation));
                }
                Answer {
                    fence: fence_of(req.op, req.token.as_str(), &value),
                    outcome,
                    sent: true,
                }
            }
            Err(e) => {
                if breaks_connection(&e) {
                    self.reset(Some(generation));
                } else {
                    // An error reply is still a live, in-step connection.
                    self.timeouts_in_a_row.store(0, Ordering::Relaxed);
                }
                Answer::failure(classify_error(&e), true)
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
            let Conn {
                mut conn,
                generation,
                closed,
            } = self.connection().await?;
            let reply = tokio::select! {
                biased;
                () = closed.wait() => return Err(NodeOutcome::Io("connection closed by the client after a fault".into())),
                reply = send(&mut conn, primary, || Some(fallback.clone())) => reply,
            };
            match reply {
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
        let reply = tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(Err(NodeOutcome::Timeout));
        if let Err(outcome) = &reply {
            crate::wire::metrics::node_error(&self.id, None, outcome);
        }
        reply
    }

    /// The connection (one lock of the slot on the hot path).
    async fn connection(self: &Arc<Self>) -> Result<Conn, NodeOutcome> {
        let connecting = {
            let mut slot = lock(&self.slot);
            match &*slot {
                Slot::Ready(conn) => return Ok(conn.clone()),
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
        connecting.await
    }

    /// Makes a connection and stores the result in the slot. Holds only a weak reference, so an
    /// abandoned connect does not keep a dropped client alive.
    async fn connect(node: Weak<Self>, failures: u32) -> ConnectResult {
        let Some(this) = node.upgrade() else {
            return Err(NodeOutcome::Io("client dropped".into()));
        };
        let endpoint = match &this.endpoint {
            Endpoint::Single(c) => Ok(c.clone()),
            Endpoint::Cluster { client, .. } => Err(client.clone()),
        };
        let config = this.config.clone();
        let connect_timeout = this.connect_timeout;
        let identities = this.identities.clone();
        let index = this.id.index();
        drop(this);
        // Rule (e): one server counts once. Checked on every new connection, because a restarted
        // server has a new run_id and a DNS name may move.
        let result = crate::connection::link::without_driver_panic(async move {
            match endpoint {
                Ok(client) => match client.get_multiplexed_async_connection_with_config(&config).await {
                    Ok(mut conn) => match handshake(&mut conn, connect_timeout).await {
                        Ok(ids) => identities.register(index, ids).map(|()| Link::Single(conn)),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(classify_error(&e)),
                },
                Err(cluster) => {
                    match tokio::time::timeout(connect_timeout, cluster.get_async_connection()).await {
                        Ok(Ok(mut conn)) => match cluster_handshake(&mut conn, connect_timeout).await {
                            Ok(ids) => identities.register(index, ids).map(|()| Link::Cluster(conn)),
                            Err(e) => Err(e),
                        },
                        Ok(Err(e)) => Err(classify_error(&e)),
                        Err(_) => Err(NodeOutcome::Timeout),
                    }
                }
            }
        })
        .await;
        let Some(this) = node.upgrade() else {
            return Err(NodeOutcome::Io("client dropped".into()));
        };
        let mut slot = lock(&this.slot);
        match result {
            Ok(conn) => {
                let generation = this.generations.fetch_add(1, Ordering::Relaxed) + 1;
                this.timeouts_in_a_row.store(0, Ordering::Relaxed);
                let conn = Conn {
                    conn,
                    generation,
                    closed: Arc::default(),
                };
                *slot = Slot::Ready(conn.clone());
                drop(slot);
                tracing::debug!(node = %this.id, "connected");
                this.reachability.changed_to(&this.id, Health::Up, None);
                Ok(conn)
            }
            Err(outcome) => {
                let failures = failures.saturating_add(1);
                tracing::debug!(node = %this.id, error = %outcome, failures, "connect failed");
                *slot = Slot::Idle {
                    failures,
                    retry_at: Some(Instant::now() + crate::pure::backoff::reconnect_backoff(failures)),
                    last_error: Some(outcome.clone()),
                };
                drop(slot);
                let health = match outcome {
                    NodeOutcome::Denied(_) | NodeOutcome::Protocol(_) | NodeOutcome::SameServer(_) => {
                        Health::Misconfigured
                    }
                    _ => Health::Down,
                };
                this.reachability.changed_to(&this.id, health, Some(&outcome));
                Err(outcome)
            }
        }
    }

    /// A plain redis-rs client for the release subscriber's own connection (a cluster
    /// member's first address: a cluster broadcasts `PUBLISH` to every shard).
    pub(crate) fn client(&self) -> &redis::Client {
        self.endpoint.plain()
    }

    /// Whether this member is a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.endpoint, Endpoint::Cluster { .. })
    }

    /// Closes the current connection so that the next call makes a new one: requests still
    /// waiting on it fail at once (see [`Conn`]). With `Some(generation)`, only if the slot still
    /// holds that connection: a late error from an old connection must not tear down its
    /// replacement.
    pub(crate) fn reset(&self, generation: Option<u64>) {
        let mut slot = lock(&self.slot);
        if let Slot::Ready(current) = &*slot {
            if generation.is_none_or(|g| g == current.generation) {
                tracing::debug!(node = %self.id, "closing connection");
                current.closed.close();
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
