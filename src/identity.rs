//! One server counts once (DESIGN rule (e)).
//!
//! Two node URLs can reach one redis-server: `127.0.0.1:P` and `localhost:P`, an IPv4-mapped
//! IPv6 address, a second DNS name, or two databases (`/0`, `/1`) of one server. A quorum made
//! of such a pair is one server, and one restart of it without persistence gives the lock to two
//! holders. Host and port are compared when the client is built (`same_endpoint`); everything
//! else when connecting, by the server's `run_id` (`INFO server`), which every redis-server draws
//! at random when it starts.
//!
//! A conflict is a configuration error, and it is sticky: once two nodes were seen to be one
//! server, the client refuses every acquisition, because which of the two a later connection
//! reaches first is an accident, and counting either once would still leave a quorum sized for
//! more servers than there are.
//!
//! The `run_id` is read by [`handshake`], the first exchanges on every new connection, which
//! also refuses a peer whose replies are out of step from the start.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::error::NodeOutcome;
use crate::reply::{classify_error, classify_server_reply, describe, one_line};

/// The `run_id` last seen behind each node, and the first conflict found.
#[derive(Debug)]
pub(crate) struct Identities {
    addrs: Box<[Box<str>]>,
    run_ids: Mutex<Vec<Option<Box<str>>>>,
    conflict: OnceLock<Arc<str>>,
}

impl Identities {
    /// For nodes with these (redacted) addresses, in node order.
    pub(crate) fn new(addrs: Vec<String>) -> Self {
        let n = addrs.len();
        Self {
            addrs: addrs.into_iter().map(Into::into).collect(),
            run_ids: Mutex::new(vec![None; n]),
            conflict: OnceLock::new(),
        }
    }

    /// Records that node `index` now reaches the server `run_id`. Refuses (and remembers the
    /// conflict) if another node reaches the same server.
    pub(crate) fn register(&self, index: usize, run_id: &str) -> Result<(), NodeOutcome> {
        let mut ids = self.run_ids.lock().unwrap_or_else(|p| p.into_inner());
        let other = ids
            .iter()
            .enumerate()
            .find(|(j, id)| *j != index && id.as_deref() == Some(run_id))
            .map(|(j, _)| j);
        if let Some(other) = other {
            let (first, second) = (other.min(index), other.max(index));
            let message: Arc<str> = format!(
                "nodes {first} ({}) and {second} ({}) are the same redis-server (run_id {run_id}) \
                 listed twice: list each server once, or a quorum could be one server",
                self.addrs[first], self.addrs[second]
            )
            .into();
            let message = self.conflict.get_or_init(|| message).clone();
            tracing::error!(%message, "node list names one server twice");
            return Err(NodeOutcome::SameServer(message));
        }
        ids[index] = Some(run_id.into());
        Ok(())
    }

    /// The first conflict found, if any.
    pub(crate) fn conflict(&self) -> Option<&Arc<str>> {
        self.conflict.get()
    }
}

/// Whether two parsed addresses name the same endpoint (host, case-insensitive, and port, or
/// the same socket path), whatever their databases.
pub(crate) fn same_endpoint(a: &redis::ConnectionAddr, b: &redis::ConnectionAddr) -> bool {
    use redis::ConnectionAddr as A;
    match (a, b) {
        (A::Tcp(h1, p1), A::Tcp(h2, p2))
        | (
            A::Tcp(h1, p1),
            A::TcpTls {
                host: h2, port: p2, ..
            },
        )
        | (
            A::TcpTls {
                host: h1, port: p1, ..
            },
            A::Tcp(h2, p2),
        )
        | (
            A::TcpTls {
                host: h1, port: p1, ..
            },
            A::TcpTls {
                host: h2, port: p2, ..
            },
        ) => p1 == p2 && normal_host(h1) == normal_host(h2),
        (A::Unix(p1), A::Unix(p2)) => p1 == p2,
        _ => false,
    }
}

/// A host name for comparison: lower case, without IPv6 brackets, an IPv4-mapped IPv6 address
/// as its IPv4 form, and the loopback names as one.
fn normal_host(host: &str) -> String {
    let h = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let h = match h.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => v6.to_ipv4_mapped().map_or(h, |v4| v4.to_string()),
        Err(_) => h,
    };
    match h.as_str() {
        "localhost" | "::1" => "127.0.0.1".to_owned(),
        _ => h,
    }
}

