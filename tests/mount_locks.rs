//! SQLite's fcntl locks through a real mount, from several processes (POSIX locks belong to
//! a process, so one process cannot test them against itself): the `sqlite3` CLI (Debian's
//! SQLite 3.40, a different build from rusqlite's bundled one) and this test binary re-run as
//! a child (`child_process_entry`).
//!
//! Every child is killed when its guard drops, and every mount is unmounted in `Drop`.

mod common;

use common::{ChildGuard, TestMount, assert_chain_contiguous, check_newest_ltx};
use litefs::sqlite::{RESERVED_BYTE, SHARED_FIRST, WAL_WRITE_LOCK};
use rusqlite::{Connection, ErrorCode};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// How long any single interaction with a child may take before the test fails.
const STEP_LIMIT: Duration = Duration::from_secs(30);
/// How long the concurrency tests run their writers and readers.
const STRESS_SECS: u64 = 10;

// ---------------------------------------------------------------------------------------
// The `sqlite3` CLI as a scripted child process.

struct Cli {
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    child: ChildGuard,
    syncs: u64,
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Cli {
    fn spawn(db: &Path) -> Cli {
        let mut child = Command::new("sqlite3")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sqlite3 CLI (Debian package sqlite3; scripts/test.sh installs it)");
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        Cli {
            stdin: child.stdin.take(),
            stdout,
            stderr,
            child: ChildGuard(Some(child)),
            syncs: 0,
        }
    }

    fn send(&mut self, sql: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{sql}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits until the CLI has executed everything sent so far; returns its output lines.
    fn sync(&mut self) -> Vec<String> {
        self.syncs += 1;
        let tag = format!("--sync {}--", self.syncs);
        self.send(&format!(".print '{tag}'"));
        let deadline = Instant::now() + STEP_LIMIT;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stdout
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("sqlite3 did not answer {tag}: {e}; output {out:?}"));
            if line == tag {
                return out;
            }
            out.push(line);
        }
    }

    /// Error lines printed so far (SQLite prints them before it reads the next input line, so
    /// after a `sync` they are in the pipe; give the reader thread a moment).
    fn errors(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(50));
        self.stderr.try_iter().collect()
    }

    /// Closes stdin and waits for the CLI to exit; returns the remaining error lines. The
    /// exit status is 1 if any statement failed (callers judge the error lines), never a
    /// signal or another code.
    fn finish(mut self) -> Vec<String> {
        drop(self.stdin.take());
        let out = self.child.wait_output(STEP_LIMIT);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "sqlite3 exited with {}",
            out.status
        );
        self.stderr.iter().collect()
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
}

fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Lock semantics between two processes.

/// Process A (sqlite3) holds an EXCLUSIVE lock in rollback mode: process B (this one) gets
/// SQLITE_BUSY at once for a write and for a read; after A commits, B's write succeeds.
fn rollback_exclusive_blocks(posix_locks: bool) {
    let t = TestMount::with_locks(false, posix_locks);
    let b = Connection::open(t.path("db")).unwrap();
    b.execute_batch("PRAGMA journal_mode=delete; CREATE TABLE t(x);")
        .unwrap();
    b.busy_timeout(Duration::ZERO).unwrap();

    let mut a = Cli::spawn(&t.path("db"));
    a.send("BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);");
    a.sync();
    assert_eq!(a.errors(), Vec::<String>::new());

    let started = Instant::now();
    let err = b.execute("INSERT INTO t VALUES (2)", []).unwrap_err();
    let write_busy_after = started.elapsed();
    assert!(is_busy(&err), "B's write: {err}");
    let err = b
        .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
        .unwrap_err();
    assert!(is_busy(&err), "B's read under EXCLUSIVE: {err}");
    assert!(write_busy_after < Duration::from_secs(1));
    println!(
        "posix_locks={posix_locks}: rollback EXCLUSIVE held by sqlite3 -> B's write BUSY after \
         {write_busy_after:?}, B's read BUSY"
    );

    a.send("COMMIT;");
    a.sync();
    b.execute("INSERT INTO t VALUES (2)", []).unwrap();
    assert_eq!(count(&b), 2);
    assert_eq!(a.finish(), Vec::<String>::new());
    drop(b);
    check_newest_ltx(&t, "db", 4096);
    assert_chain_contiguous(&t.ltx_dir("db"), t.pos("db").txid);
}

