//! S3 / C10 with a real process pause: a worker process holds a fenced lock and is SIGSTOPped
//! past its TTL. Another client takes over with a larger fence and writes to a fenced store. When
//! the worker is resumed, its write is refused, it sees its lock invalid, and its extension
//! fails without re-creating a key.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use quorumlock::Redlock;
use quorumlock_testkit::{LocalCluster, FENCED_WRITE};

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn start(urls: &[String]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quorumlock"))
            .arg("__worker")
            .args(urls)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the worker");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self { child, stdin, stdout }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        answer.trim().to_owned()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own, not yet reaped, child.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, sig) }, 0);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigstopped_holder_is_fenced_off() {
    let cluster = LocalCluster::start(3).expect("redis-server");
    let store = LocalCluster::start(1).expect("redis-server");
    let mut a = Worker::start(&cluster.urls());
    let answer = a.ask("acquire invoice 500");
    let fence_a: u64 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(fence_a > 0, "{answer}");
    assert_eq!(a.ask(&format!("write {} max:invoice", store.url(0))), "accepted");

    a.signal(libc::SIGSTOP);
    let b = Redlock::builder()
        .nodes(cluster.urls())
        .fencing(true)
        .retry(
            quorumlock::Retry::new()
                .attempts(100)
                .delay(Duration::from_millis(20), Duration::from_millis(20)),
        )
        .build()
        .unwrap();
    let lock_b = b
        .acquire("invoice", Duration::from_secs(10))
        .await
        .expect("B after A's TTL");
    let fence_b = lock_b.fencing_token().unwrap();
    // B holds a majority: its third node may have refused it (A's key there expired a moment
    // later) or may still be finishing in the background. Let that finish, then remember where
    // B's key is: A's actions below must change none of it (flaky before: the check read every
    // node and expected B's key on all three, 3 of 72 runs).
    b.shutdown().await;
    let b_keys: Vec<Option<String>> = (0..3)
        .map(|i| {
            let mut c = redis::Client::open(cluster.url(i))
                .unwrap()
                .get_connection()
                .unwrap();
            redis::cmd("GET")
                .arg("quorumlock:lock:invoice")
                .query(&mut c)
                .unwrap()
        })
        .collect();
    assert!(
        b_keys
            .iter()
            .filter(|v| v.as_deref() == Some(lock_b.token()))
            .count()
            >= 2,
        "B holds a majority: {b_keys:?}"
    );
    assert!(fence_b > fence_a);
    let mut s = redis::Client::open(store.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let accepted: i64 = redis::cmd("EVAL")
        .arg(FENCED_WRITE)
        .arg(1)
        .arg("max:invoice")
        .arg(fence_b)
        .query(&mut s)
        .unwrap();
    assert_eq!(accepted, 1);
    a.signal(libc::SIGCONT);

    assert_eq!(
        a.ask(&format!("write {} max:invoice", store.url(0))),
        "refused",
        "A's stale write must be refused"
    );
    assert_eq!(a.ask("valid"), "false");
    assert_eq!(a.ask("extend 10000"), "failed Lost");
    // B's lock is untouched on every node where it was.
    for (i, before) in b_keys.iter().enumerate() {
        let mut c = redis::Client::open(cluster.url(i))
            .unwrap()
            .get_connection()
            .unwrap();
        let v: Option<String> = redis::cmd("GET")
            .arg("quorumlock:lock:invoice")
            .query(&mut c)
            .unwrap();
        if before.as_deref() == Some(lock_b.token()) {
            assert_eq!(v.as_deref(), Some(lock_b.token()), "node {i}");
        }
    }
    assert_eq!(a.ask("release"), "released 0");
    lock_b.release().await.unwrap();
}