/// The first exchanges on a new connection: `PING`, which must be answered by exactly `+PONG`,
/// then `INFO server` for the server's `run_id` (its identity, rule (e)).
/// Replies are matched to requests by order; a peer that sends anything before its first reply
/// (a greeting, a stale reply) would shift every later reply onto the wrong request, and a
/// stray `:1` could then read as a grant. Such a connection is refused here instead.
pub(crate) async fn handshake(
    conn: &mut MultiplexedConnection,
    timeout: Duration,
) -> Result<String, NodeOutcome> {
    let exchange = async {
        match conn.send_packed_command(&redis::cmd("PING")).await {
            Ok(redis::Value::SimpleString(s)) if s == "PONG" => {}
            Ok(redis::Value::ServerError(e)) => return Err(classify_server_reply(&e)),
            Ok(other) => {
                return Err(NodeOutcome::Protocol(
                    format!("connection handshake: PING answered {}", describe(&other)).into(),
                ))
            }
            Err(e) => {
                return Err(match classify_error(&e) {
                    // A peer whose first bytes are not RESP at all (an HTTP server, SSH, a
                    // database on the wrong port): say so, not the parser's multi-line noise.
                    NodeOutcome::Protocol(text) => NodeOutcome::Protocol(
                        format!(
                            "not a Redis server: PING was answered with something that is not RESP ({})",
                            one_line(&text)
                        )
                        .into(),
                    ),
                    other => other,
                });
            }
        }
        match conn.send_packed_command(redis::cmd("INFO").arg("server")).await {
            Ok(redis::Value::ServerError(e)) => Err(identity_denied(classify_server_reply(&e))),
            Ok(value) => run_id(&value).ok_or_else(|| {
                NodeOutcome::Protocol(
                    format!(
                        "connection handshake: INFO server has no run_id: {}",
                        describe(&value)
                    )
                    .into(),
                )
            }),
            Err(e) => Err(identity_denied(classify_error(&e))),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(NodeOutcome::Timeout))
}

/// Says why `INFO` is needed when the node refuses it.
fn identity_denied(outcome: NodeOutcome) -> NodeOutcome {
    match outcome {
        NodeOutcome::Denied(e) => NodeOutcome::Denied(
            format!("{e} (INFO server is needed to check that no server is listed twice: grant +info)")
                .into(),
        ),
        other => other,
    }
}

/// The `run_id` field of an `INFO server` reply.
fn run_id(value: &redis::Value) -> Option<String> {
    let text = match value {
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?,
        redis::Value::VerbatimString { text, .. } => text.as_str(),
        _ => return None,
    };
    text.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ConnectionAddr as A;

    #[test]
    fn one_server_twice_is_refused_and_remembered() {
        let ids = Identities::new(vec![
            "redis://a:1".into(),
            "redis://b:1".into(),
            "redis://c:1".into(),
        ]);
        assert!(ids.register(0, "x").is_ok());
        assert!(ids.register(1, "y").is_ok());
        // A reconnect of the same node to the same server is fine.
        assert!(ids.register(0, "x").is_ok());
        match ids.register(2, "x") {
            Err(NodeOutcome::SameServer(m)) => {
                assert!(m.contains("nodes 0 (redis://a:1) and 2 (redis://c:1)"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(ids.conflict().is_some());
        // A restarted server has a new run_id.
        assert!(ids.register(1, "y2").is_ok());
    }

    #[test]
    fn endpoints_compare_by_normal_host_and_port() {
        let tcp = |h: &str, p| A::Tcp(h.into(), p);
        assert!(same_endpoint(&tcp("127.0.0.1", 7), &tcp("localhost", 7)));
        assert!(same_endpoint(&tcp("LOCALHOST", 7), &tcp("localhost", 7)));
        assert!(same_endpoint(&tcp("::ffff:127.0.0.1", 7), &tcp("127.0.0.1", 7)));
        assert!(same_endpoint(&tcp("[::ffff:10.0.0.1]", 7), &tcp("10.0.0.1", 7)));
        assert!(!same_endpoint(&tcp("127.0.0.1", 7), &tcp("127.0.0.1", 8)));
        assert!(!same_endpoint(&tcp("10.0.0.1", 7), &tcp("10.0.0.2", 7)));
    }

    #[test]
    fn run_id_is_read_from_info() {
        let info = redis::Value::BulkString(
            b"# Server\r\nredis_version:7.0.15\r\nrun_id:5e1a0c\r\ntcp_port:7000\r\n".to_vec(),
        );
        assert_eq!(run_id(&info).as_deref(), Some("5e1a0c"));
        assert_eq!(run_id(&redis::Value::BulkString(b"# Server\r\n".to_vec())), None);
        assert_eq!(run_id(&redis::Value::Okay), None);
    }
}
