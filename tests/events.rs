//! `GET /events` (spec §4.3, §8.3), `GET /metrics` (§8.4) and `/debug/vars` lock states
//! against a real mount with the HTTP server in-process. Transactions are committed with the
//! `sqlite3` CLI; the event stream is read with a hand-written HTTP/1.1 client (raw
//! `TcpStream`, chunked decoding) so the bytes on the wire are what is checked.

mod common;

use common::TestMount;
use litefs::http::{Server, ServerOptions};
use litefs::ltx;
use litefs::store::{PrimaryInfo, Store};
use litefs::types::{Pos, TxId};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start_server(store: std::sync::Arc<Store>) -> Server {
    Server::start(
        store,
        ServerOptions {
            addr: "127.0.0.1:0".into(),
            candidate: true,
            hostname: "node-a".into(),
        },
    )
    .unwrap()
}

/// Runs `sql` (fed on stdin, so it may be long) with the `sqlite3` CLI on `db`.
fn sqlite3(db: &Path, sql: &str) -> String {
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sqlite3 {} failed: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A `GET /events` response read line by line off a raw HTTP/1.1 connection.
struct EventsClient {
    r: BufReader<TcpStream>,
    status: u16,
    headers: String,
    /// Decoded body bytes not yet returned as a line.
    pending: Vec<u8>,
    ended: bool,
}

impl EventsClient {
    fn connect(addr: SocketAddr) -> EventsClient {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut r = BufReader::new(s);
        let mut headers = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            headers.push_str(&line);
        }
        let status = headers[9..12].parse().unwrap();
        EventsClient {
            r,
            status,
            headers,
            pending: Vec::new(),
            ended: false,
        }
    }

    /// Reads one chunk of the chunked body; false at the terminating chunk.
    fn read_chunk(&mut self) -> bool {
        let mut size_line = String::new();
        self.r.read_line(&mut size_line).unwrap();
        let size = usize::from_str_radix(size_line.trim_end(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        if size == 0 {
            let mut crlf = String::new();
            self.r.read_line(&mut crlf).unwrap();
            assert_eq!(crlf, "\r\n", "chunked body must end with an empty trailer");
            return false;
        }
        let mut data = vec![0u8; size + 2];
        self.r.read_exact(&mut data).unwrap();
        assert_eq!(
            &data[size..],
            b"\r\n",
            "chunk of {size} bytes not followed by CRLF"
        );
        self.pending.extend_from_slice(&data[..size]);
        true
    }

    /// The next line (without its newline), or `None` once the response has ended.
    fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=at).collect();
                return Some(String::from_utf8(line[..at].to_vec()).unwrap());
            }
            if self.ended {
                assert!(
                    self.pending.is_empty(),
                    "response ended inside a line: {:?}",
                    String::from_utf8_lossy(&self.pending)
                );
                return None;
            }
            if !self.read_chunk() {
                self.ended = true;
            }
        }
    }
}

/// The line LiteFS writes for the transaction in LTX file `txid` of `db` (spec §8.3), built
/// from the file itself.
fn expected_tx_line(t: &TestMount, db: &str, txid: u64) -> String {
    let path = t
        .ltx_dir(db)
        .join(ltx::format_filename(TxId(txid), TxId(txid)));
    let summary = ltx::verify(std::fs::File::open(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = summary.header;
    format!(
        r#"{{"type":"tx","db":"{db}","data":{{"txID":"{:016x}","postApplyChecksum":"{:016x}","pageSize":{},"commit":{},"timestamp":"{}"}}}}"#,
        txid,
        summary.trailer.post_apply_checksum.0,
        h.page_size,
        h.commit,
        ltx::format_timestamp_trimmed(h.timestamp_ms)
    )
}

/// Reads `tx` lines for `db` until one reaches `pos`; returns them. Each must be the next
/// TXID after `*last`.
fn read_until(c: &mut EventsClient, db: &str, last: &mut u64, pos: Pos) -> Vec<String> {
    let mut lines = Vec::new();
    while *last < pos.txid.0 {
        let line = c
            .next_line()
            .expect("an event, not the end of the response");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["db"].as_str()),
            (Some("tx"), Some(db)),
            "{line}"
        );
        let txid = u64::from_str_radix(v["data"]["txID"].as_str().unwrap(), 16).unwrap();
        println!("{db}: event txID {txid} (previous {last}, -pos {pos})");
        assert_eq!(
            txid,
            *last + 1,
            "events must come one per TXID, in order: {line}"
        );
        *last = txid;
        if txid == pos.txid.0 {
            let checksum = v["data"]["postApplyChecksum"].as_str().unwrap();
            let want = pos.post_apply_checksum.to_string();
            println!("{db}: event checksum {checksum}, -pos checksum {want}");
            assert_eq!(checksum, want);
        }
        lines.push(line);
    }
    lines
}

