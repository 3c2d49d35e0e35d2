//! A fault-injecting TCP proxy for one upstream server.
//!
//! It runs on its own thread and current-thread runtime, so it keeps working whatever the code
//! under test does to its own runtime (blocks it, shuts it down). Faults apply per direction:
//! requests (client to server) and replies (server to client), and change the behaviour of
//! connections that are already open.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::cluster::Error;

/// Which way the bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Requests,
    /// Server to client.
    Replies,
}

/// What happens to bytes flowing one way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Forward at once.
    Pass,
    /// Forward each read this long after it arrived (order kept).
    Delay(Duration),
    /// Keep everything until the fault changes, then deliver it (a pause, or a partition that
    /// heals with the data still in flight).
    Hold,
    /// Discard (a blackhole: the peer never learns). A TCP stream cannot lose bytes and go on,
    /// so a connection that lost data is reset as soon as the fault changes and data flows
    /// again: later replies can never be matched to the wrong requests.
    Drop,
}

#[derive(Clone, Copy, Debug)]
struct Faults {
    requests: Fault,
    replies: Fault,
}

struct Shared {
    faults: watch::Sender<Faults>,
    resets: watch::Sender<u64>,
    drop_patterns: Mutex<Vec<Vec<u8>>>,
    rewrites: Mutex<Vec<Rewrite>>,
    greeting: Mutex<Option<Vec<u8>>>,
    counters: Mutex<Vec<(Vec<u8>, Arc<AtomicU64>)>>,
    connections: AtomicU64,
}

/// A proxy in front of one server on 127.0.0.1. Stops when dropped.
pub struct Proxy {
    port: u16,
    upstream: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("port", &self.port)
            .field("upstream", &self.upstream)
            .field("faults", &*self.shared.faults.borrow())
            .finish()
    }
}

/// Counts requests whose reads contain a byte pattern (see [`Proxy::count_requests`]).
#[derive(Clone, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Reads counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A change made to replies in flight (see [`Proxy::rewrite_replies`]).
#[derive(Clone, Debug)]
struct Rewrite {
    from: Vec<u8>,
    to: Vec<u8>,
    close: bool,
}

