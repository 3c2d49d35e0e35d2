//! The raw ceiling: a Redlock client written by hand on redis-rs, as lean as we can make it,
//! to measure the library against.
//!
//! The same connections as the library (one multiplexed connection per node, made once), a
//! token from the thread-local generator (`rand::rng()`, 128 bits, hex on the stack), the
//! request built once per attempt and shared by reference, no boxing per node (the N futures
//! live in one pinned slice), no span, and one timer per attempt rather than one per node
//! (redis-rs' own 500 ms per-request timer is switched off, as the library does).
//!
//! - [`Mode::Early`] (the ceiling) decides at a majority. An acquisition that succeeded drops the
//!   replies still due: their requests are already queued on their connections, and the
//!   release, queued after them on the same connections, runs after them on every node. A
//!   failed one releases, on the same connections, on every node that did not refuse (granted,
//!   failed or not yet answered) before it returns, bounded by the attempt timeout (what is
//!   left then finishes in a tracked background task). A release returns at a majority of
//!   answers and lets the rest finish in that background task too.
//! - [`Mode::WaitAll`] waits for every node (or the timeout), acquiring and releasing.
//! - [`Mode::Scripts`] is `Early` sending the library's own scripts: `acquire.lua` (tombstone
//!   check, then `SET NX PX`) and `release.lua` (compare-and-delete, tombstone if not ours),
//!   so that the cost of the scripts is told apart from the library's own overhead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, Value};
use tokio_util::task::TaskTracker;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Early,
    WaitAll,
    Scripts,
}

/// Compare-and-delete, the classic single-instance release.
const CAS: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
/// The library's scripts, byte for byte.
const ACQUIRE: &str = include_str!("../../../src/wire/scripts/acquire.lua");
const RELEASE: &str = include_str!("../../../src/wire/scripts/release.lua");

/// Bound of one attempt (the library's bench configuration uses the same node timeout).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(100);

pub struct Raw {
    conns: Box<[MultiplexedConnection]>,
    mode: Mode,
    ttl_ms: u64,
    cas_sha: String,
    acquire_sha: String,
    release_sha: String,
    background: TaskTracker,
}

pub struct Held {
    key: String,
    token: Token,
}

/// 32 hex digits, with room for the `tomb:` prefix in front: the tombstone key is the token's
/// bytes preceded by `tomb:`, with no allocation for either.
#[derive(Clone, Copy)]
struct Token([u8; 37]);

impl Token {
    fn draw() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let v: u128 = rand::rng().random();
        let mut t = [0u8; 37];
        t[..5].copy_from_slice(b"tomb:");
        for (i, d) in t[5..].iter_mut().enumerate() {
            *d = HEX[((v >> (4 * i)) & 15) as usize];
        }
        Self(t)
    }
    fn value(&self) -> &[u8] {
        &self.0[5..]
    }
    fn tomb(&self) -> &[u8] {
        &self.0
    }
}

/// The N per-node futures, pinned in one allocation and polled in turn.
struct Fan<F: Future> {
    slots: Pin<Box<[Option<F>]>>,
}

impl<F: Future> Fan<F> {
    fn new(futs: impl Iterator<Item = F>) -> Self {
        Self {
            slots: Box::into_pin(futs.map(Some).collect()),
        }
    }

    /// Polls every unfinished future once, handing each result to `on`; `true` when all are done.
    fn poll_all(&mut self, cx: &mut Context<'_>, mut on: impl FnMut(usize, F::Output)) -> bool {
        // SAFETY: the slots are never moved out of the pinned allocation: each future is polled
        // where it is and dropped in place (by assigning `None`) once finished.
        let slots = unsafe { self.slots.as_mut().get_unchecked_mut() };
        let mut done = true;
        for (i, slot) in slots.iter_mut().enumerate() {
            if let Some(f) = slot {
                // SAFETY: as above, `f` stays in place until it is dropped.
                match unsafe { Pin::new_unchecked(f) }.poll(cx) {
                    Poll::Ready(out) => {
                        *slot = None;
                        on(i, out);
                    }
                    Poll::Pending => done = false,
                }
            }
        }
        done
    }

    fn is_done(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }
}

impl<F: Future> Future for Fan<F> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // `Fan` is Unpin (it holds a `Pin<Box<..>>`).
        let this = self.get_mut();
        if this.poll_all(cx, |_, _| {}) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

fn evalsha(sha: &str, keys: &[&[u8]], args: &[&[u8]]) -> Cmd {
    let len = 60 + keys.iter().chain(args).map(|a| a.len()).sum::<usize>();
    let mut c = Cmd::with_capacity(3 + keys.len() + args.len(), len);
    c.arg("EVALSHA").arg(sha).arg(keys.len());
    for a in keys.iter().chain(args) {
        c.arg(*a);
    }
    c
}

