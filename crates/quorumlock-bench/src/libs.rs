//! The libraries under comparison, behind one small interface.
//!
//! Each `acquire_waiting` call makes one attempt per round and sleeps the library's own retry
//! delay between rounds, so attempts can be counted the same way for everyone: quorumlock's
//! default (uniform 50-250 ms), rslock's default (uniform 0-200 ms), or quorumlock with a tuned
//! short delay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use redis::aio::MultiplexedConnection;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lib {
    Quorumlock,
    /// quorumlock with a short retry delay (1-5 ms): polling tuned for contention.
    QuorumlockFast,
    /// quorumlock with its default retry policy plus `wake_on_release`.
    QuorumlockWake,
    /// The same Redis commands sent concurrently with the redis crate, no library logic.
    Raw,
    Rslock,
    /// The single-instance lock: SET NX PX and compare-and-delete on node 0 only.
    Single,
}

impl Lib {
    pub const ALL: [Lib; 4] = [Lib::Quorumlock, Lib::Raw, Lib::Rslock, Lib::Single];

    pub fn name(self) -> &'static str {
        match self {
            Lib::Quorumlock => "quorumlock",
            Lib::QuorumlockFast => "quorumlock (1-5 ms retry)",
            Lib::QuorumlockWake => "quorumlock (wake-on-release)",
            Lib::Raw => "raw ceiling",
            Lib::Rslock => "rslock 0.10",
            Lib::Single => "single instance",
        }
    }
}

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

#[derive(Clone)]
pub enum Client {
    Quorumlock(quorumlock::Redlock, Lib),
    Raw(Arc<Vec<MultiplexedConnection>>, Arc<str>, Duration),
    Rslock(Arc<rslock::LockManager>, Duration),
}

pub enum Held {
    Quorumlock(quorumlock::Lock),
    Raw(String, String, Vec<usize>),
    Rslock(rslock::Lock),
}

fn token() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    // The raw reference draws its token from the kernel too, like quorumlock.
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    u128::from_le_bytes(b)
}

fn uniform(lo_ms: u64, hi_ms: u64) -> Duration {
    Duration::from_micros(lo_ms * 1000 + (rand_u128() % u128::from((hi_ms - lo_ms) * 1000)) as u64)
}

impl Client {
    pub async fn new(lib: Lib, urls: &[String], ttl: Duration) -> Self {
        match lib {
            Lib::Quorumlock | Lib::QuorumlockFast | Lib::QuorumlockWake => {
                let r = quorumlock::Redlock::builder()
                    .nodes(urls)
                    .node_timeout(Duration::from_millis(100))
                    .wake_on_release(lib == Lib::QuorumlockWake)
                    .retry(
                        quorumlock::Retry::new()
                            .attempts(100_000)
                            .deadline(Duration::from_secs(30)),
                    )
                    .build()
                    .unwrap();
                Client::Quorumlock(r, lib)
            }
            Lib::Raw | Lib::Single => {
                let urls = if lib == Lib::Single { &urls[..1] } else { urls };
                let mut conns = Vec::new();
                for u in urls {
                    let mut c = redis::Client::open(u.as_str())
                        .unwrap()
                        .get_multiplexed_async_connection()
                        .await
                        .unwrap();
                    let _: String = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(RELEASE)
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    conns.push(c);
                }
                let sha = redis::Script::new(RELEASE).get_hash().to_owned();
                Client::Raw(Arc::new(conns), sha.into(), ttl)
            }
            Lib::Rslock => {
                let mut m = rslock::LockManager::new(urls.to_vec());
                // One try per call: the harness sleeps rslock's own delay between tries.
                m.set_retry(1, Duration::from_millis(200));
                Client::Rslock(Arc::new(m), ttl)
            }
        }
    }

    /// Waits for background releases (quorumlock's late nodes) so server counts are complete.
    pub async fn settle(&self) {
        if let Client::Quorumlock(r, _) = self {
            r.shutdown().await;
        }
    }

