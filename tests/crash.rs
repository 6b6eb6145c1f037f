//! Crash tests: `kill -9` of the `litefs mount` daemon at random moments during a write
//! load, then restart. Every transaction SQLite reported committed (synchronous=FULL) must
//! survive, the database must pass `integrity_check`, the position must equal the newest
//! LTX file, and the LTX chain must be contiguous. The writer is a separate process (Python's
//! sqlite3 module, real SQLite): a dying FUSE mount can SIGBUS a process that maps `-shm`.

mod common;

use common::ltx_chain_end;
use litefs::ltx;
use litefs::testkit::XorShift64;
use litefs::types::{Pos, TxId};
use rusqlite::Connection;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Iterations per journal mode (the issue asks for at least 200 in all).
const CRASH_ITERATIONS: u32 = 100;
/// How long a daemon may take to mount.
const MOUNT_WAIT_MAX: Duration = Duration::from_secs(10);

struct Daemon {
    child: Option<Child>,
    mnt: PathBuf,
}

fn lazy_unmount(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        Daemon::start_with(dir, true)
    }

    /// `posix_locks`: the `fuse.posix-locks` setting (daemon-decided or kernel-local locks).
    fn start_with(dir: &Path, posix_locks: bool) -> Daemon {
        let mnt = dir.join("mnt");
        let data = dir.join("data");
        let config = dir.join("litefs.yml");
        std::fs::write(
            &config,
            format!(
                "fuse:\n  dir: {}\n  posix-locks: {posix_locks}\n  transport: {transport}\ndata:\n  dir: {}\nstrict-verify: true\nhttp:\n  addr: 127.0.0.1:0\nlease:\n  type: static\n  advertise-url: http://127.0.0.1:20202\n",
                mnt.display(),
                data.display(),
                transport = common::fuse_transport_name(),
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_litefs"))
            .args(["mount", "-config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            child: Some(child),
            mnt,
        };
        let started = Instant::now();
        while !daemon.mnt.join(".lag").exists() {
            if let Some(status) = daemon.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("litefs mount exited during startup: {status}");
            }
            assert!(
                started.elapsed() < MOUNT_WAIT_MAX,
                "mount did not appear in {MOUNT_WAIT_MAX:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        daemon
    }

    /// SIGKILL, then lazily unmount the dead mount. Only ever touches its own mount: a
    /// replaced `Daemon` value must not unmount its successor's.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            lazy_unmount(&self.mnt);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn writer(db: &Path, mode: &str, next_id: i64) -> Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/writer.py");
    // Debian's interpreter starts in ~40 ms; a pyenv shim takes ~300 ms.
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    Command::new(python)
        .arg(script)
        .args([db.to_str().unwrap(), mode, &next_id.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with the sqlite3 module is required")
}

/// Checks the restarted database; returns its largest row id (transactions can be durable
/// without SQLite having told the writer, e.g. captured just before the kill).
fn verify_after_restart(dir: &Path, acked_max: i64, iteration: u32, seed: u64) -> i64 {
    let db_dir = dir.join("data/dbs/db");
    let last = ltx_chain_end(&db_dir.join("ltx"));
    let pos_text = std::fs::read_to_string(dir.join("mnt/db-pos")).unwrap();
    let pos = Pos::parse(pos_text.trim_end()).unwrap();
    let ctx = format!("iteration {iteration}, seed {seed}, acked id {acked_max}, position {pos}");
    assert_eq!(pos.txid, last, "{ctx}: position is not the newest LTX file");
    let newest = std::fs::read(db_dir.join("ltx").join(ltx::format_filename(last, last))).unwrap();
    let summary =
        ltx::verify(newest.as_slice()).unwrap_or_else(|e| panic!("{ctx}: newest LTX: {e}"));
    assert_eq!(
        summary.trailer.post_apply_checksum, pos.post_apply_checksum,
        "{ctx}"
    );
    // Recovery checkpoints the WAL, so the database file alone is the database.
    let image = std::fs::read(db_dir.join("database")).unwrap();
    let page_size = summary.header.page_size;
    let image = &image[..summary.header.commit as usize * page_size as usize];
    assert_eq!(
        ltx::database_checksum(image, page_size),
        pos.post_apply_checksum.0,
        "{ctx}: file checksum"
    );
    let conn = Connection::open(dir.join("mnt/db")).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{ctx}");
    let present: i64 = conn
        .query_row("SELECT count(*) FROM t WHERE id <= ?1", [acked_max], |r| {
            r.get(0)
        })
        .unwrap_or(0);
    assert_eq!(
        present, acked_max,
        "{ctx}: a transaction SQLite reported committed is missing"
    );
    conn.query_row("SELECT coalesce(max(id), 0) FROM t", [], |r| r.get(0))
        .unwrap_or(0)
}

fn crash_loop(mode: &str, posix_locks: bool) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test {mode} (posix-locks {posix_locks}): seed {seed}");
    let mut rng = XorShift64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut daemon = Daemon::start_with(dir, posix_locks);
    let mut acked_max: i64 = 0;
    let mut stored_max: i64 = 0;
    let mut unacked_durable = 0u32;
    for iteration in 0..CRASH_ITERATIONS {
        let mut w = writer(&dir.join("mnt/db"), mode, stored_max.max(acked_max) + 1);
        let stdout = w.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let reader = std::thread::spawn(move || {
            let mut max = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(id) = line.parse::<i64>() {
                    max = Some(max.map_or(id, |m: i64| m.max(id)));
                    let _ = first_tx.try_send(());
                }
            }
            max
        });
        // Kill at a random moment after the writer is under way (its first commit).
        let _ = first_rx.recv_timeout(Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(rng.below(300) as u64));
        daemon.kill();
        let _ = w.kill();
        let _ = w.wait();
        if let Some(max) = reader.join().unwrap() {
            acked_max = acked_max.max(max);
        }
        daemon = Daemon::start_with(dir, posix_locks);
        if dir.join("data/dbs/db").exists() {
            stored_max = verify_after_restart(dir, acked_max, iteration, seed);
            if stored_max > acked_max {
                unacked_durable += 1;
            }
        }
    }
    assert!(
        acked_max > i64::from(CRASH_ITERATIONS),
        "the writer made too little progress: {acked_max} rows"
    );
    eprintln!(
        "crash test {mode}: {CRASH_ITERATIONS} kills, {acked_max} acknowledged rows, all present; \
         {unacked_durable} kills left a durable transaction the writer never heard about"
    );
}

#[test]
fn kill_nine_during_wal_writes() {
    crash_loop("wal", true);
}

#[test]
fn kill_nine_during_delete_mode_writes() {
    // Kernel-local locks here, so both lock settings survive kill -9.
    crash_loop("delete", false);
}

/// A large uncommitted transaction spills into the database file (cache_size=2); a copy of
/// the data directory taken mid-transaction holds a hot journal. A daemon started on the copy
/// rolls it back: the copy shows the data as it was before the transaction.
#[test]
fn hot_journal_in_copied_data_dir_is_rolled_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    std::fs::create_dir_all(&dir).unwrap();
    let daemon = Daemon::start(&dir);
    let conn = Connection::open(dir.join("mnt/db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
         INSERT INTO t(v) SELECT randomblob(1000) FROM n;",
    )
    .unwrap();
    let before: i64 = conn
        .query_row("SELECT sum(length(v)) + count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch("PRAGMA cache_size=2; BEGIN; UPDATE t SET v = randomblob(900); DELETE FROM t WHERE id > 250;")
        .unwrap();
    let copy = tmp.path().join("b");
    std::fs::create_dir_all(copy.join("data/dbs/db/ltx")).unwrap();
    for name in ["database", "journal"] {
        std::fs::copy(
            dir.join("data/dbs/db").join(name),
            copy.join("data/dbs/db").join(name),
        )
        .unwrap_or_else(|e| panic!("copy {name} mid-transaction: {e}"));
    }
    for entry in std::fs::read_dir(dir.join("data/dbs/db/ltx")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            copy.join("data/dbs/db/ltx").join(entry.file_name()),
        )
        .unwrap();
    }
    conn.execute_batch("ROLLBACK").unwrap();
    drop(conn);
    drop(daemon);
    let _copy_daemon = Daemon::start(&copy);
    assert!(
        !copy.join("data/dbs/db/journal").exists(),
        "the hot journal must be rolled back and removed"
    );
    let conn = Connection::open(copy.join("mnt/db")).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let after: i64 = conn
        .query_row("SELECT sum(length(v)) + count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        after, before,
        "the copy must show the data from before the open transaction"
    );
}

/// Spec §3.7 step 8 (`TestSingleNode_ErrCommitWAL`): when a committed WAL transaction cannot
/// be recorded, the daemon exits with code 99. Unlike LiteFS (which then drops the frames),
/// the restart records the transaction from the WAL: SQLite wrote a valid commit frame.
#[test]
fn wal_capture_failure_exits_99_and_restart_keeps_the_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut daemon = Daemon::start(dir);
    let conn = Connection::open(dir.join("mnt/db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let ltx_dir = dir.join("data/dbs/db/ltx");
    // An immutable directory refuses new files even to root (ext4 `chattr +i`).
    let chattr = |flag: &str| {
        let ok = Command::new("chattr")
            .arg(flag)
            .arg(&ltx_dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chattr {flag} {} failed", ltx_dir.display());
    };
    chattr("+i");
    let result = conn.execute_batch("INSERT INTO t VALUES (2)");
    let status = daemon.child.as_mut().unwrap().wait().unwrap();
    chattr("-i");
    assert!(
        result.is_err(),
        "the commit must not be reported as successful"
    );
    assert_eq!(
        status.code(),
        Some(99),
        "litefs must exit with code 99, got {status}"
    );
    drop(conn);
    daemon.kill();
    let _daemon = Daemon::start(dir);
    let conn = Connection::open(dir.join("mnt/db")).unwrap();
    let rows: Vec<i64> = conn
        .prepare("SELECT x FROM t ORDER BY x")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [1, 2],
        "the transaction whose commit frame SQLite wrote is recovered from the WAL"
    );
    let last = ltx_chain_end(&ltx_dir);
    assert_eq!(
        last,
        TxId(4),
        "TXIDs: 1 WAL switch, 2 CREATE, 3 INSERT 1, 4 recovered INSERT 2"
    );
}

/// A machine crash with `synchronous=NORMAL` can lose WAL frames whose LTX files were already
/// durable (we sync LTX files at every commit; SQLite does not sync the WAL). Simulated by
/// cutting the WAL after a kill: the restart re-applies as much of the LTX chain as needed,
/// and every transaction SQLite acknowledged is still there.
#[test]
fn lost_wal_frames_are_restored_from_ltx_files() {
    for cut_len in [0u64, 32 + 2 * (24 + 4096)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut daemon = Daemon::start(dir);
        let mut w = writer(&dir.join("mnt/db"), "wal", 1);
        let stdout = w.stdout.take().unwrap();
        let lines: Vec<i64> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.parse().ok())
            .take_while(|&id: &i64| id < 300)
            .collect();
        let acked_max = *lines.last().unwrap();
        daemon.kill();
        let _ = w.kill();
        let _ = w.wait();
        let wal = dir.join("data/dbs/db/wal");
        let wal_len = std::fs::metadata(&wal).unwrap().len();
        assert!(
            wal_len > cut_len,
            "the WAL must hold frames to lose ({wal_len} bytes)"
        );
        std::fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .unwrap()
            .set_len(cut_len)
            .unwrap();
        let _daemon = Daemon::start(dir);
        verify_after_restart(dir, acked_max, 0, cut_len);
    }
}
