//! A fault-injecting TCP proxy for one upstream server.
//!
//! It runs on its own thread and current-thread runtime, so it keeps working whatever the code
//! under test does to its own runtime (blocks it, shuts it down). Faults apply per direction:
//! requests (client to server) and replies (server to client), and change the behaviour of
//! connections that are already open.
//!
//! The proxy behaves like the TCP path it stands for:
//! - a close (FIN) is passed on only after every byte the closing side sent before it, however
//!   long a fault keeps those bytes; a reset read from one side is passed on as a reset, also
//!   after the bytes before it;
//! - a reset the proxy injects is a real RST (`SO_LINGER` 0, then close), on the client side and
//!   on the upstream side, never a clean end of stream;
//! - [`Proxy::hold_requests`] keeps the requests of the connections open now on their way, even
//!   after their client closed or was reset, and [`Proxy::deliver_held`] lets them reach the
//!   server late, on their original upstream connection, after newer connections' traffic: a
//!   retransmitted segment that arrives after the client already reconnected.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
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
    /// heals with the data still in flight). A close or reset that follows held bytes waits
    /// behind them.
    Hold,
    /// Discard (a blackhole: the peer never learns). A TCP stream cannot lose bytes and go on,
    /// so a connection that lost data is reset as soon as the fault changes and data flows
    /// again: later replies can never be matched to the wrong requests. A connection whose
    /// close arrives while its direction drops is reset at once.
    Drop,
}

/// What [`Proxy::deliver_held`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivered {
    /// Connections whose held requests were let go.
    pub connections: usize,
    /// Held bytes written to the server.
    pub bytes: usize,
    /// Of those connections, the ones whose client had already gone (closed or reset): the
    /// proxy passed a close (FIN) on after their bytes and the server closed its side too,
    /// which it does only after running every command it read. So once this counts a
    /// connection, that connection's late commands have run.
    pub closed_by_server: usize,
}

/// How long [`Proxy::deliver_held`] waits for the server before it gives up.
const DELIVER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
struct Faults {
    requests: Fault,
    replies: Fault,
}

struct Shared {
    faults: watch::Sender<Faults>,
    drop_patterns: Mutex<Vec<Vec<u8>>>,
    rewrites: Mutex<Vec<Rewrite>>,
    greeting: Mutex<Option<Vec<u8>>>,
    counters: Mutex<Vec<(Vec<u8>, Arc<AtomicU64>)>>,
    connections: AtomicU64,
    /// Every connection still being served; a connection's entry dies with it.
    open: Mutex<Vec<Weak<Conn>>>,
}

impl Shared {
    fn open_connections(&self) -> Vec<Arc<Conn>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|w| w.strong_count() > 0);
        open.iter().filter_map(Weak::upgrade).collect()
    }
}

/// A one-way latch that async code can wait on.
#[derive(Default)]
struct Trip {
    set: AtomicBool,
    notify: Notify,
}

