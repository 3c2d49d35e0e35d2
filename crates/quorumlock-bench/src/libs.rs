//! The clients under comparison, behind one small interface.
//!
//! Each `acquire_waiting` call makes one attempt per round and sleeps the client's own retry
//! delay between rounds, so attempts can be counted the same way for everyone: quorumlock's
//! default (uniform 50-250 ms), rslock's default (uniform 0-200 ms), or quorumlock with a tuned
//! short delay. With wake-on-release, quorumlock's own retry loop runs instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::raw::{self, Mode, Raw};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Lib {
    Quorumlock,
    /// The ceiling: hand-written, decides at a majority (raw.rs).
    Raw,
    /// The ceiling sending the library's scripts (acquire.lua, release.lua).
    RawScripts,
    /// Hand-written, waits for every node.
    RawWaitAll,
    Rslock,
    /// quorumlock with a short retry delay (1-5 ms): polling tuned for contention.
    QuorumlockFast,
    /// quorumlock with its default retry policy plus `wake_on_release`.
    QuorumlockWake,
}

impl Lib {
    /// The clients of S1 and S2, in the order of the tables.
    pub const CYCLING: [Lib; 5] = [
        Lib::Quorumlock,
        Lib::Raw,
        Lib::RawScripts,
        Lib::RawWaitAll,
        Lib::Rslock,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Lib::Quorumlock => "quorumlock",
            Lib::Raw => "raw ceiling (majority, SET)",
            Lib::RawScripts => "raw + tombstone scripts",
            Lib::RawWaitAll => "raw, waits for all",
            Lib::Rslock => "rslock 0.10",
            Lib::QuorumlockFast => "quorumlock (1-5 ms retry)",
            Lib::QuorumlockWake => "quorumlock (wake-on-release)",
        }
    }
}

/// Uncontended attempts that failed (each a timeout: no other client holds those keys).
pub static FAILED_UNCONTENDED: AtomicU64 = AtomicU64::new(0);

#[derive(Clone)]
pub enum Client {
    Quorumlock(quorumlock::Redlock, Lib),
    Raw(Arc<Raw>),
    Rslock(Arc<rslock::LockManager>),
}

pub enum Held {
    Quorumlock(quorumlock::Lock),
    Raw(raw::Held),
    Rslock(rslock::Lock),
}

fn uniform(lo_ms: u64, hi_ms: u64) -> Duration {
    Duration::from_micros(rand::rng().random_range(lo_ms * 1000..hi_ms * 1000))
}

