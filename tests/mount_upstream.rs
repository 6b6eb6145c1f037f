//! Equivalents of upstream `fuse/file_system_test.go` tests (spec §9.4) not covered elsewhere;
//! each test is named after the upstream one. The rest map to: `TestFileSystem_OK`,
//! `_Rollback`, `_BeginImmediate`, `_NoWrite` → `mount_sqlite::run_mode` (every matrix test);
//! `_RollbackJournalOnStartup` → `crash::hot_journal_in_copied_data_dir_is_rolled_back`;
//! `TestToErrno` → `fuse::errno::tests`; `TestParseFilename`/`TestFileTypeFilename` →
//! `fuse::node::tests`.

mod common;

use common::{TestMount, assert_chain_contiguous, check_newest_ltx};
use rusqlite::Connection;
use std::time::Duration;

fn open(t: &TestMount, mode: &str) -> Connection {
    let conn = Connection::open(t.path("db")).unwrap();
    let got: String = conn
        .query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| r.get(0))
        .unwrap();
    assert_eq!(got, mode);
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

fn integrity(conn: &Connection) {
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

const MODES: [&str; 4] = ["delete", "truncate", "persist", "wal"];

#[test]
fn multiple_journal_segments() {
    for mode in ["delete", "truncate", "persist"] {
        let t = TestMount::new(true);
        let conn = open(&t, mode);
        conn.execute_batch("PRAGMA cache_size=10; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
            .unwrap();
        for round in 0..3 {
            let before = t.pos("db").txid;
            conn.execute_batch(
                "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
                 INSERT INTO t(v) SELECT randomblob(2000) FROM n; UPDATE t SET v = randomblob(1500); COMMIT;",
            )
            .unwrap();
            assert_eq!(
                t.pos("db").txid.0,
                before.0 + 1,
                "{mode} round {round}: one spilling transaction, one TXID"
            );
            check_newest_ltx(&t, "db", 4096);
        }
        integrity(&conn);
    }
}

#[test]
fn read_dir() {
    let expected = [
        ("delete", vec!["db0", "db0-pos", "db1", "db1-pos"]),
        (
            "truncate",
            vec![
                "db0",
                "db0-journal",
                "db0-pos",
                "db1",
                "db1-journal",
                "db1-pos",
            ],
        ),
        (
            "persist",
            vec![
                "db0",
                "db0-journal",
                "db0-pos",
                "db1",
                "db1-journal",
                "db1-pos",
            ],
        ),
        (
            "wal",
            vec![
                "db0", "db0-pos", "db0-shm", "db0-wal", "db1", "db1-pos", "db1-shm", "db1-wal",
            ],
        ),
    ];
    for (mode, want) in expected {
        let t = TestMount::new(false);
        let mut conns = Vec::new();
        for name in ["db0", "db1"] {
            let conn = Connection::open(t.path(name)).unwrap();
            let _: String = conn
                .query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| r.get(0))
                .unwrap();
            conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
                .unwrap();
            conns.push(conn);
        }
        // `ls` hides dot files and sorts.
        let mut names: Vec<String> = std::fs::read_dir(&t.mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        assert_eq!(names, want, "{mode}");
    }
}

#[test]
fn continue_on_database_init_eof() {
    for mode in MODES {
        let mut t = TestMount::new(true);
        {
            let conn = open(&t, mode);
            conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); INSERT INTO t(v) SELECT randomblob(5000);")
                .unwrap();
        }
        t.stop();
        let db = t.data.join("dbs/db/database");
        let len = std::fs::metadata(&db).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&db)
            .unwrap()
            .set_len(len - 4096)
            .unwrap();
        t.start();
        let conn = Connection::open(t.path("db")).unwrap();
        integrity(&conn);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "{mode}");
    }
}

#[test]
fn statfs() {
    let t = TestMount::new(false);
    let path = std::ffi::CString::new(t.mnt.to_str().unwrap()).unwrap();
    // SAFETY: all-zero is a valid statvfs; `path` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers for the call's duration.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs: {}", std::io::Error::last_os_error());
    assert!(
        st.f_blocks > 0 && st.f_bsize > 0,
        "statfs passes the data dir's numbers through"
    );
}

#[test]
fn pos_reuse_handle() {
    for mode in MODES {
        let t = TestMount::new(false);
        let conn = open(&t, mode);
        conn.execute_batch("CREATE TABLE t(x)").unwrap();
        // A handle held open across commits sees each new position.
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(t.path("db-pos")).unwrap();
        for i in 0..3 {
            conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
            let mut buf = [0u8; 34];
            assert_eq!(f.read_at(&mut buf, 0).unwrap(), 34);
            let text = std::str::from_utf8(&buf).unwrap();
            assert_eq!(
                text,
                format!("{}\n", t.pos("db")),
                "{mode}: held handle is stale"
            );
        }
    }
}

#[test]
fn multiple_tx() {
    for mode in MODES {
        let t = TestMount::new(false);
        let writer = open(&t, mode);
        writer
            .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        let reader = open(&t, mode);
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        let handle =
            std::thread::spawn(move || writer.execute("INSERT INTO t VALUES (2)", []).map(|_| ()));
        std::thread::sleep(Duration::from_millis(100));
        reader.execute_batch("ROLLBACK").unwrap();
        handle
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{mode}: writer failed after the reader ended: {e}"));
        let n: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2, "{mode}");
    }
}

