//! The built-in HTTP proxy (spec §6) in front of a stand-in application, on a real mount whose
//! database SQLite writes: writes are forwarded and come back with the `__txid` cookie, reads
//! wait for their cookie's TXID (and time out with 504), passthrough paths are left alone,
//! `/litefs/health` answers, and an application that is down gives 502; and two `litefs mount`
//! processes configured with `proxy:` send writes to the primary. Requests are written by hand
//! on a raw `TcpStream`, so the bytes on the wire are what is checked.

mod common;

use common::TestMount;
use common::cluster::{Node, NodeConfig, free_port};
use litefs::http::proxy::{Pattern, ProxyOptions, ProxyServer};
use rusqlite::Connection;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A stand-in application on a loopback port: answers every request with 200 and a body
/// naming what it received (`METHOD PATH host=HOST body=BODY`), keeping the connection for
/// more unless the request said `Connection: close`. Serves until dropped with the test (the
/// thread blocks in `accept` and ends with the process).
fn application() -> SocketAddr {
    spawn_application(Arc::new(AtomicUsize::new(0)), false)
}

/// [`application`] counting the connections it accepts; with `close_kept`, it closes each
/// connection right after its first answer although that answer says nothing of it (as an
/// application whose idle timeout has just run out).
fn spawn_application(connections: Arc<AtomicUsize>, close_kept: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            connections.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                while answer(&mut reader, &stream) && !close_kept {}
            });
        }
    });
    addr
}

/// Answers one request read from `reader`; false when the connection is to end.
fn answer(reader: &mut BufReader<TcpStream>, mut stream: &TcpStream) -> bool {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return false;
    }
    let (mut host, mut len, mut close) = (String::new(), 0usize, false);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("host:") {
            host = v.trim().to_string();
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if let Some(v) = lower.strip_prefix("connection:") {
            close = v.trim() == "close";
        }
    }
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let text = format!(
        "{method} {path} host={host} body={}",
        String::from_utf8_lossy(&body)
    );
    let connection = if close { "Connection: close\r\n" } else { "" };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Application: yes\r\n{connection}\r\n{text}",
        text.len()
    )
    .is_ok()
        && !close
}

/// A response as read off the wire.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole answer.
fn request(
    proxy: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> Answer {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: app.example\r\n{cookie}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// Sends one HTTP/1.1 request without `Connection: close` (as browsers do, so the proxy
/// keeps its connection to the application) and reads the answer by its Content-Length.
fn request_kept(proxy: SocketAddr, method: &str, path: &str, body: &str) -> Answer {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: app.example\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let answer = Answer {
        status,
        headers,
        body: String::new(),
    };
    let len: usize = answer
        .header("content-length")
        .expect("a Content-Length")
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).unwrap();
    Answer {
        body: String::from_utf8(body).unwrap(),
        ..answer
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

fn options(target: SocketAddr) -> ProxyOptions {
    ProxyOptions {
        addr: "127.0.0.1:0".into(),
        target: target.to_string(),
        db: "db".into(),
        max_lag: Duration::from_secs(10),
        debug: false,
        passthrough: vec![Pattern::new("/static/*")],
        always_forward: vec![],
        primary_redirect_timeout: Duration::from_secs(5),
        request_wait: Some(Duration::from_secs(10)),
        dial_timeout: Duration::from_millis(300),
    }
}

/// A mount whose database "db" (WAL mode) has table `t`, and a proxy in front of an
/// application, tracking "db".
fn setup() -> (TestMount, Connection, ProxyServer) {
    // Kernel-local locks, the default: small WAL commits are then published after SQLite's
    // commit returns, and the cookie must still cover them.
    let t = TestMount::with_locks(false, false);
    let conn = Connection::open(t.path("db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x);")
        .unwrap();
    let proxy = ProxyServer::start(t.store_arc(), options(application())).unwrap();
    (t, conn, proxy)
}

#[test]
fn a_write_is_forwarded_and_answered_with_the_txid_cookie() {
    let (t, conn, proxy) = setup();
    conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
    let txid = t.pos("db").txid.0;
    let a = request(proxy.addr(), "POST", "/items?x=1", None, "payload");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, "POST /items?x=1 host=app.example body=payload");
    assert_eq!(a.header("x-application"), Some("yes"), "{:?}", a.headers);
    let cookie = a.header("set-cookie").expect("a __txid cookie");
    let expected = format!("__txid={txid:016x}; Path=/; Expires=");
    assert!(cookie.starts_with(&expected), "{cookie}");
    assert!(cookie.ends_with(" GMT; HttpOnly"), "{cookie}");
    // A passthrough path is forwarded as it is: no cookie.
    let a = request(proxy.addr(), "POST", "/static/app.js", None, "");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("set-cookie"), None, "{:?}", a.headers);
    // Reads get no cookie either.
    let a = request(proxy.addr(), "GET", "/items", None, "");
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "GET /items host=app.example body=")
    );
    assert_eq!(a.header("set-cookie"), None);
    let a = request(proxy.addr(), "GET", "/litefs/health", None, "");
    assert_eq!((a.status, a.body.as_str()), (200, "OK\n"));
}

