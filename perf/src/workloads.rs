//! The workloads of `shared/perf/BASELINES.md`, defined the same way: table
//! `t(id INTEGER PRIMARY KEY, v BLOB)`, driven by rusqlite (C-speed SQLite, no interpreter in
//! the loop). Each runner times only the measured section; setup (schema, population) and
//! teardown stay outside the clock.

use crate::target::{Snapshot, Target, rss_kib};
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use rusqlite::Connection;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[value(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    WalNormal,
    WalFull,
    DeleteFull,
    Bulk,
    ReadsWarm,
    ReadsCold,
    Lag,
    Stream,
}

impl Workload {
    pub const ALL: [Workload; 8] = [
        Workload::WalNormal,
        Workload::WalFull,
        Workload::DeleteFull,
        Workload::Bulk,
        Workload::ReadsWarm,
        Workload::ReadsCold,
        Workload::Lag,
        Workload::Stream,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::WalNormal => "wal_normal",
            Workload::WalFull => "wal_full",
            Workload::DeleteFull => "delete_full",
            Workload::Bulk => "bulk",
            Workload::ReadsWarm => "reads_warm",
            Workload::ReadsCold => "reads_cold",
            Workload::Lag => "lag",
            Workload::Stream => "stream",
        }
    }

    /// What one operation is.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::WalNormal | Workload::WalFull | Workload::DeleteFull => "tx/s",
            Workload::Bulk => "rows/s",
            Workload::ReadsWarm | Workload::ReadsCold => "lookups/s",
            Workload::Lag => "µs",
            Workload::Stream => "MB/s",
        }
    }

    /// Our goal as a percentage of raw (BASELINES.md, "Goals").
    pub fn goal_percent(self) -> Option<f64> {
        match self {
            Workload::WalNormal => Some(50.0),
            Workload::WalFull => Some(80.0),
            Workload::DeleteFull => Some(60.0),
            Workload::Bulk => Some(50.0),
            Workload::ReadsWarm => Some(95.0),
            Workload::ReadsCold => Some(60.0),
            Workload::Lag | Workload::Stream => None,
        }
    }

    /// Goals that are not a ratio to raw (BASELINES.md, "Goals").
    pub fn goal_text(self) -> String {
        match (self, self.goal_percent()) {
            (_, Some(p)) => format!("≥ {p:.0} %"),
            (Workload::Lag, None) => "p50 ≤ 250 µs, p99 ≤ 1 ms".into(),
            (Workload::Stream, None) => "≥ 1 GB/s".into(),
            (_, None) => String::new(),
        }
    }

    /// Lag and stream run on a primary/replica pair, not on raw vs litefs
    /// (`replication.rs`).
    pub fn needs_replication(self) -> bool {
        matches!(self, Workload::Lag | Workload::Stream)
    }
}

/// Operation counts at `--scale 1`, as BASELINES.md defines them.
const INSERT_TX_COUNT: u64 = 10_000;
const BULK_ROW_COUNT: u64 = 100_000;
const READ_ROW_COUNT: u64 = 100_000;
const READ_ROW_BYTES: u64 = 1000;
const READ_LOOKUP_COUNT: u64 = 100_000;
/// Fixed, so every run and both targets look up the same ids in the same order.
const READ_SEED: u64 = 0x0011_fef5;

pub fn scaled(count: u64, scale: f64) -> u64 {
    ((count as f64 * scale).round() as u64).max(1)
}

/// One timed section on one target.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Which run (1-based), so raw and litefs samples of one run can be paired.
    pub run: usize,
    pub ops: u64,
    pub elapsed: Duration,
    /// Daemon activity during the timed section (litefs only).
    pub daemon: Option<Snapshot>,
    /// Process RSS at the start of the timed section (setup done, idle) and at its end.
    pub rss_idle_kib: u64,
    pub rss_load_kib: u64,
}