#[test]
fn events_report_every_commit_then_role_changes_and_end_at_shutdown() {
    let t = TestMount::new(false);
    let server = start_server(t.store_arc());
    let mut c = EventsClient::connect(server.addr());
    println!("{}", c.headers);
    assert_eq!(c.status, 200);
    assert!(
        c.headers
            .to_ascii_lowercase()
            .contains("content-type: application/json\r\n"),
        "{}",
        c.headers
    );
    assert!(
        c.headers
            .to_ascii_lowercase()
            .contains("litefs-id: 000000000000abcd")
    );
    let init = c.next_line().unwrap();
    println!("init: {init}");
    assert_eq!(init, r#"{"type":"init","data":{"isPrimary":true}}"#);

    let mut got: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (db, mode) in [("journal.db", "delete"), ("wal.db", "wal")] {
        let path = t.path(db);
        let mut last = 0;
        let mut lines = Vec::new();
        for sql in [
            format!("PRAGMA journal_mode={mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v);"),
            "INSERT INTO t(v) VALUES (randomblob(100));".to_string(),
            "INSERT INTO t(v) VALUES (randomblob(5000));".to_string(),
        ] {
            sqlite3(&path, &sql);
            let pos = t.pos(db);
            lines.extend(read_until(&mut c, db, &mut last, pos));
        }
        got.insert(db, lines);
    }
    // Byte for byte: one line per LTX file, as built from the file's header and trailer.
    for (db, lines) in &got {
        let last = t.pos(db).txid.0;
        assert!(
            last >= 3,
            "{db}: 3 sqlite3 runs make at least 3 transactions, -pos {last}"
        );
        let want: Vec<String> = (1..=last)
            .map(|txid| expected_tx_line(&t, db, txid))
            .collect();
        for (g, w) in lines.iter().zip(&want) {
            println!(" got: {g}\nwant: {w}");
        }
        assert_eq!(lines, &want, "{db}");
    }

    // An import is applied like a replicated file and reported the same way.
    let image = std::fs::read(t.path("journal.db")).unwrap();
    let mut s = TcpStream::connect(server.addr()).unwrap();
    write!(
        s,
        "POST /import?name=imported.db HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        image.len()
    )
    .unwrap();
    s.write_all(&image).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let line = c.next_line().unwrap();
    let want = expected_tx_line(&t, "imported.db", 1);
    println!("import:\n got: {line}\nwant: {want}");
    assert_eq!(line, want);
    assert_eq!(t.pos("imported.db").txid, TxId(1));
    // Dropping a database (unlink on the primary) is a transaction with Commit 0.
    std::fs::remove_file(t.path("imported.db")).unwrap();
    let line = c.next_line().unwrap();
    let want = expected_tx_line(&t, "imported.db", 2);
    println!("drop:\n got: {line}\nwant: {want}");
    assert_eq!(line, want);
    assert!(line.contains(r#""commit":0,"#), "{line}");

    // Role changes, then a new subscriber's init reflects them.
    t.store().become_replica();
    t.store().set_primary_info(Some(PrimaryInfo {
        hostname: "node-b".into(),
        advertise_url: "http://node-b:20202".into(),
    }));
    t.store().set_primary_info(Some(PrimaryInfo {
        hostname: "node-b".into(),
        advertise_url: "http://node-b:20202".into(),
    })); // unchanged: no event
    t.store().set_primary_info(None);
    let role_events: Vec<String> = (0..3).map(|_| c.next_line().unwrap()).collect();
    println!("role events: {role_events:#?}");
    assert_eq!(
        role_events,
        [
            r#"{"type":"primaryChange","data":{"isPrimary":false}}"#,
            r#"{"type":"primaryChange","data":{"isPrimary":false,"hostname":"node-b"}}"#,
            r#"{"type":"primaryChange","data":{"isPrimary":false}}"#,
        ]
    );
    t.store().set_primary_info(Some(PrimaryInfo {
        hostname: "node-b".into(),
        advertise_url: "http://node-b:20202".into(),
    }));
    assert_eq!(
        c.next_line().unwrap(),
        r#"{"type":"primaryChange","data":{"isPrimary":false,"hostname":"node-b"}}"#
    );
    let mut c2 = EventsClient::connect(server.addr());
    let init2 = c2.next_line().unwrap();
    println!("second init: {init2}");
    assert_eq!(
        init2,
        r#"{"type":"init","data":{"isPrimary":false,"hostname":"node-b"}}"#
    );
    t.store().become_primary();
    let back = r#"{"type":"primaryChange","data":{"isPrimary":true}}"#;
    assert_eq!(c.next_line().unwrap(), back);
    assert_eq!(c2.next_line().unwrap(), back);
    // Only changes are announced: a second become_primary publishes nothing.
    t.store().become_primary();
    t.store().become_replica();
    t.store().become_primary();
    for c in [&mut c, &mut c2] {
        assert_eq!(
            c.next_line().unwrap(),
            r#"{"type":"primaryChange","data":{"isPrimary":false}}"#
        );
        assert_eq!(c.next_line().unwrap(), back);
    }

    // Shutdown ends both responses cleanly (terminating chunk), within the grace period.
    let started = Instant::now();
    server.shutdown();
    assert_eq!(c.next_line(), None);
    assert_eq!(c2.next_line(), None);
    println!(
        "responses ended {:?} after shutdown began",
        started.elapsed()
    );
    assert_eq!(t.store().event_subscriber_count(), 0);
}

#[test]
fn a_subscriber_that_stops_reading_is_dropped_and_never_slows_commits() {
    let t = TestMount::new(false);
    let server = start_server(t.store_arc());
    let mut slow = EventsClient::connect(server.addr());
    assert_eq!(slow.status, 200);
    slow.next_line().unwrap(); // init: subscribed; from now on this client reads nothing
    // An in-process subscriber that never reads either: it must lag, not block.
    let mut idle = t.store().subscribe_events();

    const COMMITS: usize = 1100;
    let mut sql = String::from("PRAGMA journal_mode=wal; CREATE TABLE t(v);\n");
    for _ in 0..COMMITS {
        sql.push_str("INSERT INTO t VALUES (randomblob(50));\n");
    }
    let started = Instant::now();
    sqlite3(&t.path("db"), &sql);
    let elapsed = started.elapsed();
    let txid = t.pos("db").txid.0;
    println!("{txid} transactions committed in {elapsed:?} with two subscribers not reading");
    assert!(
        txid > COMMITS as u64,
        "-pos TXID {txid} after {COMMITS} inserts"
    );
    let lagged = idle.try_recv();
    println!("idle store subscriber: {lagged:?}");
    let want_missed = txid - litefs::store::EVENT_QUEUE_DEPTH_MAX as u64;
    assert!(
        matches!(lagged, Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) if n == want_missed),
        "expected Lagged({want_missed}) after {txid} events, got {lagged:?}"
    );
    drop(idle);

    // The kernel's socket buffers (megabytes on loopback) absorb 1100 short lines, so the
    // HTTP subscriber has not been dropped yet. Add role events (~57 bytes on the wire each)
    // in paced batches the server keeps up with, until the socket buffers are full and 1024
    // more events are queued for the subscriber: it is then dropped. (Unpaced, the server's
    // task would fall behind the store's broadcast first: also a drop, but not this path.)
    let mut flood_events = 0usize;
    let flood_started = Instant::now();
    while t.store().event_subscriber_count() > 0 {
        assert!(
            flood_started.elapsed() < Duration::from_secs(60),
            "subscriber still connected after {flood_events} more events"
        );
        // Each call changes the role, so each publishes an event.
        for _ in 0..32 {
            t.store().become_replica();
            t.store().become_primary();
        }
        flood_events += 64;
        std::thread::sleep(Duration::from_millis(1));
    }
    println!(
        "subscriber dropped after {flood_events} role events in {:?}",
        flood_started.elapsed()
    );
    // Now read: the response must end (the subscriber was dropped) before all events.
    let mut lines = 0usize;
    let mut tx_lines = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(line) = slow.next_line() {
        assert!(
            Instant::now() < deadline,
            "response still going after {lines} lines"
        );
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        if v["type"] == "tx" {
            tx_lines += 1;
        }
        lines += 1;
    }
    let published = txid as usize + flood_events;
    println!(
        "dropped subscriber got {lines} lines ({tx_lines} tx) of {published} events published"
    );
    // Not delivered: the 1024 queued events, the one that found the queue full, and any
    // published after the drop. `lines` counts `init` too.
    let undelivered = published - (lines - 1);
    assert!(
        undelivered > litefs::store::EVENT_QUEUE_DEPTH_MAX,
        "{undelivered} events undelivered: the subscriber was not dropped at 1024 behind"
    );
    // The commits' lines fit in the socket buffers, so they normally all arrived; what is
    // required is only that the stream ended early.
    assert!(
        tx_lines as u64 <= txid,
        "{tx_lines} tx lines for {txid} transactions"
    );
    assert_eq!(t.store().event_subscriber_count(), 0);

    // The node keeps serving: a new subscriber starts with init.
    let mut again = EventsClient::connect(server.addr());
    assert_eq!(
        again.next_line().unwrap(),
        r#"{"type":"init","data":{"isPrimary":true}}"#
    );
}

/// One sample of the Prometheus text format: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses a label set `k="v",k2="v2"` (escapes `\\`, `\"`, `\n`).
fn parse_labels(text: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\" in {line:?}"));
        assert!(
            is_metric_name(key) && !key.contains(':'),
            "label name {key:?} in {line:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(key.to_string(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses the whole exposition, checking every line's syntax and that each sample follows a
/// `# TYPE` line of its family.
fn parse_metrics(body: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(is_metric_name(name), "{line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(is_metric_name(name), "{line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "TYPE twice: {line:?}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}"));
                (name, parse_labels(inner, line))
            }
            None => (series, BTreeMap::new()),
        };
        assert!(is_metric_name(name), "{line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| types.get(*base).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its # TYPE: {line:?}"
        );
        samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    samples
}

