//! Cluster tests (issue 5): a static primary and replicas as separate `litefs mount`
//! processes on loopback, each with its own mount. Writers and readers are real SQLite
//! (Python's sqlite3 module and the sqlite3 CLI).

mod common;

use common::cluster::{CATCH_UP_WAIT_MAX, Node, NodeConfig, export, image};
use common::ltx_chain_end;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(format!("{CLIENTS}/{script}"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `count` single-row transactions on `node`'s database `db` in journal mode `mode`.
fn commit(node: &Node, mode: &str, count: usize) -> String {
    python(
        "commits.py",
        &[node.path("db").to_str().unwrap(), mode, &count.to_string()],
    )
}

/// A primary in `dir/p` and a replica of it in `dir/r`.
fn primary_and_replica(dir: &Path) -> (Node, Node) {
    primary_and_replica_with_locks(dir, true)
}

/// [`primary_and_replica`], both with `fuse.posix-locks: posix_locks`.
fn primary_and_replica_with_locks(dir: &Path, posix_locks: bool) -> (Node, Node) {
    let mut pc = NodeConfig::primary(&dir.join("p"));
    pc.posix_locks = posix_locks;
    let primary = Node::start(pc);
    let mut rc = NodeConfig::replica(&dir.join("r"), primary.config.port);
    rc.posix_locks = posix_locks;
    let replica = Node::start(rc);
    (primary, replica)
}

/// The value of the Prometheus series `name` (with labels, as printed), 0 if absent.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The sqlite3 CLI with a busy timeout, as any client of a replica needs: an apply holds the
/// database's write lock while it writes pages (readers get SQLITE_BUSY meanwhile).
fn sqlite3(db: &Path, sql: &str) -> std::process::Output {
    Command::new("sqlite3")
        .args(["-cmd", ".timeout 5000"])
        .arg(db)
        .arg(sql)
        .output()
        .unwrap()
}

fn sqlite3_ok(db: &Path, sql: &str) -> String {
    let out = sqlite3(db, sql);
    assert!(
        out.status.success(),
        "sqlite3 {} {sql:?}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// 1,000 transactions on the primary reach both replicas: equal positions, byte-identical
/// database images, intact databases, contiguous LTX chains.
fn three_nodes_follow(mode: &str) {
    const TXNS: usize = 1000;
    let tmp = tempfile::tempdir().unwrap();
    let primary = Node::start(NodeConfig::primary(&tmp.path().join("p")));
    let port = primary.config.port;
    // r1 follows over the native stream, r2 over LiteFS's HTTP/2 stream.
    let r1 = Node::start(NodeConfig::replica(&tmp.path().join("r1"), port));
    let mut r2_config = NodeConfig::replica(&tmp.path().join("r2"), port);
    r2_config.native_stream = false;
    let r2 = Node::start(r2_config);
    let started = Instant::now();
    let rows = commit(&primary, mode, TXNS);
    let write_secs = started.elapsed().as_secs_f64();
    assert_eq!(rows.trim(), TXNS.to_string());
    let want = primary.pos("db").unwrap();
    // journal_mode + CREATE TABLE + 1,000 inserts (WAL: the mode switch is a transaction too).
    assert!(want.txid.0 > TXNS as u64, "primary at {want}");
    for r in [&r1, &r2] {
        r.wait_pos("db", want, CATCH_UP_WAIT_MAX);
    }
    let caught_up_secs = started.elapsed().as_secs_f64();
    let expected = export(&primary, "db");
    assert!(
        expected == image(&primary, "db"),
        "{mode}: the primary's export differs from its files"
    );
    for r in [&r1, &r2] {
        let got = export(r, "db");
        assert_eq!(
            got.len(),
            expected.len(),
            "{mode}: image sizes differ on {}",
            r.url()
        );
        assert!(
            got == expected,
            "{mode}: replica {} image differs from the primary's",
            r.url()
        );
        assert_eq!(sqlite3_ok(&r.path("db"), "PRAGMA integrity_check"), "ok");
        assert_eq!(
            sqlite3_ok(&r.path("db"), "SELECT count(*) FROM t"),
            TXNS.to_string()
        );
        let started = Instant::now();
        while ltx_chain_end(&r.ltx_dir("db")) != want.txid {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{mode}: LTX chain of {}",
                r.url()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            std::fs::read_to_string(r.path(".primary")).unwrap(),
            format!("primary-{port}\n")
        );
    }
    let metrics = common::http_get(primary.addr(), "/metrics");
    let sendfile_bytes = metric(
        &metrics,
        "litefs_stream_native_send_bytes{path=\"sendfile\"}",
    );
    let written_bytes = metric(&metrics, "litefs_stream_native_send_bytes{path=\"write\"}");
    assert!(
        sendfile_bytes > 0 && written_bytes < sendfile_bytes,
        "{mode}: native stream bytes: sendfile {sendfile_bytes}, write {written_bytes}"
    );
    eprintln!(
        "{mode}: native stream sent {sendfile_bytes} bytes by sendfile and {written_bytes} by write"
    );
    eprintln!(
        "{mode}: {} transactions written in {write_secs:.2} s, both replicas at {want} after {caught_up_secs:.2} s, `litefs export` images of {} bytes equal",
        want.txid.0,
        expected.len()
    );
}

#[test]
fn three_nodes_delete() {
    three_nodes_follow("delete");
}

#[test]
fn three_nodes_truncate() {
    three_nodes_follow("truncate");
}

#[test]
fn three_nodes_persist() {
    three_nodes_follow("persist");
}

#[test]
fn three_nodes_wal() {
    three_nodes_follow("wal");
}

/// An SQLite connection kept open on a replica reads each of 100 primary commits, without
/// reopening, as soon as it is applied.
fn open_connection_sees_each_commit(mode: &str, posix_locks: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (primary, replica) = primary_and_replica_with_locks(tmp.path(), posix_locks);
    let p = rusqlite::Connection::open(primary.path("db")).unwrap();
    p.pragma_update(None, "journal_mode", mode).unwrap();
    p.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", [])
        .unwrap();
    replica.wait_pos("db", primary.pos("db").unwrap(), CATCH_UP_WAIT_MAX);
    let r = rusqlite::Connection::open_with_flags(
        replica.path("db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut waits_us = Vec::new();
    for i in 1..=100i64 {
        p.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")])
            .unwrap();
        let committed = Instant::now();
        loop {
            let (count, last): (i64, String) = r
                .query_row(
                    "SELECT count(*), coalesce((SELECT v FROM t WHERE id = ?1), '') FROM t",
                    [i],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .unwrap();
            if count == i {
                assert_eq!(
                    last,
                    format!("row {i}"),
                    "{mode}: newest row on the replica"
                );
                break;
            }
            assert!(count < i, "{mode}: replica has {count} rows, primary {i}");
            assert!(
                committed.elapsed() < Duration::from_secs(5),
                "{mode}: commit {i} not visible on the open replica connection after 5 s (sees {count} rows)"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        waits_us.push(committed.elapsed().as_micros() as u64);
    }
    waits_us.sort();
    eprintln!(
        "{mode}: commit → visible on an open replica connection: p50 {} µs, p99 {} µs, max {} µs",
        waits_us[49], waits_us[98], waits_us[99]
    );
}

#[test]
fn open_connection_sees_each_commit_delete() {
    open_connection_sees_each_commit("delete", true);
}

#[test]
fn open_connection_sees_each_commit_wal() {
    open_connection_sees_each_commit("wal", true);
}

/// The same with `fuse.posix-locks: false` on both nodes: the kernel keeps SQLite's locks and
/// the replica's apply takes its own through the mount.
#[test]
fn open_connection_sees_each_commit_delete_kernel_locks() {
    open_connection_sees_each_commit("delete", false);
}

#[test]
fn open_connection_sees_each_commit_wal_kernel_locks() {
    open_connection_sees_each_commit("wal", false);
}

/// A read transaction open on a replica holds off the apply of the primary's next commit
/// (spec §3.9, internal write lock): the reader keeps seeing one consistent version, and the
/// commit becomes visible once the reader ends. With `posix_locks` false the daemon learns of
/// the reader only through the kernel (OFD locks through its own mount).
fn a_read_transaction_holds_off_the_apply(mode: &str, posix_locks: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (primary, replica) = primary_and_replica_with_locks(tmp.path(), posix_locks);
    let p = rusqlite::Connection::open(primary.path("db")).unwrap();
    p.pragma_update(None, "journal_mode", mode).unwrap();
    p.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let what = format!("{mode}, posix-locks {posix_locks}");
    let held = reader_holds_off_the_apply(&primary, &replica, &p, "2", &what);
    eprintln!(
        "{what}: applied {} ms after the reader ended",
        held.elapsed().as_millis()
    );
}

/// Table `t` of `db` on `primary` has one row and `p` is a connection to it: a read
/// transaction on `replica` keeps seeing that row alone while `p` inserts `value`, the
/// replica stays at its position until the reader ends, and then shows both rows. Returns
/// when the reader ended.
fn reader_holds_off_the_apply(
    primary: &Node,
    replica: &Node,
    p: &rusqlite::Connection,
    value: &str,
    what: &str,
) -> Instant {
    let before = primary.pos("db").unwrap();
    replica.wait_pos("db", before, CATCH_UP_WAIT_MAX);
    let r = rusqlite::Connection::open_with_flags(
        replica.path("db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let count = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    };
    r.execute_batch("BEGIN").unwrap();
    assert_eq!(count(&r), 1);
    p.execute(&format!("INSERT INTO t VALUES ({value})"), [])
        .unwrap();
    let after = primary.pos("db").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        replica.pos("db").unwrap(),
        before,
        "{what}: applied under an open read transaction"
    );
    assert_eq!(
        count(&r),
        1,
        "{what}: the reader's version changed under it"
    );
    let held = Instant::now();
    r.execute_batch("COMMIT").unwrap();
    replica.wait_pos("db", after, CATCH_UP_WAIT_MAX);
    assert_eq!(count(&r), 2);
    held
}

/// With kernel-local locks the replica keeps the files it locks through its mount open
/// between applies (`fuse/kernel_locks.rs`). After the database is deleted and created again,
/// those descriptions must still lock the file SQLite opens (same FUSE node id, same kernel
/// inode): a read transaction still holds off the apply.
#[test]
fn a_read_transaction_holds_off_the_apply_of_a_recreated_database_kernel_locks() {
    let tmp = tempfile::tempdir().unwrap();
    let (primary, replica) = primary_and_replica_with_locks(tmp.path(), false);
    {
        let p = rusqlite::Connection::open(primary.path("db")).unwrap();
        p.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    replica.wait_pos("db", primary.pos("db").unwrap(), CATCH_UP_WAIT_MAX);
    // Deleted (a deletion LTX file) and created again, with another history.
    std::fs::remove_file(primary.path("db")).unwrap();
    let p = rusqlite::Connection::open(primary.path("db")).unwrap();
    p.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (10);")
        .unwrap();
    reader_holds_off_the_apply(&primary, &replica, &p, "20", "recreated database");
    let sum: i64 = rusqlite::Connection::open(replica.path("db"))
        .unwrap()
        .query_row("SELECT sum(x) FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(sum, 30, "the replica shows the new history");
}

#[test]
fn a_read_transaction_holds_off_the_apply_delete() {
    a_read_transaction_holds_off_the_apply("delete", true);
}

#[test]
fn a_read_transaction_holds_off_the_apply_wal() {
    a_read_transaction_holds_off_the_apply("wal", true);
}

#[test]
fn a_read_transaction_holds_off_the_apply_delete_kernel_locks() {
    a_read_transaction_holds_off_the_apply("delete", false);
}

#[test]
fn a_read_transaction_holds_off_the_apply_wal_kernel_locks() {
    a_read_transaction_holds_off_the_apply("wal", false);
}

/// Writes on a replica fail with SQLite's read-only error (rollback modes) or an I/O error
/// (WAL), and change nothing on either node.
fn replica_writes_fail(mode: &str, expected_error: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (primary, replica) = primary_and_replica(tmp.path());
    commit(&primary, mode, 10);
    let pos = primary.pos("db").unwrap();
    replica.wait_pos("db", pos, CATCH_UP_WAIT_MAX);
    let before = image(&replica, "db");
    let ltx_before = std::fs::read_dir(replica.ltx_dir("db")).unwrap().count();
    for sql in [
        "INSERT INTO t(v) VALUES ('x')",
        "CREATE TABLE u(x)",
        "DELETE FROM t",
    ] {
        let out = sqlite3(&replica.path("db"), sql);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{mode}: {sql:?} succeeded on a replica"
        );
        assert!(stderr.contains(expected_error), "{mode}: {sql:?}: {stderr}");
    }
    // A new database cannot be created with content either.
    let out = sqlite3(&replica.path("other"), "CREATE TABLE x(y)");
    assert!(
        !out.status.success(),
        "{mode}: creating a database on a replica succeeded"
    );
    assert_eq!(replica.pos("db"), Some(pos));
    assert_eq!(primary.pos("db"), Some(pos));
    assert!(
        image(&replica, "db") == before,
        "{mode}: replica image changed"
    );
    assert_eq!(
        std::fs::read_dir(replica.ltx_dir("db")).unwrap().count(),
        ltx_before
    );
    assert_eq!(
        sqlite3_ok(&replica.path("db"), "SELECT count(*) FROM t"),
        "10"
    );
    assert!(
        !primary.ltx_dir("other").exists(),
        "the primary heard of the replica's database"
    );
}

#[test]
fn replica_writes_fail_delete() {
    replica_writes_fail("delete", "attempt to write a readonly database");
}

/// Better than LiteFS ("disk I/O error" at the first WAL write): the replica refuses to open
/// `-wal` for writing, SQLite opens it read-only and refuses the write transaction itself.
#[test]
fn replica_writes_fail_wal() {
    replica_writes_fail("wal", "attempt to write a readonly database");
}

/// A replica that starts with a cluster id other than the primary's refuses to follow it.
#[test]
fn cluster_id_is_adopted_and_a_different_one_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let primary = Node::start(NodeConfig::primary(&tmp.path().join("p")));
    let primary_id = std::fs::read_to_string(tmp.path().join("p/data/clusterid")).unwrap();
    assert!(
        primary_id.starts_with("LFSC") && primary_id.len() == 21,
        "{primary_id:?}"
    );
    let mut replica = Node::start(NodeConfig::replica(
        &tmp.path().join("r"),
        primary.config.port,
    ));
    commit(&primary, "delete", 1);
    replica.wait_pos("db", primary.pos("db").unwrap(), CATCH_UP_WAIT_MAX);
    let adopted = std::fs::read_to_string(tmp.path().join("r/data/clusterid")).unwrap();
    assert_eq!(adopted, primary_id);
    replica.stop();
    std::fs::write(
        tmp.path().join("r/data/clusterid"),
        "LFSC0000000000000001\n",
    )
    .unwrap();
    let replica = Node::start(replica.config.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = format!(
        "cannot stream from primary with a different cluster id: LFSC0000000000000001 <> {}",
        primary_id.trim()
    );
    while !replica.log().contains(&want) {
        assert!(
            Instant::now() < deadline,
            "no cluster id error in:\n{}",
            replica.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lag = std::fs::read_to_string(replica.path(".lag")).unwrap();
    assert_eq!(lag, "+2147483647\n", "a refused replica is never ready");
}

/// LTX files of `dir` as (min, max) TXIDs, sorted.
fn ltx_ranges(dir: &Path) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| litefs::ltx::parse_filename(e.unwrap().file_name().to_str()?))
        .map(|(a, b)| (a.0, b.0))
        .collect();
    v.sort();
    v
}

/// Waits until `node`'s LTX files for `db` are exactly `want`: a replica records a small
/// transaction's file just after making it visible (docs/ARCHITECTURE.md §4.1), so the files
/// can trail the position by a moment.
fn wait_ltx_ranges(node: &Node, db: &str, want: &[(u64, u64)]) {
    let started = Instant::now();
    loop {
        let got = ltx_ranges(&node.ltx_dir(db));
        if got == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "LTX files of {db} on {}: {got:?}, want {want:?}",
            node.url()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A stopped replica misses 500 transactions whose LTX files retention then removes; on
/// restart it catches up by snapshot and then follows incrementally.
#[test]
fn replica_behind_retention_catches_up_by_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pc = NodeConfig::primary(&tmp.path().join("p"));
    pc.data_extra = "  retention: 1s\n  retention-monitor-interval: 200ms\n".into();
    let primary = Node::start(pc);
    let mut replica = Node::start(NodeConfig::replica(
        &tmp.path().join("r"),
        primary.config.port,
    ));
    commit(&primary, "delete", 10);
    replica.wait_pos("db", primary.pos("db").unwrap(), CATCH_UP_WAIT_MAX);
    let stopped_at = replica.pos("db").unwrap();
    replica.stop();
    commit(&primary, "delete", 500);
    let head = primary.pos("db").unwrap();
    assert_eq!(head.txid.0, stopped_at.txid.0 + 500);
    // Retention removes every file but the newest once they are a second old.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ltx_ranges(&primary.ltx_dir("db")).len() > 1 {
        assert!(
            Instant::now() < deadline,
            "retention left {:?}",
            ltx_ranges(&primary.ltx_dir("db"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let next = primary.ltx_dir("db").join(litefs::ltx::format_filename(
        litefs::types::TxId(stopped_at.txid.0 + 1),
        litefs::types::TxId(stopped_at.txid.0 + 1),
    ));
    assert!(!next.exists(), "{} survived retention", next.display());
    let replica = Node::start(replica.config.clone());
    replica.wait_pos("db", head, CATCH_UP_WAIT_MAX);
    // The replica holds exactly the snapshot.
    wait_ltx_ranges(&replica, "db", &[(1, head.txid.0)]);
    // Then incrementally.
    commit(&primary, "delete", 5);
    let head2 = primary.pos("db").unwrap();
    replica.wait_pos("db", head2, CATCH_UP_WAIT_MAX);
    let want: Vec<(u64, u64)> = std::iter::once((1, head.txid.0))
        .chain((head.txid.0 + 1..=head2.txid.0).map(|t| (t, t)))
        .collect();
    wait_ltx_ranges(&replica, "db", &want);
    assert!(
        image(&replica, "db") == image(&primary, "db"),
        "images differ"
    );
    assert_eq!(
        sqlite3_ok(&replica.path("db"), "SELECT count(*) FROM t"),
        "515"
    );
}

/// A replica whose database went its own way (run as a primary on its own, as an old primary
/// would) is reset by snapshot: `extra` transactions beyond the point it left, against the
/// primary's `primary_extra`.
fn diverged_replica_is_reset(extra: usize, primary_extra: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let (primary, mut replica) = primary_and_replica(tmp.path());
    commit(&primary, "delete", 10);
    replica.wait_pos("db", primary.pos("db").unwrap(), CATCH_UP_WAIT_MAX);
    replica.stop();
    // The replica's data directory, mounted as a lone primary, takes its own transactions.
    let alone = Node::start(NodeConfig::primary(&replica.config.dir));
    commit(&alone, "delete", extra);
    let diverged = alone.pos("db").unwrap();
    drop(alone);
    commit(&primary, "delete", primary_extra);
    let head = primary.pos("db").unwrap();
    if extra == primary_extra {
        assert_eq!(diverged.txid, head.txid);
        assert_ne!(diverged.post_apply_checksum, head.post_apply_checksum);
    } else {
        assert!(diverged.txid > head.txid, "{diverged} vs {head}");
    }
    let replica = Node::start(replica.config.clone());
    replica.wait_pos("db", head, CATCH_UP_WAIT_MAX);
    wait_ltx_ranges(&replica, "db", &[(1, head.txid.0)]);
    assert!(
        image(&replica, "db") == image(&primary, "db"),
        "images differ"
    );
    assert_eq!(
        sqlite3_ok(&replica.path("db"), "SELECT count(*) FROM t"),
        (10 + primary_extra).to_string()
    );
}

#[test]
fn replica_ahead_of_the_primary_is_reset_by_snapshot() {
    diverged_replica_is_reset(7, 2);
}

#[test]
fn replica_at_the_same_txid_with_another_checksum_is_reset_by_snapshot() {
    diverged_replica_is_reset(3, 3);
}

/// A replica's received files are not synced (docs/ARCHITECTURE.md §4.1), so a power loss
/// can tear its newest LTX file: the restart drops the torn file and catches up from the
/// primary. A database whose files cannot be recovered at all (here a damaged database
/// header) is set aside and fetched again, instead of the node refusing to start.
#[test]
fn replica_with_a_damaged_ltx_file_refetches_instead_of_refusing_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let (primary, mut replica) = primary_and_replica(tmp.path());
    commit(&primary, "delete", 20);
    let head = primary.pos("db").unwrap();
    replica.wait_pos("db", head, CATCH_UP_WAIT_MAX);
    replica.stop();
    // The newest file: a snapshot or a single transaction, depending on when it connected.
    let &(min, max) = ltx_ranges(&replica.ltx_dir("db")).last().unwrap();
    let newest = replica.ltx_dir("db").join(litefs::ltx::format_filename(
        litefs::types::TxId(min),
        litefs::types::TxId(max),
    ));
    let mut bytes = std::fs::read(&newest).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&newest, &bytes).unwrap();
    let mut replica = Node::start(replica.config.clone());
    replica.wait_pos("db", head, CATCH_UP_WAIT_MAX);
    assert!(
        replica.log().contains("torn by a crash"),
        "no torn-file message in:\n{}",
        replica.log()
    );
    // Only the torn file was fetched again (a snapshot if it was one): the older were kept.
    let mut want = ltx_ranges(&replica.ltx_dir("db"));
    want.retain(|&(_, m)| m < min);
    want.push((if min == max { head.txid.0 } else { 1 }, head.txid.0));
    wait_ltx_ranges(&replica, "db", &want);
    assert!(
        export(&replica, "db") == export(&primary, "db"),
        "images differ after the torn file"
    );
    replica.stop();
    let database = replica.config.dir.join("data/dbs/db/database");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&database)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"not a database header", 0).unwrap();
    drop(f);
    let replica = Node::start(replica.config.clone());
    replica.wait_pos("db", head, CATCH_UP_WAIT_MAX);
    assert!(
        replica.log().contains("cannot be recovered"),
        "no recovery message in:\n{}",
        replica.log()
    );
    let aside: Vec<String> = std::fs::read_dir(replica.config.dir.join("data/dbs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".db.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "set-aside copies: {aside:?}");
    wait_ltx_ranges(&replica, "db", &[(1, head.txid.0)]);
    assert!(
        export(&replica, "db") == export(&primary, "db"),
        "images differ"
    );
}

/// The primary restarts (a deploy): while it is down the replica reports no primary and a
/// lag that says "not connected"; when it is back, the replica reconnects on its own and
/// follows the new commits.
#[test]
fn replica_reconnects_when_the_primary_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut primary, replica) = primary_and_replica(tmp.path());
    commit(&primary, "wal", 20);
    replica.wait_pos("db", primary.pos("db").unwrap(), CATCH_UP_WAIT_MAX);
    assert!(replica.path(".primary").exists());
    primary.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    while replica.path(".primary").exists() {
        assert!(
            Instant::now() < deadline,
            ".primary still there 15 s after the primary stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lag = std::fs::read_to_string(replica.path(".lag")).unwrap();
    assert_eq!(lag, "+2147483647\n", "lag while no primary is connected");
    let primary = Node::start(primary.config.clone());
    commit(&primary, "wal", 30);
    let head = primary.pos("db").unwrap();
    replica.wait_pos("db", head, CATCH_UP_WAIT_MAX);
    assert_eq!(
        head.txid.0,
        2 + 20 + 30,
        "journal_mode + create + 50 inserts"
    );
    assert!(
        export(&replica, "db") == export(&primary, "db"),
        "images differ"
    );
    assert_eq!(
        std::fs::read_to_string(replica.path(".primary")).unwrap(),
        format!("primary-{}\n", primary.config.port)
    );
}

/// `kill -9` of a replica at random moments while the primary commits, 12 times: every
/// restart recovers on its own (normally, or by setting a database aside and fetching it again)
/// and converges to the primary's image. Bounded: 12 × (100 commits + catch-up).
#[test]
fn replica_killed_during_replication_recovers_and_converges() {
    const KILLS: u32 = 12;
    let tmp = tempfile::tempdir().unwrap();
    let (primary, mut replica) = primary_and_replica(tmp.path());
    commit(&primary, "wal", 5);
    let mut rng = litefs::testkit::XorShift64(0x5eed_0005);
    let mut set_aside = 0;
    for i in 0..KILLS {
        // A writer in the background; the kill lands somewhere inside its run.
        let mut writer = std::process::Command::new("python3")
            .arg(format!("{CLIENTS}/commits.py"))
            .arg(primary.path("db"))
            .arg("wal")
            .arg("100")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + rng.next_u64() % 300));
        replica.kill();
        assert!(
            writer.wait().unwrap().success(),
            "writer failed in round {i}"
        );
        replica = Node::start(replica.config.clone());
        let head = primary.pos("db").unwrap();
        replica.wait_pos("db", head, CATCH_UP_WAIT_MAX);
        assert!(
            export(&replica, "db") == export(&primary, "db"),
            "round {i}: images differ at {head}"
        );
        if replica.log().contains("cannot be recovered") {
            set_aside += 1;
        }
    }
    assert_eq!(
        sqlite3_ok(&replica.path("db"), "PRAGMA integrity_check"),
        "ok"
    );
    eprintln!(
        "{KILLS} kills of a replica under load: all converged; {set_aside} restarts set a database aside and refetched it"
    );
}

/// With kernel-local locks on both nodes, a replica joining a primary that holds data while a
/// writer keeps committing gets a snapshot taken under the snapshot read lock — held through
/// the mount as OFD locks — and then follows; its image equals the primary's.
#[test]
fn late_replica_gets_a_consistent_snapshot_with_kernel_locks() {
    for mode in ["wal", "delete"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut pc = NodeConfig::primary(&tmp.path().join("p"));
        pc.posix_locks = false;
        let primary = Node::start(pc);
        commit(&primary, mode, 200);
        let db_path = primary.path("db");
        let writer = std::thread::spawn(move || {
            python("commits.py", &[db_path.to_str().unwrap(), mode, "300"]);
        });
        let mut rc = NodeConfig::replica(&tmp.path().join("r"), primary.config.port);
        rc.posix_locks = false;
        let replica = Node::start(rc);
        writer.join().unwrap();
        let want = primary.pos("db").unwrap();
        replica.wait_pos("db", want, CATCH_UP_WAIT_MAX);
        assert!(
            export(&replica, "db") == export(&primary, "db"),
            "{mode}: replica image differs from the primary's"
        );
        assert_eq!(
            sqlite3_ok(&replica.path("db"), "PRAGMA integrity_check"),
            "ok"
        );
    }
}

/// Transactions larger than what a replica verifies in memory (1 MiB) go through a temp file
/// and are applied from it with the page checksums of their verification; smaller ones after
/// them from memory (native stream): byte-identical images, and an open connection on the
/// replica reads the new rows.
#[test]
fn large_transactions_are_applied_through_the_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (primary, replica) = primary_and_replica_with_locks(tmp.path(), false);
    let db = primary.path("db");
    sqlite3_ok(
        &db,
        "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
    );
    replica.wait_pos("db", primary.pos("db").unwrap(), CATCH_UP_WAIT_MAX);
    let reader = rusqlite::Connection::open(replica.path("db")).unwrap();
    reader.busy_timeout(Duration::from_secs(5)).unwrap();
    // 3 MB of random bytes (incompressible: LZ4 stores the blocks raw), then 4 MB that is
    // 30 % random (compressed blocks, still over 1 MiB), then a single row, then an update.
    for (sql, rows, large) in [
        (
            "INSERT INTO t(v) SELECT randomblob(3000) FROM generate_series(1, 1000)",
            1000,
            true,
        ),
        (
            "INSERT INTO t(v) SELECT randomblob(600) || zeroblob(1400) FROM generate_series(1, 2000)",
            3000,
            true,
        ),
        ("INSERT INTO t(v) VALUES (randomblob(100))", 3001, false),
        (
            "UPDATE t SET v = randomblob(3000) WHERE id % 2 = 0",
            3001,
            true,
        ),
    ] {
        sqlite3_ok(&db, sql);
        let head = primary.pos("db").unwrap();
        let file = primary
            .ltx_dir("db")
            .join(litefs::ltx::format_filename(head.txid, head.txid));
        let len = std::fs::metadata(&file).unwrap().len();
        assert_eq!(
            len > 1 << 20,
            large,
            "{sql:?}: an LTX file of {len} bytes; over 1 MiB expected: {large}"
        );
        replica.wait_pos("db", head, CATCH_UP_WAIT_MAX);
        let n: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            n, rows,
            "rows on the replica after {sql:?} (TXID {})",
            head.txid
        );
    }
    assert!(
        export(&replica, "db") == export(&primary, "db"),
        "images differ"
    );
    let ok: String = reader
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

/// A replica catching up receives the files it missed back to back; small ones are held to
/// be applied as one batch. A large file (over 1 MiB, received into a temp file) right behind
/// them must be applied after them, in arrival order — applied first, it failed with a
/// position mismatch, and the replica reconnected into the same failure again and again.
#[test]
fn a_large_file_behind_small_ones_is_applied_after_them() {
    let tmp = tempfile::tempdir().unwrap();
    let primary = Node::start(NodeConfig::primary(&tmp.path().join("p")));
    for native in [true, false] {
        let dir = tmp.path().join(if native { "native" } else { "compat" });
        let mut config = NodeConfig::replica(&dir, primary.config.port);
        config.native_stream = native;
        let mut replica = Node::start(config);
        commit(&primary, "wal", 3);
        replica.wait_pos("db", primary.pos("db").unwrap(), CATCH_UP_WAIT_MAX);
        replica.stop();
        commit(&primary, "wal", 5);
        {
            let c = rusqlite::Connection::open(primary.path("db")).unwrap();
            c.execute("INSERT INTO t(v) VALUES (randomblob(3 * 1024 * 1024))", [])
                .unwrap();
        }
        commit(&primary, "wal", 2);
        let head = primary.pos("db").unwrap();
        let replica = Node::start(replica.config.clone());
        replica.wait_pos("db", head, CATCH_UP_WAIT_MAX);
        assert!(
            !replica.log().contains("position mismatch"),
            "native {native}: {}",
            replica.log()
        );
    }
}

/// With kernel-local locks a replica keeps the files it locks through its own mount open
/// (`fuse/kernel_locks.rs`). A `kill -9` closes them as the process exits, when no worker is
/// left to answer a request; a FLUSH then would wait for good (until the watchdog aborts
/// the connection). Opens answer FOPEN_NOFLUSH in this mode, and the kernel also stops
/// sending FLUSH after our first ENOSYS (here the test harness's own reads of the mount
/// already caused one): either way the process must exit at once, with no abort.
#[test]
fn a_killed_replica_holding_lock_files_exits_at_once_kernel_locks() {
    let tmp = tempfile::tempdir().unwrap();
    let (primary, mut replica) = primary_and_replica_with_locks(tmp.path(), false);
    commit(&primary, "wal", 5);
    // Waited for in the data directory: a file opened and closed on the replica's mount
    // would answer the kernel's first FLUSH with ENOSYS, after which it sends none anyway.
    // (A snapshot when the replica joined after the first commits: any file ending there.)
    let head = primary.pos("db").unwrap();
    let deadline = Instant::now() + CATCH_UP_WAIT_MAX;
    let ranges = || {
        let dir = replica.ltx_dir("db");
        if dir.is_dir() {
            ltx_ranges(&dir)
        } else {
            Vec::new()
        }
    };
    while !ranges().iter().any(|&(_, max)| max == head.txid.0) {
        assert!(
            Instant::now() < deadline,
            "no LTX file ends at TXID {} on the replica: {:?}",
            head.txid,
            ranges()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = Instant::now();
    replica.kill();
    let exited = killed.elapsed();
    assert!(
        exited < Duration::from_millis(800),
        "the killed replica took {exited:?} to exit"
    );
    // Long enough for a watchdog to have acted (two polls 500 ms apart).
    std::thread::sleep(Duration::from_millis(1500));
    let log = replica.log();
    assert!(!log.contains("aborted FUSE connection"), "{log}");
}
