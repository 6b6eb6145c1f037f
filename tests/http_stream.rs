//! The node HTTP server against a real mount, spoken to as a Go LiteFS replica would: h2c with
//! prior knowledge (the `h2` crate over a plain TCP socket), a hand-built position map, and
//! the response checked frame by frame (spec §4.4). Also: snapshots (`Db::write_snapshot_to`)
//! against the database as SQLite sees it, in rollback and WAL mode.

mod common;

use common::{TestMount, check_newest_ltx, logical_image};
use hyper::body::Bytes;
use litefs::http::{Server, ServerOptions};
use litefs::ltx;
use litefs::proto::{ChunkedReader, Frame, PosMap, write_pos_map};
use litefs::types::{Checksum, Pos, TxId};
use rusqlite::Connection;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The node id `TestMount` gives its store.
const OUR_NODE_ID: u64 = 0xABCD;
const REPLICA_NODE_ID: u64 = 0x1234_5678_9ABC_DEF0;

fn start_server(t: &TestMount) -> Server {
    Server::start(
        t.store_arc(),
        ServerOptions {
            addr: "127.0.0.1:0".into(),
            candidate: true,
            hostname: "node-a".into(),
        },
    )
    .unwrap()
}

/// A `/stream` response read by a client thread and handed over as a blocking `Read`.
struct StreamClient {
    status: u16,
    headers: http::HeaderMap,
    rx: mpsc::Receiver<Result<Vec<u8>, String>>,
    buf: Vec<u8>,
    at: usize,
}