impl Trip {
    fn trip(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a trip between the check and the await is seen.
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// One proxied connection's state, shared between its four pumps and the [`Proxy`] handle.
struct Conn {
    /// While set, requests read from the client are tagged as held.
    capturing: AtomicBool,
    /// Whether held requests may go on to the server (false from `hold_requests` until
    /// `deliver_held`).
    released: watch::Sender<bool>,
    /// Held request bytes not yet written to the server.
    held: AtomicUsize,
    /// The client's end (close or reset) was read while its requests were held.
    client_left_held: AtomicBool,
    /// The client side is still open: its reader has not ended.
    client_open: AtomicBool,
    /// The server ended its side (end of stream or error).
    server_ended: Trip,
    /// The request writer (client to server) has ended.
    requests_done: Trip,
    /// Reset the client side (RST) now.
    client_rst: Trip,
    /// Reset the upstream side (RST) now.
    server_rst: Trip,
}

impl Conn {
    fn new() -> Self {
        Self {
            capturing: AtomicBool::new(false),
            released: watch::channel(true).0,
            held: AtomicUsize::new(0),
            client_left_held: AtomicBool::new(false),
            client_open: AtomicBool::new(true),
            server_ended: Trip::default(),
            requests_done: Trip::default(),
            client_rst: Trip::default(),
            server_rst: Trip::default(),
        }
    }

    fn holding(&self) -> bool {
        !*self.released.borrow()
    }

    fn reset_both(&self) {
        self.client_rst.trip();
        self.server_rst.trip();
    }
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
            drop_patterns: Mutex::new(Vec::new()),
            rewrites: Mutex::new(Vec::new()),
            greeting: Mutex::new(None),
            counters: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
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

    /// Both directions back to [`Fault::Pass`]; held data is delivered. Requests held by
    /// [`hold_requests`](Self::hold_requests) stay held until
    /// [`deliver_held`](Self::deliver_held).
    pub fn heal(&self) {
        self.set_both(Fault::Pass);
    }

    /// Resets (RST, on both sides) every open connection; bytes still in the proxy are lost, as
    /// in a reset TCP connection. New connections are accepted as usual.
    ///
    /// A connection whose requests are held by [`hold_requests`](Self::hold_requests) loses only
    /// its client side: its held requests and its upstream connection stay for
    /// [`deliver_held`](Self::deliver_held), like segments still in the network after the
    /// client gave up on the connection.
    pub fn reset_connections(&self) {
        for conn in self.shared.open_connections() {
            if conn.holding() {
                conn.client_rst.trip();
            } else {
                conn.reset_both();
            }
        }
    }

    /// Holds, from now on, every request byte of the connections open now (the ones the proxy
    /// has accepted) instead of forwarding it: the client's writes succeed, the server sees
    /// nothing. A close or reset by the client is held too, behind those bytes, and the held
    /// bytes survive it and [`reset_connections`](Self::reset_connections). Replies still flow,
    /// and connections opened later are not held, so a client that gives up on a held
    /// connection and opens a new one reaches the server at once.
    /// [`deliver_held`](Self::deliver_held) lets the held bytes go on their original upstream
    /// connection; [`discard_held`](Self::discard_held) resets those connections instead.
    ///
    /// Returns how many connections are held (the ones whose client side is still open).
    pub fn hold_requests(&self) -> usize {
        let mut held = 0;
        for conn in self.shared.open_connections() {
            if !conn.client_open.load(Ordering::SeqCst) {
                continue;
            }
            // Released first: a request tagged as held must never find the gate open.
            conn.released.send_replace(false);
            conn.capturing.store(true, Ordering::SeqCst);
            held += 1;
        }
        held
    }

    /// Request bytes held by [`hold_requests`](Self::hold_requests) and not yet delivered. A
    /// test polls this to know that the client's request was read (and held) before it goes on.
    pub fn held_bytes(&self) -> usize {
        self.shared
            .open_connections()
            .iter()
            .filter(|c| c.holding())
            .map(|c| c.held.load(Ordering::SeqCst))
            .sum()
    }

    /// Connections held by [`hold_requests`](Self::hold_requests) whose client has gone: the
    /// proxy has read its close or reset (held behind its bytes). A client's close reaches the
    /// proxy a moment after the client made it: poll this before
    /// [`deliver_held`](Self::deliver_held) when the test needs that close passed on after the
    /// held bytes (and `deliver_held` to wait for the server to run them).
    pub fn held_abandoned(&self) -> usize {
        self.shared
            .open_connections()
            .iter()
            .filter(|c| c.holding() && c.client_left_held.load(Ordering::SeqCst))
            .count()
    }

    /// Lets the requests held by [`hold_requests`](Self::hold_requests) go to the server, each
    /// on the upstream connection it came in on, in their original order, followed by the
    /// client's close if the client has gone; then those connections pass traffic as usual.
    ///
    /// Blocks (at most 5 s) until every held byte was written to the server and, for each
    /// connection whose client had gone (see [`held_abandoned`](Self::held_abandoned)), until
    /// the server closed that connection, which it does after running every command it read:
    /// when this returns, those late commands have run. For a connection whose client is still
    /// open, or whose close has not reached the proxy yet, only the write is awaited: poll for
    /// the effect (the reply reaches the client). Direction faults still apply: call it with
    /// requests passing.
    ///
    /// # Errors
    /// When the held bytes are not written or the server does not close in time (a paused
    /// server, a [`Fault::Hold`] on requests).
    pub fn deliver_held(&self) -> Result<Delivered, Error> {
        let conns: Vec<Arc<Conn>> = self
            .shared
            .open_connections()
            .into_iter()
            .filter(|c| c.holding())
            .collect();
        let bytes = conns.iter().map(|c| c.held.load(Ordering::SeqCst)).sum();
        for conn in &conns {
            conn.capturing.store(false, Ordering::SeqCst);
            conn.released.send_replace(true);
        }
        let deadline = std::time::Instant::now() + DELIVER_TIMEOUT;
        loop {
            let settled = conns.iter().all(|c| {
                let written = c.held.load(Ordering::SeqCst) == 0 || c.requests_done.is_set();
                let closed = !c.client_left_held.load(Ordering::SeqCst) || c.server_ended.is_set();
                written && closed
            });
            if settled {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::new(format!(
                    "deliver_held: the held requests did not reach 127.0.0.1:{} within {DELIVER_TIMEOUT:?}",
                    self.upstream
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Delivered {
            connections: conns.len(),
            bytes,
            closed_by_server: conns
                .iter()
                .filter(|c| c.client_left_held.load(Ordering::SeqCst) && c.server_ended.is_set())
                .count(),
        })
    }

    /// Resets (RST, both sides) every connection whose requests are held by
    /// [`hold_requests`](Self::hold_requests); the held bytes are lost. Returns how many.
    pub fn discard_held(&self) -> usize {
        let mut n = 0;
        for conn in self.shared.open_connections() {
            if conn.holding() {
                conn.reset_both();
                conn.held.store(0, Ordering::SeqCst);
                n += 1;
            }
        }
        n
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
    /// sending the rewritten read: the client reads a partial frame followed by a close (FIN);
    /// the upstream side is reset.
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
        let conn = Arc::new(Conn::new());
        {
            let mut open = shared.open.lock().unwrap_or_else(|p| p.into_inner());
            // A dead entry still pins its allocation: prune here, or a long soak grows.
            open.retain(|w| w.strong_count() > 0);
            open.push(Arc::downgrade(&conn));
        }
        tokio::spawn(serve(client, upstream, shared.clone(), conn));
    }
}

/// What one direction carries: bytes, then how the sending side ended.
enum Item {
    /// Bytes read at `arrived`; `close_after` closes the client side once they are written
    /// (reply rewriting).
    Data {
        arrived: Instant,
        bytes: Vec<u8>,
        close_after: bool,
    },
    /// The sender closed its side (end of stream).
    Fin(Instant),
    /// The sender's side failed (reset by the peer, or by the proxy).
    Rst(Instant),
}

impl Item {
    fn arrived(&self) -> Instant {
        match self {
            Item::Data { arrived, .. } | Item::Fin(arrived) | Item::Rst(arrived) => *arrived,
        }
    }
}

/// An item and whether it was read while its connection's requests were held.
struct Tagged {
    item: Item,
    held: bool,
}

/// Closes the write side (FIN after everything written so far).
fn shutdown_write(stream: &TcpStream) {
    // SAFETY: shutdown(2) on a descriptor this `TcpStream` owns and keeps open for the call.
    unsafe {
        libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR);
    }
}

async fn read_some(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Serves one connection with four pumps: each side's reader and writer. A socket is closed
/// when the last pump using it ends; a reset sets `SO_LINGER` 0 first, so the close is an RST.
async fn serve(client: TcpStream, upstream: u16, shared: Arc<Shared>, conn: Arc<Conn>) {
    let _ = client.set_nodelay(true);
    let addr: SocketAddr = ([127, 0, 0, 1], upstream).into();
    let Ok(server) = TcpStream::connect(addr).await else {
        // Nothing to proxy to: the client sees a reset, as for a refused connection.
        let _ = client.set_zero_linger();
        return;
    };
    let _ = server.set_nodelay(true);
    let greeting = shared.greeting.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(g) = greeting {
        if write_all(&client, &g).await.is_err() {
            return;
        }
    }
    let (client, server) = (Arc::new(client), Arc::new(server));
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let (rep_tx, rep_rx) = mpsc::unbounded_channel();
    // `join!` drops each pump as soon as it ends, and with it the pump's handle on its socket.
    tokio::join!(
        read_side(
            client.clone(),
            req_tx,
            Direction::Requests,
            shared.clone(),
            conn.clone()
        ),
        write_side(
            server.clone(),
            req_rx,
            Direction::Requests,
            shared.clone(),
            conn.clone()
        ),
        read_side(server, rep_tx, Direction::Replies, shared.clone(), conn.clone()),
        write_side(client, rep_rx, Direction::Replies, shared, conn),
    );
}

/// The reset latch of the side `stream` belongs to: the client side reads requests and writes
/// replies.
fn own_reset(conn: &Conn, reads: bool, direction: Direction) -> &Trip {
    match (direction, reads) {
        (Direction::Requests, true) | (Direction::Replies, false) => &conn.client_rst,
        (Direction::Requests, false) | (Direction::Replies, true) => &conn.server_rst,
    }
}

/// Reads one side and queues what it read, then how that side ended.
async fn read_side(
    stream: Arc<TcpStream>,
    tx: mpsc::UnboundedSender<Tagged>,
    direction: Direction,
    shared: Arc<Shared>,
    conn: Arc<Conn>,
) {
    let reset = own_reset(&conn, true, direction);
    let tagged = |item: Item| {
        let held = direction == Direction::Requests && conn.capturing.load(Ordering::SeqCst);
        if held {
            if let Item::Data { bytes, .. } = &item {
                conn.held.fetch_add(bytes.len(), Ordering::SeqCst);
            } else {
                conn.client_left_held.store(true, Ordering::SeqCst);
            }
        }
        Tagged { item, held }
    };
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        let read = tokio::select! {
            r = read_some(&stream, &mut buf) => r,
            () = reset.wait() => {
                let _ = stream.set_zero_linger();
                break Item::Rst(Instant::now());
            }
        };
        let n = match read {
            Ok(0) => break Item::Fin(Instant::now()),
            Err(_) => break Item::Rst(Instant::now()),
            Ok(n) => n,
        };
        let mut chunk = buf[..n].to_vec();
        let mut close_after = false;
        match direction {
            Direction::Replies => {
                for r in shared.rewrites.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    if let Some(changed) = replace_all(&chunk, &r.from, &r.to) {
                        chunk = changed;
                        close_after |= r.close;
                    }
                }
            }
            Direction::Requests => {
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
                    conn.reset_both();
                    let _ = stream.set_zero_linger();
                    return;
                }
            }
        }
        let item = tagged(Item::Data {
            arrived: Instant::now(),
            bytes: chunk,
            close_after,
        });
        if tx.send(item).is_err() && direction == Direction::Requests {
            // The server side is gone: whatever the client sends now is answered by a reset.
            let _ = stream.set_zero_linger();
            return;
        }
        // A reply nobody can take any more is read and dropped, so the server can go on and
        // close the connection when it is done with it (deliver_held waits for that).
    };
    match direction {
        Direction::Requests => conn.client_open.store(false, Ordering::SeqCst),
        Direction::Replies => conn.server_ended.trip(),
    }
    let _ = tx.send(tagged(end));
}

/// Takes what the other side's reader queued, applies this direction's fault (and, for
/// requests, the hold of [`Proxy::hold_requests`]), writes it, then passes on the other side's
/// end: a FIN after the bytes, or a reset.
async fn write_side(
    stream: Arc<TcpStream>,
    mut rx: mpsc::UnboundedReceiver<Tagged>,
    direction: Direction,
    shared: Arc<Shared>,
    conn: Arc<Conn>,
) {
    let reset = own_reset(&conn, false, direction);
    tokio::select! {
        () = forward(&stream, &mut rx, direction, &shared, &conn) => {}
        () = reset.wait() => {
            let _ = stream.set_zero_linger();
        }
    }
    if direction == Direction::Requests {
        conn.requests_done.trip();
    }
}

async fn forward(
    stream: &TcpStream,
    rx: &mut mpsc::UnboundedReceiver<Tagged>,
    direction: Direction,
    shared: &Shared,
    conn: &Conn,
) {
    let mut faults = shared.faults.subscribe();
    let mut released = conn.released.subscribe();
    let fault_now = |f: &watch::Receiver<Faults>| {
        let f = *f.borrow();
        match direction {
            Direction::Requests => f.requests,
            Direction::Replies => f.replies,
        }
    };
    let mut lost_data = false;
    let mut writable = true;
    // A channel that ends without an end item means the reading pump was cut short by a reset
    // of its own side, which has already been passed on to this side if it had to be.
    while let Some(Tagged { item, held }) = rx.recv().await {
        if held && released.wait_for(|open| *open).await.is_err() {
            return;
        }
        loop {
            match fault_now(&faults) {
                Fault::Pass | Fault::Drop => break,
                Fault::Delay(d) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(item.arrived() + d) => break,
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
            if let Item::Data { .. } = item {
                lost_data = true;
                continue;
            }
            conn.reset_both();
            return;
        }
        if lost_data {
            // The stream lost bytes: end the connection instead of delivering out of step.
            conn.reset_both();
            return;
        }
        match item {
            Item::Data {
                bytes, close_after, ..
            } => {
                if writable && write_all(stream, &bytes).await.is_err() {
                    match direction {
                        // The server is gone: the client's next bytes meet a reset, as in TCP.
                        Direction::Requests => {
                            conn.client_rst.trip();
                            return;
                        }
                        // The client is gone; keep draining so the server side can finish.
                        Direction::Replies => writable = false,
                    }
                }
                if held {
                    conn.held.fetch_sub(bytes.len(), Ordering::SeqCst);
                }
                if close_after && writable {
                    shutdown_write(stream);
                    conn.server_rst.trip();
                    return;
                }
            }
            Item::Fin(_) => {
                shutdown_write(stream);
                return;
            }
            Item::Rst(_) if held => {
                // A client that left a held connection, whichever way, is passed on as a
                // close so that the server runs the late commands and then closes.
                shutdown_write(stream);
                return;
            }
            Item::Rst(_) => {
                own_reset(conn, false, direction).trip();
                let _ = stream.set_zero_linger();
                return;
            }
        }
    }
}