/// A mount and a proxy in front of an application counting its connections
/// ([`spawn_application`] with `close_kept`).
fn counted_setup(close_kept: bool) -> (TestMount, Arc<AtomicUsize>, ProxyServer) {
    let t = TestMount::with_locks(false, false);
    let connections = Arc::new(AtomicUsize::new(0));
    let app = spawn_application(connections.clone(), close_kept);
    let proxy = ProxyServer::start(t.store_arc(), options(app)).unwrap();
    (t, connections, proxy)
}

/// Requests that do not ask to close go to the application over one kept connection,
/// reads and writes alike (no socket left in TIME_WAIT per request).
#[test]
fn connections_to_the_application_are_kept_and_reused() {
    let (_t, connections, proxy) = counted_setup(false);
    for i in 0..5 {
        let a = request_kept(proxy.addr(), "GET", &format!("/items/{i}"), "");
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body, format!("GET /items/{i} host=app.example body="));
        let a = request_kept(proxy.addr(), "POST", "/items", "x");
        assert_eq!(
            (a.status, a.body.as_str()),
            (200, "POST /items host=app.example body=x")
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "10 requests over one connection"
    );
}

/// A kept connection the application closed (its idle timeout) is not used again: the next
/// request, a write as well as a read, goes over a new one and is answered.
#[test]
fn a_kept_connection_the_application_closed_is_replaced() {
    let (_t, connections, proxy) = counted_setup(true);
    for (i, method) in ["GET", "POST", "GET", "POST"].into_iter().enumerate() {
        // Time for the proxy to see the close (a request racing it is covered by the
        // replay of bodyless GETs, which this test cannot time).
        std::thread::sleep(Duration::from_millis(50));
        let a = request_kept(proxy.addr(), method, "/items", "b");
        assert_eq!(a.status, 200, "request {i} ({method}): {}", a.body);
        assert_eq!(a.body, format!("{method} /items host=app.example body=b"));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 4, "one per request");
}

/// A client connection that sends nothing is closed once the request wait (idle plus
/// header deadlines, `proxy::request_wait`) has passed: an idle client cannot hold a
/// connection forever.
#[test]
fn an_idle_client_connection_is_closed_after_the_request_wait() {
    let t = TestMount::with_locks(false, false);
    let wait = Duration::from_millis(300);
    let mut o = options(application());
    o.request_wait = Some(wait);
    let proxy = ProxyServer::start(t.store_arc(), o).unwrap();
    // Before the connection: the proxy's deadline starts when it accepts it.
    let started = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    // EOF, or a reset: either way the proxy let go of the connection.
    let n = stream.read(&mut buf).unwrap_or(0);
    let waited = started.elapsed();
    assert_eq!(n, 0, "nothing answered: {:?}", &buf[..n]);
    assert!(
        waited >= wait && waited < Duration::from_secs(5),
        "closed after {waited:?}, wait {wait:?}"
    );
}

/// A read whose cookie names a TXID this node has not reached waits for it; one that never
/// comes times out after 5 s with 504.
#[test]
fn a_read_waits_for_the_txid_in_its_cookie() {
    let (t, conn, proxy) = setup();
    let next = t.pos("db").txid.0 + 1;
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
    });
    let started = Instant::now();
    let cookie = format!("__txid={next:016x}");
    let a = request(proxy.addr(), "GET", "/after-write", Some(&cookie), "");
    let waited = started.elapsed();
    writer.join().unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        waited >= Duration::from_millis(250),
        "answered after {waited:?}, before the commit of TXID {next}"
    );
    assert!(t.pos("db").txid.0 >= next);
    // A TXID already reached: no wait.
    let started = Instant::now();
    let a = request(proxy.addr(), "GET", "/now", Some(&cookie), "");
    assert_eq!(a.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // One that never comes.
    let far = format!("__txid={:016x}", next + 1000);
    let started = Instant::now();
    let a = request(proxy.addr(), "GET", "/never", Some(&far), "");
    let waited = started.elapsed();
    assert_eq!((a.status, a.body.as_str()), (504, "Proxy timeout\n"));
    assert!(
        (Duration::from_millis(4900)..Duration::from_secs(10)).contains(&waited),
        "504 after {waited:?}"
    );
}

