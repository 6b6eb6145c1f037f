//! The two FUSE transports as such: FUSE-over-io_uring really serves the requests when asked
//! for (and the kernel allows it), `/dev/fuse` never touches a ring, and unmounting leaves no
//! worker thread behind. Everything else about them is proven by running the whole real-mount
//! suite once per transport (`scripts/test.sh`).

mod common;

use fuse_backend_rs::abi::fuse_abi::Opcode;
use litefs::config::FuseTransport;
use litefs::fuse::uring;
use litefs::fuse::{ActiveTransport, Mount, MountOptions};
use litefs::store::{DbOptions, Store};
use litefs::types::NodeId;
use std::path::Path;
use std::sync::Arc;

fn mount(dir: &Path, transport: FuseTransport) -> (Arc<Store>, Mount) {
    let options = MountOptions {
        transport,
        ..MountOptions::default()
    };
    try_mount(dir, options).unwrap()
}

fn try_mount(dir: &Path, mount_options: MountOptions) -> std::io::Result<(Arc<Store>, Mount)> {
    let options = DbOptions {
        node_id: NodeId(0x51),
        compress: false,
        strict_verify: true,
        replica: false,
    };
    let store = Arc::new(Store::open(&dir.join("data"), options).unwrap());
    let mount = Mount::new(store.clone(), &dir.join("mnt"), mount_options)?;
    Ok((store, mount))
}

/// 200 single-row transactions in `mode`, then a count; returns the count.
fn write_and_read(db: &Path, mode: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "journal_mode", mode).unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    for i in 0..200 {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [format!("row {i}")])
            .unwrap();
    }
    let reader = rusqlite::Connection::open(db).unwrap();
    reader
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

fn ring_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("fuse-ring"))
        .count()
}

/// [`ring_threads`] once they are gone, or after 2 s. The unmount joined every worker, but a
/// joined thread can still be listed in /proc for a moment (pthread_join returns when the
/// kernel clears its tid, before the task is gone).
fn ring_threads_left() -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while ring_threads() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    ring_threads()
}

#[test]
fn uring_transport_serves_every_request_through_rings() {
    assert_eq!(
        uring::enabled_in_kernel(),
        Some(true),
        "this test needs FUSE-over-io_uring: `echo Y > {}` (scripts/test.sh does)",
        uring::ENABLE_PARAM
    );
    let dir = tempfile::tempdir().unwrap();
    let (_store, mount) = mount(dir.path(), FuseTransport::Uring);
    let queues = uring::queue_count().unwrap();
    assert_eq!(
        mount.transport(),
        ActiveTransport::Uring {
            queues,
            threads_per_cpu: 2
        }
    );
    assert_eq!(
        ring_threads(),
        queues * 2,
        "ring worker threads while mounted"
    );
    let mnt = dir.path().join("mnt");
    assert_eq!(write_and_read(&mnt.join("wal.db"), "wal"), 200);
    assert_eq!(write_and_read(&mnt.join("del.db"), "delete"), 200);
    let counts = mount.request_stats().snapshot();
    let total = counts.total();
    let ring = mount.ring_requests();
    // INIT, FORGET (batched under load), and INTERRUPT come through /dev/fuse; everything
    // else must have used a ring.
    let dev_only: u64 = [
        Opcode::Init,
        Opcode::Forget,
        Opcode::BatchForget,
        Opcode::Interrupt,
    ]
    .into_iter()
    .map(|op| counts.get(op))
    .sum();
    eprintln!("requests: {total} in all, {ring} through rings, {dev_only} INIT/FORGET/INTERRUPT");
    assert_eq!(
        ring + dev_only,
        total,
        "{ring} of {total} requests came through rings, {dev_only} were INIT/FORGET/INTERRUPT"
    );
    assert!(ring > 1000, "only {ring} requests through rings");
    mount.unmount().unwrap();
    assert_eq!(
        ring_threads_left(),
        0,
        "ring worker threads 2 s after unmount"
    );
}

#[test]
fn devfuse_transport_never_uses_a_ring() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, mount) = mount(dir.path(), FuseTransport::DevFuse);
    assert_eq!(mount.transport(), ActiveTransport::DevFuse);
    let mnt = dir.path().join("mnt");
    assert_eq!(write_and_read(&mnt.join("wal.db"), "wal"), 200);
    // At least the WAL frame write of each of the 200 commits.
    let total = mount.request_stats().snapshot().total();
    assert!(total > 600, "{total} requests for 200 commits");
    assert_eq!(mount.ring_requests(), 0);
}