#[test]
fn rollback_exclusive_blocks_other_process() {
    rollback_exclusive_blocks(true);
}

#[test]
fn rollback_exclusive_blocks_other_process_kernel_locks() {
    rollback_exclusive_blocks(false);
}

/// WAL mode: A in a write transaction makes B's write BUSY while B can still read the last
/// committed state; after A commits, B sees A's row and writes.
fn wal_writer_blocks(posix_locks: bool) {
    let t = TestMount::with_locks(false, posix_locks);
    let b = Connection::open(t.path("db")).unwrap();
    b.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x);")
        .unwrap();
    b.busy_timeout(Duration::ZERO).unwrap();

    let mut a = Cli::spawn(&t.path("db"));
    a.send("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);");
    a.sync();
    assert_eq!(a.errors(), Vec::<String>::new());

    let started = Instant::now();
    let err = b.execute("INSERT INTO t VALUES (2)", []).unwrap_err();
    let busy_after = started.elapsed();
    assert!(is_busy(&err), "B's write: {err}");
    assert!(busy_after < Duration::from_secs(1));
    assert_eq!(count(&b), 0, "B reads the last committed state");
    println!(
        "posix_locks={posix_locks}: WAL write txn held by sqlite3 -> B's write BUSY after {busy_after:?}, B reads"
    );

    a.send("COMMIT;");
    a.sync();
    assert_eq!(count(&b), 1);
    b.execute("INSERT INTO t VALUES (2)", []).unwrap();
    assert_eq!(count(&b), 2);
    assert_eq!(a.finish(), Vec::<String>::new());
    check_newest_ltx(&t, "db", 4096);
    drop(b);
    assert_chain_contiguous(&t.ltx_dir("db"), t.pos("db").txid);
}

#[test]
fn wal_writer_blocks_other_process() {
    wal_writer_blocks(true);
}

#[test]
fn wal_writer_blocks_other_process_kernel_locks() {
    wal_writer_blocks(false);
}

// ---------------------------------------------------------------------------------------
// fcntl directly on the mounted files.

fn flock_of(kind: i32, start: u64, len: u64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct of integers; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    fl
}

/// `fcntl(fd, cmd, &fl)`; returns the (possibly updated) lock or the errno.
fn fcntl_lock(
    fd: &impl AsRawFd,
    cmd: i32,
    kind: i32,
    start: u64,
    len: u64,
) -> Result<libc::flock, i32> {
    let mut fl = flock_of(kind, start, len);
    // SAFETY: the fd is open for the duration of the call and `fl` is a valid, writable
    // `struct flock`, as every lock command requires.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
    if rc == -1 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok(fl)
}

fn type_name(l_type: libc::c_short) -> &'static str {
    match i32::from(l_type) {
        libc::F_RDLCK => "F_RDLCK",
        libc::F_WRLCK => "F_WRLCK",
        libc::F_UNLCK => "F_UNLCK",
        _ => "?",
    }
}

