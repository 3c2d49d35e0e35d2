//! Helpers shared by the real-server tests: clusters, clients, and a key auditor that reads the
//! nodes directly (its own plain connections, never through the client under test).

use std::time::Duration;

use quorumlock::{Redlock, RedlockBuilder, Retry};
pub use quorumlock_testkit::audit::{self, Bounds, Kind, Sample};
pub use quorumlock_testkit::{ClusterOptions, LocalCluster, Persistence, Reply};

/// The least-privilege ACL of a lock user, exactly as docs/operations.md gives it (checked by
/// `acl::docs_give_the_tested_rules`).
pub const LOCK_USER_RULES: &str = "resetkeys ~quorumlock:* resetchannels &quorumlock:released -@all +ping +info +set +exists +eval +evalsha +get +del +pexpire +pttl +time +zadd +zrange +zrem +zscore +publish +subscribe";

/// Shards per member: 1 (single servers) unless `QUORUMLOCK_TEST_SHARDS` says more; then every
/// member these helpers start is a Redis Cluster of that many shards (docs/testing.md, "Cluster
/// members": `.ci/run` runs the suites that need no proxy that way too).
pub fn shards() -> usize {
    std::env::var("QUORUMLOCK_TEST_SHARDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// `n` nodes whose clients (every URL from `cluster.urls()`) connect as a user with only
/// [`LOCK_USER_RULES`] (and, for cluster members, the cluster grants of docs/scaling.md): the
/// tests built on this run with the documented least privilege. The auditor and fault injection
/// use the default user.
pub fn cluster(n: usize) -> LocalCluster {
    let options = match shards() {
        1 => ClusterOptions::default().user("locker", "locker-pw", LOCK_USER_RULES),
        k => ClusterOptions::default().shards(k).user(
            "locker",
            "locker-pw",
            format!("{LOCK_USER_RULES} +cluster|slots +cluster|nodes +cluster|myid +cluster|keyslot"),
        ),
    };
    LocalCluster::start_with(n, options).unwrap_or_else(|e| panic!("starting {n} redis-server nodes: {e}"))
}

/// A builder for the cluster's nodes with the given node timeout.
pub fn builder(cluster: &LocalCluster, node_timeout: Duration) -> RedlockBuilder {
    Redlock::builder()
        .nodes(cluster.urls())
        .node_timeout(node_timeout)
}

/// `attempts` tries, `delay_ms`..`2 * delay_ms` apart, within 10 s.
pub fn patient(attempts: u32, delay_ms: u64) -> Retry {
    let d = Duration::from_millis(delay_ms);
    Retry::new()
        .attempts(attempts)
        .delay(d, d)
        .deadline(Duration::from_secs(10))
}

/// A client with timeouts sized for a noisy 2-core CI machine.
pub fn client(cluster: &LocalCluster) -> Redlock {
    builder(cluster, Duration::from_millis(200))
        .retry(patient(3, 10))
        .build()
        .expect("valid configuration")
}

/// Makes every node's connection once, so later faults hit established connections.
pub async fn warm_up(redlock: &Redlock) {
    let lock = redlock
        .acquire("warm-up", Duration::from_secs(5))
        .await
        .expect("warm-up acquire");
    lock.release().await.expect("warm-up release");
    redlock.shutdown().await;
}

/// The lock key of `resource`. With cluster members the library tags every key with its slot
/// group (docs/scaling.md, "Keys and hash tags"); this is the test's own copy of that rule
/// (FNV-1a 64 of the slot group: the name's first non-empty `{...}`, else the whole name), so
/// that a change of the key format fails here.
pub fn lock_key(resource: &str) -> String {
    key("lock", resource)
}

/// The key of `resource` in `namespace` (`lock`, `fence`), as [`lock_key`].
pub fn key(namespace: &str, resource: &str) -> String {
    if shards() == 1 {
        return format!("quorumlock:{namespace}:{resource}");
    }
    let group = resource
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
        .unwrap_or(resource);
    let hash = group.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("quorumlock:{namespace}:{{{hash:016x}}}{resource}")
}

/// The auditor's connection to node `i`: a plain one, or for a cluster member redis-rs' cluster
/// connection (it routes a key's command to its shard, and `KEYS` to every primary).
fn raw(cluster: &LocalCluster, i: usize) -> Box<dyn redis::ConnectionLike> {
    let fail = |e: redis::RedisError| -> ! {
        panic!("auditor connecting to node {i}: {e}\n{}", cluster.log_tail(i, 10))
    };
    if cluster.shards() > 1 {
        // The admin URL names shard 0's port last; the other shards differ only in port.
        let admin = cluster.admin_url(i);
        let base = admin.strip_suffix(&cluster.port(i).to_string()).unwrap();
        let urls = (0..cluster.shards()).map(|s| format!("{base}{}", cluster.shard_port(i, s)));
        let client = redis::cluster::ClusterClientBuilder::new(urls)
            .connection_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_else(|e| fail(e));
        return Box::new(client.get_connection().unwrap_or_else(|e| fail(e)));
    }
    let client = redis::Client::open(cluster.admin_url(i)).unwrap();
    Box::new(
        client
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap_or_else(|e| fail(e)),
    )
}

/// Runs one command on node `i` with the auditor's connection.
pub fn on_node<T: redis::FromRedisValue>(cluster: &LocalCluster, i: usize, cmd: &mut redis::Cmd) -> T {
    cmd.query(&mut *raw(cluster, i))
        .unwrap_or_else(|e| panic!("node {i}: {e}"))
}

/// The value of `resource`'s lock key on every running node (`None` where absent); nodes that
/// are down are skipped (`Err`).
pub fn values(cluster: &LocalCluster, resource: &str) -> Vec<Result<Option<String>, ()>> {
    (0..cluster.len())
        .map(|i| {
            if !cluster.is_running(i) {
                return Err(());
            }
            Ok(on_node(cluster, i, redis::cmd("GET").arg(lock_key(resource))))
        })
        .collect()
}

/// Every lock key on every running node, with its PTTL.
pub fn all_lock_keys(cluster: &LocalCluster) -> Vec<(usize, String, i64)> {
    let mut out = Vec::new();
    for i in (0..cluster.len()).filter(|&i| cluster.is_running(i)) {
        let keys: Vec<String> = on_node(cluster, i, redis::cmd("KEYS").arg("quorumlock:lock:*"));
        for k in keys {
            let pttl: i64 = on_node(cluster, i, redis::cmd("PTTL").arg(&k));
            out.push((i, k, pttl));
        }
    }
    out
}

/// How many waiters the waiting line of `resource` holds on each running node (wake-on-release;
/// entries whose lease ended count until a script prunes them or the line's key expires).
pub fn line_lengths(cluster: &LocalCluster, resource: &str) -> Vec<usize> {
    (0..cluster.len())
        .filter(|&i| cluster.is_running(i))
        .map(|i| on_node(cluster, i, redis::cmd("ZCARD").arg(key("queue", resource))))
        .collect()
}

/// Every waiting-line key (both of each line: the waiters and their leases) on every running
/// node.
pub fn all_line_keys(cluster: &LocalCluster) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for i in (0..cluster.len()).filter(|&i| cluster.is_running(i)) {
        for pattern in ["quorumlock:queue:*", "quorumlock:lease:*"] {
            let keys: Vec<String> = on_node(cluster, i, redis::cmd("KEYS").arg(pattern));
            out.extend(keys.into_iter().map(|k| (i, k)));
        }
    }
    out
}

/// Every key under the default prefix on every running node, with its PTTL: the whole keyspace
/// the library writes (locks, tombstones, fence counters, waiting lines).
pub fn all_keys(cluster: &LocalCluster) -> Vec<Sample> {
    let mut out = Vec::new();
    for i in (0..cluster.len()).filter(|&i| cluster.is_running(i)) {
        let keys: Vec<String> = on_node(cluster, i, redis::cmd("KEYS").arg("quorumlock:*"));
        for k in keys {
            let pttl: i64 = on_node(cluster, i, redis::cmd("PTTL").arg(&k));
            out.push(Sample::new(i, k, pttl));
        }
    }
    out
}

/// The bounds every real-server test stays within (the test kit's, which every cluster's drop
/// audits too).
pub use quorumlock_testkit::audit::TEST_BOUNDS;

/// Asserts that every key under the prefix on every running node has a TTL within `bounds`
/// for its kind (G3).
#[track_caller]
pub fn assert_bounded(cluster: &LocalCluster, bounds: &Bounds, context: &str) {
    if let Err(found) = audit::check("quorumlock:", bounds, all_keys(cluster)) {
        let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
        panic!("{context}: keys beyond their bounds:\n{}", lines.join("\n"));
    }
}

/// `resource` held by `holder` for 30 s on every node, not only on the majority that decided.
/// The client is warmed up first: on a cold connection one node's request could time out
/// before it was sent, and the lock was then held by two nodes of three; a waiter is granted
/// where the key is missing, so it never stays in that node's line (a control here failed once
/// that way, on the first run after a build; deleting the key on one node reproduces it).
pub async fn hold_everywhere(cluster: &LocalCluster, holder: &Redlock, resource: &str) -> quorumlock::Lock {
    warm_up(holder).await;
    let held = holder.acquire(resource, Duration::from_secs(30)).await.unwrap();
    holder.shutdown().await; // a grant still on its way lands
    let values = values(cluster, resource);
    assert!(
        values.iter().all(|v| matches!(v, Ok(Some(_)))),
        "{resource} is not held on every node: {values:?}"
    );
    held
}

pub async fn wait_for_line(cluster: &LocalCluster, resource: &str, len: usize) {
    let start = std::time::Instant::now();
    while line_lengths(cluster, resource) != vec![len; cluster.len()] {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "line of {resource} never reached {len} on every node: {:?}",
            line_lengths(cluster, resource)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many script calls (`EVALSHA` and `EVAL`, failed ones included) node `i` has run: each
/// attempt of an acquisition is one per node, so a test can wait for attempts to have happened
/// instead of sleeping.
pub fn script_calls(cluster: &LocalCluster, i: usize) -> u64 {
    // A cluster member answers with a map of its shards' replies: every text in it counts.
    fn texts(v: &redis::Value, out: &mut String) {
        match v {
            redis::Value::BulkString(b) => out.push_str(&String::from_utf8_lossy(b)),
            redis::Value::VerbatimString { text, .. } => out.push_str(text),
            redis::Value::Map(kv) => kv.iter().for_each(|(_, v)| texts(v, out)),
            redis::Value::Array(vs) => vs.iter().for_each(|v| texts(v, out)),
            _ => {}
        }
        out.push('\n');
    }
    let reply: redis::Value = on_node(cluster, i, redis::cmd("INFO").arg("commandstats"));
    let mut info = String::new();
    texts(&reply, &mut info);
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

/// Asserts that no running node holds any lock key.
#[track_caller]
pub fn assert_no_lock_keys(cluster: &LocalCluster, context: &str) {
    let keys = all_lock_keys(cluster);
    assert!(
        keys.is_empty(),
        "{context}: keys left behind (node, key, pttl): {keys:?}"
    );
}

/// Sets `resource` as held by a foreign owner on node `i`.
pub fn hold_elsewhere(cluster: &LocalCluster, i: usize, resource: &str, ttl_ms: u64) {
    let _: () = on_node(
        cluster,
        i,
        redis::cmd("SET")
            .arg(lock_key(resource))
            .arg("foreign-owner")
            .arg("PX")
            .arg(ttl_ms),
    );
}

/// Waits for the clients' background work (releases still running on the slower nodes after
/// a majority answered), then asserts that no running node holds any lock key.
pub async fn assert_clean(cluster: &LocalCluster, clients: &[&Redlock], context: &str) {
    for c in clients {
        c.shutdown().await;
    }
    assert_no_lock_keys(cluster, context);
    // A waiter that got its lock or gave up has left every line (a cancelled one would stay
    // until its lease ends; no caller of this cancels a waiter).
    let lines = all_line_keys(cluster);
    assert!(
        lines.is_empty(),
        "{context}: waiting lines left behind: {lines:?}"
    );
    // What may stay (tombstones, fence counters) stays only within its bound.
    assert_bounded(cluster, &TEST_BOUNDS, context);
}

/// Polls `done` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}
