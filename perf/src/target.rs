//! Where a workload runs: a raw directory, or a fresh in-process litefs mount whose data
//! directory sits on the same file system. Both live under one temporary directory, so the
//! only difference between them is the mount.

use anyhow::{Context, Result};
use litefs::config::FuseTransport;
use litefs::fuse::session::is_mounted;
use litefs::fuse::{Mount, MountOptions};
use litefs::store::{DbOptions, Store};
use litefs::types::NodeId;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The database name every workload uses (the file SQLite opens is `<dir>/db`).
pub const DB_NAME: &str = "db";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Raw,
    /// A litefs mount served through FUSE-over-io_uring.
    LitefsUring,
    /// A litefs mount served through /dev/fuse.
    LitefsDevfuse,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Raw => "raw",
            TargetKind::LitefsUring => "uring",
            TargetKind::LitefsDevfuse => "devfuse",
        }
    }

    /// The mount's `fuse.transport`; `None` for raw. Explicit, never `auto`: a run that asked
    /// for io_uring fails rather than silently measuring /dev/fuse.
    pub fn transport(self) -> Option<FuseTransport> {
        match self {
            TargetKind::Raw => None,
            TargetKind::LitefsUring => Some(FuseTransport::Uring),
            TargetKind::LitefsDevfuse => Some(FuseTransport::DevFuse),
        }
    }
}

struct Litefs {
    mount: Option<Mount>,
    store: Arc<Store>,
}

pub struct Target {
    db_dir: PathBuf,
    litefs: Option<Litefs>,
    // Last, so the directory is removed after the mount is gone.
    _dir: tempfile::TempDir,
}

/// What the daemon has done so far, read from the store and /proc; differences of two
/// snapshots describe one timed section. None of it depends on the FUSE transport.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub txid: u64,
    pub ltx_files: u64,
    pub ltx_bytes: u64,
    /// CPU time of the FUSE worker threads (request decoding and store work, not the client).
    pub daemon_cpu_ns: u64,
    /// FUSE requests the mount has answered (every opcode, both transports' paths).
    pub fuse_requests: u64,
}

/// This process's resident set (`VmRSS`), in KiB. In-process, it is client (SQLite) and
/// daemon together; the raw target's figure is the client alone.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

