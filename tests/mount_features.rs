//! Real-mount tests of behaviours beyond single transactions: journal-mode switches, WAL
//! size limits, VACUUM of a large WAL database, dropping and recreating a database, and the
//! `-pos` file.

mod common;

use common::{TestMount, assert_chain_contiguous, check_newest_ltx};
use rusqlite::Connection;

fn mode(conn: &Connection, mode: &str) -> String {
    conn.query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| r.get(0))
        .unwrap()
}

/// WRITE requests among per-opcode request counts.
fn write_requests(counts: &[(String, u64)]) -> u64 {
    counts
        .iter()
        .filter(|(op, _)| op == "Write")
        .map(|(_, n)| n)
        .sum()
}

fn integrity(conn: &Connection) {
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn journal_mode_switches_both_ways() {
    let t = TestMount::new(true);
    let conn = Connection::open(t.path("db")).unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    for (next, value) in [
        ("wal", 2),
        ("delete", 3),
        ("wal", 4),
        ("truncate", 5),
        ("wal", 6),
        ("persist", 7),
    ] {
        let before = t.pos("db").txid;
        assert_eq!(mode(&conn, next), next, "switch to {next}");
        conn.execute(&format!("INSERT INTO t VALUES ({value})"), [])
            .unwrap();
        let after = t.pos("db").txid;
        assert!(
            after.0 > before.0,
            "{next}: the insert after the switch must be recorded"
        );
        check_newest_ltx(&t, "db", 4096);
        integrity(&conn);
    }
    let sum: i64 = conn
        .query_row("SELECT sum(x) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sum, 28);
    drop(conn);
    assert_chain_contiguous(&t.ltx_dir("db"), t.pos("db").txid);
}

#[test]
fn wal_checkpoint_truncate_and_journal_size_limit() {
    let t = TestMount::new(false);
    let conn = Connection::open(t.path("db")).unwrap();
    assert_eq!(mode(&conn, "wal"), "wal");
    conn.execute_batch(
        "PRAGMA journal_size_limit=8192; PRAGMA wal_autocheckpoint=10; CREATE TABLE t(x BLOB);",
    )
    .unwrap();
    for _ in 0..50 {
        conn.execute("INSERT INTO t VALUES (randomblob(3000))", [])
            .unwrap();
        check_newest_ltx(&t, "db", 4096);
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let wal_len = std::fs::metadata(t.path("db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal_len, 0, "wal_checkpoint(TRUNCATE) empties the WAL");
    conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
    check_newest_ltx(&t, "db", 4096);
    integrity(&conn);
    drop(conn);
    assert_chain_contiguous(&t.ltx_dir("db"), t.pos("db").txid);
}

/// LiteFS panics on large WALs (its issue #445); a VACUUM of a 200 MB WAL-mode database is one
/// transaction of ~50,000 pages and must be captured like any other.
#[test]
fn vacuum_of_a_200mb_wal_database() {
    let t = TestMount::new(true);
    let conn = Connection::open(t.path("db")).unwrap();
    assert_eq!(mode(&conn, "wal"), "wal");
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
         INSERT INTO t(v) SELECT randomblob(1000) FROM n;
         PRAGMA wal_checkpoint(TRUNCATE);
         DELETE FROM t WHERE id % 2 = 0;",
    )
    .unwrap();
    let size_before: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    assert!(
        size_before * 4096 > 200_000_000,
        "database is {} bytes",
        size_before * 4096
    );
    let txid = t.pos("db").txid;
    conn.execute_batch("VACUUM;").unwrap();
    assert_eq!(t.pos("db").txid.0, txid.0 + 1, "VACUUM is one transaction");
    let summary = check_newest_ltx(&t, "db", 4096);
    let size_after: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(i64::from(summary.header.commit), size_after);
    assert!(
        size_after < size_before,
        "VACUUM shrank the database: {size_before} -> {size_after} pages"
    );
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    integrity(&conn);
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 100_000);
}

#[test]
fn a_database_dropped_with_its_wal_is_created_again_in_wal_mode() {
    let t = TestMount::new(true);
    // A writer that dies without closing leaves its WAL and -shm behind (SQLite removes them
    // at the last close): the CLI kills itself once its transactions are in.
    let out = std::process::Command::new("sqlite3")
        .arg(t.path("db"))
        .arg(
            "PRAGMA journal_mode=wal;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
             INSERT INTO t(v) SELECT randomblob(1000) FROM n;
             .shell kill -9 $PPID",
        )
        .output()
        .unwrap();
    assert!(!out.status.success(), "the CLI was to die: {out:?}");
    let wal_bytes = std::fs::metadata(t.path("db-wal")).unwrap().len();
    assert!(
        wal_bytes > 100_000,
        "the WAL is left behind: {wal_bytes} bytes"
    );
    let dropped = t.pos("db");

    // The drop removes every backing file, behind the kernel, which still has the names
    // `db-wal` and `db-shm` (and the WAL's pages and size) cached.
    std::fs::remove_file(t.path("db")).unwrap();
    let conn = Connection::open(t.path("db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=wal", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch("CREATE TABLE u(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let created = t.pos("db");
    assert!(
        created.txid.0 > dropped.txid.0 + 1,
        "the drop, then the CREATE: {} -> {}",
        dropped.txid,
        created.txid
    );
    for i in 1..=5u64 {
        conn.execute("INSERT INTO u(v) VALUES ('x')", []).unwrap();
        assert_eq!(t.pos("db").txid.0, created.txid.0 + i, "row {i}");
    }
    let wal_bytes = std::fs::metadata(t.path("db-wal")).unwrap().len();
    let fresh = Connection::open(t.path("db")).unwrap();
    integrity(&fresh);
    let rows: i64 = fresh
        .query_row("SELECT count(*) FROM u", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 5, "WAL {wal_bytes} bytes");
    check_newest_ltx(&t, "db", 4096);
}

#[test]
fn a_descriptor_opened_before_a_drop_cannot_change_the_new_database() {
    use std::os::unix::fs::FileExt;
    let t = TestMount::new(true);
    let conn = Connection::open(t.path("db")).unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    // A process with the database open when another drops it (mid-transaction, say).
    let old = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.path("db"))
        .unwrap();
    std::fs::remove_file(t.path("db")).unwrap();
    let conn = Connection::open(t.path("db")).unwrap();
    conn.execute_batch("CREATE TABLE u(y); INSERT INTO u VALUES (2);")
        .unwrap();
    let before = t.pos("db");
    // The kernel reuses the inode (fixed per database and file): without the check this
    // page would land in the new database and be captured with its next commit.
    let err = old.write_at(&[0xAB; 4096], 4096).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ESTALE), "{err}");
    let err = old.set_len(0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ESTALE), "{err}");
    conn.execute("INSERT INTO u VALUES (3)", []).unwrap();
    integrity(&conn);
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM u", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
    assert_eq!(t.pos("db").txid.0, before.txid.0 + 1);
    check_newest_ltx(&t, "db", 4096);
    // A descriptor opened now works as before.
    let new = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.path("db"))
        .unwrap();
    let mut header = [0u8; 100];
    new.read_exact_at(&mut header, 0).unwrap();
    assert_eq!(&header[..16], b"SQLite format 3\0");
    // A truncation to the size it has (a checkpoint's) is accepted through it.
    let len = new.metadata().unwrap().len();
    new.set_len(len).unwrap();
}

/// Dropping a database removes its `-wal` and `-shm` behind the kernel, which remembers their
/// names (entry timeout 60 s): the drop has the kernel forget them, so they are gone through
/// the mount at once, not a minute later.
#[test]
fn a_dropped_databases_companion_files_are_gone_at_once() {
    let t = TestMount::new(false);
    let conn = Connection::open(t.path("db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    for name in ["db-wal", "db-shm"] {
        assert!(
            std::fs::metadata(t.path(name)).is_ok(),
            "{name} before the drop"
        );
    }
    std::fs::remove_file(t.path("db")).unwrap();
    let started = std::time::Instant::now();
    for name in ["db-wal", "db-shm"] {
        while std::fs::metadata(t.path(name)).is_ok() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{name} still there {:?} after the drop",
                started.elapsed()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    drop(conn);
}

#[test]
fn drop_and_recreate_a_database() {
    let mut t = TestMount::new(true);
    {
        let conn = Connection::open(t.path("db")).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let before = t.pos("db");
    std::fs::remove_file(t.path("db")).unwrap();
    let pos = t.pos("db");
    assert_eq!(pos.txid.0, before.txid.0 + 1, "the drop is a transaction");
    assert_eq!(
        pos.post_apply_checksum.0,
        litefs::types::CHECKSUM_FLAG,
        "an empty database"
    );
    let names: Vec<String> = std::fs::read_dir(&t.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.contains(&"db".to_string()),
        "a dropped database is not listed: {names:?}"
    );
    assert!(
        std::fs::metadata(t.path("db")).is_err(),
        "a dropped database does not exist"
    );
    // TXIDs continue when it is created again, also across a restart.
    {
        let conn = Connection::open(t.path("db")).unwrap();
        conn.execute_batch("CREATE TABLE u(y); INSERT INTO u VALUES (2);")
            .unwrap();
    }
    assert!(t.pos("db").txid.0 > pos.txid.0);
    let last = t.pos("db");
    t.stop();
    t.start();
    assert_eq!(t.pos("db"), last);
    let conn = Connection::open(t.path("db")).unwrap();
    let y: i64 = conn.query_row("SELECT y FROM u", [], |r| r.get(0)).unwrap();
    assert_eq!(y, 2);
    assert!(
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .is_err(),
        "the old table is gone"
    );
}

#[test]
fn pos_file_reads_and_mtime() {
    let t = TestMount::new(false);
    let conn = Connection::open(t.path("db")).unwrap();
    conn.execute_batch("CREATE TABLE t(x)").unwrap();
    let text = std::fs::read_to_string(t.path("db-pos")).unwrap();
    assert_eq!(text.len(), 34);
    assert_eq!(&text[..16], "0000000000000001");
    // Reads honour the offset.
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(t.path("db-pos")).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(f.read_at(&mut buf, 14).unwrap(), 4);
    assert_eq!(&buf[..], &text.as_bytes()[14..18]);
    let mtime = std::fs::metadata(t.path("db-pos"))
        .unwrap()
        .modified()
        .unwrap();
    let age = std::time::SystemTime::now()
        .duration_since(mtime)
        .unwrap_or_default();
    assert!(
        age < std::time::Duration::from_secs(60),
        "mtime is the last commit time: {age:?} ago"
    );
}

#[test]
fn several_databases_in_one_mount() {
    let t = TestMount::new(true);
    for i in 0..5 {
        let conn = Connection::open(t.path(&format!("db{i}"))).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA journal_mode={}; CREATE TABLE t(x); INSERT INTO t VALUES ({i});",
            if i % 2 == 0 { "wal" } else { "delete" }
        ))
        .unwrap();
    }
    for i in 0..5 {
        let name = format!("db{i}");
        check_newest_ltx(&t, &name, 4096);
        let conn = Connection::open(t.path(&name)).unwrap();
        let x: i64 = conn.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, i);
    }
}

/// Upstream `TestFileSystem_SkipLockPage`: a database larger than 1 GiB has a lock page
/// (holding byte 0x40000000) that SQLite never writes; LTX files and checksums skip it.
/// 64 KiB pages keep the request count low: the lock page is page 16385.
#[test]
fn database_larger_than_1gib_skips_the_lock_page() {
    let t = TestMount::new(true);
    let conn = Connection::open(t.path("db")).unwrap();
    conn.execute_batch(
        "PRAGMA page_size=65536; PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 17000)
         INSERT INTO t(v) SELECT zeroblob(60000) FROM n;",
    )
    .unwrap();
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    assert!(
        pages > 16385,
        "the database must cross the lock page: {pages} pages"
    );
    let summary = check_newest_ltx(&t, "db", 65536);
    assert_eq!(i64::from(summary.header.commit), pages);
    conn.execute("UPDATE t SET v = randomblob(100) WHERE id = 16999", [])
        .unwrap();
    check_newest_ltx(&t, "db", 65536);
    integrity(&conn);
}

/// Retention moves old LTX files into `spare/` instead of unlinking them, and WAL commits
/// reuse those inodes (on ext4 without a journal, creating a file after many deletions is
/// slow: docs/ARCHITECTURE.md §8). A reused inode holds only its new file, and the chain
/// recovers after a restart.
#[test]
fn retired_ltx_inodes_are_reused_for_new_commits() {
    use std::os::unix::fs::MetadataExt;
    let mut t = TestMount::new(true);
    let conn = Connection::open(t.path("db")).unwrap();
    assert_eq!(mode(&conn, "wal"), "wal");
    conn.execute_batch("CREATE TABLE t(x)").unwrap();
    // Large rows first: the spares are then longer than the files later written into them.
    for i in 0..40 {
        conn.execute("INSERT INTO t VALUES (randomblob(20000 + ?1))", [i])
            .unwrap();
    }
    let db = t.store().db("db").unwrap();
    let spare_dir = t.data.join("dbs/db/spare");
    let inodes = |dir: &std::path::Path| -> std::collections::BTreeSet<u64> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().ino())
            .collect()
    };
    let retired = db
        .enforce_retention(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .unwrap();
    let spares = inodes(&spare_dir);
    assert_eq!(
        (retired, spares.len(), db.spare_ltx_files()),
        (41, 41, 41),
        "every file but the newest retired into the spare pool"
    );
    for entry in std::fs::read_dir(&spare_dir).unwrap() {
        let len = entry.unwrap().metadata().unwrap().len();
        assert_eq!(len, 0, "a spare keeps no data");
    }
    let before = t.pos("db").txid;
    for i in 40..50 {
        conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
    }
    let after = t.pos("db").txid;
    assert_eq!(after.0 - before.0, 10);
    assert_eq!(db.spare_ltx_files(), 31, "one spare per new commit");
    let ltx_inodes = inodes(&t.ltx_dir("db"));
    assert_eq!(
        ltx_inodes.intersection(&spares).count(),
        10,
        "the new LTX files are the spare inodes"
    );
    check_newest_ltx(&t, "db", 4096);
    for txid in before.0 + 1..=after.0 {
        let name =
            litefs::ltx::format_filename(litefs::types::TxId(txid), litefs::types::TxId(txid));
        let bytes = std::fs::read(t.ltx_dir("db").join(name)).unwrap();
        let summary = litefs::ltx::verify(bytes.as_slice()).unwrap();
        assert_eq!(summary.header.max_txid.0, txid);
        // Nothing of the spare's old content after the trailer.
        let mut dec = litefs::ltx::Decoder::new(bytes.as_slice()).unwrap();
        let mut page = vec![0u8; 4096];
        while dec.decode_page(&mut page).unwrap().is_some() {}
        let (_, rest) = dec.finish().unwrap();
        assert!(
            rest.is_empty(),
            "TXID {txid}: {} bytes after the trailer",
            rest.len()
        );
    }
    drop(conn);
    drop(db);
    t.stop();
    t.start();
    assert_eq!(t.pos("db").txid, after, "position after a restart");
    assert_eq!(t.store().db("db").unwrap().spare_ltx_files(), 31);
    let conn = Connection::open(t.path("db")).unwrap();
    let count: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 50);
    integrity(&conn);
}