/// An application that is not listening: the proxy keeps dialing for its dial timeout, then
/// answers 502 with the error.
#[test]
fn an_application_that_is_down_gives_502() {
    let t = TestMount::new(false);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = ProxyServer::start(t.store_arc(), options(closed)).unwrap();
    let started = Instant::now();
    let a = request(proxy.addr(), "POST", "/x", None, "");
    assert_eq!(a.status, 502, "{}", a.body);
    assert!(a.body.starts_with("Proxy error: "), "{}", a.body);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "gave up after {:?}, before its dial timeout",
        started.elapsed()
    );
}

/// Waits until something listens on `addr` (a node's proxy starts once the node is ready).
fn wait_listening(addr: SocketAddr, node: &Node) {
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no proxy on {addr}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The TXID in an answer's `__txid` cookie.
fn cookie_txid(a: &Answer) -> u64 {
    let cookie = a.header("set-cookie").expect("a __txid cookie");
    let value = cookie
        .strip_prefix("__txid=")
        .and_then(|c| c.split(';').next())
        .unwrap();
    u64::from_str_radix(value, 16).unwrap()
}

/// Two `litefs mount` processes whose `litefs.yml` have a `proxy:` section: a write through
/// the replica's proxy is answered with `fly-replay: instance=<primary>` (Fly.io's edge
/// replays it there), through the primary's it reaches the application and returns the
/// cookie, and a read on the replica carrying that cookie is answered once the replica has
/// that TXID.
#[test]
fn a_cluster_sends_writes_to_the_primary_and_reads_after_them() {
    let app = application();
    let tmp = tempfile::tempdir().unwrap();
    let proxy_yaml =
        |port: u16| format!("proxy:\n  addr: 127.0.0.1:{port}\n  target: {app}\n  db: db\n");
    let (primary_proxy, replica_proxy) = (free_port(), free_port());
    let mut pc = NodeConfig::primary(&tmp.path().join("p"));
    pc.extra_yaml = proxy_yaml(primary_proxy);
    let primary = Node::start(pc);
    let mut rc = NodeConfig::replica(&tmp.path().join("r"), primary.config.port);
    rc.extra_yaml = proxy_yaml(replica_proxy);
    let replica = Node::start(rc);
    let primary_proxy: SocketAddr = format!("127.0.0.1:{primary_proxy}").parse().unwrap();
    let replica_proxy: SocketAddr = format!("127.0.0.1:{replica_proxy}").parse().unwrap();
    wait_listening(primary_proxy, &primary);
    wait_listening(replica_proxy, &replica);

    let conn = Connection::open(primary.path("db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let a = request(replica_proxy, "POST", "/w", None, "x");
    assert_eq!(a.status, 200, "{}", a.body);
    let hostname = format!("primary-{}", primary.config.port);
    assert_eq!(
        a.header("fly-replay"),
        Some(format!("instance={hostname}").as_str()),
        "{:?}",
        a.headers
    );
    assert_eq!(
        a.body, "",
        "a replayed write never reaches the replica's application"
    );

    // The replica must have the database: a read whose tracked database does not exist
    // there yet is proxied at once (spec §6.2, as LiteFS does).
    replica.wait_pos("db", primary.pos("db").unwrap(), Duration::from_secs(20));
    conn.execute("INSERT INTO t VALUES (2)", []).unwrap();
    let a = request(primary_proxy, "POST", "/w", None, "x");
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "POST /w host=app.example body=x")
    );
    let txid = cookie_txid(&a);
    assert_eq!(txid, primary.pos("db").unwrap().txid.0);
    let cookie = format!("__txid={txid:016x}");
    let a = request(replica_proxy, "GET", "/r", Some(&cookie), "");
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "GET /r host=app.example body=")
    );
    let seen = replica.pos("db").map_or(0, |p| p.txid.0);
    assert!(
        seen >= txid,
        "answered at replica TXID {seen}, cookie {txid}"
    );
}