impl Raw {
    pub async fn connect(urls: &[String], mode: Mode, ttl: Duration) -> Self {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        let mut conns = Vec::new();
        for u in urls {
            let mut c = redis::Client::open(u.as_str())
                .unwrap()
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .unwrap();
            for script in [CAS, ACQUIRE, RELEASE] {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(script)
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
            conns.push(c);
        }
        let sha = |s| redis::Script::new(s).get_hash().to_owned();
        Self {
            conns: conns.into(),
            mode,
            ttl_ms: ttl.as_millis() as u64,
            cas_sha: sha(CAS),
            acquire_sha: sha(ACQUIRE),
            release_sha: sha(RELEASE),
            background: TaskTracker::new(),
        }
    }

    fn quorum(&self) -> usize {
        self.conns.len() / 2 + 1
    }

    /// One attempt.
    pub async fn try_acquire(&self, key: &str) -> Option<Held> {
        let token = Token::draw();
        let ttl = itoa(self.ttl_ms);
        let cmd = match self.mode {
            Mode::Scripts => evalsha(
                &self.acquire_sha,
                &[key.as_bytes(), token.tomb()],
                &[token.value(), ttl.as_bytes()],
            ),
            Mode::Early | Mode::WaitAll => {
                let mut c = Cmd::with_capacity(6, 40 + key.len() + ttl.len());
                c.arg("SET")
                    .arg(key)
                    .arg(token.value())
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_bytes());
                c
            }
        };
        let (n, need) = (self.conns.len(), self.quorum());
        let cmd = &cmd;
        let mut fan = Fan::new(self.conns.iter().map(|c| {
            let mut c = c.clone();
            async move { c.send_packed_command(cmd).await }
        }));
        // Per node: 1 granted, 2 refused; 0 failed or not answered.
        let mut votes = [0u8; 64];
        let (mut yes, mut no) = (0, 0);
        let wait_all = self.mode == Mode::WaitAll;
        let decided = std::future::poll_fn(|cx| {
            let all = fan.poll_all(cx, |i, reply| {
                let granted = match reply {
                    // SET answers +OK; acquire.lua answers the token itself.
                    Ok(Value::Okay) => true,
                    Ok(Value::BulkString(t)) => t == token.value(),
                    Ok(Value::Nil) | Ok(Value::Int(0)) => {
                        votes[i] = 2;
                        no += 1;
                        return;
                    }
                    _ => false,
                };
                if granted {
                    votes[i] = 1;
                    yes += 1;
                }
            });
            if all || (!wait_all && (yes >= need || no > n - need)) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let _ = tokio::time::timeout(ATTEMPT_TIMEOUT, decided).await;
        if yes >= need {
            // Late replies are dropped; their requests are queued ahead of the release.
            return Some(Held {
                key: key.to_owned(),
                token,
            });
        }
        // Failed: release wherever the key may be, behind the requests on the same connections.
        drop(fan);
        let held = Held {
            key: key.to_owned(),
            token,
        };
        let targets: Vec<usize> = (0..n).filter(|&i| votes[i] != 2).collect();
        self.release_on(&held, &targets, true).await;
        None
    }

    pub async fn release(&self, held: Held) {
        let all: Vec<usize> = (0..self.conns.len()).collect();
        self.release_on(&held, &all, self.mode == Mode::WaitAll).await;
    }

    /// Releases on `targets`; returns at a majority of answers unless `wait_all`, leaving the rest
    /// to a background task.
    async fn release_on(&self, held: &Held, targets: &[usize], wait_all: bool) {
        let token = &held.token;
        let cmd = Arc::new(match self.mode {
            Mode::Scripts => evalsha(
                &self.release_sha,
                &[held.key.as_bytes(), token.tomb()],
                &[token.value(), itoa(self.ttl_ms).as_bytes(), b"0"],
            ),
            Mode::Early | Mode::WaitAll => evalsha(&self.cas_sha, &[held.key.as_bytes()], &[token.value()]),
        });
        let mut fan = Fan::new(targets.iter().map(|&i| {
            let (mut c, cmd) = (self.conns[i].clone(), cmd.clone());
            async move {
                let _ = c.send_packed_command(&cmd).await;
            }
        }));
        let need = if wait_all {
            targets.len()
        } else {
            self.quorum().min(targets.len())
        };
        let mut answered = 0;
        let decided = std::future::poll_fn(|cx| {
            let all = fan.poll_all(cx, |_, ()| answered += 1);
            if all || answered >= need {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let _ = tokio::time::timeout(ATTEMPT_TIMEOUT, decided).await;
        if !fan.is_done() {
            self.background
                .spawn(async move { tokio::time::timeout(ATTEMPT_TIMEOUT, fan).await });
        }
    }

    /// Waits for background releases, so the servers' counters are complete.
    pub async fn settle(&self) {
        self.background.close();
        self.background.wait().await;
        self.background.reopen();
    }
}

/// A u64 in decimal, on the stack.
fn itoa(v: u64) -> Itoa {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    Itoa { buf, start: i }
}

struct Itoa {
    buf: [u8; 20],
    start: usize,
}

impl Itoa {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    fn len(&self) -> usize {
        self.buf.len() - self.start
    }
}
