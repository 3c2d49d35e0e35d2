//! The command line with members that are Redis Clusters (docs/scaling.md): `--nodes` keeps a
//! cluster's address list together, `run` holds the lock on them, and `status` names the shard
//! of each cluster member that holds the key.

mod support;

use quorumlock_testkit::{ClusterOptions, LocalCluster, Reply};
use support::{code, quorumlock, stderr};

#[test]
fn run_and_status_on_cluster_members_name_the_shard() {
    let clusters = LocalCluster::start_with(2, ClusterOptions::default().shards(3)).unwrap();
    let single = LocalCluster::start(1).unwrap();
    let nodes: Vec<String> = clusters.urls().into_iter().chain(single.urls()).collect();
    // `run` holds the lock while its command runs `status` on the same nodes.
    let out = quorumlock(&nodes)
        .args(["run", "--resource", "shards", "--ttl", "10s", "--"])
        .arg(env!("CARGO_BIN_EXE_quorumlock"))
        .args(["--json", "status", "shards"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes_json = status["nodes"].as_array().unwrap();
    assert_eq!(nodes_json.len(), 3);
    // `run` returns its lock at a majority; the third member's grant may still be on its way.
    let held = nodes_json.iter().filter(|n| n["state"] == "held").count();
    assert!(held >= 2, "{status}");
    for (i, node) in nodes_json.iter().enumerate().take(2) {
        let shard = node["shard"]
            .as_str()
            .unwrap_or_else(|| panic!("no shard: {node}"));
        let port: u16 = shard.rsplit(':').next().unwrap().parse().unwrap();
        // That shard served the lock's slot: the release left its tombstone there (a lock's keys
        // and its tombstone share a hash tag, docs/scaling.md), and the lock key is gone.
        let keys = |pattern: &str| match clusters.command(port, &["KEYS", pattern]) {
            Ok(Reply::Array(Some(keys))) => keys.len(),
            other => panic!("KEYS on {shard}: {other:?}"),
        };
        assert_eq!(keys("quorumlock:tomb:*"), 1, "member {i}, shard {shard}");
        assert_eq!(keys("quorumlock:lock:*"), 0, "member {i}, shard {shard}");
    }
    assert!(nodes_json[2]["shard"].is_null(), "a single server has no shard");
    // Released when the command ended.
    let out = quorumlock(&nodes).args(["status", "shards"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("free"), "{text}");
    assert!(text.contains("shard 127.0.0.1:"), "{text}");
}