/// GETLK (POSIX and OFD) reports the lock type a child process holds; SETLK conflicts with
/// EAGAIN; SETLKW is refused with ENOSYS (LiteFS never blocks); closing any descriptor of the
/// file drops the process's locks (FLUSH), and so does a killed process's exit.
#[test]
fn fcntl_sees_other_process_locks() {
    let t = TestMount::new(false);
    let setup = Connection::open(t.path("db")).unwrap();
    setup
        .execute_batch("PRAGMA journal_mode=delete; CREATE TABLE t(x);")
        .unwrap();
    let db_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.path("db"))
        .unwrap();

    // A holds EXCLUSIVE: PENDING and SHARED exclusively.
    let mut a = Cli::spawn(&t.path("db"));
    a.send("BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);");
    a.sync();
    let fl = fcntl_lock(&db_file, libc::F_GETLK, libc::F_RDLCK, SHARED_FIRST, 1).unwrap();
    println!(
        "F_GETLK F_RDLCK SHARED while A holds EXCLUSIVE: {} pid {} start {:#x} len {}",
        type_name(fl.l_type),
        fl.l_pid,
        fl.l_start,
        fl.l_len
    );
    assert_eq!(i32::from(fl.l_type), libc::F_WRLCK);
    assert_eq!(fl.l_pid, 0, "LiteFS does not know the holder's pid");
    let fl = fcntl_lock(&db_file, libc::F_OFD_GETLK, libc::F_WRLCK, RESERVED_BYTE, 1).unwrap();
    println!("F_OFD_GETLK F_WRLCK RESERVED: {}", type_name(fl.l_type));
    assert_eq!(i32::from(fl.l_type), libc::F_WRLCK);
    assert_eq!(
        fcntl_lock(&db_file, libc::F_SETLK, libc::F_RDLCK, SHARED_FIRST, 1).unwrap_err(),
        libc::EAGAIN
    );
    // Blocking requests are refused outright, conflicting or not.
    assert_eq!(
        fcntl_lock(&db_file, libc::F_SETLKW, libc::F_RDLCK, 0, 1).unwrap_err(),
        libc::ENOSYS
    );
    a.send("COMMIT;");
    a.sync();

    // A in a read transaction holds SHARED shared: a write query conflicts with F_RDLCK.
    a.send("BEGIN; SELECT count(*) FROM t;");
    assert_eq!(a.sync(), ["1"]);
    let fl = fcntl_lock(&db_file, libc::F_GETLK, libc::F_WRLCK, SHARED_FIRST, 510).unwrap();
    println!(
        "F_GETLK F_WRLCK SHARED while A reads: {}",
        type_name(fl.l_type)
    );
    assert_eq!(i32::from(fl.l_type), libc::F_RDLCK);
    let fl = fcntl_lock(&db_file, libc::F_GETLK, libc::F_RDLCK, SHARED_FIRST, 510).unwrap();
    assert_eq!(i32::from(fl.l_type), libc::F_UNLCK);
    a.send("COMMIT;");
    a.sync();
    // Whole file (len 0: the kernel passes end = OFFSET_MAX): nobody holds anything.
    let fl = fcntl_lock(&db_file, libc::F_GETLK, libc::F_WRLCK, 0, 0).unwrap();
    assert_eq!(i32::from(fl.l_type), libc::F_UNLCK);

    // Our RESERVED keeps A from writing, until we close *another* descriptor of the file.
    fcntl_lock(&db_file, libc::F_SETLK, libc::F_WRLCK, RESERVED_BYTE, 1).unwrap();
    a.send("INSERT INTO t VALUES (2);");
    a.sync();
    let errors = a.errors();
    assert!(
        errors.iter().any(|e| e.contains("database is locked")),
        "A must be locked out: {errors:?}"
    );
    drop(std::fs::File::open(t.path("db")).unwrap());
    a.send("INSERT INTO t VALUES (3);");
    a.sync();
    assert_eq!(
        a.errors(),
        Vec::<String>::new(),
        "close dropped our RESERVED lock"
    );
    assert_eq!(a.finish(), Vec::<String>::new());

    // WAL: a writer's WAL_WRITE lock shows on the -shm file.
    setup.execute_batch("PRAGMA journal_mode=wal;").unwrap();
    let mut a = Cli::spawn(&t.path("db"));
    a.send("BEGIN IMMEDIATE; INSERT INTO t VALUES (4);");
    a.sync();
    let shm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.path("db-shm"))
        .unwrap();
    let fl = fcntl_lock(&shm, libc::F_GETLK, libc::F_RDLCK, WAL_WRITE_LOCK, 1).unwrap();
    println!(
        "F_GETLK F_RDLCK WAL_WRITE while A writes: {}",
        type_name(fl.l_type)
    );
    assert_eq!(i32::from(fl.l_type), libc::F_WRLCK);

    // A killed writer's locks go with it (the kernel FLUSHes its descriptors on exit).
    a.child.child().kill().unwrap();
    drop(a);
    let fl = fcntl_lock(&shm, libc::F_GETLK, libc::F_WRLCK, WAL_WRITE_LOCK, 1).unwrap();
    assert_eq!(
        i32::from(fl.l_type),
        libc::F_UNLCK,
        "killed writer's WAL_WRITE released"
    );
    setup.busy_timeout(Duration::ZERO).unwrap();
    setup.execute("INSERT INTO t VALUES (5)", []).unwrap();
    assert_eq!(count(&setup), 3, "rows 1, 3, 5");
    drop((setup, shm, db_file));
    check_newest_ltx(&t, "db", 4096);
    assert_chain_contiguous(&t.ltx_dir("db"), t.pos("db").txid);
    println!(
        "RELEASE requests carrying a lock owner: {}",
        t.mount().request_stats().releases_with_owner()
    );
}