fn get(addr: SocketAddr, path: &str) -> String {
    common::http_get(addr, path)
}

#[test]
fn metrics_and_debug_vars_after_commits() {
    let t = TestMount::new(false);
    sqlite3(
        &t.path("a.db"),
        "PRAGMA journal_mode=wal; CREATE TABLE t(v);",
    );
    for i in 0..4 {
        sqlite3(&t.path("a.db"), &format!("INSERT INTO t VALUES ({i});"));
    }
    sqlite3(
        &t.path("b \"quoted\".db"),
        "PRAGMA journal_mode=delete; CREATE TABLE t(v);",
    );
    sqlite3(&t.path("b \"quoted\".db"), "INSERT INTO t VALUES (1);");
    let server = start_server(t.store_arc());
    let _events = EventsClient::connect(server.addr()); // one /events response in progress

    let body = get(server.addr(), "/metrics");
    let samples = parse_metrics(&body);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let found: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .collect();
        assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}\n{body}");
        found[0].value
    };
    let check = |name: &str, labels: &[(&str, &str)], want: f64| {
        let got = value(name, labels);
        println!("{name}{labels:?} = {got} (want {want})");
        assert_eq!(got, want, "{name}{labels:?}");
    };
    check("litefs_db_count", &[], 2.0);
    check("litefs_is_primary", &[], 1.0);
    check("litefs_lag_seconds", &[], 0.0);
    check("litefs_subscriber_count", &[], 0.0);
    check("litefs_event_subscriber_count", &[], 1.0);
    check("litefs_http_event_stream_count", &[], 1.0);
    check("litefs_http_stream_count", &[], 0.0);
    let mut commits = 0;
    for db in ["a.db", "b \"quoted\".db"] {
        let pos = t.pos(db);
        println!("{db}: -pos {pos}");
        let txid = pos.txid.0 as f64;
        commits += pos.txid.0;
        check("litefs_db_txid", &[("db", db)], txid);
        // The store was opened empty, so every TXID is a local commit of this process.
        check("litefs_db_commit_count", &[("db", db)], txid);
        check("litefs_db_lag_seconds", &[("db", db)], 0.0);
        let files: Vec<std::fs::Metadata> = std::fs::read_dir(t.ltx_dir(db))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| ltx::parse_filename(e.file_name().to_str().unwrap()).is_some())
            .map(|e| e.metadata().unwrap())
            .collect();
        check("litefs_db_ltx_count", &[("db", db)], files.len() as f64);
        let bytes: u64 = files.iter().map(|m| m.len()).sum();
        check("litefs_db_ltx_bytes", &[("db", db)], bytes as f64);
        assert!(value("litefs_db_database_write_count", &[("db", db)]) > 0.0);
    }
    assert!(value("litefs_db_wal_write_count", &[("db", "a.db")]) > 0.0);
    let a = t.store().db("a.db").unwrap();
    check(
        "litefs_db_deferred_capture_count",
        &[("db", "a.db")],
        a.deferred_capture_count() as f64,
    );
    // b's second transaction (the INSERT; TXID 1 is never logged early) was logged at the
    // sqlite3 shell's fsync of the database, where the file system allows it.
    let b = t.store().db("b \"quoted\".db").unwrap();
    let early = if b.commits_at_database_fsync() {
        1.0
    } else {
        0.0
    };
    check(
        "litefs_db_early_commit_count",
        &[("db", "b \"quoted\".db")],
        early,
    );
    assert!(
        value(
            "litefs_db_journal_write_count",
            &[("db", "b \"quoted\".db")]
        ) > 0.0
    );
    check("litefs_commit_duration_seconds_count", &[], commits as f64);
    check(
        "litefs_commit_duration_seconds_bucket",
        &[("le", "+Inf")],
        commits as f64,
    );
    let buckets: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "litefs_commit_duration_seconds_bucket")
        .collect();
    assert!(
        buckets.windows(2).all(|w| w[0].value <= w[1].value),
        "buckets must be cumulative: {buckets:?}"
    );
    let sum = value("litefs_commit_duration_seconds_sum", &[]);
    println!("commit durations: {commits} commits, {sum} s in total");
    assert!(sum > 0.0 && sum < commits as f64 * 10.0, "{sum}");
    let writes = value("litefs_fuse_request_count", &[("op", "write")]);
    println!("FUSE write requests: {writes}");
    assert!(writes > 0.0);
    assert!(value("litefs_fuse_request_count", &[("op", "lookup")]) > 0.0);

    // Lock states: a read transaction in rollback mode holds SHARED; an open WAL connection
    // holds DMS shared and, inside a read transaction, one READ lock.
    let b = rusqlite::Connection::open(t.path("b \"quoted\".db")).unwrap();
    b.execute_batch("BEGIN; SELECT count(*) FROM t;").unwrap();
    let a = rusqlite::Connection::open(t.path("a.db")).unwrap();
    a.execute_batch("BEGIN; SELECT count(*) FROM t;").unwrap();
    let vars: serde_json::Value = serde_json::from_str(&get(server.addr(), "/debug/vars")).unwrap();
    let locks_b = &vars["store"]["dbs"]["b \"quoted\".db"]["locks"];
    let locks_a = &vars["store"]["dbs"]["a.db"]["locks"];
    println!("b locks: {locks_b}\na locks: {locks_a}");
    let names = [
        "pending", "shared", "reserved", "write", "ckpt", "recover", "read0", "read1", "read2",
        "read3", "read4", "dms",
    ];
    for locks in [locks_a, locks_b] {
        assert_eq!(locks.as_object().unwrap().len(), names.len(), "{locks}");
        for name in names {
            let state = locks[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in {locks}"));
            assert!(
                ["unlocked", "shared", "exclusive"].contains(&state),
                "{name}: {state}"
            );
        }
    }
    assert_eq!(locks_b["shared"], "shared");
    assert_eq!(locks_b["reserved"], "unlocked");
    assert_eq!(locks_a["dms"], "shared");
    let reads = (0..5)
        .filter(|i| locks_a[format!("read{i}")] == "shared")
        .count();
    assert_eq!(reads, 1, "one WAL read lock held: {locks_a}");
    assert_eq!(locks_a["write"], "unlocked");
    drop((a, b));
    let vars: serde_json::Value = serde_json::from_str(&get(server.addr(), "/debug/vars")).unwrap();
    let locks_b = &vars["store"]["dbs"]["b \"quoted\".db"]["locks"];
    println!("b locks after close: {locks_b}");
    assert!(names.iter().all(|n| locks_b[*n] == "unlocked"), "{locks_b}");
}