impl Client {
    pub async fn new(lib: Lib, urls: &[String], ttl: Duration) -> Self {
        match lib {
            Lib::Quorumlock | Lib::QuorumlockFast | Lib::QuorumlockWake => {
                let r = quorumlock::Redlock::builder()
                    .nodes(urls)
                    .node_timeout(raw::ATTEMPT_TIMEOUT)
                    .wake_on_release(lib == Lib::QuorumlockWake)
                    .retry(
                        quorumlock::Retry::new()
                            .attempts(100_000)
                            .deadline(Duration::from_secs(30)),
                    )
                    .build()
                    .unwrap();
                // Connect before measuring, as the raw clients do.
                if let Ok(l) = r.try_acquire("bench:connect", ttl).await {
                    let _ = l.release().await;
                }
                Client::Quorumlock(r, lib)
            }
            Lib::Raw | Lib::RawScripts | Lib::RawWaitAll => {
                let mode = match lib {
                    Lib::Raw => Mode::Early,
                    Lib::RawScripts => Mode::Scripts,
                    _ => Mode::WaitAll,
                };
                Client::Raw(Arc::new(Raw::connect(urls, mode, ttl).await))
            }
            Lib::Rslock => {
                let mut m = rslock::LockManager::new(urls.to_vec());
                // One try per call: the harness sleeps rslock's own delay between tries.
                m.set_retry(1, Duration::from_millis(200));
                Client::Rslock(Arc::new(m))
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Client::Quorumlock(_, lib) => lib.name(),
            Client::Raw(_) => "raw",
            Client::Rslock(_) => "rslock",
        }
    }

    /// Waits for background releases, so server counts are complete.
    pub async fn settle(&self) {
        match self {
            Client::Quorumlock(r, _) => r.shutdown().await,
            Client::Raw(r) => r.settle().await,
            Client::Rslock(_) => {}
        }
    }

    /// One attempt.
    pub async fn try_once(&self, key: &str, ttl: Duration) -> Option<Held> {
        match self {
            Client::Quorumlock(r, _) => match r.try_acquire(key, ttl).await {
                Ok(l) => Some(Held::Quorumlock(l)),
                Err(e) => {
                    if !e.is_contended() && FAILED_UNCONTENDED.load(Ordering::Relaxed) < 20 {
                        eprintln!("quorumlock attempt failed: {e}");
                    }
                    None
                }
            },
            Client::Raw(r) => r.try_acquire(key).await.map(Held::Raw),
            Client::Rslock(m) => m.lock(key, ttl).await.ok().map(Held::Rslock),
        }
    }

    pub async fn release(&self, held: Held) {
        match (self, held) {
            (Client::Quorumlock(..), Held::Quorumlock(l)) => {
                let _ = l.release().await;
            }
            (Client::Raw(r), Held::Raw(h)) => r.release(h).await,
            (Client::Rslock(m), Held::Rslock(l)) => m.unlock(&l).await,
            _ => unreachable!("a lock released by another client"),
        }
    }

    /// An acquisition left to expire (the server-cost scenario): whether it was granted.
    pub async fn acquire_only(&self, key: &str, ttl: Duration) -> bool {
        match self.try_once(key, ttl).await {
            Some(Held::Quorumlock(l)) => {
                l.forget();
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Acquire then release, uncontended: the two latencies. An attempt that fails (a timeout
    /// on a loaded machine) is retried at once, its time counted, and the failure counted in
    /// [`FAILED_UNCONTENDED`].
    pub async fn cycle(&self, key: &str, ttl: Duration) -> (Duration, Duration) {
        let t = Instant::now();
        let mut held = None;
        for _ in 0..100 {
            held = self.try_once(key, ttl).await;
            if held.is_some() {
                break;
            }
            FAILED_UNCONTENDED.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Some(held) = held else {
            panic!("{}: 100 uncontended attempts failed on {key}", self.name());
        };
        let a = t.elapsed();
        let t = Instant::now();
        self.release(held).await;
        (a, t.elapsed())
    }

    /// Retries with the client's own delay until it holds `key` or `deadline` passes; returns
    /// the lock and the number of attempts made (`None`: not counted).
    pub async fn acquire_waiting(
        &self,
        key: &str,
        ttl: Duration,
        deadline: Instant,
    ) -> (Option<Held>, Option<u64>) {
        if let Client::Quorumlock(r, Lib::QuorumlockWake) = self {
            // The library's own retry loop (default delays) with wake-ups; it does not report
            // its attempt count.
            let left = deadline.saturating_duration_since(Instant::now());
            let lock = tokio::time::timeout(left, r.acquire(key, ttl)).await;
            return (lock.ok().and_then(Result::ok).map(Held::Quorumlock), None);
        }
        let mut attempts = 0;
        while Instant::now() < deadline {
            attempts += 1;
            if let Some(h) = self.try_once(key, ttl).await {
                return (Some(h), Some(attempts));
            }
            let delay = match self {
                Client::Quorumlock(_, Lib::QuorumlockFast) => uniform(1, 5),
                Client::Quorumlock(..) => uniform(50, 250), // quorumlock's default Retry
                Client::Rslock(..) => uniform(0, 200),      // rslock's default retry delay
                Client::Raw(..) => uniform(1, 5),
            };
            tokio::time::sleep(delay).await;
        }
        (None, Some(attempts))
    }
}
