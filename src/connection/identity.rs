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

use crate::errors::error::NodeOutcome;
use crate::wire::reply::{classify_error, classify_server_reply, describe, one_line};

/// The server identities last seen behind each node, and the first conflict found. A single
/// server is its `run_id` (and, if it runs in cluster mode, its cluster node id); a cluster
/// member is the node id of every node of its cluster, so one cluster listed twice, or one of
/// its shards also listed as a member of its own, shares an identity with another member.
#[derive(Debug)]
pub(crate) struct Identities {
    addrs: Box<[Box<str>]>,
    ids: Mutex<Vec<Vec<String>>>,
    conflict: OnceLock<Arc<str>>,
}

impl Identities {
    /// For nodes with these (redacted) addresses, in node order.
    pub(crate) fn new(addrs: Vec<String>) -> Self {
        let n = addrs.len();
        Self {
            addrs: addrs.into_iter().map(Into::into).collect(),
            ids: Mutex::new(vec![Vec::new(); n]),
            conflict: OnceLock::new(),
        }
    }

    /// Records that node `index` now reaches the servers `found`. Refuses (and remembers the
    /// conflict) if another node reaches one of them.
    pub(crate) fn register(&self, index: usize, found: Vec<String>) -> Result<(), NodeOutcome> {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let other = ids.iter().enumerate().find_map(|(j, theirs)| {
            let shared = theirs.iter().find(|id| found.contains(id))?;
            (j != index).then(|| (j, shared.clone()))
        });
        if let Some((other, run_id)) = other {
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
        ids[index] = found;
        Ok(())
    }

    /// The server identities node `index` reached when it last connected (a `run_id`, or a
    /// cluster member's node ids); empty before it connected.
    pub(crate) fn of(&self, index: usize) -> Vec<String> {
        let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.get(index).cloned().unwrap_or_default()
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
) -> Result<Vec<String>, NodeOutcome> {
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
        let info = match conn.send_packed_command(redis::cmd("INFO").arg("server")).await {
            Ok(redis::Value::ServerError(e)) => {
                return Err(identity_denied(classify_server_reply(&e), "INFO server", "+info"))
            }
            Ok(value) => value,
            Err(e) => return Err(identity_denied(classify_error(&e), "INFO server", "+info")),
        };
        let run_id = info_field(&info, "run_id").ok_or_else(|| {
            NodeOutcome::Protocol(
                format!(
                    "connection handshake: INFO server has no run_id: {}",
                    describe(&info)
                )
                .into(),
            )
        })?;
        let mut ids = vec![run_id];
        // A shard of a cluster listed as a member of its own: its cluster node id is how a
        // cluster member knows it.
        if info_field(&info, "redis_mode").as_deref() == Some("cluster") {
            match conn.send_packed_command(redis::cmd("CLUSTER").arg("MYID")).await {
                Ok(redis::Value::BulkString(id)) => ids.push(String::from_utf8_lossy(&id).into_owned()),
                Ok(redis::Value::ServerError(e)) => {
                    return Err(identity_denied(
                        classify_server_reply(&e),
                        "CLUSTER MYID",
                        "+cluster|myid",
                    ))
                }
                Ok(other) => {
                    return Err(NodeOutcome::Protocol(
                        format!("connection handshake: CLUSTER MYID answered {}", describe(&other)).into(),
                    ))
                }
                Err(e) => {
                    return Err(identity_denied(
                        classify_error(&e),
                        "CLUSTER MYID",
                        "+cluster|myid",
                    ))
                }
            }
        }
        Ok(ids)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(NodeOutcome::Timeout))
}

/// Says why `INFO` is needed when the node refuses it.
fn identity_denied(outcome: NodeOutcome, command: &str, grant: &str) -> NodeOutcome {
    match outcome {
        NodeOutcome::Denied(e) => NodeOutcome::Denied(
            format!("{e} ({command} is needed to check that no server is listed twice: grant {grant})")
                .into(),
        ),
        other => other,
    }
}

/// One field (`run_id`, `redis_mode`) of an `INFO server` reply.
fn info_field(value: &redis::Value, field: &str) -> Option<String> {
    let text = match value {
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?,
        redis::Value::VerbatimString { text, .. } => text.as_str(),
        _ => return None,
    };
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// The first exchanges on a new connection to a cluster member: `PING`, then `CLUSTER NODES`
/// for the node id of every node of the cluster (its identity, rule (e)). redis-rs made the
/// shards' own connections; a stray reply on one of them cannot read as a grant either, since
/// a grant names its own token.
pub(crate) async fn cluster_handshake(
    conn: &mut redis::cluster_async::ClusterConnection,
    timeout: Duration,
) -> Result<Vec<String>, NodeOutcome> {
    use redis::aio::ConnectionLike;
    let exchange = async {
        match conn.req_packed_command(&redis::cmd("PING")).await {
            Ok(redis::Value::SimpleString(s)) if s == "PONG" => {}
            Ok(redis::Value::ServerError(e)) => return Err(classify_server_reply(&e)),
            Ok(other) => {
                return Err(NodeOutcome::Protocol(
                    format!("cluster handshake: PING answered {}", describe(&other)).into(),
                ))
            }
            Err(e) => return Err(classify_error(&e)),
        }
        match conn.req_packed_command(redis::cmd("CLUSTER").arg("NODES")).await {
            // The cluster connection hands server errors back as values.
            Ok(redis::Value::ServerError(e)) => Err(identity_denied(
                classify_server_reply(&e),
                "CLUSTER NODES",
                "+cluster|nodes",
            )),
            Ok(value) => cluster_node_ids(&value).ok_or_else(|| {
                NodeOutcome::Protocol(
                    format!("cluster handshake: CLUSTER NODES answered {}", describe(&value)).into(),
                )
            }),
            Err(e) => Err(identity_denied(
                classify_error(&e),
                "CLUSTER NODES",
                "+cluster|nodes",
            )),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(NodeOutcome::Timeout))
}

/// The node ids (first field of each line) of a `CLUSTER NODES` reply.
fn cluster_node_ids(value: &redis::Value) -> Option<Vec<String>> {
    let text = match value {
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?,
        redis::Value::VerbatimString { text, .. } => text.as_str(),
        _ => return None,
    };
    let ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|id| id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .collect();
    (!ids.is_empty()).then_some(ids)
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
        assert!(ids.register(0, vec!["x".into()]).is_ok());
        assert!(ids.register(1, vec!["y".into()]).is_ok());
        // A reconnect of the same node to the same server is fine.
        assert!(ids.register(0, vec!["x".into()]).is_ok());
        match ids.register(2, vec!["x".into()]) {
            Err(NodeOutcome::SameServer(m)) => {
                assert!(m.contains("nodes 0 (redis://a:1) and 2 (redis://c:1)"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(ids.conflict().is_some());
        // A restarted server has a new run_id.
        assert!(ids.register(1, vec!["y2".into()]).is_ok());
        // A cluster member is every node of its cluster: one of them behind another member
        // is the same server.
        let ids = Identities::new(vec!["redis+cluster://a:1".into(), "redis://b:1".into()]);
        assert!(ids
            .register(0, vec!["n1".into(), "n2".into(), "n3".into()])
            .is_ok());
        assert!(matches!(
            ids.register(1, vec!["r9".into(), "n2".into()]),
            Err(NodeOutcome::SameServer(_))
        ));
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
        assert_eq!(info_field(&info, "run_id").as_deref(), Some("5e1a0c"));
        assert_eq!(info_field(&info, "run").as_deref(), None, "a whole field name");
        let empty = redis::Value::BulkString(b"# Server\r\n".to_vec());
        assert_eq!(info_field(&empty, "run_id"), None);
        assert_eq!(info_field(&redis::Value::Okay, "run_id"), None);
    }

    #[test]
    fn cluster_node_ids_are_read_from_cluster_nodes() {
        let id = |c: char| c.to_string().repeat(40);
        let text = format!(
            "{} 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
             {} 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n",
            id('a'),
            id('b')
        );
        let ids = cluster_node_ids(&redis::Value::BulkString(text.into_bytes()));
        assert_eq!(ids, Some(vec![id('a'), id('b')]));
        assert_eq!(
            cluster_node_ids(&redis::Value::BulkString(b"garbage".to_vec())),
            None
        );
    }
}
