//! docs/testing.md, "Hostile replies", flooding: a peer that answers with a 64 MiB reply. redis-rs buffers a bulk
//! string as it arrives (it caps nesting, not length), so the bound is ours: the reply is a
//! failed node, the connection is dropped, and the memory goes back. Its own test binary, so
//! that no other test's allocations move the process's RSS.

use std::time::Duration;

use quorumlock::{NodeOutcome, Redlock, Retry};
use quorumlock_testkit::{LocalCluster, Proxy};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_64_mib_reply_is_a_failure_and_its_memory_returns() {
    let cluster = LocalCluster::start(3).expect("redis-server");
    let proxies: Vec<Proxy> = (0..3).map(|i| Proxy::start(cluster.port(i)).unwrap()).collect();
    let redlock = Redlock::builder()
        .nodes(proxies.iter().map(Proxy::url))
        .node_timeout(Duration::from_secs(2))
        .retry(Retry::none())
        .build()
        .unwrap();
    let warm = redlock.acquire("warm", Duration::from_secs(5)).await.unwrap();
    warm.release().await.unwrap();
    // The warm-up's slowest node may still owe its acquire reply (release returns at a
    // majority). Rewritten into a flood, that late reply would reset its connection under the
    // next acquisition, which then reads as an I/O failure, not the flood.
    redlock.shutdown().await;
    let baseline = rss_kib();

    const SIZE: usize = 64 << 20;
    let mut flood = format!("${SIZE}\r\n").into_bytes();
    flood.resize(flood.len() + SIZE, b'x');
    flood.extend_from_slice(b"\r\n");
    // A granted acquisition answers its token as a 32-byte bulk string: the flood goes in front
    // of it (the token's own frame follows as a stray reply).
    flood.extend_from_slice(b"$32\r\n");
    for p in &proxies {
        p.rewrite_replies(b"$32\r\n", flood.clone());
    }
    drop(flood);
    let connections: u64 = proxies.iter().map(Proxy::connections).sum();
    let e = redlock
        .acquire("flooded", Duration::from_secs(30))
        .await
        .unwrap_err();
    let protocol = e
        .nodes()
        .iter()
        .filter(|(_, o)| matches!(o, NodeOutcome::Protocol(_)))
        .count();
    assert!(protocol >= 2, "{e}");
    assert!(
        e.to_string().len() < 2000,
        "the error quotes the flood: {} bytes",
        e.to_string().len()
    );
    for p in &proxies {
        p.clear_reply_rewrites();
    }
    redlock.shutdown().await;
    let again = redlock.acquire("after", Duration::from_secs(5)).await.unwrap();
    again.release().await.unwrap();
    redlock.shutdown().await;
    assert!(
        proxies.iter().map(Proxy::connections).sum::<u64>() > connections,
        "the flooded connections were kept"
    );

    let after = rss_kib();
    let peak_kib = (SIZE / 1024) as u64;
    eprintln!("RSS: baseline {baseline} KiB, after the flood {after} KiB");
    assert!(
        after < baseline + peak_kib / 4,
        "RSS grew from {baseline} KiB to {after} KiB after a {peak_kib} KiB reply"
    );
}
