//! Fixtures made by real SQLite (rusqlite, bundled library) and small byte helpers for tests.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

use super::wal::{ChecksumOrder, WalChecksum, WalHeader};

/// Serializes the tests that drive real SQLite. rusqlite's bundled SQLite is built with
/// `SQLITE_ENABLE_MEMORY_MANAGEMENT`, so every connection in the process shares one page-cache
/// group: a connection opened by a concurrent test changes when (and how often) another
/// connection's cache spills, and with it how many journal segments SQLite writes.
pub fn sqlite_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A WAL file copied while its connection was still open, with what SQLite reported.
pub struct WalFixture {
    pub wal: Vec<u8>,
    /// `PRAGMA page_count` after each transaction written to the WAL, in order.
    pub page_counts: Vec<u32>,
    /// The database file with every transaction still in the WAL.
    pub db_before_checkpoint: Vec<u8>,
    /// The database file after `wal_checkpoint(TRUNCATE)` copied the WAL into it.
    pub db_after_checkpoint: Vec<u8>,
}

/// Runs `statements` (one transaction each) on a WAL database with auto-checkpoint off and
/// returns the `-wal` bytes. The first statement creates table `t(x)`.
pub fn wal_fixture(page_size_bytes: u32, statements: &[&str]) -> WalFixture {
    let _serial = sqlite_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let conn = Connection::open(&path).expect("open");
    conn.execute_batch(&format!("PRAGMA page_size={page_size_bytes};"))
        .expect("page_size");
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    conn.execute_batch("PRAGMA wal_autocheckpoint=0;")
        .expect("autocheckpoint");
    let mut page_counts = Vec::new();
    for sql in statements {
        conn.execute_batch(sql).expect(sql);
        page_counts.push(page_count(&conn));
    }
    // Copy before the connection closes: the last close checkpoints and deletes the WAL.
    let wal = std::fs::read(wal_path(&path)).expect("read wal");
    let db_before_checkpoint = std::fs::read(&path).expect("read db");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
    let db_after_checkpoint = std::fs::read(&path).expect("read db");
    drop(conn);
    WalFixture {
        wal,
        page_counts,
        db_before_checkpoint,
        db_after_checkpoint,
    }
}

/// Five transactions: create, a small insert, a blob bigger than a page (overflow pages), an
/// update and a delete (the delete makes SQLite free pages but not shrink in WAL mode).
pub fn five_transactions(page_size_bytes: u32) -> Vec<String> {
    let big = page_size_bytes.saturating_mul(3);
    vec![
        "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)".to_string(),
        "INSERT INTO t(x) VALUES (x'01020304')".to_string(),
        format!("INSERT INTO t(x) VALUES (randomblob({big}))"),
        format!(
            "BEGIN; INSERT INTO t(x) SELECT randomblob({page_size_bytes}) FROM t; \
             UPDATE t SET x = x'ff' WHERE id = 1; COMMIT"
        ),
        "DELETE FROM t WHERE id = 2".to_string(),
    ]
}

pub fn page_count(conn: &Connection) -> u32 {
    conn.query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("page_count")
}

fn wal_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

fn journal_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-journal");
    name.into()
}

/// Rewrites a WAL's header magic to `order` and recomputes the header checksum and every whole
/// frame's running checksum, as SQLite on a host of that byte order would have written them.
pub fn reencode_wal(wal: &[u8], order: ChecksumOrder) -> Vec<u8> {
    let old = WalHeader::parse(wal).expect("parse").expect("valid header");
    let header = WalHeader::new(
        order,
        old.page_size_bytes,
        old.checkpoint_seq,
        old.salt1,
        old.salt2,
    );
    let mut out = wal.to_vec();
    out[..32].copy_from_slice(&header.to_bytes());
    let frame_len = 24 + old.page_size_bytes as usize;
    let mut checksum = header.checksum;
    let mut offset = 32;
    while offset + frame_len <= out.len() {
        let frame = &mut out[offset..offset + frame_len];
        checksum = checksum
            .update(order, &frame[..8])
            .update(order, &frame[24..]);
        frame[16..20].copy_from_slice(&checksum.s1.to_be_bytes());
        frame[20..24].copy_from_slice(&checksum.s2.to_be_bytes());
        offset += frame_len;
    }
    out
}

/// Sanity helper: the running checksum of a WAL's header bytes 0..24.
pub fn header_checksum(wal: &[u8], order: ChecksumOrder) -> WalChecksum {
    WalChecksum::default().update(order, &wal[..24])
}

/// A hot journal captured mid-transaction, with the database before and during it.
pub struct JournalFixture {
    /// The database file before `BEGIN`.
    pub db_before: Vec<u8>,
    /// The database file while the transaction is open (pages already spilled into it).
    pub db_during: Vec<u8>,
    pub journal: Vec<u8>,
}

/// Fills a database with `rows` rows of half a page each in `journal_mode`, then opens a
/// transaction that rewrites every row and adds as many again with a 10-page cache, so the
/// cache spills (and SQLite writes new journal segments) many times. Copies the files while
/// the transaction is still open, then drops the connection (which rolls back).
pub fn journal_fixture(page_size_bytes: u32, journal_mode: &str, rows: u32) -> JournalFixture {
    let _serial = sqlite_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let conn = Connection::open(&path).expect("open");
    conn.execute_batch(&format!("PRAGMA page_size={page_size_bytes};"))
        .expect("page_size");
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode={journal_mode}"), [], |r| {
            r.get(0)
        })
        .expect("journal_mode");
    assert_eq!(mode, journal_mode.to_lowercase());
    let half = page_size_bytes / 2;
    conn.execute_batch(&format!(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO t(x) SELECT randomblob({half}) FROM n;"
    ))
    .expect("fill");
    let db_before = std::fs::read(&path).expect("read db");
    conn.execute_batch(&format!(
        "PRAGMA cache_size=10; PRAGMA cache_spill=10;
         BEGIN;
         UPDATE t SET x = randomblob({half});
         INSERT INTO t(x) SELECT randomblob({half}) FROM t;"
    ))
    .expect("open transaction");
    let journal = std::fs::read(journal_path(&path)).expect("read journal");
    let db_during = std::fs::read(&path).expect("read db during");
    drop(conn);
    JournalFixture {
        db_before,
        db_during,
        journal,
    }
}

/// Applies journal records to a database image: write each page, then truncate.
pub fn apply_rollback(
    db: &mut Vec<u8>,
    page_size_bytes: u32,
    pages: &[(u32, Vec<u8>)],
    size_pages: u32,
) {
    let page_size = page_size_bytes as usize;
    for (pgno, page) in pages {
        let at = (*pgno as usize - 1) * page_size;
        if db.len() < at + page_size {
            db.resize(at + page_size, 0);
        }
        db[at..at + page_size].copy_from_slice(page);
    }
    db.truncate(size_pages as usize * page_size);
}

pub use crate::testkit::XorShift64 as Rng;