#[test]
fn a_replica_reports_applied_transactions_and_its_primary() {
    let t = TestMount::new(false);
    let primary = start_server(t.store_arc());
    sqlite3(&t.path("db"), "PRAGMA journal_mode=wal; CREATE TABLE t(v);");
    sqlite3(&t.path("db"), "INSERT INTO t VALUES (1);");
    let first = t.pos("db");

    // A replica store (no mount needed to apply) with its own API server.
    let dir = tempfile::tempdir().unwrap();
    let options = litefs::store::DbOptions {
        node_id: litefs::types::NodeId(0x1234),
        compress: false,
        strict_verify: true,
        replica: true,
    };
    let store = std::sync::Arc::new(Store::open(&dir.path().join("data"), options).unwrap());
    let server = start_server(store.clone());
    let mut c = EventsClient::connect(server.addr());
    assert_eq!(
        c.next_line().unwrap(),
        r#"{"type":"init","data":{"isPrimary":true}}"#
    );
    let replica = litefs::replica::Replica::start(
        store.clone(),
        litefs::replica::ReplicaOptions {
            primary: PrimaryInfo {
                hostname: "node-a".into(),
                advertise_url: format!("http://{}", primary.addr()),
            },
            reconnect_delay: Duration::from_millis(100),
            databases: Vec::new(),
            // The default between litefs-rs nodes; events do not depend on the transport.
            native: true,
        },
    )
    .unwrap();
    let mut lines = vec![c.next_line().unwrap(), c.next_line().unwrap()];
    println!("role events: {lines:#?}");
    assert_eq!(
        lines,
        [
            r#"{"type":"primaryChange","data":{"isPrimary":false}}"#,
            r#"{"type":"primaryChange","data":{"isPrimary":false,"hostname":"node-a"}}"#,
        ]
    );
    // Catch-up: one snapshot up to the primary's position.
    let snapshot = c.next_line().unwrap();
    println!("snapshot: {snapshot}\nprimary -pos: {first}");
    let v: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(v["db"], "db");
    assert_eq!(v["data"]["txID"], first.txid.to_string());
    assert_eq!(
        v["data"]["postApplyChecksum"],
        first.post_apply_checksum.to_string()
    );
    // A live commit arrives as the primary's own LTX file: the same line as on the primary.
    sqlite3(&t.path("db"), "INSERT INTO t VALUES (2);");
    let next = t.pos("db");
    let line = c.next_line().unwrap();
    let want = expected_tx_line(&t, "db", next.txid.0);
    println!(" got: {line}\nwant: {want}");
    assert_eq!(line, want);
    assert_eq!(store.db("db").unwrap().pos(), next);
    // Applied transactions carry their age when applied (small here, never negative).
    let lag_ms = store.db("db").unwrap().lag_ms();
    println!("replica lag at the last apply: {lag_ms} ms");
    assert!((0..5_000).contains(&lag_ms), "{lag_ms}");

    // The replica stops following: no primary any more.
    drop(replica);
    lines.clear();
    lines.push(c.next_line().unwrap());
    assert_eq!(
        lines,
        [r#"{"type":"primaryChange","data":{"isPrimary":false}}"#]
    );
}
