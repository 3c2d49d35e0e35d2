//! The proxy behaves like TCP: bytes before a close arrive before it, resets are RSTs, and held
//! requests can arrive late, after a newer connection's commands. Each test runs against a real
//! `redis-server` started by `LocalCluster`, with raw sockets so nothing hides what the proxy did.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use quorumlock_testkit::{Direction, Fault, LocalCluster, Proxy};

const PATIENCE: Duration = Duration::from_secs(5);

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Reads one reply of a simple type (status, error, integer, bulk string) as its raw text.
fn read_reply(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    let complete = |got: &[u8]| {
        let text = String::from_utf8_lossy(got);
        let Some(first_end) = text.find("\r\n") else {
            return false;
        };
        if !text.starts_with('$') {
            return true;
        }
        let len: i64 = text[1..first_end].parse().expect("bulk length");
        len < 0 || text.len() >= first_end + 2 + len as usize + 2
    };
    while !complete(&got) {
        let n = s.read(&mut byte).expect("read a reply");
        assert_eq!(
            n,
            1,
            "connection closed after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.push(byte[0]);
    }
    String::from_utf8(got).unwrap()
}

fn command(s: &mut TcpStream, args: &[&str]) -> String {
    s.write_all(&encode(args)).unwrap();
    read_reply(s)
}

/// GET straight from the server, not through the proxy.
fn get(cluster: &LocalCluster, key: &str) -> String {
    command(&mut connect(cluster.port(0)), &["GET", key])
}

fn poll(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reads until the end of the stream; panics on an error (a reset) or a timeout.
fn read_to_end(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("a clean end of stream");
    String::from_utf8(out).unwrap()
}

/// The read error a reset gives, or a panic describing what came instead.
fn expect_reset(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(0) => panic!("a clean end of stream (FIN), not a reset"),
        other => panic!("expected ECONNRESET, got {other:?}"),
    }
}

/// A connection through the proxy that the proxy has certainly accepted and connected upstream.
fn ready_connection(proxy: &Proxy) -> TcpStream {
    let mut c = connect(proxy.port());
    assert_eq!(command(&mut c, &["PING"]), "+PONG\r\n");
    c
}

#[test]
fn held_requests_of_a_closed_connection_arrive_after_a_newer_connection() {
    let cluster = LocalCluster::start(1).unwrap();
    let proxy = Proxy::start(cluster.port(0)).unwrap();
    let mut old = ready_connection(&proxy);
    assert_eq!(proxy.hold_requests(), 1);
    let set_v1 = encode(&["SET", "k", "v1"]);
    old.write_all(&set_v1).unwrap();
    poll("the held SET", || proxy.held_bytes() == set_v1.len());
    drop(old); // the client gives up on the connection
    poll("the proxy to read the close", || proxy.held_abandoned() == 1);

    let mut new = connect(proxy.port());
    assert_eq!(command(&mut new, &["SET", "k", "v2"]), "+OK\r\n");
    assert_eq!(get(&cluster, "k"), "$2\r\nv2\r\n");

    let delivered = proxy.deliver_held().unwrap();
    assert_eq!(delivered.connections, 1);
    assert_eq!(delivered.bytes, set_v1.len());
    assert_eq!(delivered.closed_by_server, 1);
    // The old connection's SET ran last: the late bytes won.
    assert_eq!(get(&cluster, "k"), "$2\r\nv1\r\n");
    assert_eq!(proxy.held_bytes(), 0);
}

#[test]
fn held_requests_survive_a_reset_of_their_client() {
    let cluster = LocalCluster::start(1).unwrap();
    let proxy = Proxy::start(cluster.port(0)).unwrap();
    let mut old = ready_connection(&proxy);
    assert_eq!(proxy.hold_requests(), 1);
    old.write_all(&encode(&["SET", "k", "v1"])).unwrap();
    poll("the held SET", || proxy.held_bytes() > 0);
    proxy.reset_connections();
    expect_reset(&mut old);
    assert_eq!(proxy.held_abandoned(), 1);

    let mut new = connect(proxy.port());
    assert_eq!(command(&mut new, &["SET", "k", "v2"]), "+OK\r\n");
    assert_eq!(proxy.deliver_held().unwrap().closed_by_server, 1);
    assert_eq!(get(&cluster, "k"), "$2\r\nv1\r\n");
}

#[test]
fn held_requests_of_an_open_connection_get_their_reply_late() {
    let cluster = LocalCluster::start(1).unwrap();
    let proxy = Proxy::start(cluster.port(0)).unwrap();
    let mut old = ready_connection(&proxy);
    assert_eq!(proxy.hold_requests(), 1);
    old.write_all(&encode(&["SET", "k", "v1"])).unwrap();
    poll("the held SET", || proxy.held_bytes() > 0);

    let mut new = connect(proxy.port());
    assert_eq!(command(&mut new, &["SET", "k", "v2"]), "+OK\r\n");
    assert_eq!(proxy.held_abandoned(), 0);
    let delivered = proxy.deliver_held().unwrap();
    assert_eq!((delivered.connections, delivered.closed_by_server), (1, 0));
    // The reply is the proof the SET ran; then the connection works as before.
    assert_eq!(read_reply(&mut old), "+OK\r\n");
    assert_eq!(get(&cluster, "k"), "$2\r\nv1\r\n");
    assert_eq!(command(&mut old, &["GET", "k"]), "$2\r\nv1\r\n");
}

#[test]
fn discarded_held_requests_never_arrive_and_both_sides_are_reset() {
    let cluster = LocalCluster::start(1).unwrap();
    let proxy = Proxy::start(cluster.port(0)).unwrap();
    let mut admin = connect(cluster.port(0));
    assert_eq!(command(&mut admin, &["CLIENT", "SETNAME", "admin"]), "+OK\r\n");
    let mut old = ready_connection(&proxy);
    assert_eq!(command(&mut old, &["CLIENT", "SETNAME", "held"]), "+OK\r\n");
    proxy.hold_requests();
    old.write_all(&encode(&["SET", "k", "v1"])).unwrap();
    poll("the held SET", || proxy.held_bytes() > 0);

    assert_eq!(proxy.discard_held(), 1);
    expect_reset(&mut old);
    // The upstream connection is gone too, so the SET can never arrive.
    poll("the server to drop the held connection", || {
        !command(&mut admin, &["CLIENT", "LIST"]).contains("name=held")
    });
    assert_eq!(command(&mut admin, &["GET", "k"]), "$-1\r\n");
    assert_eq!(proxy.held_bytes(), 0);
}

#[test]
fn requests_sent_before_a_close_are_delivered_before_it() {
    let cluster = LocalCluster::start(1).unwrap();
    let proxy = Proxy::start(cluster.port(0)).unwrap();
    // The close reaches the proxy while the SET is still delayed there.
    proxy.set(Direction::Requests, Fault::Delay(Duration::from_millis(300)));
    let mut c = connect(proxy.port());
    c.write_all(&encode(&["SET", "k", "v"])).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    // The server ran the SET, answered it, and only then saw the close.
    assert_eq!(read_to_end(&mut c), "+OK\r\n");
    assert_eq!(get(&cluster, "k"), "$1\r\nv\r\n");
}

#[test]
fn replies_sent_before_the_server_closes_are_delivered_before_it() {
    let cluster = LocalCluster::start(1).unwrap();
    let proxy = Proxy::start(cluster.port(0)).unwrap();
    let mut c = ready_connection(&proxy);
    // QUIT: the server answers +OK and closes at once, while the reply is delayed here.
    proxy.set(Direction::Replies, Fault::Delay(Duration::from_millis(300)));
    c.write_all(&encode(&["QUIT"])).unwrap();
    assert_eq!(read_to_end(&mut c), "+OK\r\n");
}

#[test]
fn held_replies_survive_the_server_closing() {
    let cluster = LocalCluster::start(1).unwrap();
    let proxy = Proxy::start(cluster.port(0)).unwrap();
    let mut c = ready_connection(&proxy);
    proxy.set(Direction::Replies, Fault::Hold);
    let quits = proxy.count_requests("QUIT");
    c.write_all(&encode(&["QUIT"])).unwrap();
    poll("the QUIT to pass", || quits.get() == 1);
    proxy.heal();
    assert_eq!(read_to_end(&mut c), "+OK\r\n");
}

#[test]
fn a_reset_is_an_rst_for_the_client() {
    let cluster = LocalCluster::start(1).unwrap();
    let proxy = Proxy::start(cluster.port(0)).unwrap();
    let mut c = ready_connection(&proxy);
    proxy.reset_connections();
    expect_reset(&mut c);
    // New connections work as before.
    ready_connection(&proxy);
}

#[test]
fn a_reset_is_an_rst_for_the_upstream_server() {
    // A plain listener as the server, so the test reads exactly what the server's socket sees.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = Proxy::start(upstream.local_addr().unwrap().port()).unwrap();
    let mut c = connect(proxy.port());
    c.write_all(b"x").unwrap();
    let (mut server_side, _) = upstream.accept().unwrap();
    server_side.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut one = [0u8; 1];
    server_side.read_exact(&mut one).unwrap();
    proxy.reset_connections();
    expect_reset(&mut server_side);
    expect_reset(&mut c);
}

#[test]
fn a_client_close_reaches_the_server_as_a_clean_close() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = Proxy::start(upstream.local_addr().unwrap().port()).unwrap();
    let mut c = connect(proxy.port());
    c.write_all(b"bye").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let (mut server_side, _) = upstream.accept().unwrap();
    server_side.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(read_to_end(&mut server_side), "bye");
    // The other direction still works after a half-close.
    server_side.write_all(b"reply").unwrap();
    drop(server_side);
    assert_eq!(read_to_end(&mut c), "reply");
}
