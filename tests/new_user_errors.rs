//! Errors a new user meets in the first hour (issue 12 §2.3, §2.10), on real redis-server nodes.

use std::time::Duration;

use quorumlock::{ErrorKind, NodeOutcome, Redlock, Retry};
use quorumlock_testkit::{ClusterOptions, LocalCluster};

/// A wrong password is told apart by `is_unauthorized()`, not mistaken for contention or an
/// outage, and names each node that denied it.
#[tokio::test]
async fn wrong_password_is_unauthorized() {
    let cluster = LocalCluster::start_with(3, ClusterOptions::default().password("right-password")).unwrap();
    let urls: Vec<String> = (0..3)
        .map(|i| format!("redis://:wrong-password@127.0.0.1:{}", cluster.port(i)))
        .collect();
    let redlock = Redlock::builder()
        .nodes(urls)
        .retry(Retry::wait(Duration::from_secs(10)))
        .build()
        .unwrap();
    let err = redlock
        .acquire("unauthorized", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(
        !err.is_contended() && !err.is_quorum_unreachable() && !err.is_timeout(),
        "{err}"
    );
    let denied = err
        .nodes()
        .iter()
        .filter(|(_, o)| matches!(o, NodeOutcome::Denied(_)))
        .count();
    assert!(denied >= 2, "a majority denied: {err}");
    redlock.shutdown().await;
}

/// Outside tokio the call fails with [`ErrorKind::NoRuntime`] instead of tokio's "no reactor
/// running" panic.
#[test]
fn outside_tokio_is_a_clear_error() {
    let cluster = LocalCluster::start(3).unwrap();
    let redlock = Redlock::builder().nodes(cluster.urls()).build().unwrap();
    let err = futures::executor::block_on(redlock.acquire("no-runtime", Duration::from_secs(5))).unwrap_err();
    assert!(err.is_no_runtime(), "{err}");
    assert_eq!(err.kind(), ErrorKind::NoRuntime);
    assert!(err.to_string().contains("tokio"), "{err}");
    // The other entry points too: a lock taken inside a runtime, then used outside one.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut lock = rt
        .block_on(redlock.acquire("no-runtime", Duration::from_secs(5)))
        .unwrap();
    let inspected = futures::executor::block_on(redlock.inspect("no-runtime")).unwrap_err();
    assert!(inspected.is_no_runtime(), "{inspected}");
    let extended = futures::executor::block_on(lock.extend(Duration::from_secs(5))).unwrap_err();
    assert!(extended.is_no_runtime(), "{extended}");
    let released = futures::executor::block_on(lock.release()).unwrap_err();
    assert!(released.is_no_runtime(), "{released}");
    drop(rt);
}

/// A node URL that points at something that is not Redis (here a peer that answers like an HTTP
/// server) is a failed node that says "not a Redis server", on one line, instead of the RESP
/// parser's multi-line noise.
#[tokio::test]
async fn a_port_that_is_not_redis_says_so_on_one_line() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        // Bounded: at most a few connections, each answered once.
        for _ in 0..8 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let redlock = Redlock::builder()
        .node(format!("redis://127.0.0.1:{port}"))
        .node_timeout(Duration::from_millis(500))
        .retry(Retry::none())
        .build()
        .unwrap();
    let e = redlock
        .acquire("not-redis", Duration::from_secs(5))
        .await
        .unwrap_err();
    let (_, outcome) = &e.nodes()[0];
    let text = outcome.to_string();
    assert!(text.contains("not a Redis server"), "{text}");
    assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
    assert!(!e.to_string().contains('\n'), "{e}");
    server.abort();
}

/// Issue 21, item 8: a tokio runtime built without its time driver (or without its I/O driver)
/// gives a typed error naming what to enable, not tokio's panic from inside the library.
#[test]
fn a_runtime_without_timers_or_io_is_a_clear_error() {
    let cluster = LocalCluster::start(3).unwrap();
    let redlock = Redlock::builder().nodes(cluster.urls()).build().unwrap();
    let no_timers = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let err = no_timers
        .block_on(redlock.acquire("half-runtime", Duration::from_secs(5)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoRuntime, "{err}");
    assert!(err.to_string().contains("no time driver"), "{err}");
    assert!(!err.is_transient());

    let no_io = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let err = no_io
        .block_on(redlock.acquire("half-runtime", Duration::from_secs(5)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoRuntime, "{err}");
    assert!(err.to_string().contains("no I/O driver"), "{err}");
    drop(no_timers);
    drop(no_io);
}

/// Issue 21, item 10: a node written without a scheme says what is missing, not the URL
/// parser's "relative URL without a base", and never echoes a password.
#[test]
fn a_node_without_a_scheme_says_so() {
    for raw in ["127.0.0.1:27101", "localhost:6379"] {
        let err = Redlock::builder().nodes([raw]).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let text = err.to_string();
        assert!(
            text.contains("node 0 has no scheme") && text.contains("redis://host:port"),
            "{text}"
        );
        // Not echoed: nothing tells a host from a password pasted in the wrong place (G8).
        assert!(!text.contains("relative URL") && !text.contains(raw), "{text}");
    }
    let err = Redlock::builder()
        .nodes(["user:s3cret@10.0.0.1:6379"])
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}