#[test]
fn vacuum() {
    for mode in MODES {
        let t = TestMount::new(true);
        let conn = open(&t, mode);
        conn.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
             INSERT INTO t(v) SELECT randomblob(2000) FROM n;
             DELETE FROM t WHERE id > 50;",
        )
        .unwrap();
        let before: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch("VACUUM").unwrap();
        let after: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        assert!(after < before, "{mode}: {before} -> {after} pages");
        let summary = check_newest_ltx(&t, "db", 4096);
        assert_eq!(
            i64::from(summary.header.commit),
            after,
            "{mode}: LTX commit is the shrunk size"
        );
        integrity(&conn);
    }
}

#[test]
fn checkpoint() {
    for ckpt in ["PASSIVE", "FULL", "RESTART", "TRUNCATE"] {
        let t = TestMount::new(true);
        let conn = open(&t, "wal");
        conn.execute_batch("PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x);")
            .unwrap();
        for i in 0..20 {
            conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        let (busy, _, _): (i64, i64, i64) = conn
            .query_row(&format!("PRAGMA wal_checkpoint({ckpt})"), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0, "wal_checkpoint({ckpt}) was blocked");
        let sum: i64 = conn
            .query_row("SELECT sum(x) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sum, 190, "{ckpt}");
        conn.execute("INSERT INTO t VALUES (100)", []).unwrap();
        check_newest_ltx(&t, "db", 4096);
        integrity(&conn);
    }
}

/// Upstream truncates the WAL back to the previous LTX file when the last one is missing
/// (rows 16 → 11). We re-derive the missing LTX file from the committed WAL frames instead:
/// no row SQLite committed is dropped.
#[test]
fn out_of_sync_wal() {
    let mut t = TestMount::new(true);
    let conn = open(&t, "wal");
    conn.execute_batch("PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x);")
        .unwrap();
    for i in 0..16 {
        conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
    }
    let pos = t.pos("db");
    // Stop the mount while the connection (and so the WAL) stays open, then drop the newest
    // LTX file as if it had never been written.
    t.stop();
    drop(conn);
    std::fs::remove_file(
        t.ltx_dir("db")
            .join(litefs::ltx::format_filename(pos.txid, pos.txid)),
    )
    .unwrap();
    t.start();
    assert_eq!(
        t.pos("db"),
        pos,
        "the missing LTX file is derived again from the WAL"
    );
    let conn = Connection::open(t.path("db")).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 16);
    integrity(&conn);
    drop(conn);
    assert_chain_contiguous(&t.ltx_dir("db"), t.pos("db").txid);
}

#[test]
fn lag() {
    let t = TestMount::new(false);
    assert_eq!(
        std::fs::read_to_string(t.mnt.join(".lag")).unwrap(),
        "+000000000\n"
    );
    let mtime = std::fs::metadata(t.mnt.join(".lag"))
        .unwrap()
        .modified()
        .unwrap();
    let skew = std::time::SystemTime::now()
        .duration_since(mtime)
        .unwrap_or_default();
    assert!(
        skew < Duration::from_secs(5),
        "mtime is now on a primary: {skew:?}"
    );
}

/// Reopened without write access (a replica, spec §3.5): writes fail with SQLITE_READONLY in
/// every mode (LiteFS gives an I/O error in WAL mode; we refuse the WAL's read-write open so
/// SQLite opens it read-only) — and nothing changes.
#[test]
fn read_only() {
    for mode in MODES {
        let mut t = TestMount::new(true);
        {
            let conn = open(&t, mode);
            conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
                .unwrap();
        }
        t.stop();
        t.start();
        t.store().set_writable(false);
        let pos = t.pos("db");
        let files = std::fs::read_dir(t.ltx_dir("db")).unwrap().count();
        let conn = Connection::open(t.path("db")).unwrap();
        let err = conn.execute("INSERT INTO t VALUES (2)", []).unwrap_err();
        let code = err.sqlite_error_code();
        assert_eq!(code, Some(rusqlite::ErrorCode::ReadOnly), "{mode}: {err}");
        assert_eq!(t.pos("db"), pos, "{mode}: position unchanged");
        assert_eq!(
            std::fs::read_dir(t.ltx_dir("db")).unwrap().count(),
            files,
            "{mode}: no new LTX file"
        );
        let mode_bits = std::fs::metadata(t.path("db")).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode_bits) & 0o777,
            0o444,
            "{mode}"
        );
        drop(conn);
        t.store().set_writable(true);
        let conn = open(&t, mode);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "{mode}: the failed write left nothing behind");
        integrity(&conn);
    }
}

#[test]
fn halt_lock_err_invalid_offset() {
    let t = TestMount::new(false);
    let conn = open(&t, "delete");
    conn.execute_batch("CREATE TABLE t(x)").unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.path("db-lock"))
        .unwrap();
    // SAFETY: all-zero is a valid flock; the fields are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = 123;
    fl.l_len = 1;
    // SAFETY: `f` is open and `fl` a valid flock for the call's duration.
    let rc = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_OFD_SETLKW, &fl) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EINVAL)
    );
}
