//! `GET /export`, `POST /import` and the `litefs export` / `litefs import` commands against a
//! real mount with the HTTP server in-process (spec §4.3, §8.10). Data is written with the
//! `sqlite3` CLI and rusqlite on the mount; exports are compared byte for byte with the
//! database as SQLite sees it; imports are checked through the position, the LTX file they
//! leave and a connection that was open on the mount throughout.

mod common;

use common::{TestMount, logical_image};
use litefs::http::{Server, ServerOptions};
use litefs::ltx;
use litefs::types::{Pos, TxId};
use rusqlite::Connection;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

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

/// One request over h2c with prior knowledge, as Go LiteFS's client speaks; returns (status,
/// Content-Length header, body).
fn h2(addr: SocketAddr, method: &str, path: &str, body: Vec<u8>) -> (u16, Option<u64>, Vec<u8>) {
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
            .uri(format!("http://{addr}{path}"))
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, body.is_empty()).unwrap();
        if !body.is_empty() {
            // Several DATA frames, as a streaming client sends them.
            for chunk in body.chunks(16 * 1024) {
                send.reserve_capacity(chunk.len());
                send.send_data(hyper::body::Bytes::copy_from_slice(chunk), false)
                    .unwrap();
            }
            send.send_data(hyper::body::Bytes::new(), true).unwrap();
        }
        let resp = resp.await.unwrap();
        let status = resp.status().as_u16();
        let len = resp
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(data) = body.data().await {
            let data = data.unwrap();
            let _ = body.flow_control().release_capacity(data.len());
            out.extend_from_slice(&data);
        }
        (status, len, out)
    })
}

/// Runs the built `litefs` binary with `args`.
fn litefs(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_litefs"))
        .args(args)
        .output()
        .unwrap();
    println!(
        "litefs {args:?} -> {:?}\nstdout: {}stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Runs `sql` with the `sqlite3` CLI on `db`; returns its stdout, trimmed.
fn sqlite3(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "sqlite3 {} {sql:?}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The first byte offset where `a` and `b` differ, for messages.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then_some(a.len().min(b.len())))
}

fn assert_same_bytes(what: &str, got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "{what}: {} bytes vs {} expected, first difference at byte {:?}",
        got.len(),
        want.len(),
        first_difference(got, want)
    );
}

/// The database `db` of the mount as SQLite sees it (file + committed WAL frames).
fn image_of(t: &TestMount, db: &str) -> Vec<u8> {
    let store_db = t.store().db(db).unwrap();
    logical_image(
        &t.data.join("dbs").join(db),
        store_db.page_count(),
        store_db.page_size(),
    )
}

#[test]
fn export_equals_the_database_in_wal_and_delete_mode() {
    for (mode, compress, posix_locks) in [
        ("wal", false, true),
        ("delete", true, true),
        ("wal", false, false),
        ("delete", true, false),
    ] {
        let t = TestMount::with_locks(compress, posix_locks);
        let server = start_server(&t);
        let db_path = t.path("db");
        sqlite3(
            &db_path,
            &format!(
                "PRAGMA journal_mode={mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
                 INSERT INTO t(v) SELECT randomblob(900) FROM n;"
            ),
        );
        // In WAL mode an open read transaction keeps the next writer's close from
        // checkpointing (it cannot lock the database exclusively): its frames stay in the WAL.
        let holder = Connection::open(&db_path).unwrap();
        if mode == "wal" {
            holder
                .execute_batch("BEGIN; SELECT count(*) FROM t;")
                .unwrap();
        }
        sqlite3(
            &db_path,
            "PRAGMA wal_autocheckpoint=0; UPDATE t SET v = randomblob(50) WHERE id % 7 = 0;
             INSERT INTO t(v) VALUES (randomblob(3000));",
        );
        let wal_bytes = std::fs::metadata(t.data.join("dbs/db/wal")).map_or(0, |m| m.len());
        println!("{mode}: WAL holds {wal_bytes} bytes");
        if mode == "wal" {
            assert!(wal_bytes > 0, "the export must overlay WAL frames");
        }

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export.db");
        // Leftovers of an older copy: a WAL or journal would be applied to the new file.
        std::fs::write(&out, b"old").unwrap();
        std::fs::write(dir.path().join("export.db-wal"), b"stale wal").unwrap();
        std::fs::write(dir.path().join("export.db-journal"), b"stale").unwrap();
        let run = litefs(&[
            "export",
            "-url",
            &url(server.addr()),
            "-name",
            "db",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success());
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            stdout.starts_with("Export of database \"db\" in ") && stdout.ends_with("\n"),
            "{stdout:?}"
        );
        for leftover in ["export.db-wal", "export.db-journal", "export.db.tmp"] {
            assert!(!dir.path().join(leftover).exists(), "{leftover} remains");
        }
        let exported = std::fs::read(&out).unwrap();
        let want = image_of(&t, "db");
        assert_same_bytes(&format!("{mode} export"), &exported, &want);
        let checksum = ltx::database_checksum(&exported, t.store().db("db").unwrap().page_size());
        let pos = t.pos("db");
        assert_eq!(
            checksum, pos.post_apply_checksum.0,
            "exported pages' checksum {checksum:016x} vs position {pos:?}"
        );
        assert_eq!(sqlite3(&out, "PRAGMA integrity_check"), "ok");
        assert_eq!(sqlite3(&out, "SELECT count(*) FROM t"), "201");
        // Go's client speaks h2c: same bytes, with a Content-Length.
        let (status, len, body) = h2(server.addr(), "GET", "/export?name=db", Vec::new());
        assert_eq!((status, len), (200, Some(want.len() as u64)));
        assert_same_bytes(&format!("{mode} export over h2c"), &body, &want);
        drop(holder);
    }
}

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
fn http1(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!(
        "{head} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut text = Vec::new();
    s.read_to_end(&mut text).unwrap();
    let text = String::from_utf8_lossy(&text).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), body.to_string())
}

