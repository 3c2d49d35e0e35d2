//! docs/testing.md, "Tokens": a forked child never repeats its parent's next token. A user-space generator
//! (rand 0.9's ThreadRng) copied by fork() would hand both processes the same next value; the
//! two could then release or extend each other's lock. Tokens come from the kernel each time.
//!
//! Its own test binary with a single test, so no other test thread holds a lock (the allocator's,
//! tokio's) at the moment of fork().

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use quorumlock::Redlock;
use quorumlock_testkit::LocalCluster;

/// Acquires a fresh resource once on a new current-thread runtime and returns the lock's token.
fn next_token(urls: &[String], resource: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let redlock = Redlock::builder().nodes(urls).build().unwrap();
        let lock = redlock.acquire(resource, Duration::from_secs(10)).await.unwrap();
        let token = lock.token().to_owned();
        lock.release().await.unwrap();
        redlock.shutdown().await;
        token
    })
}

#[test]
fn forked_child_draws_a_different_token() {
    let cluster = LocalCluster::start(1).expect("redis-server");
    let urls = cluster.urls();
    let first = next_token(&urls, "before-fork");
    let (mut parent_end, mut child_end) = UnixStream::pair().unwrap();
    // SAFETY: the child only builds a runtime, makes one acquisition, writes to a socket and
    // _exits; this binary runs no other threads that could hold a lock across the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let token = std::panic::catch_unwind(|| next_token(&urls, "child")).unwrap_or_default();
        let _ = child_end.write_all(token.as_bytes());
        // SAFETY: leaves the child at once, without running the parent's destructors (which
        // would stop the parent's redis-server).
        unsafe { libc::_exit(0) };
    }
    drop(child_end);
    let parent = next_token(&urls, "parent");
    let mut child = String::new();
    parent_end.read_to_string(&mut child).unwrap();
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(child.len(), 32, "the child could not acquire: {child:?}");
    assert_ne!(child, parent, "the forked child repeated its parent's next token");
    assert_ne!(child, first);
    assert_ne!(parent, first);
}