    /// One attempt.
    pub async fn try_once(&self, key: &str) -> Option<Held> {
        let ttl = Duration::from_secs(10);
        match self {
            Client::Quorumlock(r, _) => r.try_acquire(key, ttl).await.ok().map(Held::Quorumlock),
            Client::Raw(conns, sha, ttl) => {
                let token = token();
                let replies = join_all(conns.iter().map(|c| {
                    let mut c = c.clone();
                    let (key, token) = (key.to_owned(), token.clone());
                    let ms = ttl.as_millis() as u64;
                    async move {
                        // Bounded so that a paused node (S4) cannot hang the reference forever.
                        let mut cmd = redis::cmd("SET");
                        cmd.arg(&key).arg(&token).arg("NX").arg("PX").arg(ms);
                        let set = cmd.query_async::<Option<String>>(&mut c);
                        tokio::time::timeout(Duration::from_secs(1), set)
                            .await
                            .unwrap_or(Ok(None))
                    }
                }))
                .await;
                let granted: Vec<usize> = replies
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| matches!(r, Ok(Some(_))))
                    .map(|(i, _)| i)
                    .collect();
                let held = Held::Raw(key.to_owned(), token, granted.clone());
                if granted.len() > conns.len() / 2 {
                    Some(held)
                } else {
                    self.release_raw(&held, sha).await;
                    None
                }
            }
            Client::Rslock(m, ttl) => m.lock(key, *ttl).await.ok().map(Held::Rslock),
        }
    }

    async fn release_raw(&self, held: &Held, sha: &str) {
        let (Client::Raw(conns, _, _), Held::Raw(key, token, granted)) = (self, held) else {
            return;
        };
        join_all(granted.iter().map(|&i| {
            let mut c = conns[i].clone();
            let (key, token, sha) = (key.clone(), token.clone(), sha.to_owned());
            async move {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(sha).arg(1).arg(key).arg(token);
                let _ = tokio::time::timeout(Duration::from_secs(1), cmd.query_async::<i64>(&mut c)).await;
            }
        }))
        .await;
    }

    pub async fn release(&self, held: Held) {
        match (self, held) {
            (Client::Quorumlock(..), Held::Quorumlock(l)) => {
                let _ = l.release().await;
            }
            (Client::Raw(_, sha, _), h @ Held::Raw(..)) => self.release_raw(&h, sha).await,
            (Client::Rslock(m, _), Held::Rslock(l)) => m.unlock(&l).await,
            _ => {}
        }
    }

    /// Acquire then release, uncontended: the two latencies.
    pub async fn cycle(&self, key: &str) -> (Duration, Duration) {
        let t = Instant::now();
        let held = self.try_once(key).await.expect("uncontended acquire");
        let a = t.elapsed();
        let t = Instant::now();
        self.release(held).await;
        (a, t.elapsed())
    }

    /// Retries with the library's own delay until it holds `key` or `deadline` passes;
    /// returns the lock and the number of attempts made.
    pub async fn acquire_waiting(&self, key: &str, deadline: Instant) -> (Option<Held>, u64) {
        if let Client::Quorumlock(r, Lib::QuorumlockWake) = self {
            // The library's own retry loop (default delays) with wake-ups; it does not report
            // its attempt count, so 0 here means "not counted".
            let left = deadline.saturating_duration_since(Instant::now());
            let lock = tokio::time::timeout(left, r.acquire(key, Duration::from_secs(10))).await;
            return (lock.ok().and_then(Result::ok).map(Held::Quorumlock), 0);
        }
        let mut attempts = 0;
        while Instant::now() < deadline {
            attempts += 1;
            if let Some(h) = self.try_once(key).await {
                return (Some(h), attempts);
            }
            let delay = match self {
                Client::Quorumlock(_, Lib::QuorumlockFast) => uniform(1, 5),
                Client::Quorumlock(..) => uniform(50, 250), // quorumlock's default Retry
                Client::Rslock(..) => uniform(0, 200),      // rslock's default retry delay
                Client::Raw(..) => uniform(1, 5),
            };
            tokio::time::sleep(delay).await;
        }
        (None, attempts)
    }
}