/// Everything an import must not change when it is refused.
#[derive(Debug, PartialEq)]
struct Snapshot {
    dbs: Vec<String>,
    pos: Pos,
    ltx_files: Vec<String>,
    image: Vec<u8>,
}

fn snapshot(t: &TestMount, db: &str) -> Snapshot {
    let mut ltx_files: Vec<String> = std::fs::read_dir(t.ltx_dir(db))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ltx_files.sort();
    Snapshot {
        dbs: std::fs::read_dir(t.data.join("dbs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        pos: t.pos(db),
        ltx_files,
        image: image_of(t, db),
    }
}

#[test]
fn bad_requests_give_the_documented_answers_and_change_nothing() {
    let t = TestMount::new(false);
    let server = start_server(&t);
    let addr = server.addr();
    sqlite3(
        &t.path("db"),
        "CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(5000));",
    );
    let before = snapshot(&t, "db");

    let cases: [(&str, Vec<u8>, u16, &str); 8] = [
        ("GET /export", vec![], 400, "name required\n"),
        ("GET /export?name=", vec![], 400, "name required\n"),
        ("GET /export?name=nope", vec![], 404, "database not found\n"),
        ("POST /import", vec![], 400, "name required\n"),
        (
            "POST /import?name=db",
            vec![b'S'; 50],
            400,
            "database \"db\": invalid SQLite database: database header too short: 50 bytes, need 100\n",
        ),
        (
            "POST /import?name=db",
            vec![b'x'; 8192],
            400,
            "database \"db\": invalid SQLite database: invalid database header magic (expected \"SQLite format 3\\0\")\n",
        ),
        (
            "POST /import?name=new.db",
            vec![b'x'; 8192],
            400,
            "database \"new.db\": invalid SQLite database: invalid database header magic (expected \"SQLite format 3\\0\")\n",
        ),
        (
            "POST /import?name=..",
            std::fs::read(t.data.join("dbs/db/database")).unwrap(),
            400,
            "database \"..\": invalid database name\n",
        ),
    ];
    for (head, body, status, text) in cases {
        let (got_status, got_text) = http1(addr, head, &body);
        println!("{head} ({} bytes) -> {got_status} {got_text:?}", body.len());
        assert_eq!((got_status, got_text.as_str()), (status, text), "{head}");
    }
    // A body shorter than its header says: the first 2 of 3+ pages.
    let image = std::fs::read(t.data.join("dbs/db/database")).unwrap();
    let (status, text) = http1(addr, "POST /import?name=db", &image[..4096 + 10]);
    println!("short image -> {status} {text:?}");
    assert_eq!(status, 400);
    assert!(
        text.contains("invalid SQLite database: it ends in page 2 after 4106 bytes"),
        "{text}"
    );
    assert_eq!((http1(addr, "PUT /import?name=db", b"").0), 405);
    assert_eq!((http1(addr, "POST /export?name=db", b"").0), 405);

    let after = snapshot(&t, "db");
    assert_eq!(after.dbs, before.dbs, "databases");
    assert_eq!(after.pos, before.pos, "position");
    assert_eq!(after.ltx_files, before.ltx_files, "LTX files");
    assert_same_bytes("database", &after.image, &before.image);
    assert!(t.store().db("new.db").is_none());

    // A replica exports but does not import.
    t.store().set_writable(false);
    let image = image_of(&t, "db");
    let (status, text) = http1(addr, "POST /import?name=db", &image);
    assert_eq!((status, text.as_str()), (503, "lease expired\n"));
    let (status, len, body) = h2(addr, "GET", "/export?name=db", Vec::new());
    assert_eq!((status, len), (200, Some(image.len() as u64)));
    assert_same_bytes("export on a replica", &body, &image);
    t.store().set_writable(true);

    // The CLI's side of the same answers.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.db");
    std::fs::write(&out, b"keep me").unwrap();
    let u = url(addr);
    let run = litefs(&["export", "-url", &u, "-name", "nope", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&run.stderr),
        "ERROR: database not found\n"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"keep me",
        "a failed export keeps PATH"
    );
    let run = litefs(&["export", "-url", &u, "-name", "db"]);
    assert_eq!(
        (
            run.status.code(),
            String::from_utf8_lossy(&run.stderr).as_ref()
        ),
        (Some(1), "ERROR: database path required\n")
    );
    let run = litefs(&["export", "-url", &u, "-name", "db", "a", "b"]);
    assert_eq!(
        String::from_utf8_lossy(&run.stderr),
        "ERROR: too many arguments\n"
    );
    let run = litefs(&["import", "-url", &u, out.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&run.stderr),
        "ERROR: database name required\n"
    );
    let run = litefs(&["import", "-url", &u, "-name", "db", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.starts_with("ERROR: import failed with HTTP 400: database \"db\": invalid SQLite database: database header too short: 7 bytes"),
        "{stderr}"
    );
    assert_eq!(snapshot(&t, "db"), after);
}

/// A database made by the `sqlite3` CLI outside the mount: `rows` rows of `tag`.
fn source_db(dir: &Path, name: &str, mode: &str, rows: u32, tag: &str) -> PathBuf {
    let path = dir.join(name);
    sqlite3(
        &path,
        &format!(
            "PRAGMA page_size=4096; PRAGMA journal_mode={mode};
             CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO t(tag, v) SELECT '{tag}', randomblob(1000) FROM n;
             PRAGMA wal_checkpoint(TRUNCATE);"
        ),
    );
    assert!(
        !dir.join(format!("{name}-wal")).exists()
            || std::fs::metadata(dir.join(format!("{name}-wal")))
                .unwrap()
                .len()
                == 0
    );
    path
}

/// Checks the LTX file an import left for TXID `before.txid + 1`; returns it.
fn check_import_ltx(t: &TestMount, db: &str, before: Pos, source: &[u8]) -> ltx::Summary {
    let after = t.pos(db);
    println!("{db}: position {before:?} -> {after:?}");
    assert_eq!(
        after.txid.0,
        before.txid.0 + 1,
        "TXID {} -> {}",
        before.txid,
        after.txid
    );
    let path = t
        .ltx_dir(db)
        .join(ltx::format_filename(after.txid, after.txid));
    let summary = ltx::verify(std::fs::File::open(&path).unwrap()).unwrap();
    let h = summary.header;
    assert_eq!((h.min_txid, h.max_txid), (after.txid, after.txid));
    assert_eq!(
        summary.trailer.post_apply_checksum, after.post_apply_checksum,
        "LTX post-apply {} vs position {}",
        summary.trailer.post_apply_checksum, after.post_apply_checksum
    );
    let expected_pre = if after.txid == TxId(1) {
        0
    } else {
        before.post_apply_checksum.0
    };
    assert_eq!(h.pre_apply_checksum.0, expected_pre);
    assert_eq!(
        u64::from(h.commit) * u64::from(h.page_size),
        source.len() as u64,
        "commit {} pages of {} bytes vs a {}-byte source",
        h.commit,
        h.page_size,
        source.len()
    );
    assert_eq!(summary.page_count, h.commit, "every page is in the file");
    // The database is the source with page 1's change counter and schema cookie zeroed.
    let mut want = source.to_vec();
    want[24..28].fill(0);
    want[40..44].fill(0);
    assert_same_bytes(&format!("{db} after import"), &image_of(t, db), &want);
    assert_eq!(
        ltx::database_checksum(&want, h.page_size),
        after.post_apply_checksum.0
    );
    summary
}

/// In both lock modes: with kernel-local locks (the default) the import's own locks look the
/// new database up through the mount before it exists, and the kernel remembered the name
/// as missing — SQLite then failed to open the imported database for writing ("attempt to
/// write a readonly database") until the entry timed out.
#[test]
fn import_creates_a_new_database() {
    for posix_locks in [true, false] {
        import_creates_a_new_database_with(posix_locks);
    }
}

fn import_creates_a_new_database_with(posix_locks: bool) {
    let t = TestMount::with_locks(true, posix_locks);
    let server = start_server(&t);
    let dir = tempfile::tempdir().unwrap();
    let src = source_db(dir.path(), "src.db", "delete", 300, "imported");
    let source = std::fs::read(&src).unwrap();
    let run = litefs(&[
        "import",
        "-url",
        &url(server.addr()),
        "-name",
        "new.db",
        src.to_str().unwrap(),
    ]);
    assert!(run.status.success());
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.starts_with("Import of database \"new.db\" in "),
        "{stdout:?}"
    );
    let summary = check_import_ltx(&t, "new.db", Pos::default(), &source);
    assert!(summary.header.is_snapshot(), "TXID 1 is a snapshot");
    // Visible by name and writable at once (only its `-pos` and LTX files were read so far).
    std::fs::metadata(t.path("new.db")).expect("the imported database is not visible by name");
    rusqlite::Connection::open(t.path("new.db"))
        .and_then(|c| c.execute("INSERT INTO t(tag) VALUES ('first')", []))
        .expect("the imported database is not writable");
    let db = t.path("new.db");
    assert_eq!(sqlite3(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(
        sqlite3(&db, "SELECT count(*), max(tag) FROM t WHERE tag != 'first'"),
        "300|imported"
    );
    // The same over h2c (Go's client), into another new database.
    let (status, _, body) = h2(server.addr(), "POST", "/import?name=h2.db", source.clone());
    assert_eq!((status, body.as_slice()), (200, &b""[..]));
    check_import_ltx(&t, "h2.db", Pos::default(), &source);
    // It is an ordinary database now: writes are captured as the next transaction.
    sqlite3(&db, "INSERT INTO t(tag) VALUES ('after');");
    assert_eq!(t.pos("new.db").txid, TxId(3));
    common::check_newest_ltx(&t, "new.db", 4096);
}

#[test]
fn import_replaces_a_live_database_seen_by_an_open_connection() {
    // Kernel-local locks (posix_locks false) in two pairings: the import's internal write
    // lock is then taken through the mount, beside the open connection's locks.
    for (mode, source_mode, posix_locks) in [
        ("delete", "delete", true),
        ("wal", "wal", true),
        ("wal", "delete", true),
        ("delete", "wal", true),
        ("delete", "delete", false),
        ("wal", "wal", false),
    ] {
        let t = TestMount::with_locks(false, posix_locks);
        let server = start_server(&t);
        let conn = Connection::open(t.path("db")).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA journal_mode={mode}; PRAGMA busy_timeout=5000;
             CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
             INSERT INTO t(tag, v) SELECT 'old', randomblob(1000) FROM n;"
        ))
        .unwrap();
        let count = |conn: &Connection| -> (i64, String) {
            conn.query_row("SELECT count(*), min(tag) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
        };
        assert_eq!(count(&conn), (500, "old".to_string()));
        let before = t.pos("db");

        let dir = tempfile::tempdir().unwrap();
        // Smaller than the live database: the import also shrinks it.
        let src = source_db(dir.path(), "src.db", source_mode, 120, "new");
        let wal_bytes = std::fs::metadata(t.data.join("dbs/db/wal")).map_or(0, |m| m.len());
        println!("{mode} <- {source_mode}: the live WAL holds {wal_bytes} bytes");
        let source = std::fs::read(&src).unwrap();
        let wal_before = std::fs::File::open(t.path("db-wal")).ok();
        let run = litefs(&[
            "import",
            "-url",
            &url(server.addr()),
            "-name",
            "db",
            src.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{mode} <- {source_mode}, posix-locks {posix_locks}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let summary = check_import_ltx(&t, "db", before, &source);
        assert!(!summary.header.is_snapshot());
        // The import truncated the WAL behind the kernel, which caches a primary's pages: a
        // descriptor open before must read what the file holds now, not the old frames, or
        // SQLite's next frames land on stale cached pages (one once reached the daemon as
        // zeros, and its commit was never captured).
        if let Some(wal) = &wal_before {
            let backing = std::fs::read(t.data.join("dbs/db/wal")).unwrap();
            let mut head = [0u8; 32];
            let n = wal.read_at(&mut head, 0).unwrap();
            assert_eq!(
                &head[..n],
                &backing[..n.min(backing.len())],
                "{mode} <- {source_mode}: the WAL through a descriptor opened before the \
                 import ({n} bytes read, the file holds {})",
                backing.len()
            );
            assert_eq!(n, backing.len().min(32), "{mode} <- {source_mode}");
        }

        let seen = count(&conn);
        println!("{mode} <- {source_mode}: the open connection sees {seen:?}");
        assert_eq!(
            seen,
            (120, "new".to_string()),
            "{mode} <- {source_mode}, posix-locks {posix_locks}"
        );
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        // The connection goes on writing, captured on top of the import.
        conn.execute("INSERT INTO t(tag) VALUES ('after')", [])
            .unwrap();
        assert_eq!(t.pos("db").txid.0, before.txid.0 + 2);
        assert_eq!(count(&conn).0, 121);
        assert_eq!(sqlite3(&t.path("db"), "SELECT count(*) FROM t"), "121");
        drop(conn);
    }
}