// ---------------------------------------------------------------------------------------
// Concurrency: two writers and two readers for STRESS_SECS.

/// Entry point of the child processes (a no-op unless `LITEFS_TEST_CHILD` is set).
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var("LITEFS_TEST_CHILD") else {
        return;
    };
    let db = std::env::var("LITEFS_TEST_DB").unwrap();
    let secs: u64 = std::env::var("LITEFS_TEST_SECS").unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let conn = Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    match role.as_str() {
        "writer" => child_writer(&conn, deadline),
        "reader" => child_reader(&conn, deadline),
        _ => panic!("unknown child role {role}"),
    }
}

fn child_writer(conn: &Connection, deadline: Instant) {
    let (mut inserted, mut busy, mut txns) = (0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        let rows = txns % 3 + 1;
        let result = (|| -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            for _ in 0..rows {
                conn.execute("INSERT INTO t(w, v) VALUES (1, randomblob(300))", [])?;
            }
            conn.execute_batch("COMMIT")
        })();
        match result {
            Ok(()) => {
                inserted += rows;
                txns += 1;
            }
            Err(e) if is_busy(&e) => {
                busy += 1;
                if !conn.is_autocommit() {
                    conn.execute_batch("ROLLBACK").unwrap();
                }
            }
            Err(e) => panic!("writer: {e}"),
        }
    }
    println!("RESULT inserted={inserted} busy={busy} txns={txns}");
}

fn child_reader(conn: &Connection, deadline: Instant) {
    let (mut reads, mut busy, mut last) = (0u64, 0u64, 0i64);
    while Instant::now() < deadline {
        match conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)) {
            Ok(n) => {
                assert!(n >= last, "row count went back from {last} to {n}");
                last = n;
                reads += 1;
            }
            Err(e) if is_busy(&e) => busy += 1,
            Err(e) => panic!("reader: {e}"),
        }
    }
    println!("RESULT reads={reads} busy={busy} last={last}");
}

fn spawn_child(role: &str, db: &Path) -> ChildGuard {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LITEFS_TEST_CHILD", role)
        .env("LITEFS_TEST_DB", db)
        .env("LITEFS_TEST_SECS", STRESS_SECS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ChildGuard(Some(child))
}

/// The `key=value` fields of a child's `RESULT` line.
fn child_result(child: ChildGuard, role: &str) -> Vec<(String, i64)> {
    let out = child.wait_output(Duration::from_secs(STRESS_SECS) + STEP_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{role} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, fields)| fields))
        .unwrap_or_else(|| panic!("{role} printed no RESULT: {stdout}"));
    line.split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn field(fields: &[(String, i64)], key: &str) -> i64 {
    fields.iter().find(|(k, _)| k == key).unwrap().1
}

