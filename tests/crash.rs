//! Crash tests: `kill -9` of the `litefs mount` daemon at random moments during a write
//! load, then restart. Every transaction SQLite reported committed (synchronous=FULL) must
//! survive, the database must pass `integrity_check`, the position must equal the newest
//! LTX file, and the LTX chain must be contiguous. The writer is a separate process (Python's
//! sqlite3 module, real SQLite): a dying FUSE mount can SIGBUS a process that maps `-shm`.

mod common;

use common::cluster::lazy_unmount;
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
        let child = common::die_with_test(&mut Command::new(env!("CARGO_BIN_EXE_litefs")))
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
    writer_with(db, mode, next_id, &[])
}

/// [`writer`] with `tests/clients/writer.py`'s optional arguments after the first three.
fn writer_with(db: &Path, mode: &str, next_id: i64, extra: &[&str]) -> Child {
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
        .args(extra)
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

/// A nonzero seed from the clock, printed by each test so a failure can be replayed.
fn seed_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

fn crash_loop(mode: &str, posix_locks: bool) {
    let seed = seed_now();
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
/// the restart records the transaction from the WAL: SQLite wrote a valid commit frame. A
/// small commit's LTX file is written after its write is answered (ARCHITECTURE §7.4.4), so
/// SQLite may have been told it succeeded — and it did: the restart keeps it.
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
        result.is_ok(),
        "a small WAL commit is answered before its LTX file is written (ARCHITECTURE §7.4.4), \
         so its failure cannot reach SQLite: {result:?}"
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

/// The salts of the WAL's header (bytes 16..24), if it has one.
fn wal_salts(wal: &Path) -> Option<(u32, u32)> {
    let bytes = std::fs::read(wal).ok()?;
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (bytes.len() >= 32).then(|| (word(16), word(20)))
}

/// The LTX files of `ltx_dir` in TXID order with the WAL salts their headers record; (0, 0)
/// for a file whose header does not decode (the kill stopped its write: already torn).
fn ltx_files_with_salts(ltx_dir: &Path) -> Vec<(PathBuf, (u32, u32))> {
    let mut files: Vec<(TxId, PathBuf)> = std::fs::read_dir(ltx_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let (_, max) = ltx::parse_filename(p.file_name()?.to_str()?)?;
            Some((max, p))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|(_, path)| {
            let file = std::fs::File::open(&path).unwrap();
            let salts = ltx::Decoder::new(file)
                .map(|d| (d.header().wal_salt1, d.header().wal_salt2))
                .unwrap_or((0, 0));
            (path, salts)
        })
        .collect()
}

/// Lets writer `w` report `commits` acknowledged transactions (fewer if it stops), then kills
/// the daemon (`kill -9`) and the writer; returns the last acknowledged id (0 if none).
fn kill_after_commits(daemon: &mut Daemon, mut w: Child, commits: usize) -> i64 {
    let stdout = w.stdout.take().unwrap();
    let ids: Vec<i64> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.parse().ok())
        .take(commits)
        .collect();
    daemon.kill();
    let _ = w.kill();
    let _ = w.wait();
    ids.last().copied().unwrap_or(0)
}

/// Tears LTX file `path` as a machine crash before its sync could: removed, cut short, zeroed
/// in part, emptied, or holding `older`'s bytes (a reused spare inode renamed into place
/// before it was overwritten: a valid LTX file, but of other TXIDs; `spare.rs`).
fn tear(path: &Path, older: &Path, rng: &mut XorShift64) {
    use std::os::unix::fs::FileExt;
    let len = std::fs::metadata(path).unwrap().len();
    let open = || std::fs::OpenOptions::new().write(true).open(path).unwrap();
    match rng.below(5) {
        0 => std::fs::remove_file(path).unwrap(),
        1 => open().set_len(rng.below(len as usize) as u64).unwrap(),
        2 => {
            let at = rng.below(len as usize) as u64;
            let zeros = vec![0u8; (len - at).min(1 + rng.below(512) as u64) as usize];
            open().write_all_at(&zeros, at).unwrap();
        }
        3 => open().set_len(0).unwrap(),
        _ => {
            std::fs::copy(older, path).unwrap();
        }
    }
}

/// A rollback-journal commit's LTX file is not synced before SQLite hears of the commit: its
/// bytes go to the LTX log (`dbs/<db>/ltx-log`), which one `fdatasync` makes durable, and the
/// file joins the batch the next `syncfs` makes durable (docs/ARCHITECTURE.md §4.1). Simulated
/// after each `kill -9` of a DELETE-mode writer's daemon: some of the files written since the
/// start are torn (as by [`tear`]), alone or with every later file. The restart restores
/// them from the log byte for byte — the journal held only old pages, so nothing else could —
/// and nothing acknowledged is lost.
#[test]
fn torn_journal_commit_ltx_files_are_restored_from_the_ltx_log() {
    const ITERATIONS: u32 = 8;
    let seed = seed_now();
    eprintln!("torn journal LTX test: seed {seed}");
    let mut rng = XorShift64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ltx_dir = dir.join("data/dbs/db/ltx");
    let mut daemon = Daemon::start(dir);
    let (mut acked_max, mut stored_max, mut torn_files) = (0i64, 0i64, 0usize);
    for iteration in 0..ITERATIONS {
        // Files up to here were synced by the start's recovery: only later ones are logged.
        let synced_files = if ltx_dir.exists() {
            ltx_files_with_salts(&ltx_dir).len()
        } else {
            0
        };
        let next_id = stored_max.max(acked_max) + 1;
        let commits = 10 + rng.below(30);
        let w = writer(&dir.join("mnt/db"), "delete", next_id);
        acked_max = acked_max.max(kill_after_commits(&mut daemon, w, commits));
        let ctx = format!("iteration {iteration}, seed {seed}, acked id {acked_max}");
        let files: Vec<PathBuf> = ltx_files_with_salts(&ltx_dir)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let logged = &files[synced_files..];
        // Taken before the restart: a hot journal means a transaction was in flight (DELETE
        // mode: the journal's unlink is the commit), and only its file may fail to come back.
        let hot_journal = dir.join("data/dbs/db/journal").exists();
        let newest_path = files.last().unwrap().clone();
        let (_, newest) =
            ltx::parse_filename(newest_path.file_name().unwrap().to_str().unwrap()).unwrap();
        assert!(
            logged.len() >= commits,
            "{ctx}: {} LTX files written for {commits} acknowledged commits",
            logged.len()
        );
        let first = rng.below(logged.len());
        let last = if rng.below(2) == 0 {
            first
        } else {
            logged.len() - 1
        };
        let mut before = Vec::new();
        for path in &logged[first..=last] {
            before.push((path.clone(), std::fs::read(path).unwrap()));
            tear(path, &files[0], &mut rng);
            torn_files += 1;
        }
        daemon = Daemon::start(dir);
        // The newest file may be that of the commit the kill interrupted: written at SQLite's
        // database fsync, before its log entry and before the journal's deletion. Its
        // transaction is then rolled back with the hot journal, and the file must go. Every
        // file up to the restarted position must come back byte for byte.
        let pos_text = std::fs::read_to_string(dir.join("mnt/db-pos")).unwrap();
        let pos = Pos::parse(pos_text.trim_end()).unwrap();
        let mut rolled_back = 0;
        for (path, bytes) in &before {
            let name = path.file_name().unwrap().to_str().unwrap();
            let (_, txid) = ltx::parse_filename(name).unwrap();
            if txid > pos.txid {
                rolled_back += 1;
                assert!(
                    !path.exists(),
                    "{ctx}: {name} is past the position {pos} but was left in place"
                );
                continue;
            }
            let now = std::fs::read(path)
                .unwrap_or_else(|e| panic!("{ctx}: {} not restored: {e}", path.display()));
            assert!(
                &now == bytes,
                "{ctx}: {} restored as {} bytes, was {} bytes",
                path.display(),
                now.len(),
                bytes.len()
            );
        }
        if pos.txid < newest {
            // Exactly the interrupted commit's file, torn here before its log entry was
            // written, and nothing before it: committed files (journal gone) always return.
            assert!(
                hot_journal,
                "{ctx}: TXID {newest} dropped without a hot journal: it was committed"
            );
            assert_eq!(
                pos.txid.0 + 1,
                newest.0,
                "{ctx}: more than the interrupted commit dropped"
            );
            assert!(
                before.iter().any(|(p, _)| *p == newest_path),
                "{ctx}: TXID {newest} dropped though it was not torn"
            );
        }
        assert!(
            rolled_back <= 1,
            "{ctx}: {rolled_back} torn files past the position {pos}: only the interrupted \
             commit's may be"
        );
        stored_max = verify_after_restart(dir, acked_max, iteration, seed);
    }
    drop(daemon);
    eprintln!(
        "torn journal LTX test: {ITERATIONS} kills, {torn_files} torn files restored, {acked_max} acknowledged rows, all present"
    );
}

/// A machine crash can tear LTX files of WAL commits, which are synced in batches (at the
/// latest before a checkpoint or a WAL restart; docs/ARCHITECTURE.md §4.1), while the WAL
/// that SQLite fsynced (synchronous=FULL) holds their transactions. Simulated after each
/// `kill -9` by tearing files of the current WAL generation (autocheckpoint off, so none of
/// them was synced): truncated, zeroed in part, removed or holding an older file's bytes (a
/// reused spare inode, `spare.rs`), alone or with every later file.
/// The restart drops the torn tail and re-derives it from the WAL; nothing acknowledged is
/// lost and the chain ends at the position.
#[test]
fn torn_unsynced_ltx_files_are_rederived_from_the_wal() {
    const ITERATIONS: u32 = 12;
    let seed = seed_now();
    eprintln!("torn LTX test: seed {seed}");
    let mut rng = XorShift64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ltx_dir = dir.join("data/dbs/db/ltx");
    let mut daemon = Daemon::start(dir);
    let (mut acked_max, mut stored_max, mut torn_files) = (0i64, 0i64, 0usize);
    for iteration in 0..ITERATIONS {
        let next_id = stored_max.max(acked_max) + 1;
        let commits = 20 + rng.below(40);
        let w = writer_with(&dir.join("mnt/db"), "wal", next_id, &["0"]);
        acked_max = acked_max.max(kill_after_commits(&mut daemon, w, commits));
        let ctx = format!("iteration {iteration}, seed {seed}, acked id {acked_max}");
        let salts = wal_salts(&dir.join("data/dbs/db/wal"))
            .unwrap_or_else(|| panic!("{ctx}: the WAL must hold this run's commits"));
        let files = ltx_files_with_salts(&ltx_dir);
        let unsynced: Vec<&PathBuf> = files
            .iter()
            .filter(|(_, s)| *s == salts)
            .map(|(p, _)| p)
            .collect();
        assert!(
            !unsynced.is_empty(),
            "{ctx}: no LTX file of the current WAL generation among {} files",
            files.len()
        );
        let first = rng.below(unsynced.len());
        let last = if rng.below(2) == 0 {
            first
        } else {
            unsynced.len() - 1
        };
        for path in &unsynced[first..=last] {
            tear(path, &files[0].0, &mut rng);
            torn_files += 1;
        }
        daemon = Daemon::start(dir);
        stored_max = verify_after_restart(dir, acked_max, iteration, seed);
    }
    eprintln!(
        "torn LTX test: {ITERATIONS} kills, {torn_files} torn files, {acked_max} acknowledged rows, all present"
    );
}

/// SQLite gives a WAL created afresh (after the last connection checkpointed and deleted the
/// old one) random salts, unrelated to any LTX file. If every LTX file of that new WAL is
/// lost in a crash, the WAL still holds its transactions and the database file is exactly
/// the last remaining LTX file's state: the restart re-derives them instead of setting the
/// WAL aside (LiteFS would move it to `wal.removed`).
#[test]
fn a_fresh_wal_whose_ltx_files_were_lost_is_rederived() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ltx_dir = dir.join("data/dbs/db/ltx");
    let mut daemon = Daemon::start(dir);
    let script = "import sqlite3, sys, time\n\
        c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
        c.execute('PRAGMA journal_mode=WAL')\n\
        c.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)')\n\
        c.execute('INSERT INTO t VALUES (1, randomblob(100))')\n\
        c.close()\n\
        c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
        c.execute('PRAGMA synchronous=FULL')\n\
        for i in range(2, 7): c.execute('INSERT INTO t VALUES (?, randomblob(100))', (i,))\n\
        print('done', flush=True)\n\
        time.sleep(60)\n";
    let mut py = Command::new("python3")
        .args(["-c", script, dir.join("mnt/db").to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(py.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "done");
    daemon.kill();
    let _ = py.kill();
    let _ = py.wait();
    let salts = wal_salts(&dir.join("data/dbs/db/wal")).expect("the second connection's WAL");
    let files = ltx_files_with_salts(&ltx_dir);
    let (new, old): (Vec<_>, Vec<_>) = files.iter().partition(|(_, s)| *s == salts);
    assert_eq!(
        new.len(),
        5,
        "one LTX file per insert of the second connection"
    );
    let last_old = old.last().expect("LTX files of the first connection").1;
    assert_ne!(
        salts.0,
        last_old.0.wrapping_add(1),
        "the fresh WAL's salts must not follow the old generation's"
    );
    for (path, _) in &new {
        std::fs::remove_file(path).unwrap();
    }
    let _daemon = Daemon::start(dir);
    assert!(
        !dir.join("data/dbs/db/wal.removed").exists(),
        "the WAL was set aside"
    );
    verify_after_restart(dir, 6, 0, 0);
    assert_eq!(ltx_chain_end(&ltx_dir), TxId(files.len() as u64));
}

/// The watchdog `litefs mount` starts as its child right after mounting (`fuse/watchdog.rs`),
/// found by its command line among the daemon's children; waits up to 5 s for it.
fn watchdog_of(daemon_pid: u32) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = child_running(daemon_pid, "fuse-watchdog") {
            return Some(pid);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child of `parent` with `arg` in its command line.
fn child_running(parent: u32, arg: &str) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
        })
}