/// Retention never retires a file past the committed position: such a file is being written
/// (a reused spare keeps its old mtime until then), and retiring it would leave a hole.
#[test]
fn retention_keeps_a_file_past_the_position() {
    let t = TestMount::new(true);
    let conn = Connection::open(t.path("db")).unwrap();
    assert_eq!(mode(&conn, "wal"), "wal");
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let pos = t.pos("db").txid;
    let ahead = litefs::types::TxId(pos.0 + 1);
    let ahead_path = t
        .ltx_dir("db")
        .join(litefs::ltx::format_filename(ahead, ahead));
    std::fs::write(&ahead_path, b"being written").unwrap();
    let db = t.store().db("db").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    assert_eq!(db.enforce_retention(later).unwrap(), pos.0 as usize - 1);
    let left: Vec<String> = std::fs::read_dir(t.ltx_dir("db"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left.len(),
        2,
        "the newest committed file and the one past it: {left:?}"
    );
    std::fs::remove_file(&ahead_path).unwrap();
}

/// Any write to the database file — a checkpoint here — syncs pending deferred LTX files
/// first (`durability.rs`), whatever mode the database came from (PERSIST here, whose
/// journal, had it stayed behind, would make a checkpoint look like a rollback transaction).
#[test]
fn a_checkpoint_syncs_deferred_ltx_files_first() {
    let t = TestMount::new(true);
    let conn = Connection::open(t.path("db")).unwrap();
    assert_eq!(mode(&conn, "persist"), "persist");
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (0);")
        .unwrap();
    assert_eq!(mode(&conn, "wal"), "wal");
    let db = t.store().db("db").unwrap();
    for i in 1..=5 {
        conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
    }
    assert_eq!(db.unsynced_ltx_files(), 5, "WAL commits are deferred");
    let (busy, log, done): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(
        (busy, log, done),
        (0, log, log),
        "the checkpoint copied every frame"
    );
    assert!(done > 0);
    assert_eq!(
        db.unsynced_ltx_files(),
        0,
        "synced before the checkpoint's writes"
    );
    integrity(&conn);
}

/// A WAL transaction whose LTX file takes the deferred batch past its byte limit (64 MiB)
/// syncs the batch, once the file is published: the count is back to zero when COMMIT
/// returns, and the file is the position's.
#[test]
fn a_transaction_past_the_batch_limit_syncs_the_batch() {
    let t = TestMount::new(true);
    let conn = Connection::open(t.path("db")).unwrap();
    assert_eq!(mode(&conn, "wal"), "wal");
    conn.execute_batch("PRAGMA wal_autocheckpoint=0; CREATE TABLE t(v BLOB);")
        .unwrap();
    let db = t.store().db("db").unwrap();
    for _ in 0..3 {
        conn.execute("INSERT INTO t VALUES (randomblob(100))", [])
            .unwrap();
    }
    assert_eq!(db.unsynced_ltx_files(), 4, "WAL commits are deferred");
    let before = db.pos().txid;
    // 66 MiB of random blobs: its LTX file alone is over the limit.
    conn.execute_batch("BEGIN").unwrap();
    for _ in 0..66 {
        conn.execute("INSERT INTO t VALUES (randomblob(1048576))", [])
            .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
    let pos = db.pos();
    assert_eq!(pos.txid.0, before.0 + 1, "one transaction, one TXID");
    let name = litefs::ltx::format_filename(pos.txid, pos.txid);
    let len_bytes = std::fs::metadata(t.ltx_dir("db").join(name)).unwrap().len();
    assert!(
        len_bytes > 64 << 20,
        "the file is over the limit: {len_bytes} bytes"
    );
    assert_eq!(
        db.unsynced_ltx_files(),
        0,
        "the batch was synced by the commit that reached the limit"
    );
    integrity(&conn);
}

/// The WAL capture reads the frames SQLite just wrote from memory (ARCHITECTURE §7.4.1). A
/// tiny page cache makes SQLite spill pages into the WAL mid-transaction and then overwrite
/// those frames in place (and rewrite their checksums) when it changes the pages again; a
/// transaction over the 4 MiB held limit goes through the file, and the next ones are held
/// again. After each commit the database file, checkpointed, must have exactly the position's
/// checksum (strict-verify also checks every capture against the disk).
#[test]
fn frames_rewritten_in_place_and_oversized_transactions_are_captured_exactly() {
    let t = TestMount::new(true);
    let conn = Connection::open(t.path("db")).unwrap();
    assert_eq!(mode(&conn, "wal"), "wal");
    conn.execute_batch(
        "PRAGMA cache_size=5; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
    )
    .unwrap();
    // One transaction: `rows` inserts, then `rewrites` updates of a third of the rows.
    let transaction = |rows: usize, rewrites: usize| {
        conn.execute_batch("BEGIN").unwrap();
        for _ in 0..rows {
            conn.execute("INSERT INTO t(v) VALUES (randomblob(1000))", [])
                .unwrap();
        }
        for _ in 0..rewrites {
            conn.execute("UPDATE t SET v = randomblob(1000) WHERE id % 3 = 0", [])
                .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    };
    let db_checksum = |conn: &Connection| {
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        let image = std::fs::read(t.path("db")).unwrap();
        litefs::ltx::database_checksum(&image, 4096)
    };
    // (rows inserted, rows updated twice after) per transaction: spills and in-place
    // rewrites; one transaction of ~6 MB (over the held limit); small ones after it.
    for (round, (rows, rewrites)) in [(300, 2), (50, 3), (6000, 1), (10, 1), (1, 0)]
        .into_iter()
        .enumerate()
    {
        let txid = t.pos("db").txid.0;
        transaction(rows, rewrites);
        let pos = t.pos("db");
        assert_eq!(pos.txid.0, txid + 1, "round {round}: one transaction");
        check_newest_ltx(&t, "db", 4096);
        assert_eq!(
            db_checksum(&conn),
            pos.post_apply_checksum.0,
            "round {round} ({rows} rows, {rewrites} rewrites): database vs position at TXID {}",
            pos.txid
        );
    }
    // The same within one WAL generation: the held copy goes unknown at the large
    // transaction and is held again from the capture that reaches its end.
    for (rows, rewrites) in [(300, 2), (6000, 1), (10, 2), (1, 0), (200, 3)] {
        transaction(rows, rewrites);
        check_newest_ltx(&t, "db", 4096);
    }
    let pos = t.pos("db");
    assert_eq!(
        db_checksum(&conn),
        pos.post_apply_checksum.0,
        "at TXID {}",
        pos.txid
    );
    integrity(&conn);
}

/// A page spilled to the WAL, changed and changed back, and spilled again is overwritten in
/// place with the same bytes. That alone would leave the checksum chain valid — but SQLite
/// writes every frame appended after an in-place overwrite with zero salts and checksums
/// (`walEncodeFrame` while `iReCksum` is set), so no scan can accept the transaction before
/// `walRewriteChecksums` has rewritten them, and the capture never runs ahead of those
/// rewrites (which it would refuse as writes before its cursor). Each commit is captured
/// exactly once, through the continued scan, and the next ordinary commit follows.
#[test]
fn identical_in_place_overwrites_are_captured_after_the_checksum_rewrite() {
    let t = TestMount::new(true);
    let conn = Connection::open(t.path("db")).unwrap();
    assert_eq!(mode(&conn, "wal"), "wal");
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES ('one'), ('two');
         CREATE TABLE big(v BLOB);",
    )
    .unwrap();
    for _ in 0..200 {
        conn.execute("INSERT INTO big VALUES (randomblob(3000))", [])
            .unwrap();
    }
    // A tiny cache, and rows of `big` one per page: updating 20 of them dirties 20 pages once
    // each, more than the cache holds, so the oldest dirty pages are spilled to the WAL — and
    // no page but t's leaf is ever written twice.
    conn.execute_batch("PRAGMA cache_size=3").unwrap();
    let dirty_big = |from: i64| {
        conn.execute(
            "UPDATE big SET v = randomblob(3000) WHERE rowid >= ?1 AND rowid < ?1 + 20",
            [from],
        )
        .unwrap();
    };
    for round in 0..3i64 {
        let txid = t.pos("db").txid.0;
        // (SQLite leaves a page clean when an UPDATE writes what is there: change it and
        // change it back.)
        let set = |v: String| {
            conn.execute("UPDATE t SET v = ?1 WHERE id = 1", [v])
                .unwrap()
        };
        conn.execute_batch("BEGIN").unwrap();
        set(format!("{round}-A"));
        dirty_big(1 + round * 60); // t's leaf goes to the WAL
        set(format!("{round}-B"));
        set(format!("{round}-A"));
        dirty_big(21 + round * 60); // ... and is overwritten in place with the same bytes
        dirty_big(41 + round * 60);
        conn.execute_batch("COMMIT").unwrap_or_else(|e| {
            panic!("round {round}: COMMIT after an identical in-place overwrite: {e}")
        });
        let pos = t.pos("db");
        assert_eq!(pos.txid.0, txid + 1, "round {round}: one transaction");
        check_newest_ltx(&t, "db", 4096);
    }
    let v: String = conn
        .query_row("SELECT v FROM t WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, "2-A");
    // The database is not stuck: an ordinary commit follows.
    conn.execute("UPDATE t SET v = 'three' WHERE id = 2", [])
        .unwrap();
    check_newest_ltx(&t, "db", 4096);
    integrity(&conn);
}

/// A large transaction in a WAL that grows is read ahead: once it has written 1 MiB of frames,
/// the WAL is extended with a hole ahead of them (a size-only `ftruncate` through the mount)
/// and that range read through the mount (`fuse/prime.rs`), at least 1 MiB past the frames.
/// Frames written there are one WRITE each — two write requests per frame (header, page)
/// instead of three — checked on a second, smaller transaction that lands in what the first
/// one's read-ahead left (the read-ahead is asynchronous: a large transaction itself may outrun it on a loaded
/// machine). Small commits are not read ahead (it would delay them for little). The zeros past
/// the last frame change nothing: SQLite reads the WAL, recovery derives a lost LTX file from
/// it, and every row survives a remount.
#[test]
fn a_growing_wal_is_read_ahead_so_frames_are_one_write() {
    const SMALL_COMMITS: i64 = 50;
    const BULK_ROWS: i64 = 2000;
    // ~200 frames: less than the 1 MiB the read-ahead keeps ahead of the frames.
    const FOLLOWING_ROWS: i64 = 200;
    let mut t = TestMount::new(true);
    let pos = {
        let conn = Connection::open(t.path("db")).unwrap();
        assert_eq!(mode(&conn, "wal"), "wal");
        // No checkpoint: the WAL never restarts, every frame extends it.
        conn.execute_batch(
            "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(v BLOB);",
        )
        .unwrap();
        for _ in 0..SMALL_COMMITS {
            conn.execute("INSERT INTO t VALUES (randomblob(100))", [])
                .unwrap();
        }
        assert_eq!(t.mount().wals_grown(), 0, "small commits were read ahead");
        // A row of 3,000 bytes fills most of a 4 KiB page.
        let insert_rows = |rows: i64| {
            conn.execute_batch(&format!(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) \
                 INSERT INTO t SELECT randomblob(3000) FROM c"
            ))
            .unwrap()
        };
        insert_rows(BULK_ROWS);
        // Until the read-ahead has happened and settled (no new step for a second).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = (0, std::time::Instant::now());
        loop {
            let grown = t.mount().wals_grown();
            if grown != seen.0 {
                seen = (grown, std::time::Instant::now());
            } else if grown > 0 && seen.1.elapsed() > std::time::Duration::from_secs(1) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the large transaction's WAL was not read ahead within 10 s ({grown} steps)"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let before = t.requests();
        insert_rows(FOLLOWING_ROWS);
        let during = t.requests().since(&before);
        // One frame per page of the transaction (one statement: each page written once, at
        // the commit); not counted with a checkpoint, after which SQLite would restart the WAL.
        let frames = i64::from(check_newest_ltx(&t, "db", 4096).page_count);
        let writes = write_requests(&during);
        assert!(
            frames >= FOLLOWING_ROWS * 9 / 10,
            "{frames} frames for {FOLLOWING_ROWS} rows"
        );
        let per_frame = writes as f64 / frames as f64;
        assert!(
            per_frame <= 2.2,
            "{per_frame:.2} WRITE requests per frame written where the WAL was read ahead (not \
             read ahead: 3); {writes} writes, {frames} frames, {} steps read ahead: {during:?}",
            t.mount().wals_grown()
        );
        integrity(&conn);
        // A start on a copy of the data directory taken now, without the newest LTX file (as
        // if a machine crash lost it), derives that transaction from the WAL with its hole:
        // the same position.
        let copy = tempfile::tempdir().unwrap();
        let copy_db = copy.path().join("dbs/db");
        std::fs::create_dir_all(copy_db.join("ltx")).unwrap();
        for name in ["database", "wal"] {
            std::fs::copy(t.data.join("dbs/db").join(name), copy_db.join(name)).unwrap();
        }
        let mut ltx_files: Vec<_> = std::fs::read_dir(t.ltx_dir("db"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        ltx_files.sort();
        ltx_files.pop();
        for path in ltx_files {
            std::fs::copy(&path, copy_db.join("ltx").join(path.file_name().unwrap())).unwrap();
        }
        let options = litefs::store::DbOptions {
            node_id: litefs::types::NodeId(0xABCD),
            compress: true,
            strict_verify: true,
            replica: false,
        };
        let recovered = litefs::store::Store::open(copy.path(), options).unwrap();
        assert_eq!(
            recovered.db("db").expect("recovered database").pos(),
            t.pos("db"),
            "position recovered from a copy with the extended WAL"
        );
        drop(recovered);
        // The WAL holds a hole past its last frame (column 1: the frames in the WAL).
        let frames_in_wal: u64 = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        let frames_end = 32 + frames_in_wal * (24 + 4096);
        let wal_len = std::fs::metadata(t.data.join("dbs/db/wal")).unwrap().len();
        assert!(
            wal_len > frames_end,
            "WAL of {wal_len} bytes, frames end at {frames_end}: not extended"
        );
        t.pos("db")
    };
    t.stop();
    t.start();
    let conn = Connection::open(t.path("db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        rows,
        SMALL_COMMITS + BULK_ROWS + FOLLOWING_ROWS,
        "rows after a remount"
    );
    assert_eq!(t.pos("db"), pos, "position after a remount");
    integrity(&conn);
}

/// After SQLite restarts its WAL (it keeps the file and writes it again from the start), the
/// daemon reads the file through the mount, so the kernel holds its pages and a frame's page
/// arrives as one WRITE instead of two (`fuse/prime.rs`): a single-row commit then costs two
/// write requests (header, page) instead of three.
#[test]
fn a_restarted_wal_is_read_into_the_kernel_cache_so_frames_are_one_write() {
    const COMMITS: u64 = 300;
    let t = TestMount::new(true);
    let conn = Connection::open(t.path("db")).unwrap();
    assert_eq!(mode(&conn, "wal"), "wal");
    conn.execute_batch("PRAGMA synchronous=NORMAL; CREATE TABLE t(v BLOB);")
        .unwrap();
    let insert = || {
        conn.execute("INSERT INTO t VALUES (randomblob(100))", [])
            .unwrap()
    };
    // Past the 1,000-frame auto-checkpoint: the WAL restarts and is primed.
    for _ in 0..1200 {
        insert();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.mount().wals_primed() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no WAL was primed within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let before = t.requests();
    for _ in 0..COMMITS {
        insert();
    }
    let during = t.requests().since(&before);
    let per_commit = write_requests(&during) as f64 / COMMITS as f64;
    assert!(
        per_commit <= 2.2,
        "{per_commit:.2} WRITE requests per single-row commit on a primed WAL (unprimed: 3): \
         {during:?}"
    );
    check_newest_ltx(&t, "db", 4096);
    integrity(&conn);
}
