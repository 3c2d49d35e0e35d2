//! `quorumlock status R`: the resource on every node, and the quorum's verdict.

use quorumlock::{Error, Inspection, NodeState, Redlock, RedlockBuilder};
use serde_json::json;

use crate::args::{Global, StatusArgs};
use crate::exit;

/// The client both commands use: nodes, node timeout and key prefix from the global options,
/// the rest from `configure`.
pub(crate) fn client(
    global: &Global,
    configure: impl FnOnce(RedlockBuilder) -> RedlockBuilder,
) -> Result<Redlock, Error> {
    let members = global.members();
    if (1..3).contains(&members.len()) {
        // The library says this through `tracing`, which the CLI does not print.
        eprintln!(
            "quorumlock: warning: {} lock node{}: the loss of any one stops every lock (no fault \
             tolerance); use 3 or 5 independent servers",
            members.len(),
            if members.len() == 1 { "" } else { "s" }
        );
    }
    let mut b = Redlock::builder()
        .nodes(members)
        .accept_no_fault_tolerance(true)
        .key_prefix(&global.key_prefix);
    if let Some(t) = global.node_timeout {
        b = b.node_timeout(t);
    }
    configure(b).build()
}

pub(crate) async fn main(global: &Global, args: &StatusArgs) -> i32 {
    let redlock = match client(global, |b| b) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quorumlock: {e}");
            return exit::for_error(&e);
        }
    };
    let view = match redlock.inspect(&args.resource).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("quorumlock: {e}");
            return exit::for_error(&e);
        }
    };
    redlock.shutdown().await;
    if global.json {
        println!("{}", to_json(&view));
    } else {
        print!("{}", to_text(&view));
    }
    if view.answered() < view.quorum() {
        exit::UNREACHABLE
    } else {
        0
    }
}

/// The verdict in words.
fn verdict(view: &Inspection) -> String {
    let n = view.nodes().len();
    if view.answered() < view.quorum() {
        return format!(
            "unknown: only {} of {n} nodes answered, {} needed",
            view.answered(),
            view.quorum()
        );
    }
    match view.holder() {
        Some((holder, k)) => format!("held by {holder} on {k} of {n} nodes (quorum {})", view.quorum()),
        None if view
            .nodes()
            .iter()
            .all(|v| !matches!(v.state, NodeState::Held { .. })) =>
        {
            "free on every node that answered".to_owned()
        }
        None => format!(
            "not held by a majority (quorum {}): leftovers of a failed or expiring acquisition",
            view.quorum()
        ),
    }
}

fn to_text(view: &Inspection) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{}: {}\n", view.resource(), verdict(view));
    let width = view
        .nodes()
        .iter()
        .map(|v| v.node.addr().len())
        .max()
        .unwrap_or(0);
    for v in view.nodes() {
        let state = match &v.state {
            NodeState::Free => "free".to_owned(),
            NodeState::Held { holder, ttl } => match ttl {
                Some(t) => format!("held by {holder}, {} ms left", t.as_millis()),
                None => format!("held by {holder}, NO TTL (not written by quorumlock)"),
            },
            NodeState::Failed(o) => format!("error: {o}"),
            other => format!("{other:?}"),
        };
        let fence = v.fence.map(|f| format!("  fence {f}")).unwrap_or_default();
        let shard = v
            .shard
            .as_ref()
            .map(|s| format!("  shard {s}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {:width$}  {state}{fence}{shard}", v.node.addr());
    }
    out
}

fn to_json(view: &Inspection) -> serde_json::Value {
    let nodes: Vec<_> = view
        .nodes()
        .iter()
        .map(|v| {
            let (state, holder, ttl_ms, error) = match &v.state {
                NodeState::Free => ("free", None, None, None),
                NodeState::Held { holder, ttl } => (
                    "held",
                    Some(holder.clone()),
                    ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                    None,
                ),
                NodeState::Failed(o) => ("error", None, None, Some(o.to_string())),
                _ => ("unknown", None, None, None),
            };
            json!({"node": v.node.addr(), "state": state, "holder": holder, "ttl_ms": ttl_ms,
                   "fence": v.fence, "shard": v.shard, "error": error})
        })
        .collect();
    let holder = view.holder();
    json!({
        "resource": view.resource(),
        "quorum": view.quorum(),
        "answered": view.answered(),
        "held": holder.is_some(),
        "holder": holder.map(|(h, _)| h),
        "holder_nodes": holder.map(|(_, k)| k),
        "max_fence": view.max_fence(),
        "verdict": verdict(view),
        "nodes": nodes,
    })
}
