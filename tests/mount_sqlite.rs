//! A real mount (root, /dev/fuse) with real SQLite in every journal mode: every committed
//! write transaction becomes exactly one LTX file whose post-apply checksum equals the
//! database file's checksum. Mounts negotiate `FUSE_POSIX_LOCKS` (the default) except in
//! `kernel_local_locks_wal_and_delete`.

mod common;

use common::{TestMount, assert_chain_contiguous, check_newest_ltx};
use litefs::types::TxId;
use rusqlite::Connection;

fn run_mode(mode: &str, page_size: u32, compress: bool) {
    run_mode_on(&TestMount::new(compress), mode, page_size);
}

fn run_mode_on(t: &TestMount, mode: &str, page_size: u32) {
    let compress = t.compress;
    let conn = Connection::open(t.path("db")).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA page_size={page_size}; PRAGMA journal_mode={mode}; PRAGMA busy_timeout=5000;"
    ))
    .unwrap();
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        .unwrap();
    let mut txid = t.pos("db").txid;
    // In WAL mode the switch itself is a rollback-journal transaction (TXID 1), as in LiteFS.
    let first = if mode == "wal" { 2 } else { 1 };
    assert_eq!(txid, TxId(first), "{mode}: CREATE TABLE is TXID {first}");
    check_newest_ltx(t, "db", page_size);
    let statements = [
        "INSERT INTO t(v) VALUES (randomblob(100))",
        "INSERT INTO t(v) SELECT randomblob(300) FROM t",
        "INSERT INTO t(v) SELECT randomblob(3000) FROM t",
        "UPDATE t SET v = randomblob(50) WHERE id % 2 = 0",
        "DELETE FROM t WHERE id > 3",
        "BEGIN; INSERT INTO t(v) VALUES (randomblob(10)); SAVEPOINT a; INSERT INTO t(v) VALUES (1); ROLLBACK TO a; COMMIT",
        "BEGIN IMMEDIATE; INSERT INTO t(v) VALUES (zeroblob(5000)); COMMIT",
    ];
    for sql in statements {
        conn.execute_batch(sql).unwrap();
        let pos = t.pos("db");
        assert_eq!(
            pos.txid.0,
            txid.0 + 1,
            "{mode} {page_size}: {sql:?} must advance the TXID by one"
        );
        txid = pos.txid;
        let summary = check_newest_ltx(t, "db", page_size);
        assert_eq!(summary.header.is_compressed(), compress);
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }
    // A rollback changes nothing and records nothing visible in the data.
    let count: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch("BEGIN; DELETE FROM t; ROLLBACK;")
        .unwrap();
    let after: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, after);
    // A transaction that writes nothing records nothing.
    let before = t.pos("db");
    conn.execute_batch("BEGIN IMMEDIATE; COMMIT;").unwrap();
    assert_eq!(t.pos("db"), before);
    drop(conn);
    assert_chain_contiguous(&t.ltx_dir("db"), t.pos("db").txid);
}

/// The matrix: journal mode × page size × compression, one test each.
macro_rules! matrix {
    ($($name:ident: $mode:literal, $page_size:literal, $compress:literal;)*) => {
        $(
            #[test]
            fn $name() {
                run_mode($mode, $page_size, $compress);
            }
        )*
    };
}

matrix! {
    delete_512_lz4: "delete", 512, true;
    delete_512_raw: "delete", 512, false;
    delete_4k_lz4: "delete", 4096, true;
    delete_4k_raw: "delete", 4096, false;
    delete_64k_lz4: "delete", 65536, true;
    delete_64k_raw: "delete", 65536, false;
    truncate_512_lz4: "truncate", 512, true;
    truncate_512_raw: "truncate", 512, false;
    truncate_4k_lz4: "truncate", 4096, true;
    truncate_4k_raw: "truncate", 4096, false;
    truncate_64k_lz4: "truncate", 65536, true;
    truncate_64k_raw: "truncate", 65536, false;
    persist_512_lz4: "persist", 512, true;
    persist_512_raw: "persist", 512, false;
    persist_4k_lz4: "persist", 4096, true;
    persist_4k_raw: "persist", 4096, false;
    persist_64k_lz4: "persist", 65536, true;
    persist_64k_raw: "persist", 65536, false;
    wal_512_lz4: "wal", 512, true;
    wal_512_raw: "wal", 512, false;
    wal_4k_lz4: "wal", 4096, true;
    wal_4k_raw: "wal", 4096, false;
    wal_64k_lz4: "wal", 65536, true;
    wal_64k_raw: "wal", 65536, false;
}