/// Running (not gone, not a zombie waiting to be reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// A daemon killed while one of its threads waits on its own mount cannot exit: the kernel
/// waits uninterruptibly for a request a (now dead) worker took. The watchdog must abort the
/// connection. Simulated by a process whose main thread exits (a raw `exit`, not
/// `exit_group`) while another thread lives — what such a daemon looks like — and which
/// started the watchdog for a real mount; the mount's connection must then be aborted.
#[test]
fn the_watchdog_aborts_the_mount_of_a_daemon_that_died_with_threads_left() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let log = dir.path().join("watchdog.log");
    // Raw `exit` (only the calling thread): 60 on x86_64, 93 on aarch64 and riscv64.
    let script = r#"
import ctypes, os, platform, subprocess, sys, threading, time
watchdog = subprocess.Popen([sys.argv[1], "fuse-watchdog", sys.argv[2], str(os.getpid())], stderr=open(sys.argv[3], "w"))
threading.Thread(target=time.sleep, args=(60,)).start()
sys.stdout.write(f"{watchdog.pid}\n"); sys.stdout.flush()
ctypes.CDLL(None).syscall(60 if platform.machine() == "x86_64" else 93, 0)
"#;
    let started = Instant::now();
    let mut fake = common::ChildGuard(Some(
        common::die_with_test(&mut Command::new("python3"))
            .args(["-c", script, env!("CARGO_BIN_EXE_litefs")])
            .arg(&daemon.mnt)
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let mut line = String::new();
    BufReader::new(fake.child().stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let watchdog: u32 = line.trim().parse().unwrap();
    let aborted = loop {
        // A directory listing always asks the daemon (attributes may come from the cache).
        match std::fs::read_dir(&daemon.mnt) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => break started.elapsed(),
            other => assert!(
                started.elapsed() < Duration::from_secs(10),
                "mount not aborted {:?} after the fake daemon's main thread exited: {other:?}",
                started.elapsed()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Two polls 500 ms apart see it dying; less would be a guess, not an observation.
    assert!(
        aborted >= Duration::from_millis(900),
        "aborted after only {aborted:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(watchdog) {
        assert!(Instant::now() < deadline, "watchdog {watchdog} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("aborted FUSE connection"),
        "watchdog log: {said:?}"
    );
}

/// A healthy daemon's watchdog leaves its mount alone, and leaves with the daemon — after a
/// clean shutdown and after `kill -9` alike.
#[test]
fn the_watchdog_leaves_a_live_mount_alone_and_exits_with_its_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let pid = daemon.child.as_ref().unwrap().id();
    let watchdog = watchdog_of(pid).expect("litefs mount started no watchdog");
    // Several of its polls, while the mount is in use.
    let db = daemon.mnt.join("db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x);")
        .unwrap();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(conn);
    assert!(running(watchdog), "the watchdog of a live daemon exited");
    std::fs::read_dir(&daemon.mnt).expect("the live mount was aborted");
    daemon.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(watchdog) {
        assert!(
            Instant::now() < deadline,
            "watchdog {watchdog} outlived its kill -9'd daemon by 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut daemon = Daemon::start(dir.path());
    let mut child = daemon.child.take().unwrap();
    let watchdog = watchdog_of(child.id()).expect("no watchdog after restart");
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "clean shutdown exited with {status}");
    assert!(
        !running(watchdog),
        "watchdog {watchdog} still runs after its daemon shut down cleanly"
    );
}