/// The sqlite3 CLI as a writer (`w = 2`) or reader, in batches until the deadline. A write
/// counts when the `SELECT 'ok'` after it prints (the CLI abandons the rest of a line after
/// an error). Returns (successes, error lines).
fn cli_loop(db: &Path, write: bool) -> (u64, Vec<String>) {
    let mut cli = Cli::spawn(db);
    cli.send(".timeout 5000");
    let deadline = Instant::now() + Duration::from_secs(STRESS_SECS);
    let (mut ok, mut last) = (0u64, 0i64);
    while Instant::now() < deadline {
        for _ in 0..10 {
            if write {
                cli.send("INSERT INTO t(w, v) VALUES (2, randomblob(200)); SELECT 'ok';");
            } else {
                cli.send("SELECT count(*) FROM t;");
            }
        }
        for line in cli.sync() {
            if write {
                assert_eq!(line, "ok");
            } else {
                let n: i64 = line.parse().unwrap();
                assert!(n >= last, "row count went back from {last} to {n}");
                last = n;
            }
            ok += 1;
        }
    }
    (ok, cli.finish())
}

fn concurrent_writers_and_readers(mode: &str, posix_locks: bool) {
    let t = TestMount::with_locks(true, posix_locks);
    let db = t.path("db");
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA journal_mode={mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, w INTEGER, v BLOB);"
        ))
        .unwrap();
    }
    let before = t.requests();
    let started = Instant::now();
    let writer = spawn_child("writer", &db);
    let reader = spawn_child("reader", &db);
    let cli_writer = {
        let db = db.clone();
        std::thread::spawn(move || cli_loop(&db, true))
    };
    let cli_reader = {
        let db = db.clone();
        std::thread::spawn(move || cli_loop(&db, false))
    };
    let (cli_inserted, cli_writer_errors) = cli_writer.join().unwrap();
    let (cli_reads, cli_reader_errors) = cli_reader.join().unwrap();
    let writer = child_result(writer, "writer");
    let reader = child_result(reader, "reader");
    let elapsed = started.elapsed();
    let requests = t.requests().since(&before);

    // The CLI does not retry: its only acceptable failure is SQLITE_BUSY after .timeout.
    for e in cli_writer_errors.iter().chain(&cli_reader_errors) {
        assert!(e.contains("database is locked"), "sqlite3 error: {e}");
    }
    let conn = Connection::open(&db).unwrap();
    let by_writer = |w: i64| -> i64 {
        conn.query_row("SELECT count(*) FROM t WHERE w = ?", [w], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(by_writer(1), field(&writer, "inserted"));
    assert_eq!(by_writer(2), cli_inserted as i64);
    assert_eq!(
        count(&conn),
        field(&writer, "inserted") + cli_inserted as i64
    );
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    drop(conn);
    let pos = t.pos("db");
    assert_chain_contiguous(&t.ltx_dir("db"), pos.txid);
    check_newest_ltx(&t, "db", 4096);
    println!(
        "{mode} posix_locks={posix_locks}: {elapsed:.1?}: rusqlite writer {writer:?}; sqlite3 writer inserted={cli_inserted} \
         busy={}; rusqlite reader {reader:?}; sqlite3 reader reads={cli_reads} busy={}; \
         chain 1..={} contiguous, newest LTX checksum = database checksum",
        cli_writer_errors.len(),
        cli_reader_errors.len(),
        pos.txid
    );
    println!("{mode} posix_locks={posix_locks}: FUSE requests {requests:?}");
}

#[test]
fn concurrent_writers_and_readers_wal() {
    concurrent_writers_and_readers("wal", true);
}

/// The same with kernel-local locks, for comparison (ARCHITECTURE §7).
#[test]
fn concurrent_writers_and_readers_wal_kernel_locks() {
    concurrent_writers_and_readers("wal", false);
}

#[test]
fn concurrent_writers_and_readers_delete() {
    concurrent_writers_and_readers("delete", true);
}

// ---------------------------------------------------------------------------------------
// What a transaction costs in FUSE requests.

fn per_op(requests: &[(String, u64)], ops: u64) -> String {
    let total: u64 = requests.iter().map(|(_, n)| n).sum();
    let parts: Vec<String> = requests
        .iter()
        .map(|(op, n)| format!("{op} {:.2}", *n as f64 / ops as f64))
        .collect();
    format!(
        "{:.2} total ({})",
        total as f64 / ops as f64,
        parts.join(", ")
    )
}

/// Counts FUSE requests per read and per write transaction on a warm connection, with and
/// without `FUSE_POSIX_LOCKS` (ARCHITECTURE §7 asks for this measurement).
#[test]
fn request_cost_per_transaction() {
    const OPS: u64 = 200;
    for posix_locks in [true, false] {
        for mode in ["wal", "delete"] {
            let t = TestMount::with_locks(false, posix_locks);
            let conn = Connection::open(t.path("db")).unwrap();
            conn.execute_batch(&format!(
                "PRAGMA journal_mode={mode}; CREATE TABLE t(x); INSERT INTO t VALUES (1);"
            ))
            .unwrap();
            count(&conn);
            let before = t.requests();
            for _ in 0..OPS {
                count(&conn);
            }
            let reads = t.requests().since(&before);
            let before = t.requests();
            for i in 0..OPS {
                conn.execute("INSERT INTO t VALUES (?)", [i]).unwrap();
            }
            let writes = t.requests().since(&before);
            println!(
                "posix_locks={posix_locks} {mode}: read txn {}",
                per_op(&reads, OPS)
            );
            println!(
                "posix_locks={posix_locks} {mode}: write txn {}",
                per_op(&writes, OPS)
            );
            let lock_requests: u64 = reads
                .iter()
                .filter(|(op, _)| op.contains("lk"))
                .map(|(_, n)| n)
                .sum();
            assert_eq!(lock_requests > 0, posix_locks, "{reads:?}");
            // Answered ENOSYS once, then never sent again: a close costs no request (a FLUSH
            // is needed only to drop POSIX locks). The journal's close in DELETE mode is one
            // per transaction.
            let flushes: u64 = writes
                .iter()
                .filter(|(op, _)| op.eq_ignore_ascii_case("flush"))
                .map(|(_, n)| n)
                .sum();
            if mode == "delete" {
                // Debian's sqlite3 (unlike the bundled SQLite) syncs the directory after
                // creating the journal: FSYNCDIR is answered ENOSYS once, then not sent.
                let before = t.requests();
                for i in 0..5 {
                    let out = Command::new("sqlite3")
                        .arg(t.path("db"))
                        .arg(format!("INSERT INTO t VALUES ({i})"))
                        .output()
                        .expect("run sqlite3");
                    assert!(out.status.success(), "{out:?}");
                }
                let cli = t.requests().since(&before);
                let dir_syncs: u64 = cli
                    .iter()
                    .filter(|(op, _)| op.eq_ignore_ascii_case("fsyncdir"))
                    .map(|(_, n)| n)
                    .sum();
                assert!(
                    dir_syncs <= 1,
                    "{dir_syncs} FSYNCDIR over 5 commits: {cli:?}"
                );
            }
            if posix_locks {
                assert!(
                    mode == "wal" || flushes >= OPS,
                    "{flushes} FLUSH over {OPS} {mode} transactions with POSIX locks: {}",
                    per_op(&writes, OPS)
                );
            } else {
                assert!(
                    flushes <= 1,
                    "{flushes} FLUSH over {OPS} {mode} transactions without POSIX locks: {}",
                    per_op(&writes, OPS)
                );
            }
        }
    }
}
