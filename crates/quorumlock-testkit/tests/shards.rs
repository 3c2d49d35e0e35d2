//! Members that are Redis Clusters: formation, per-shard kill and restart, failover to a
//! replica, and slot moves with `-ASK` half-way. Against real `redis-server` processes; writes
//! go through `redis-cli -c`, which follows redirections on its own, and reads go straight to
//! one shard so nothing hides where a key lives.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use quorumlock_testkit::{key_slot, ClusterOptions, LocalCluster, Persistence, Reply, ServerTls};

fn text(reply: Reply) -> String {
    reply.text().unwrap_or_else(|| format!("{reply:?}"))
}

/// `redis-cli -c -p port args...`: a cluster-aware client that follows `-MOVED`.
fn redis_cli_c(port: u16, password: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-c", "-p", &port.to_string()]).args(args);
    if let Some(pw) = password {
        cmd.env("REDISCLI_AUTH", pw);
    }
    let out = cmd.output().expect("run redis-cli");
    assert!(
        out.status.success(),
        "redis-cli: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One key per shard of member `i`: `prefix0`, `prefix1`, ... until every shard has one.
fn key_per_shard(cluster: &LocalCluster, i: usize, prefix: &str) -> BTreeMap<usize, String> {
    let mut keys = BTreeMap::new();
    for n in 0.. {
        let key = format!("{prefix}{n}");
        let shard = cluster.primary_of(i, key_slot(key.as_bytes())).unwrap();
        keys.entry(shard).or_insert(key);
        if keys.len() == cluster.shards() {
            return keys;
        }
    }
    unreachable!()
}

fn cluster_state(cluster: &LocalCluster, port: u16) -> String {
    let info = text(cluster.command(port, &["CLUSTER", "INFO"]).unwrap());
    info.lines().next().unwrap_or_default().trim().to_owned()
}

#[test]
fn two_members_of_three_shards_serve_every_slot_and_spread_keys() {
    let cluster = LocalCluster::start_with(2, ClusterOptions::default().shards(3)).unwrap();
    assert_eq!(cluster.shards(), 3);
    for i in 0..2 {
        let ports: Vec<String> = (0..3)
            .map(|s| format!("127.0.0.1:{}", cluster.shard_port(i, s)))
            .collect();
        assert_eq!(cluster.url(i), format!("redis+cluster://{}", ports.join(",")));
        let Reply::Array(Some(ranges)) = cluster
            .command(cluster.shard_port(i, 1), &["CLUSTER", "SLOTS"])
            .unwrap()
        else {
            panic!("CLUSTER SLOTS")
        };
        let served: i64 = ranges
            .iter()
            .map(|r| match r {
                Reply::Array(Some(r)) => match (&r[0], &r[1]) {
                    (Reply::Int(a), Reply::Int(b)) => b - a + 1,
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(served, 16384);
        for s in 0..3 {
            assert_eq!(
                cluster_state(&cluster, cluster.shard_port(i, s)),
                "cluster_state:ok"
            );
        }

        let keys = key_per_shard(&cluster, i, "spread:");
        for (&shard, key) in &keys {
            // Sent to shard 0 whatever the key: redis-cli follows the MOVED.
            assert_eq!(
                redis_cli_c(cluster.shard_port(i, 0), None, &["SET", key, "v"]),
                "OK"
            );
            for s in 0..3 {
                let got = cluster
                    .command(cluster.shard_port(i, s), &["GET", key.as_str()])
                    .unwrap();
                if s == shard {
                    assert_eq!(got, Reply::Bulk(Some(b"v".to_vec())), "{key} on shard {s}");
                } else {
                    let moved = format!(
                        "MOVED {} 127.0.0.1:{}",
                        key_slot(key.as_bytes()),
                        cluster.shard_port(i, shard)
                    );
                    assert_eq!(got, Reply::Error(moved), "{key} on shard {s}");
                }
            }
        }
    }
    // The two members are separate clusters.
    assert_eq!(
        redis_cli_c(cluster.shard_port(0, 0), None, &["SET", "only-in-0", "v"]),
        "OK"
    );
    assert_eq!(
        redis_cli_c(cluster.shard_port(0, 1), None, &["GET", "only-in-0"]),
        "v"
    );
    assert_eq!(
        redis_cli_c(cluster.shard_port(1, 1), None, &["GET", "only-in-0"]),
        ""
    );
}

#[test]
fn key_slot_matches_cluster_keyslot() {
    let cluster = LocalCluster::start_with(1, ClusterOptions::default().shards(3)).unwrap();
    let port = cluster.shard_port(0, 0);
    let mut keys: Vec<String> = (0..200).map(|n| format!("key:{n}")).collect();
    keys.extend(
        [
            "{user1000}.following",
            "foo{}{bar}",
            "foo{{bar}}zap",
            "foo{bar}{zap}",
            "{}",
            "",
            "{a",
        ]
        .map(String::from),
    );
    for key in keys {
        let expected = cluster
            .command(port, &["CLUSTER", "KEYSLOT", key.as_str()])
            .unwrap();
        assert_eq!(Reply::Int(key_slot(key.as_bytes()).into()), expected, "{key:?}");
    }
}

#[test]
fn a_killed_shard_restarts_and_the_cluster_is_ok_again() {
    let opts = ClusterOptions::default()
        .shards(3)
        .persistence(Persistence::AofAlways)
        .password("s3cret");
    let mut cluster = LocalCluster::start_with(1, opts).unwrap();
    assert_eq!(
        cluster.url(0),
        format!(
            "redis+cluster://:s3cret@127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
            cluster.shard_port(0, 0),
            cluster.shard_port(0, 1),
            cluster.shard_port(0, 2)
        )
    );
    let key = key_per_shard(&cluster, 0, "k:")[&1].clone();
    assert_eq!(
        redis_cli_c(cluster.shard_port(0, 0), Some("s3cret"), &["SET", &key, "kept"]),
        "OK"
    );

    let old_pid = cluster.shard_pid(0, 1).unwrap();
    cluster.kill_shard(0, 1).unwrap();
    assert_eq!(cluster.shard_pid(0, 1), None);
    assert!(!cluster.is_running(0));
    // Without a replica the member stops serving once the others mark the shard failed.
    let t = Instant::now();
    while cluster_state(&cluster, cluster.shard_port(0, 0)) != "cluster_state:fail" {
        assert!(
            t.elapsed().as_secs() < 10,
            "the cluster never noticed the dead shard"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    cluster.restart_shard(0, 1).unwrap();
    assert_ne!(cluster.shard_pid(0, 1), Some(old_pid));
    assert!(cluster.is_running(0));
    for s in 0..3 {
        assert_eq!(
            cluster_state(&cluster, cluster.shard_port(0, s)),
            "cluster_state:ok",
            "shard {s}"
        );
    }
    assert_eq!(cluster.primary_of(0, key_slot(key.as_bytes())).unwrap(), 1);
    assert_eq!(
        text(
            cluster
                .command(cluster.shard_port(0, 1), &["GET", key.as_str()])
                .unwrap()
        ),
        "kept"
    );

    // The whole member at once.
    cluster.kill(0).unwrap();
    cluster.restart(0).unwrap();
    assert_eq!(
        text(
            cluster
                .command(cluster.shard_port(0, 1), &["GET", key.as_str()])
                .unwrap()
        ),
        "kept"
    );
}

#[test]
fn a_replica_takes_over_a_killed_primary() {
    let mut cluster = LocalCluster::start_with(1, ClusterOptions::default().shards(3).replicas(1)).unwrap();
    let key = key_per_shard(&cluster, 0, "f:")[&0].clone();
    let slot = key_slot(key.as_bytes());
    let primary = cluster.shard_port(0, 0);
    let replica = cluster.replica_port(0, 0);
    assert_ne!(primary, replica);
    assert_eq!(cluster.serving_port(0, slot).unwrap(), primary);
    assert_eq!(
        cluster.command(primary, &["SET", key.as_str(), "x"]).unwrap(),
        Reply::Status("OK".into())
    );
    // The replica has the key before its primary dies (replication is asynchronous: in a CI
    // run under load it had not, and the promoted replica had no "x").
    cluster.wait_for_replication(0, 0).unwrap();

    let t = Instant::now();
    cluster.kill_shard(0, 0).unwrap();
    let new_primary = cluster.wait_for_failover(0, 0).unwrap();
    eprintln!("failover took {:?}", t.elapsed());
    assert_eq!(new_primary, replica);
    assert_eq!(cluster.serving_port(0, slot).unwrap(), replica);
    assert_eq!(cluster.primary_of(0, slot).unwrap(), 0);
    assert_eq!(
        text(cluster.command(replica, &["GET", key.as_str()]).unwrap()),
        "x"
    );

    // The old primary comes back as the new primary's replica.
    cluster.restart_shard(0, 0).unwrap();
    let role = text(cluster.command(primary, &["INFO", "replication"]).unwrap());
    assert!(role.contains("role:slave"), "{role}");
    assert!(role.contains(&format!("master_port:{replica}")), "{role}");
    assert_eq!(cluster.serving_port(0, slot).unwrap(), replica);

    // Dropping the cluster stops every process, replicas included.
    let pids: Vec<u32> = (0..3)
        .flat_map(|s| [cluster.shard_pid(0, s), cluster.replica_pid(0, s)])
        .map(Option::unwrap)
        .collect();
    drop(cluster);
    for pid in pids {
        // SAFETY: kill(2) with signal 0 only checks whether the process exists.
        assert_ne!(
            unsafe { libc::kill(pid as libc::pid_t, 0) },
            0,
            "pid {pid} outlived the cluster"
        );
    }
}

#[test]
fn a_member_with_replicas_restarts_empty_as_a_whole() {
    let opts = ClusterOptions::default()
        .shards(3)
        .replicas(1)
        .persistence(Persistence::AofAlways);
    let mut cluster = LocalCluster::start_with(1, opts).unwrap();
    let key = key_per_shard(&cluster, 0, "e:")[&2].clone();
    assert_eq!(
        redis_cli_c(cluster.shard_port(0, 0), None, &["SET", &key, "gone"]),
        "OK"
    );
    cluster.pause(0).unwrap();
    cluster.resume(0).unwrap();
    cluster.kill(0).unwrap();
    assert!((0..3).all(|s| cluster.shard_pid(0, s).is_none() && cluster.replica_pid(0, s).is_none()));
    cluster.restart_empty(0).unwrap();
    // Same layout and slots (nodes.conf kept), no data.
    assert_eq!(cluster.primary_of(0, key_slot(key.as_bytes())).unwrap(), 2);
    assert_eq!(
        cluster.serving_port(0, key_slot(key.as_bytes())).unwrap(),
        cluster.shard_port(0, 2)
    );
    assert_eq!(
        cluster
            .command(cluster.shard_port(0, 2), &["GET", key.as_str()])
            .unwrap(),
        Reply::Bulk(None)
    );
    assert!(format!("{cluster:?}").contains("process_ports"));
}

#[test]
fn a_slot_moves_with_its_keys_and_asks_half_way() {
    let pw = "pw";
    let cluster = LocalCluster::start_with(1, ClusterOptions::default().shards(3).password(pw)).unwrap();
    // 25 keys in one slot (one hash tag) that shard 0 serves.
    let tag = key_per_shard(&cluster, 0, "tag")[&0].clone();
    let keys: Vec<String> = (0..25).map(|n| format!("{{{tag}}}:{n}")).collect();
    let slot = key_slot(tag.as_bytes());
    for key in &keys {
        assert_eq!(key_slot(key.as_bytes()), slot);
        assert_eq!(
            redis_cli_c(cluster.shard_port(0, 2), Some(pw), &["SET", key, key]),
            "OK"
        );
    }
    let (source, target) = (cluster.shard_port(0, 0), cluster.shard_port(0, 1));

    let mv = cluster.begin_move_slot(0, slot, 1, 5).unwrap();
    assert_eq!(
        (mv.slot(), mv.source_port(), mv.target_port(), mv.keys_moved()),
        (slot, source, target, 5)
    );
    let ask = Reply::Error(format!("ASK {slot} 127.0.0.1:{target}"));
    let mut asked = 0;
    for key in &keys {
        match cluster.command(source, &["GET", key.as_str()]).unwrap() {
            Reply::Bulk(Some(v)) => assert_eq!(v, key.as_bytes()),
            other => {
                assert_eq!(other, ask, "{key}");
                asked += 1;
                // The target serves a migrated key only to a client that says ASKING first.
                assert!(
                    matches!(cluster.command(target, &["GET", key.as_str()]).unwrap(), Reply::Error(e) if e.starts_with("MOVED"))
                );
            }
        }
    }
    assert_eq!(asked, 5);
    // A new key in a migrating slot goes to the target.
    let new_key = format!("{{{tag}}}:new");
    assert_eq!(
        cluster.command(source, &["SET", new_key.as_str(), "x"]).unwrap(),
        ask
    );
    assert_eq!(
        cluster.primary_of(0, slot).unwrap(),
        0,
        "the source owns the slot until the end"
    );

    assert_eq!(cluster.finish_move_slot(mv).unwrap(), 25);
    assert_eq!(cluster.primary_of(0, slot).unwrap(), 1);
    for key in &keys {
        assert_eq!(
            cluster.command(target, &["GET", key.as_str()]).unwrap(),
            Reply::Bulk(Some(key.clone().into_bytes()))
        );
        assert_eq!(
            cluster.command(source, &["GET", key.as_str()]).unwrap(),
            Reply::Error(format!("MOVED {slot} 127.0.0.1:{target}"))
        );
    }

    // And back in one call.
    assert_eq!(cluster.move_slot(0, slot, 0).unwrap(), 25);
    assert_eq!(cluster.primary_of(0, slot).unwrap(), 0);
    assert_eq!(cluster.command(source, &["DBSIZE"]).unwrap(), Reply::Int(25));
}

#[test]
fn impossible_cluster_options_are_refused() {
    let err = |opts: ClusterOptions| LocalCluster::start_with(1, opts).unwrap_err().to_string();
    assert!(err(ClusterOptions::default().shards(2)).contains("at least 3 primaries"));
    assert!(err(ClusterOptions::default().replicas(1)).contains("replicas need a clustered member"));
    let tls = ServerTls {
        cert: "cert.pem".into(),
        key: "key.pem".into(),
        ca: "ca.pem".into(),
        require_client_cert: false,
    };
    assert!(err(ClusterOptions::default().shards(3).tls(tls)).contains("TLS"));
}

#[test]
fn three_members_of_three_shards_start() {
    let t = Instant::now();
    let cluster = LocalCluster::start_with(3, ClusterOptions::default().shards(3)).unwrap();
    eprintln!("3 members x 3 shards up in {:?}", t.elapsed());
    assert_eq!(cluster.urls().len(), 3);
    assert!(cluster
        .urls()
        .iter()
        .all(|u| u.starts_with("redis+cluster://127.0.0.1:")));
}