/// `haystack` with every occurrence of `from` replaced by `to`, if there is one.
fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() || !contains(haystack, from) {
        return None;
    }
    let mut out = Vec::with_capacity(haystack.len() + to.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    Some(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

impl Proxy {
    /// Starts a proxy on a free 127.0.0.1 port in front of `127.0.0.1:upstream`.
    ///
    /// # Errors
    /// When no port can be bound or the thread cannot start.
    pub fn start(upstream: u16) -> Result<Self, Error> {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::new(format!("proxy bind: {e}")))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| Error::new(e.to_string()))?;
        let port = std_listener
            .local_addr()
            .map_err(|e| Error::new(e.to_string()))?
            .port();
        let shared = Arc::new(Shared {
            faults: watch::channel(Faults {
                requests: Fault::Pass,
                replies: Fault::Pass,
            })
            .0,
            resets: watch::channel(0).0,
            drop_patterns: Mutex::new(Vec::new()),
            rewrites: Mutex::new(Vec::new()),
            greeting: Mutex::new(None),
            counters: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("testkit-proxy-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("proxy listener");
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, upstream, thread_shared) => {}
                    }
                });
            })
            .map_err(|e| Error::new(format!("proxy thread: {e}")))?;
        Ok(Self {
            port,
            upstream,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sets the fault for one direction; open connections follow at once.
    pub fn set(&self, direction: Direction, fault: Fault) {
        self.shared.faults.send_modify(|f| match direction {
            Direction::Requests => f.requests = fault,
            Direction::Replies => f.replies = fault,
        });
    }

    /// Both directions to `fault`.
    pub fn set_both(&self, fault: Fault) {
        self.shared.faults.send_modify(|f| {
            f.requests = fault;
            f.replies = fault;
        });
    }

    /// Both directions back to [`Fault::Pass`]; held data is delivered.
    pub fn heal(&self) {
        self.set_both(Fault::Pass);
    }

    /// Resets (RST) every open connection; new connections are accepted as usual.
    pub fn reset_connections(&self) {
        self.shared.resets.send_modify(|n| *n += 1);
    }

    /// Discards every request read that contains `pattern` (the whole read: pipelined commands
    /// in the same read go with it) and resets that connection, as a real network would: a
    /// request lost inside a live TCP stream is not a fault that exists.
    pub fn drop_requests_containing(&self, pattern: impl Into<Vec<u8>>) {
        self.shared
            .drop_patterns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pattern.into());
    }

    /// Stops discarding requests by pattern.
    pub fn clear_request_filters(&self) {
        self.shared
            .drop_patterns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Counts, from now on, the request reads that contain `pattern` (whether or not they are
    /// then delivered).
    pub fn count_requests(&self, pattern: impl Into<Vec<u8>>) -> Counter {
        let c = Arc::new(AtomicU64::new(0));
        self.shared
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((pattern.into(), c.clone()));
        Counter(c)
    }

    /// From now on, replaces `from` by `to` in every reply read from the server (a read is
    /// usually one whole reply when requests are not pipelined). Makes hostile or broken
    /// replies out of real ones: `rewrite_replies("+OK\r\n", "$2\r\nOK\r\n")`.
    pub fn rewrite_replies(&self, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.push_rewrite(from.into(), to.into(), false);
    }

    /// As [`rewrite_replies`](Self::rewrite_replies), then closes the connection right after
    /// sending the rewritten read: a partial frame followed by a close.
    pub fn rewrite_replies_then_close(&self, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.push_rewrite(from.into(), to.into(), true);
    }

    fn push_rewrite(&self, from: Vec<u8>, to: Vec<u8>, close: bool) {
        self.shared
            .rewrites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Rewrite { from, to, close });
    }

    /// Stops rewriting replies.
    pub fn clear_reply_rewrites(&self) {
        self.shared
            .rewrites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Sends `bytes` to every new client connection before anything else: a reply before any
    /// request. `None` stops it.
    pub fn greet(&self, bytes: Option<Vec<u8>>) {
        *self.shared.greeting.lock().unwrap_or_else(|p| p.into_inner()) = bytes;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            if let Err(panic) = t.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: u16, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(serve(client, upstream, shared.clone()));
    }
}

async fn serve(mut client: TcpStream, upstream: u16, shared: Arc<Shared>) {
    // Every close the proxy initiates is a reset (linger 0): resets are what tests inject.
    let _ = client.set_zero_linger();
    let _ = client.set_nodelay(true);
    let addr: SocketAddr = ([127, 0, 0, 1], upstream).into();
    let Ok(server) = TcpStream::connect(addr).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = server.set_zero_linger();
    let mut resets = shared.resets.subscribe();
    resets.mark_unchanged();
    let greeting = shared.greeting.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(g) = greeting {
        if client.write_all(&g).await.is_err() {
            return;
        }
    }
    let kill = Arc::new(tokio::sync::Notify::new());
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        () = async {
            tokio::join!(
                pump(cr, sw, Direction::Requests, shared.clone(), kill.clone()),
                pump(sr, cw, Direction::Replies, shared.clone(), kill.clone()),
            );
        } => {}
        _ = resets.changed() => {}
        () = kill.notified() => {}
    }
}

/// Reads one direction and hands the chunks to a writer that applies the fault.
async fn pump(
    mut from: OwnedReadHalf,
    to: OwnedWriteHalf,
    direction: Direction,
    shared: Arc<Shared>,
    kill: Arc<tokio::sync::Notify>,
) {
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>, bool)>();
    let writer = write_side(rx, to, direction, shared.faults.subscribe(), kill.clone());
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut chunk = buf[..n].to_vec();
            let mut close = false;
            if direction == Direction::Replies {
                for r in shared.rewrites.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    if let Some(changed) = replace_all(&chunk, &r.from, &r.to) {
                        chunk = changed;
                        close |= r.close;
                    }
                }
            }
            if direction == Direction::Requests {
                for (pattern, counter) in shared.counters.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    if contains(&chunk, pattern) {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let dropped = shared
                    .drop_patterns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .any(|p| contains(&chunk, p));
                if dropped {
                    kill.notify_one();
                    return;
                }
            }
            if tx.send((Instant::now(), chunk, close)).is_err() {
                return;
            }
        }
    };
    // Either side ending ends the direction; the connection ends when both have.
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
}

async fn write_side(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>, bool)>,
    mut to: OwnedWriteHalf,
    direction: Direction,
    mut faults: watch::Receiver<Faults>,
    kill: Arc<tokio::sync::Notify>,
) {
    let mut lost_data = false;
    let fault_now = |f: &watch::Receiver<Faults>| {
        let f = *f.borrow();
        match direction {
            Direction::Requests => f.requests,
            Direction::Replies => f.replies,
        }
    };
    while let Some((arrived, chunk, close)) = rx.recv().await {
        loop {
            match fault_now(&faults) {
                Fault::Pass => break,
                Fault::Drop => break,
                Fault::Delay(d) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(arrived + d) => break,
                        changed = faults.changed() => if changed.is_err() { return },
                    }
                }
                Fault::Hold => {
                    if faults.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if fault_now(&faults) == Fault::Drop {
            lost_data = true;
            continue;
        }
        if lost_data {
            // The stream lost bytes: end the connection instead of delivering out of step.
            kill.notify_one();
            return;
        }
        if to.write_all(&chunk).await.is_err() {
            return;
        }
        if close {
            let _ = to.flush().await;
            kill.notify_one();
            return;
        }
    }
}
