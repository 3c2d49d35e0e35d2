//! Helpers shared by the real-server tests: clusters, clients, and a key auditor that reads the
//! nodes directly (its own plain connections, never through the client under test).

use std::time::Duration;

use quorumlock::{Redlock, RedlockBuilder, Retry};
pub use quorumlock_testkit::{ClusterOptions, LocalCluster, Persistence};

/// The least-privilege ACL of a lock user, exactly as docs/operations.md gives it (checked by
/// `acl::docs_give_the_tested_rules`).
pub const LOCK_USER_RULES: &str = "resetkeys ~quorumlock:* resetchannels &quorumlock:released -@all +ping +info +set +exists +eval +evalsha +get +del +pexpire +pttl +time +publish +subscribe";

/// `n` nodes whose clients (every URL from `cluster.urls()`) connect as a user with only
/// [`LOCK_USER_RULES`]: the tests built on this run with the documented least privilege. The
/// auditor and fault injection use the default user.
pub fn cluster(n: usize) -> LocalCluster {
    LocalCluster::start_with(
        n,
        ClusterOptions::default().user("locker", "locker-pw", LOCK_USER_RULES),
    )
    .unwrap_or_else(|e| panic!("starting {n} redis-server nodes: {e}"))
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

pub fn lock_key(resource: &str) -> String {
    format!("quorumlock:lock:{resource}")
}

fn raw(cluster: &LocalCluster, i: usize) -> redis::Connection {
    let client = redis::Client::open(cluster.admin_url(i)).unwrap();
    client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("auditor connecting to node {i}: {e}\n{}", cluster.log_tail(i, 10)))
}

/// Runs one command on node `i` with a plain connection.
pub fn on_node<T: redis::FromRedisValue>(cluster: &LocalCluster, i: usize, cmd: &mut redis::Cmd) -> T {
    cmd.query(&mut raw(cluster, i))
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
}