/// The kernel refuses REGISTER (payload buffer below its minimum) after FUSE_INIT accepted
/// io_uring: `auto` must end up serving over /dev/fuse — not hang — and `uring` must fail the
/// mount with the reason, leaving nothing mounted.
#[test]
fn a_refused_ring_registration_falls_back_or_fails_without_hanging() {
    assert_eq!(
        uring::enabled_in_kernel(),
        Some(true),
        "needs enable_uring=Y"
    );
    let dir = tempfile::tempdir().unwrap();
    let small = MountOptions {
        transport: FuseTransport::Auto,
        ring_payload_bytes: Some(4096),
        ..MountOptions::default()
    };
    let (_store, mount) = try_mount(dir.path(), small).unwrap();
    assert_eq!(mount.transport(), ActiveTransport::DevFuse);
    let mnt = dir.path().join("mnt");
    assert_eq!(write_and_read(&mnt.join("db"), "wal"), 200);
    assert_eq!(mount.ring_requests(), 0);
    mount.unmount().unwrap();
    assert_eq!(
        ring_threads_left(),
        0,
        "ring worker threads 2 s after unmount"
    );

    let dir = tempfile::tempdir().unwrap();
    let forced = MountOptions {
        transport: FuseTransport::Uring,
        ..small
    };
    let err = match try_mount(dir.path(), forced) {
        Ok(_) => panic!("a refused REGISTER must fail fuse.transport: uring"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("REGISTER"),
        "error names the refused step: {err}"
    );
    assert!(
        !litefs::fuse::session::is_mounted(&dir.path().join("mnt")),
        "nothing stays mounted"
    );
}

/// Mounted as LiteFS mounts (no `default_permissions`: the kernel would otherwise ask for the
/// root's attributes after every create and unlink), a DELETE-mode commit costs the requests
/// docs/ARCHITECTURE.md §7.4.5 counts — one GETATTR, each journal `pwrite` one WRITE — on
/// either transport; and an unmount while a file on the mount is still open ends within
/// seconds and leaves nothing mounted (the `/dev/fuse` readers wait on a connection the
/// detached mount keeps alive until the unmount aborts it).
#[test]
fn journal_commits_take_few_requests_and_a_busy_unmount_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, mount) = mount(dir.path(), common::fuse_transport());
    let mnt = dir.path().join("mnt").canonicalize().unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mnt.to_str().unwrap()))
        .expect("mounted");
    assert!(line.contains("fuse.litefs"), "{line}");
    assert!(!line.contains("default_permissions"), "{line}");

    let db = mnt.join("db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=delete; PRAGMA synchronous=full;
         CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);",
    )
    .unwrap();
    for _ in 0..20 {
        conn.execute_batch("INSERT INTO t (v) VALUES (randomblob(100))")
            .unwrap();
    }
    let commits = 200u64;
    let before = mount.request_stats().snapshot();
    for _ in 0..commits {
        conn.execute_batch("INSERT INTO t (v) VALUES (randomblob(100))")
            .unwrap();
    }
    let by_op = mount.request_stats().snapshot().since(&before);
    let per_commit = |op: &str| {
        by_op
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(op))
            .map_or(0.0, |(_, n)| *n as f64 / commits as f64)
    };
    let total: f64 = by_op.iter().map(|(_, n)| *n as f64).sum::<f64>() / commits as f64;
    println!("per DELETE-mode commit: {total:.2} requests, {by_op:?}");
    assert!(per_commit("getattr") <= 1.05, "GETATTRs: {by_op:?}");
    assert!(per_commit("write") <= 10.05, "WRITEs: {by_op:?}");
    assert!(total <= 23.1, "{total:.2} requests per commit: {by_op:?}");

    let held = std::fs::File::open(&db).unwrap();
    drop(conn);
    let started = std::time::Instant::now();
    mount.unmount().unwrap();
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "unmount with a file open took {took:?}"
    );
    assert!(!litefs::fuse::session::is_mounted(&mnt), "still mounted");
    // The connection was aborted, not left to the process's exit: no reader waits on it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while dev_readers() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(dev_readers(), 0, "/dev/fuse readers left after {took:?}");
    println!("unmount with a file open: {took:?}");
    drop(held);
}

/// `/dev/fuse` reader threads of this process (`fuse-<n>`; ring workers are `fuse-ring…`).
fn dev_readers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("fuse-") && !name.starts_with("fuse-ring"))
        .count()
}