impl Read for StreamClient {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buf.len() {
            match self.rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(data)) => {
                    self.buf = data;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(io::Error::other(e)),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(0),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no data for 10 s"));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// POSTs `/stream<query>` over h2c with prior knowledge, as LiteFS's Go client does.
fn open_stream(addr: SocketAddr, map: &PosMap, node_id: u64, query: &str) -> StreamClient {
    let mut body = Vec::new();
    write_pos_map(&mut body, map).unwrap();
    open_stream_raw(addr, body, node_id, query)
}

fn open_stream_raw(addr: SocketAddr, body: Vec<u8>, node_id: u64, query: &str) -> StreamClient {
    h2_request(addr, "POST", &format!("/stream{query}"), node_id, body)
}

/// One request over h2c with prior knowledge from node `node_id` (`Litefs-Id`), as every
/// LiteFS Go client sends it; the response is read by a client thread.
fn h2_request(
    addr: SocketAddr,
    method: &'static str,
    path: &str,
    node_id: u64,
    body: Vec<u8>,
) -> StreamClient {
    let (tx, rx) = mpsc::channel();
    let (head_tx, head_rx) = mpsc::channel();
    let uri = format!("http://{addr}{path}");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = http::Request::builder()
                .method(method)
                .uri(uri)
                .header("litefs-id", format!("{node_id:016X}"))
                .body(())
                .unwrap();
            let (resp, mut send) = client.send_request(req, false).unwrap();
            send.send_data(Bytes::from(body), true).unwrap();
            let resp = resp.await.unwrap();
            let _ = head_tx.send((resp.status().as_u16(), resp.headers().clone()));
            let mut body = resp.into_body();
            while let Some(data) = body.data().await {
                match data {
                    Ok(data) => {
                        let _ = body.flow_control().release_capacity(data.len());
                        if tx.send(Ok(data.to_vec())).is_err() {
                            return; // the test is done with this stream
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
    });
    let (status, headers) = head_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    StreamClient {
        status,
        headers,
        rx,
        buf: Vec::new(),
        at: 0,
    }
}

fn next_frame(c: &mut StreamClient) -> Frame {
    Frame::read_from(c).unwrap().expect("frame, not EOF")
}

/// Reads the chunked LTX payload following an LTX frame header.
fn read_payload(c: &mut StreamClient) -> Vec<u8> {
    let mut reader = ChunkedReader::new(c);
    let mut payload = Vec::new();
    reader.read_to_end(&mut payload).unwrap();
    reader.finish().unwrap();
    payload
}

fn expect_ltx(c: &mut StreamClient, db: &str) -> Vec<u8> {
    match next_frame(c) {
        Frame::Ltx { name } => assert_eq!(name, db),
        other => panic!("expected an LTX frame for {db}, got {other:?}"),
    }
    read_payload(c)
}

/// A snapshot payload: verifies, holds the database as SQLite sees it at `pos`.
fn check_snapshot(t: &TestMount, db: &str, payload: &[u8], pos: Pos) {
    let summary = ltx::verify(payload).unwrap();
    let h = summary.header;
    assert_eq!((h.min_txid, h.max_txid), (TxId(1), pos.txid));
    assert_eq!(h.pre_apply_checksum, Checksum(0));
    assert_eq!(h.node_id.0, OUR_NODE_ID);
    assert_eq!(h.is_compressed(), t.compress);
    assert_eq!(summary.trailer.post_apply_checksum, pos.post_apply_checksum);
    let mut image = Vec::new();
    ltx::decode_database_to(payload, &mut image).unwrap();
    let want = logical_image(&t.data.join("dbs").join(db), h.commit, h.page_size);
    assert!(
        image == want,
        "{db}: snapshot pages differ from the database"
    );
}

fn sqlite(t: &TestMount, db: &str, mode: &str) -> Connection {
    let conn = Connection::open(t.path(db)).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode={mode}; PRAGMA wal_autocheckpoint=0; PRAGMA busy_timeout=5000;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
    ))
    .unwrap();
    conn
}

fn insert(conn: &Connection, n: usize) {
    for _ in 0..n {
        conn.execute_batch("INSERT INTO t(v) VALUES (randomblob(700))")
            .unwrap();
    }
}

fn pos_of_file(t: &TestMount, db: &str, txid: u64) -> Pos {
    let path = t
        .ltx_dir(db)
        .join(ltx::format_filename(TxId(txid), TxId(txid)));
    let summary = ltx::verify(std::fs::File::open(path).unwrap()).unwrap();
    Pos {
        txid: TxId(txid),
        post_apply_checksum: summary.trailer.post_apply_checksum,
    }
}

#[test]
fn fresh_replica_gets_a_snapshot_per_db_then_ready_then_heartbeats() {
    let t = TestMount::new(true);
    let a = sqlite(&t, "a.db", "delete");
    insert(&a, 20);
    // WAL with uncheckpointed frames: the connection stays open, autocheckpoint is off.
    let b = sqlite(&t, "b.db", "wal");
    insert(&b, 20);
    let server = start_server(&t);
    let mut c = open_stream(server.addr(), &PosMap::new(), REPLICA_NODE_ID, "");
    assert_eq!(c.status, 200);
    assert_eq!(c.headers["litefs-id"], format!("{OUR_NODE_ID:016X}"));
    for db in ["a.db", "b.db"] {
        let payload = expect_ltx(&mut c, db);
        check_snapshot(&t, db, &payload, t.pos(db));
    }
    assert_eq!(next_frame(&mut c), Frame::Ready);
    let mut beats = Vec::new();
    for _ in 0..3 {
        match next_frame(&mut c) {
            Frame::Heartbeat { timestamp_ms } => beats.push((Instant::now(), timestamp_ms)),
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
    for pair in beats.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        println!(
            "heartbeat gap: {} ms (primary clock: {} ms)",
            gap.as_millis(),
            pair[1].1 - pair[0].1
        );
        assert!(
            gap > Duration::from_millis(800) && gap < Duration::from_millis(1500),
            "{gap:?}"
        );
    }
    assert!(
        server
            .metrics()
            .frame_count("a.db", litefs::http::FrameKind::Snapshot)
            == 1
    );
    // Shutdown ends the stream cleanly: End, then EOF at a frame boundary.
    server.shutdown();
    loop {
        match next_frame(&mut c) {
            Frame::Heartbeat { .. } => continue,
            Frame::End => break,
            other => panic!("expected End, got {other:?}"),
        }
    }
    assert_eq!(Frame::read_from(&mut c).unwrap(), None);
    drop((a, b));
}

#[test]
fn replica_at_txid_k_gets_files_k_plus_1_on_with_hwm_and_live_commits() {
    let t = TestMount::new(false);
    let conn = sqlite(&t, "db", "wal");
    insert(&conn, 5);
    let last = t.pos("db").txid.0;
    assert!(last >= 6, "{last}");
    let k = 3;
    let server = start_server(&t);
    let map = PosMap::from([("db".to_string(), pos_of_file(&t, "db", k))]);
    let mut c = open_stream(server.addr(), &map, REPLICA_NODE_ID, "?filter=db");
    assert_eq!(c.status, 200);
    for txid in k + 1..=last {
        let payload = expect_ltx(&mut c, "db");
        let file = std::fs::read(
            t.ltx_dir("db")
                .join(ltx::format_filename(TxId(txid), TxId(txid))),
        )
        .unwrap();
        assert!(
            payload == file,
            "TXID {txid}: payload is not the file byte for byte"
        );
        assert_eq!(
            next_frame(&mut c),
            Frame::Hwm {
                txid: TxId(last),
                name: "db".into()
            }
        );
    }
    assert_eq!(next_frame(&mut c), Frame::Ready);
    assert!(matches!(next_frame(&mut c), Frame::Heartbeat { .. }));
    // Commits while connected arrive promptly.
    let mut latencies_us = Vec::new();
    for i in 0..10 {
        let committed = Instant::now();
        insert(&conn, 1);
        let txid = last + 1 + i;
        loop {
            match next_frame(&mut c) {
                Frame::Heartbeat { .. } => continue,
                Frame::Ltx { name } => {
                    assert_eq!(name, "db");
                    let payload = read_payload(&mut c);
                    latencies_us.push(committed.elapsed().as_micros());
                    let h = ltx::verify(payload.as_slice()).unwrap().header;
                    assert_eq!((h.min_txid, h.max_txid), (TxId(txid), TxId(txid)));
                    assert!(matches!(next_frame(&mut c), Frame::Hwm { .. }));
                    break;
                }
                other => panic!("expected an LTX frame, got {other:?}"),
            }
        }
    }
    latencies_us.sort();
    println!(
        "commit → frame latency (10 commits, incl. SQLite commit): min {} us, median {} us, max {} us",
        latencies_us[0], latencies_us[5], latencies_us[9]
    );
    assert!(latencies_us[5] < 200_000);
}

#[test]
fn diverged_replicas_get_snapshots() {
    let t = TestMount::new(false);
    let conn = sqlite(&t, "db", "delete");
    insert(&conn, 4);
    let local = t.pos("db");
    let server = start_server(&t);
    let cases = [
        (
            "ahead",
            Pos {
                txid: TxId(local.txid.0 + 5),
                post_apply_checksum: Checksum(1 << 63 | 7),
            },
        ),
        (
            "same TXID, other checksum",
            Pos {
                txid: local.txid,
                post_apply_checksum: Checksum(1 << 63 | 7),
            },
        ),
        (
            "next file's pre-apply checksum differs",
            Pos {
                txid: TxId(2),
                post_apply_checksum: Checksum(1 << 63 | 7),
            },
        ),
    ];
    for (why, client) in cases {
        let map = PosMap::from([("db".to_string(), client)]);
        let mut c = open_stream(server.addr(), &map, REPLICA_NODE_ID, "");
        let payload = expect_ltx(&mut c, "db");
        check_snapshot(&t, "db", &payload, local);
        assert_eq!(
            next_frame(&mut c),
            Frame::Ready,
            "{why}: one snapshot, then Ready"
        );
    }
    // A database the replica has and we do not: DropDB (deprecated, but LiteFS sends it).
    let map = PosMap::from([("gone.db".to_string(), Pos::new(3, 1 << 63))]);
    let mut c = open_stream(server.addr(), &map, REPLICA_NODE_ID, "?filter=gone.db");
    assert_eq!(
        next_frame(&mut c),
        Frame::DropDb {
            name: "gone.db".into()
        }
    );
    assert_eq!(next_frame(&mut c), Frame::Ready);
}

/// One HTTP/1.1 request on a fresh connection; returns (status, head, body).
fn http1(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http1(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn rejections_info_and_metrics() {
    let t = TestMount::new(false);
    let conn = sqlite(&t, "db", "delete");
    insert(&conn, 2);
    let server = start_server(&t);
    let addr = server.addr();

    let (status, _, body) = http1(
        addr,
        "POST /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 4\r\n\r\n\0\0\0\0",
    );
    assert_eq!(
        (status, body.as_str()),
        (426, "Upgrade to HTTP/2 required\n")
    );

    let mut c = open_stream(addr, &PosMap::new(), OUR_NODE_ID, "");
    assert_eq!(c.status, 400);
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    assert_eq!(text, "cannot connect to self\n");

    let mut c = open_stream_raw(addr, vec![0, 0, 0, 1, 0], REPLICA_NODE_ID, "");
    assert_eq!(c.status, 400, "a truncated position map");
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    println!("bad position map: {text:?}");

    let (status, head, body) = get(addr, "/info");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("litefs-id: 000000000000abcd"),
        "{head}"
    );
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["isPrimary"], true);
    assert_eq!(info["candidate"], true);
    assert_eq!(info["primary"]["hostname"], "node-a");
    assert!(
        body.starts_with("{\n  \"isPrimary\": true,") && body.ends_with("}\n"),
        "{body}"
    );

    let (status, head, body) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(!head.to_ascii_lowercase().contains("litefs-id"), "{head}");
    let txid = t.pos("db").txid.0;
    let mut seen = false;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let _: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad sample {line:?}"));
        if series == "litefs_db_txid{db=\"db\"}" {
            assert_eq!(value, txid.to_string());
            seen = true;
        }
    }
    assert!(seen, "{body}");

    let (status, _, body) = get(addr, "/debug/vars");
    assert_eq!(status, 200);
    let vars: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(vars["store"]["dbs"]["db"]["txid"], format!("{txid:016x}"));

    // `/events` is served (tests/events.rs); other methods are refused as Go does.
    let (status, _, body) = http1(
        addr,
        "POST /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((status, body.as_str()), (405, "method not allowed\n"));
    // A static lease never moves: the primary refuses a handoff, and promotes itself as a
    // no-op (a replica's `/promote` is `tests/cli_run.rs`).
    let post = |path: &str| {
        http1(
            addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            ),
        )
    };
    for bad in ["zz", "%2B2", ""] {
        let (status, _, body) = post(&format!("/handoff?nodeID={bad}"));
        assert_eq!(
            (status, body.as_str()),
            (400, "invalid node id\n"),
            "{bad:?}"
        );
    }
    let (status, _, body) = post("/handoff?nodeID=2");
    assert_eq!(
        (status, body.as_str()),
        (
            500,
            "cannot handoff: static lease does not support handoff\n"
        )
    );
    let (status, _, body) = post("/promote");
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(get(addr, "/nope").0, 404);
    assert_eq!(get(addr, "/stream").0, 405);
    assert_eq!(get(addr, "/halt").0, 405);
    assert_eq!(get(addr, "/tx").0, 405);
}

#[test]
fn snapshot_matches_sqlite_in_rollback_and_wal_mode() {
    for compress in [false, true] {
        let t = TestMount::new(compress);
        let a = sqlite(&t, "rollback.db", "truncate");
        insert(&a, 30);
        a.execute_batch("DELETE FROM t WHERE id % 3 = 0").unwrap();
        let b = sqlite(&t, "wal.db", "wal");
        insert(&b, 30);
        b.execute_batch("UPDATE t SET v = randomblob(10) WHERE id < 10")
            .unwrap();
        assert!(
            std::fs::metadata(t.data.join("dbs/wal.db/wal"))
                .unwrap()
                .len()
                > 0
        );
        for (db, conn) in [("rollback.db", &a), ("wal.db", &b)] {
            let mut out = Vec::new();
            let pos = t
                .store()
                .db(db)
                .unwrap()
                .write_snapshot_to(&mut out)
                .unwrap();
            assert_eq!(pos, t.pos(db));
            check_snapshot(&t, db, &out, pos);
            // SQLite reads the decoded image as the same database.
            let dir = tempfile::tempdir().unwrap();
            let copy = dir.path().join("copy.db");
            let mut image = Vec::new();
            ltx::decode_database_to(out.as_slice(), &mut image).unwrap();
            std::fs::write(&copy, &image).unwrap();
            let c2 = Connection::open(&copy).unwrap();
            c2.execute_batch("PRAGMA journal_mode=delete").unwrap();
            let q = "SELECT count(*), total(length(v)) FROM t";
            let want: (i64, f64) = conn
                .query_row(q, [], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap();
            let got: (i64, f64) = c2.query_row(q, [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            assert_eq!(got, want, "{db}");
        }
    }
}

/// The native stream's hello may arrive in pieces (here: two bytes, a pause, the rest); the
/// server must still recognise it, answer 200 with our cluster id, and stream (Ready first).
#[test]
fn native_hello_split_across_segments_is_recognised() {
    use litefs::http::native::{Answer, Hello};
    let t = TestMount::new(true);
    let server = start_server(&t);
    let hello = Hello {
        node_id: litefs::types::NodeId(0x77),
        filter: Vec::new(),
        pos_map: PosMap::new(),
    }
    .to_bytes()
    .unwrap();
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&hello[..2]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(&hello[2..]).unwrap();
    let litefs::http::native::Reply::Native(answer) = Answer::read_from(&mut s).unwrap() else {
        panic!("a native answer, not HTTP");
    };
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.node_id, t.store().node_id());
    let first = Frame::read_from(&mut s).unwrap();
    assert_eq!(first, Some(Frame::Ready), "first frame {first:?}");
}

/// A request from node `node_id` (`Litefs-Id`) with a body over h2c, as a Go LiteFS replica
/// sends `/halt` and `/tx`; returns (status, body).
fn request_as(
    addr: SocketAddr,
    method: &'static str,
    path: &str,
    node_id: u64,
    body: &[u8],
) -> (u16, String) {
    let mut c = h2_request(addr, method, path, node_id, body.to_vec());
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    (c.status, text)
}

/// What a halted replica sends with `POST /tx`: `rows` more rows, made by SQLite on a copy of
/// the database at `pos` (the file itself: the halt folded the WAL into it), as the LTX file
/// of TXID `pos` + 1 by node `node_id`. Returns the file and the image it leads to.
fn forwarded_transaction(
    t: &TestMount,
    db: &str,
    pos: Pos,
    node_id: u64,
    rows: usize,
) -> (Vec<u8>, Vec<u8>) {
    let page_size = 4096u32;
    let before = std::fs::read(t.data.join("dbs").join(db).join("database")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("copy.db");
    std::fs::write(&copy, &before).unwrap();
    {
        let conn = Connection::open(&copy).unwrap();
        insert(&conn, rows);
        // Leaves the file whole, its header (and so its journal mode) as it was.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let after = std::fs::read(&copy).unwrap();
    let commit = (after.len() / page_size as usize) as u32;
    let header = ltx::Header {
        flags: if t.compress {
            ltx::FLAG_COMPRESS_LZ4
        } else {
            0
        },
        page_size,
        commit,
        min_txid: TxId(pos.txid.0 + 1),
        max_txid: TxId(pos.txid.0 + 1),
        timestamp_ms: 1_700_000_000_000,
        pre_apply_checksum: pos.post_apply_checksum,
        node_id: litefs::types::NodeId(node_id),
        ..ltx::Header::new()
    };
    let mut enc = ltx::Encoder::new(Vec::new(), &header).unwrap();
    let pages = after.chunks_exact(page_size as usize).zip(1u32..);
    for (page, pgno) in pages {
        let at = (pgno as usize - 1) * page_size as usize;
        if before.get(at..at + page_size as usize) != Some(page) {
            enc.encode_page(pgno, page).unwrap();
        }
    }
    assert!(enc.page_count() > 0, "the copy changed no page");
    let post = Checksum(ltx::database_checksum(&after, page_size));
    let (file, _) = enc.finish(post).unwrap();
    (file, after)
}

/// Write forwarding as a Go LiteFS replica drives it against this primary (spec §5, §4.3):
/// `/halt` freezes local writers and answers the position, `/tx` applies the replica's
/// transaction (verified, continuing the position, under the lock it names) and streams it
/// to every replica byte for byte, `DELETE /halt` lets local writers go on — and open
/// connections read the forwarded rows. In rollback and WAL mode.
#[test]
fn a_halted_primary_applies_and_streams_a_forwarded_transaction() {
    const WATCHER_NODE_ID: u64 = 0x77;
    // Kernel-local locks are the default; LiteFS's own (`fuse.posix-locks: true`) once.
    for (mode, posix_locks) in [("delete", false), ("wal", false), ("wal", true)] {
        println!("{mode}, posix locks {posix_locks}");
        let t = TestMount::with_locks(true, posix_locks);
        let conn = sqlite(&t, "db", mode);
        insert(&conn, 3);
        let server = start_server(&t);
        let addr = server.addr();
        let post =
            |path: &str, node_id: u64, body: &[u8]| request_as(addr, "POST", path, node_id, body);

        // Refusals, LiteFS's texts.
        assert_eq!(
            post("/halt?name=db&id=x", REPLICA_NODE_ID, b""),
            (400, "invalid id: \"x\"\n".into())
        );
        assert_eq!(
            post("/halt?name=db&id=7", OUR_NODE_ID, b""),
            (400, "cannot remotely halt self\n".into())
        );
        let (status, body) = post("/halt?name=db&id=0", REPLICA_NODE_ID, b"");
        assert_eq!(status, 500, "{body}");
        assert!(
            body.starts_with("acquire halt lock: ") && body.contains("halt lock id required"),
            "{body}"
        );
        assert_eq!(
            post("/tx?name=nope&lockID=7", REPLICA_NODE_ID, b""),
            (404, "database not found: \"nope\"\n".into())
        );

        let before = t.pos("db");
        let (status, body) = post("/halt?name=db&id=7", REPLICA_NODE_ID, b"");
        assert_eq!(status, 200, "{mode}: {body}");
        assert!(body.ends_with("}\n"), "{body}");
        let lock: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(lock["id"], 7);
        assert_eq!(lock["pos"]["TXID"], format!("{:016x}", before.txid.0));
        assert_eq!(
            lock["pos"]["PostApplyChecksum"],
            format!("{:016x}", before.post_apply_checksum.0)
        );
        assert!(lock["expires"].as_str().unwrap().ends_with('Z'), "{body}");
        // A retried request (the replica's FUSE call interrupted) gets the same lock.
        assert_eq!(
            post("/halt?name=db&id=7", REPLICA_NODE_ID, b""),
            (200, body)
        );
        assert_eq!(t.store().db("db").unwrap().halt_lock().unwrap().id, 7);

        // Local writers wait while the primary is halted. (In WAL mode SQLite would retry
        // the read marks for ~10 s before SQLITE_PROTOCOL: the WAL write lock is looked at.)
        if mode == "wal" {
            assert!(byte_locked(&t.path("db-shm"), 120), "WAL_WRITE is held");
        } else {
            conn.busy_timeout(Duration::ZERO).unwrap();
            let refused = conn
                .execute_batch("INSERT INTO t(v) VALUES (randomblob(700))")
                .unwrap_err();
            assert_eq!(
                refused.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy),
                "{refused}"
            );
        }

        let map = PosMap::from([("db".to_string(), before)]);
        let mut watcher = open_stream(addr, &map, WATCHER_NODE_ID, "");
        assert_eq!(watcher.status, 200);
        assert_eq!(next_frame(&mut watcher), Frame::Ready);

        let (file, image) = forwarded_transaction(&t, "db", before, REPLICA_NODE_ID, 2);
        // Under another replica's lock id: refused, nothing changes.
        let (status, body) = post("/tx?name=db&lockID=8", REPLICA_NODE_ID, &file);
        assert_eq!(status, 500, "{body}");
        assert!(
            body.starts_with("write ltx file: ") && body.contains("halt lock 8 is not held"),
            "{body}"
        );
        assert_eq!(t.pos("db"), before);
        // A damaged file: refused, nothing changes.
        let mut damaged = file.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let (status, body) = post("/tx?name=db&lockID=7", REPLICA_NODE_ID, &damaged);
        assert_eq!(status, 500, "{body}");
        assert_eq!(t.pos("db"), before);
        let leftovers: Vec<_> = std::fs::read_dir(t.ltx_dir("db"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".ltx"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

        assert_eq!(
            post("/tx?name=db&lockID=7", REPLICA_NODE_ID, &file),
            (200, String::new()),
            "{mode}"
        );
        let after = t.pos("db");
        assert_eq!(after.txid.0, before.txid.0 + 1);
        let stored = std::fs::read(
            t.ltx_dir("db")
                .join(ltx::format_filename(after.txid, after.txid)),
        )
        .unwrap();
        assert!(stored == file, "the forwarded file is kept as sent");
        // The same transaction again no longer continues the position.
        let (status, body) = post("/tx?name=db&lockID=7", REPLICA_NODE_ID, &file);
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("starts from"), "{body}");

        // Every replica gets it, the sender too (it recognises its own node id and skips it).
        let payload = loop {
            match next_frame(&mut watcher) {
                Frame::Heartbeat { .. } => continue,
                Frame::Ltx { name } => {
                    assert_eq!(name, "db");
                    break read_payload(&mut watcher);
                }
                other => panic!("expected the forwarded LTX frame, got {other:?}"),
            }
        };
        assert!(payload == file, "streamed byte for byte");

        // Another id's release is a no-op; the holder's lets local writers go on.
        assert_eq!(
            request_as(addr, "DELETE", "/halt?name=db&id=8", REPLICA_NODE_ID, b""),
            (200, String::new())
        );
        assert!(t.store().db("db").unwrap().halt_lock().is_some());
        assert_eq!(
            request_as(addr, "DELETE", "/halt?name=db&id=7", OUR_NODE_ID, b""),
            (400, "cannot remotely unhalt self\n".into())
        );
        assert_eq!(
            request_as(addr, "DELETE", "/halt?name=nope&id=7", REPLICA_NODE_ID, b"").0,
            404
        );
        assert_eq!(
            request_as(addr, "DELETE", "/halt?name=db&id=7", REPLICA_NODE_ID, b""),
            (200, String::new())
        );
        assert!(t.store().db("db").unwrap().halt_lock().is_none());
        assert!(
            mode != "wal" || !byte_locked(&t.path("db-shm"), 120),
            "WAL_WRITE is free"
        );
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            rows, 5,
            "{mode}: the open connection reads the forwarded rows"
        );
        let want = logical_image(
            &t.data.join("dbs").join("db"),
            (image.len() / 4096) as u32,
            4096,
        );
        assert!(want == image, "{mode}: the database is the replica's image");
        insert(&conn, 1);
        assert_eq!(
            t.pos("db").txid.0,
            after.txid.0 + 1,
            "{mode}: local writes go on"
        );
    }
}

/// Whether some other open file description holds a lock on byte `offset` of `path`
/// (`F_OFD_GETLK` for a write lock).
fn byte_locked(path: &std::path::Path, offset: i64) -> bool {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: `flock` is plain old data; all zeroes is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as i16;
    lock.l_whence = libc::SEEK_SET as i16;
    lock.l_start = offset;
    lock.l_len = 1;
    // SAFETY: a valid descriptor and a valid `flock` the call fills in.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    assert_eq!(rc, 0, "F_OFD_GETLK: {}", io::Error::last_os_error());
    lock.l_type != libc::F_UNLCK as i16
}

/// A halt released without a forwarded transaction (`litefs run -with-halt-lock-on` around
/// a command that only reads) leaves SQLite's view whole: the WAL it folded is gone from the
/// `-shm` index too, so an open connection reads every row and its next commit is captured.
/// A forwarded file that no longer continues the position is refused without a change, one
/// arriving after its halt lock lapsed (spec §5.5: the monitor looks every 5 s) is applied
/// under a write lock of its own, as LiteFS would. Kernel-local locks (the default).
#[test]
fn a_halt_released_or_lapsed_leaves_sqlite_consistent() {
    let t = TestMount::with_locks(false, false);
    let conn = sqlite(&t, "db", "wal");
    insert(&conn, 3);
    let server = start_server(&t);
    let addr = server.addr();
    let halt = |id: u64| {
        let (status, body) = request_as(
            addr,
            "POST",
            &format!("/halt?name=db&id={id}"),
            REPLICA_NODE_ID,
            b"",
        );
        assert_eq!(status, 200, "{body}");
    };
    let rows = || -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };

    let before = t.pos("db");
    halt(9);
    assert_eq!(
        std::fs::metadata(t.data.join("dbs/db/wal")).unwrap().len(),
        0,
        "the halt folded the WAL"
    );
    let stale = forwarded_transaction(&t, "db", before, REPLICA_NODE_ID, 1).0;
    assert_eq!(
        request_as(addr, "DELETE", "/halt?name=db&id=9", REPLICA_NODE_ID, b""),
        (200, String::new())
    );
    assert_eq!(rows(), 3, "the open connection reads the folded rows");
    insert(&conn, 1);
    assert_eq!(rows(), 4);
    let local = t.pos("db");
    assert_eq!(
        local.txid.0,
        before.txid.0 + 1,
        "the local commit is captured"
    );
    check_newest_ltx(&t, "db", 4096);

    let (status, body) = request_as(
        addr,
        "POST",
        "/tx?name=db&lockID=9",
        REPLICA_NODE_ID,
        &stale,
    );
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("starts from"), "{body}");
    assert_eq!(t.pos("db"), local, "a refused file changes nothing");
    assert!(
        std::fs::metadata(t.data.join("dbs/db/wal")).unwrap().len() > 0,
        "the refused file did not fold the WAL"
    );

    halt(10);
    let db = t.store().db("db").unwrap();
    let ttl = Duration::from_millis(litefs::store::HALT_LOCK_TTL_MS);
    assert_eq!(db.expire_halt_lock(Instant::now()), None, "not lapsed yet");
    assert_eq!(
        db.expire_halt_lock(Instant::now() + ttl).map(|l| l.id),
        Some(10)
    );
    assert!(db.halt_lock().is_none());
    let (file, _) = forwarded_transaction(&t, "db", t.pos("db"), REPLICA_NODE_ID, 2);
    assert_eq!(
        request_as(
            addr,
            "POST",
            "/tx?name=db&lockID=10",
            REPLICA_NODE_ID,
            &file
        ),
        (200, String::new())
    );
    assert_eq!(t.pos("db").txid.0, local.txid.0 + 1);
    assert_eq!(rows(), 6);
    insert(&conn, 1);
    assert_eq!(rows(), 7);
    assert_eq!(t.pos("db").txid.0, local.txid.0 + 2);

    // A stopping node releases its halt lock and takes no more.
    halt(11);
    db.close_halt_locks();
    assert!(db.halt_lock().is_none());
    let (status, body) = request_as(addr, "POST", "/halt?name=db&id=12", REPLICA_NODE_ID, b"");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("stopping"), "{body}");
    insert(&conn, 1);
}