#[test]
fn wal_restart_and_checkpoints() {
    let mut t = TestMount::new(true);
    {
        let conn = Connection::open(t.path("db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x);",
        )
        .unwrap();
        for i in 0..20 {
            conn.execute(&format!("INSERT INTO t VALUES ({i})"), [])
                .unwrap();
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        for i in 20..30 {
            conn.execute(&format!("INSERT INTO t VALUES ({i})"), [])
                .unwrap();
        }
        // Keep the WAL: leave the connection open while the mount stops? No: close it so
        // SQLite checkpoints; the crash tests cover frames left in the WAL.
    }
    let pos = t.pos("db");
    t.stop();
    t.start();
    assert_eq!(t.pos("db"), pos);
    let conn = Connection::open(t.path("db")).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 30);
    check_newest_ltx(&t, "db", 4096);
}

#[test]
fn restart_recovers_position_and_data() {
    let mut t = TestMount::new(true);
    {
        let conn = Connection::open(t.path("db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE t(x); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);",
        )
        .unwrap();
    }
    let pos = t.pos("db");
    t.stop();
    t.start();
    assert_eq!(t.pos("db"), pos, "position survives a restart");
    let conn = Connection::open(t.path("db")).unwrap();
    let n: i64 = conn
        .query_row("SELECT sum(x) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    conn.execute_batch("INSERT INTO t VALUES (3)").unwrap();
    assert_eq!(t.pos("db").txid.0, pos.txid.0 + 1);
}

#[test]
fn listing_shows_databases_and_positions() {
    let t = TestMount::new(false);
    for name in ["db1", "db0"] {
        let conn = Connection::open(t.path(name)).unwrap();
        conn.execute_batch("CREATE TABLE t(x)").unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(&t.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".lag", "db0", "db0-pos", "db1", "db1-pos"]);
}

/// The kernel-local locking mode (no `FUSE_POSIX_LOCKS`) still captures every transaction:
/// commits are detected at the commit frame / journal invalidation, not at an unlock.
#[test]
fn kernel_local_locks_wal_and_delete() {
    run_mode_on(&TestMount::with_locks(true, false), "wal", 4096);
    run_mode_on(&TestMount::with_locks(false, false), "delete", 4096);
}

/// A clean stop saves the page checksums (`dbs/<name>/page-checksums`); the next start takes
/// them instead of reading the whole database — only while they still describe the file. (In
/// tests the store runs with strict verification, which also reads the file and compares.)
#[test]
fn a_clean_restart_takes_the_saved_page_checksums_while_they_describe_the_file() {
    let mut t = TestMount::new(false);
    let table = t.data.join("dbs").join("db").join("page-checksums");
    {
        let conn = Connection::open(t.path("db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=wal; CREATE TABLE t(x);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
             INSERT INTO t SELECT randomblob(3000) FROM n;",
        )
        .unwrap();
    } // The last connection checkpoints and removes the WAL.
    let pos = t.pos("db");
    t.stop();
    assert!(table.exists(), "a clean stop saved no page checksums");
    t.start();
    let db = t.store().db("db").unwrap();
    assert!(db.started_from_saved_checksums(), "start read the database");
    assert!(
        !table.exists(),
        "the saved table outlived the start that took it"
    );
    assert_eq!(t.pos("db"), pos);
    let conn = Connection::open(t.path("db")).unwrap();
    conn.execute_batch("INSERT INTO t VALUES (randomblob(100))")
        .unwrap();
    drop(conn);
    let pos = t.pos("db");
    drop(db);
    t.stop();

    // The file written behind LiteFS's back (one byte with its own value): the table no
    // longer describes it, so the start reads the file.
    let file = t.data.join("dbs").join("db").join("database");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file)
            .unwrap();
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, 4096).unwrap();
        f.write_all_at(&byte, 4096).unwrap();
    }
    assert!(table.exists());
    t.start();
    assert!(!t.store().db("db").unwrap().started_from_saved_checksums());
    assert_eq!(t.pos("db"), pos);
    let n: i64 = Connection::open(t.path("db"))
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 301);

    // WAL frames left at close (a writer killed with its connection open): nothing saved.
    let mut writer = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('PRAGMA wal_autocheckpoint=0')\n\
             c.execute('INSERT INTO t VALUES (randomblob(100))')\n\
             print('ready', flush=True)\n\
             time.sleep(60)\n",
        ])
        .arg(t.path("db"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(writer.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    writer.kill().unwrap();
    writer.wait().unwrap();
    let pos = t.pos("db");
    t.stop();
    assert!(
        !table.exists(),
        "saved page checksums beside a WAL holding frames"
    );
    t.start();
    assert!(!t.store().db("db").unwrap().started_from_saved_checksums());
    assert_eq!(t.pos("db"), pos);
}

/// A small WAL commit's LTX file is written after SQLite's write is answered, by the capture
/// thread (ARCHITECTURE §7.4.4). Whatever reads the database afterwards — here `-pos` right
/// after a commit, then the LTX files — sees every commit published, in commit order.
#[test]
fn small_wal_commits_are_captured_after_the_reply_and_published_in_order() {
    let t = TestMount::new(false);
    let conn = Connection::open(t.path("db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x);")
        .unwrap();
    let db = t.store().db("db").unwrap();
    let before = db.deferred_capture_count();
    let start = t.pos("db").txid.0;
    const COMMITS: u64 = 200;
    for i in 1..=COMMITS {
        conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        if i % 10 == 0 {
            let txid = t.pos("db").txid.0;
            assert_eq!(txid, start + i, "-pos right after commit {i} of {COMMITS}");
        }
    }
    let deferred = db.deferred_capture_count() - before;
    assert!(
        deferred >= COMMITS * 9 / 10,
        "only {deferred} of {COMMITS} single-row WAL commits were captured after their reply"
    );
    let end = TxId(start + COMMITS);
    assert_chain_contiguous(&t.ltx_dir("db"), end);
    let summary = check_newest_ltx(&t, "db", 4096);
    assert_eq!(summary.header.max_txid, end);
    let sum: i64 = conn
        .query_row("SELECT sum(x) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sum as u64, COMMITS * (COMMITS + 1) / 2);
}

/// Through a real mount (either transport), SQLite's fsync of the database in a rollback
/// journal commit comes from the thread that wrote the pages, so each commit's LTX file is
/// written and logged at that fsync (ARCHITECTURE §4.1 "The entry rides SQLite's database
/// fsync") on ext4 and XFS; the chain stays contiguous and verifies, in every rollback mode.
#[test]
fn journal_commits_are_logged_at_sqlites_database_fsync() {
    let t = TestMount::new(false);
    for (name, mode) in [("db", "delete"), ("db2", "truncate"), ("db3", "persist")] {
        let conn = Connection::open(t.path(name)).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA journal_mode={mode}; PRAGMA synchronous=full; CREATE TABLE t(x);"
        ))
        .unwrap();
        let db = t.store().db(name).unwrap();
        let before = db.early_commit_count();
        let start = t.pos(name).txid.0;
        const COMMITS: u64 = 50;
        for i in 1..=COMMITS {
            conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        let end = TxId(start + COMMITS);
        assert_eq!(t.pos(name).txid, end, "{mode}: position after the commits");
        let early = db.early_commit_count() - before;
        let expected = if db.commits_at_database_fsync() {
            COMMITS
        } else {
            0
        };
        assert_eq!(
            early, expected,
            "{mode}: commits logged at the database fsync"
        );
        assert_chain_contiguous(&t.ltx_dir(name), end);
        let summary = check_newest_ltx(&t, name, 4096);
        assert_eq!(summary.header.max_txid, end, "{mode}: newest LTX file");
    }
}

/// A mount whose database "db" is in WAL mode with table `t` and `rows` rows, each inserted
/// in its own transaction (a source of small LTX files for a replica store).
fn wal_primary_with_rows(rows: i64) -> TestMount {
    let t = TestMount::new(false);
    let conn = Connection::open(t.path("db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x);")
        .unwrap();
    for i in 0..rows {
        conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
    }
    t
}

/// Files that arrive back to back are applied as one batch on a replica
/// (`Db::apply_received_batch`): one lock, one `-shm` rewrite and one round of invalidations,
/// each file still checked and recorded under its own name. A file that does not continue the
/// position ends the batch with a mismatch, after the files before it are recorded.
#[test]
fn a_replica_applies_files_received_back_to_back_as_one_batch() {
    use litefs::store::{DbOptions, Error, Receipt, Store};
    let t = wal_primary_with_rows(6);
    assert!(t.pos("db").txid.0 >= 6, "{:?}", t.pos("db"));
    let file = |txid: u64| {
        std::fs::read(
            t.ltx_dir("db")
                .join(litefs::ltx::format_filename(TxId(txid), TxId(txid))),
        )
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let options = DbOptions {
        node_id: litefs::types::NodeId(0x5E11),
        compress: false,
        strict_verify: true,
        replica: true,
    };
    // A spare inode with stale bytes, longer than any file here: the replica records a
    // received file in it, cut to the file's length.
    let spare_dir = dir.path().join("dbs/db/spare");
    std::fs::create_dir_all(&spare_dir).unwrap();
    std::fs::write(spare_dir.join("0"), vec![0xA5u8; 100_000]).unwrap();
    let replica = Store::open(dir.path(), options).unwrap();
    let db = replica.open_db("db").unwrap();
    let verified = |txid: u64| match db.receive_verified(&file(txid)[..]).unwrap() {
        Receipt::Memory(v) => v,
        _ => panic!("TXID {txid}: a small file on a replica is held in memory"),
    };
    // TXID 1 starts the database (a snapshot by the LTX rules): alone, as the stream's reader
    // would apply it; then 2..=5 together.
    db.apply_received_batch(vec![verified(1)]).unwrap();
    let batch: Vec<_> = (2..=5).map(verified).collect();
    assert!(batch.iter().all(|v| v.is_increment()));
    db.apply_received_batch(batch).unwrap();
    assert_eq!(db.pos().txid, TxId(5));
    for txid in 1..=5 {
        let name = litefs::ltx::format_filename(TxId(txid), TxId(txid));
        let recorded = std::fs::read(dir.path().join("dbs/db/ltx").join(&name)).unwrap();
        assert_eq!(recorded, file(txid), "{name} recorded as received");
    }
    assert_eq!(
        std::fs::read_dir(&spare_dir).unwrap().count(),
        0,
        "the spare was reused"
    );
    // 6 then 6 again: the second does not continue TXID 6. The first is applied and recorded.
    let err = db
        .apply_received_batch(vec![verified(6), verified(6)])
        .unwrap_err();
    assert!(matches!(err, Error::PositionMismatch { .. }), "{err}");
    assert_eq!(db.pos().txid, TxId(6));
    assert!(
        dir.path()
            .join("dbs/db/ltx")
            .join(litefs::ltx::format_filename(TxId(6), TxId(6)))
            .exists()
    );
}

/// A replica rewrites the WAL index in `-shm` when it applies a file (spec §3.10), but never
/// changes `-shm`'s size: a size changed behind the kernel can reach a reader's `fstat`
/// through a reply the kernel drops, and SQLite then faults on a mapping the kernel thinks
/// is beyond the end (SIGBUS; docs/ARCHITECTURE.md §9 "SHM rewrite"). A file of two blocks
/// keeps both, its second untouched; a file shorter than one block (no mapping yet, and no
/// index worth keeping) is left as it is.
#[test]
fn a_replica_rewrites_the_shm_index_without_changing_its_size() {
    use litefs::store::{DbOptions, Receipt, Store};
    const BLOCK: usize = 32 * 1024;
    let t = wal_primary_with_rows(3);
    let newest = t.pos("db").txid.0;
    let file = |txid: u64| {
        std::fs::read(
            t.ltx_dir("db")
                .join(litefs::ltx::format_filename(TxId(txid), TxId(txid))),
        )
        .unwrap()
    };
    for (shm_len, what) in [(2 * BLOCK, "two blocks"), (3, "3 bytes")] {
        let dir = tempfile::tempdir().unwrap();
        let options = DbOptions {
            node_id: litefs::types::NodeId(0x5E11),
            compress: false,
            strict_verify: true,
            replica: true,
        };
        let replica = Store::open(dir.path(), options).unwrap();
        let db = replica.open_db("db").unwrap();
        // Created after the open: recovery removes a stale `-shm`.
        let shm = dir.path().join("dbs/db/shm");
        let before = vec![0xAAu8; shm_len];
        std::fs::write(&shm, &before).unwrap();
        for txid in 1..=newest {
            let verified = match db.receive_verified(&file(txid)[..]).unwrap() {
                Receipt::Memory(v) => v,
                _ => panic!("TXID {txid}: a small file on a replica is held in memory"),
            };
            db.apply_received_batch(vec![verified]).unwrap();
            let after = std::fs::read(&shm).unwrap();
            assert_eq!(
                after.len(),
                shm_len,
                "{what}: -shm of {shm_len} bytes is {} bytes after TXID {txid}",
                after.len()
            );
            if shm_len < BLOCK {
                assert_eq!(after, before, "{what}: a short -shm is left alone");
            } else {
                assert_ne!(
                    after[..BLOCK],
                    before[..BLOCK],
                    "{what}: the index block is rewritten"
                );
                assert_eq!(
                    after[BLOCK..],
                    before[BLOCK..],
                    "{what}: the second block is untouched"
                );
            }
        }
        assert_eq!(db.pos().txid, TxId(newest));
    }
}