impl Sample {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// Times `body` (which returns its operation count) and the daemon's work during it.
fn timed(target: &Target, body: impl FnOnce() -> Result<u64>) -> Result<Sample> {
    let before = target.snapshot()?;
    let rss_idle_kib = rss_kib();
    let start = Instant::now();
    let ops = body()?;
    let elapsed = start.elapsed();
    let rss_load_kib = rss_kib();
    let after = target.snapshot()?;
    let daemon = before.zip(after).map(|(b, a)| Snapshot {
        txid: a.txid.saturating_sub(b.txid),
        ltx_files: a.ltx_files.saturating_sub(b.ltx_files),
        ltx_bytes: a.ltx_bytes.saturating_sub(b.ltx_bytes),
        daemon_cpu_ns: a.daemon_cpu_ns.saturating_sub(b.daemon_cpu_ns),
        fuse_requests: a.fuse_requests.saturating_sub(b.fuse_requests),
    });
    Ok(Sample {
        run: 0, // set by the caller, which knows the run
        ops,
        elapsed,
        daemon,
        rss_idle_kib,
        rss_load_kib,
    })
}

fn open(target: &Target) -> Result<Connection> {
    let path = target.db_path();
    let conn = Connection::open(&path).with_context(|| format!("open {}", path.display()))?;
    // One client per database: a busy wait would only hide a locking bug, but a short one
    // keeps a stray checkpoint from failing the run.
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Runs a write workload on a fresh target.
pub fn run_write(workload: Workload, target: &Target, scale: f64) -> Result<Sample> {
    let (journal_mode, synchronous) = match workload {
        Workload::WalNormal | Workload::Bulk => ("WAL", "NORMAL"),
        Workload::WalFull => ("WAL", "FULL"),
        Workload::DeleteFull => ("DELETE", "FULL"),
        _ => bail!("{} is not a write workload", workload.name()),
    };
    let conn = open(target)?;
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode={journal_mode}"), [], |r| {
            r.get(0)
        })
        .context("set journal_mode")?;
    if !mode.eq_ignore_ascii_case(journal_mode) {
        bail!("journal_mode={journal_mode} refused: SQLite kept {mode}");
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous={synchronous}; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
    ))
    .context("create table")?;
    let mut insert = conn.prepare("INSERT INTO t(v) VALUES (randomblob(100))")?;
    let sample = if workload == Workload::Bulk {
        let rows = scaled(BULK_ROW_COUNT, scale);
        timed(target, || {
            conn.execute_batch("BEGIN")?;
            for _ in 0..rows {
                insert.execute([])?;
            }
            conn.execute_batch("COMMIT").context("commit")?;
            Ok(rows)
        })?
    } else {
        let count = scaled(INSERT_TX_COUNT, scale);
        timed(target, || {
            for i in 0..count {
                insert
                    .execute([])
                    .with_context(|| format!("insert #{i} of {count}"))?;
            }
            Ok(count)
        })?
    };
    drop(insert);
    conn.close().map_err(|(_, e)| e).context("close")?;
    Ok(sample)
}

/// Fills the read table: `READ_ROW_COUNT × READ_ROW_BYTES` random bytes, in one transaction
/// (population is setup, not measured).
pub fn populate_reads(target: &Target, scale: f64, journal_mode: &str) -> Result<()> {
    let conn = open(target)?;
    let _: String = conn.query_row(&format!("PRAGMA journal_mode={journal_mode}"), [], |r| {
        r.get(0)
    })?;
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")?;
    conn.execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1) \
         INSERT INTO t(id, v) SELECT x, randomblob(?2) FROM c",
        (scaled(READ_ROW_COUNT, scale), READ_ROW_BYTES),
    )
    .context("populate")?;
    conn.close().map_err(|(_, e)| e).context("close")?;
    Ok(())
}

/// One pass of random primary-key lookups on a fresh connection (default page cache).
fn lookup_pass(target: &Target, scale: f64) -> Result<u64> {
    let conn = open(target)?;
    let rows = scaled(READ_ROW_COUNT, scale);
    let lookups = scaled(READ_LOOKUP_COUNT, scale);
    let mut rng = fastrand::Rng::with_seed(READ_SEED);
    let mut select = conn.prepare("SELECT v FROM t WHERE id = ?1")?;
    let mut found_bytes = 0;
    for _ in 0..lookups {
        let id = rng.u64(1..=rows);
        found_bytes += select
            .query_row([id], |r| Ok(r.get_ref(0)?.as_blob()?.len() as u64))
            .with_context(|| format!("look up id {id}"))?;
    }
    // Every row exists and has the same size: a short answer means a wrong read.
    if found_bytes != lookups * READ_ROW_BYTES {
        bail!(
            "lookups returned {found_bytes} bytes, expected {}",
            lookups * READ_ROW_BYTES
        );
    }
    Ok(lookups)
}

/// Warm: a first pass (untimed) fills the kernel caches, the second pass is timed; each on a
/// fresh connection, so only kernel caches carry over.
pub fn run_reads_warm(target: &Target, scale: f64) -> Result<Sample> {
    lookup_pass(target, scale).context("warm-up pass")?;
    timed(target, || lookup_pass(target, scale))
}

/// Cold: write back and drop the kernel's page, dentry and inode caches first (root only).
pub fn run_reads_cold(target: &Target, scale: f64) -> Result<Sample> {
    drop_caches()?;
    timed(target, || lookup_pass(target, scale))
}

fn drop_caches() -> Result<()> {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .context("echo 3 > /proc/sys/vm/drop_caches (needs root)")
}