impl Target {
    /// A fresh target under `base_dir`. `fuse_threads` is the mount's worker count.
    pub fn new(
        kind: TargetKind,
        base_dir: &Path,
        fuse_threads: usize,
        posix_locks: bool,
    ) -> Result<Target> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("litefs-perf-{}-", kind.name()))
            .tempdir_in(base_dir)
            .with_context(|| format!("create a temporary directory in {}", base_dir.display()))?;
        let (db_dir, litefs) = match kind.transport() {
            None => (dir.path().to_path_buf(), None),
            Some(transport) => {
                let data_dir = dir.path().join("data");
                let mountpoint = dir.path().join("mnt");
                // The LiteFS defaults (compression on); strict verification is a test aid
                // that rereads the whole database per commit, not something users run.
                let options = DbOptions {
                    node_id: NodeId(1),
                    compress: true,
                    strict_verify: false,
                    replica: false,
                };
                let store = Arc::new(
                    Store::open(&data_dir, options)
                        .with_context(|| format!("open store {}", data_dir.display()))?,
                );
                let mount_options = MountOptions {
                    threads: fuse_threads,
                    posix_locks,
                    transport,
                    ..MountOptions::default()
                };
                let mount = Mount::new(store.clone(), &mountpoint, mount_options)
                    .with_context(|| format!("mount {}", mountpoint.display()))?;
                let litefs = Litefs {
                    mount: Some(mount),
                    store,
                };
                (mountpoint, Some(litefs))
            }
        };
        Ok(Target {
            db_dir,
            litefs,
            _dir: dir,
        })
    }

    /// The path SQLite opens.
    pub fn db_path(&self) -> PathBuf {
        self.db_dir.join(DB_NAME)
    }

    /// Mean time of one `stat` in µs over `count` calls (after a warm-up): of the mount's
    /// `.lag` file, whose attributes are never cached, so every call is one GETATTR round
    /// trip to the daemon (which answers from memory); of the directory itself for raw.
    pub fn stat_us(&self, count: u32) -> Result<f64> {
        let path = match self.litefs {
            Some(_) => self.db_dir.join(".lag"),
            None => self.db_dir.clone(),
        };
        let stat = || std::fs::metadata(&path).with_context(|| format!("stat {}", path.display()));
        for _ in 0..count.min(1000) {
            stat()?;
        }
        let started = std::time::Instant::now();
        for _ in 0..count {
            stat()?;
        }
        Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(count.max(1)))
    }

    /// `None` for the raw directory: it has no daemon.
    pub fn snapshot(&self) -> Result<Option<Snapshot>> {
        let Some(litefs) = &self.litefs else {
            return Ok(None);
        };
        let mut snapshot = Snapshot {
            daemon_cpu_ns: fuse_threads_cpu_ns()?,
            fuse_requests: litefs
                .mount
                .as_ref()
                .map_or(0, |m| m.request_stats().snapshot().total()),
            ..Snapshot::default()
        };
        let Some(db) = litefs.store.db(DB_NAME) else {
            return Ok(Some(snapshot));
        };
        snapshot.txid = db.pos().txid.0;
        let ltx_dir = db.ltx_dir();
        if let Ok(entries) = std::fs::read_dir(ltx_dir) {
            for entry in entries {
                let entry = entry.with_context(|| format!("read {}", ltx_dir.display()))?;
                if entry.file_name().to_string_lossy().ends_with(".ltx") {
                    snapshot.ltx_files += 1;
                    snapshot.ltx_bytes += entry.metadata()?.len();
                }
            }
        }
        Ok(Some(snapshot))
    }

    /// True if the mount is gone although we did not unmount it (e.g. a cleanup script
    /// lazily unmounted every litefs mount under /tmp). SQLite then fails with errors such as
    /// "database file has moved" that say nothing about the daemon.
    pub fn mount_lost(&self) -> bool {
        self.litefs
            .as_ref()
            .and_then(|l| l.mount.as_ref())
            .is_some_and(|m| !is_mounted(m.mountpoint()))
    }

    /// Unmounts (reporting a failure to do so) and hands the directory to `spent`, which the
    /// caller removes after the last measurement: on ext4 without a journal (these VMs),
    /// creating a file scans past every inode deleted in the last minutes, so removing a
    /// mount's ten thousand LTX files between workloads would slow the next workload's
    /// commits several-fold — a cost of the harness's cleanup, not of the workload.
    pub fn close(mut self, spent: &mut Vec<tempfile::TempDir>) -> Result<()> {
        if let Some(litefs) = &mut self.litefs
            && let Some(mount) = litefs.mount.take()
        {
            let mountpoint = mount.mountpoint().to_path_buf();
            mount
                .unmount()
                .with_context(|| format!("unmount {}", mountpoint.display()))?;
        }
        self.litefs = None;
        spent.push(self._dir);
        Ok(())
    }
}

/// Sum of on-CPU time of this process's FUSE worker threads (named `fuse-<i>` and
/// `fuse-ring-<cpu>-<i>` by `litefs::fuse::Mount`) and of the store's capture thread
/// (`litefs-capture`, which writes WAL commits' LTX files after their writes are answered),
/// from /proc/self/task/*/schedstat (nanoseconds, unlike the 10 ms ticks of `stat`).
fn fuse_threads_cpu_ns() -> Result<u64> {
    let mut total_ns = 0;
    for task in std::fs::read_dir("/proc/self/task").context("read /proc/self/task")? {
        let task = task?.path();
        // A thread may exit between readdir and read: skip it rather than fail.
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if !comm.starts_with("fuse-") && comm.trim_end() != "litefs-capture" {
            continue;
        }
        let Ok(schedstat) = std::fs::read_to_string(task.join("schedstat")) else {
            continue;
        };
        let on_cpu_ns: u64 = schedstat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("parse {}/schedstat: {schedstat:?}", task.display()))?;
        total_ns += on_cpu_ns;
    }
    Ok(total_ns)
}
