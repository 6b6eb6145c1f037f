//! The replication workloads of BASELINES.md: `lag` (commit on the primary → visible through
//! the replica's mount, per transaction) and `stream` (one 100 MB transaction → visible on the
//! replica). Both run a primary and a replica in this process: two stores, two mounts, the
//! primary's HTTP server on a loopback port and the replica's stream client — the same code
//! `litefs mount` runs, without process start-up in the way.
//!
//! "Visible" is read through the replica's mount: the `db-pos` file (direct I/O, so every read
//! reaches the daemon) shows the primary's TXID. The client polls it in a tight loop, so the
//! measurement includes one FUSE read round trip (~20–30 µs) of polling granularity.

use anyhow::{Context, Result, bail};
use litefs::fuse::{Mount, MountOptions};
use litefs::http::{Server, ServerOptions};
use litefs::replica::{Replica, ReplicaOptions};
use litefs::store::{DbOptions, PrimaryInfo, Store};
use litefs::types::{NodeId, Pos};
use rusqlite::Connection;
use serde::Serialize;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pause between two reads of the replica's `db-pos` (the polling granularity).
const POLL_INTERVAL: Duration = Duration::from_micros(20);
/// Longest wait for one transaction to become visible before the run fails.
const VISIBLE_WAIT_MAX: Duration = Duration::from_secs(60);

struct Node {
    store: Arc<Store>,
    mount: Option<Mount>,
    mnt: PathBuf,
}

/// A primary and one replica, torn down in `Drop` (replica first).
pub struct Pair {
    transport: &'static str,
    replica_stream: Option<Replica>,
    replica: Node,
    server: Option<Server>,
    primary: Node,
    /// The primary's directory, and the replica's own with `--replica-dir`: removed after the
    /// mounts are gone (fields drop in order), or handed to the caller by [`Pair::close`].
    dirs: Vec<tempfile::TempDir>,
}

fn node(dir: &Path, name: &str, id: u64, posix_locks: bool, threads: usize) -> Result<Node> {
    let options = DbOptions {
        node_id: NodeId(id),
        compress: true,
        strict_verify: false,
        replica: id != 1,
    };
    let data = dir.join(name).join("data");
    let mnt = dir.join(name).join("mnt");
    let store = Arc::new(Store::open(&data, options).with_context(|| format!("open {name}"))?);
    if id == 1 {
        store.become_primary();
    } else {
        store.become_replica();
    }
    let mount_options = MountOptions {
        threads,
        posix_locks,
        ..MountOptions::default()
    };
    let mount = Mount::new(store.clone(), &mnt, mount_options)
        .with_context(|| format!("mount {}", mnt.display()))?;
    Ok(Node {
        store,
        mount: Some(mount),
        mnt,
    })
}

impl Pair {
    /// `replica_base`: where the replica's data goes, if not beside the primary's.
    pub fn start(
        base: &Path,
        replica_base: Option<&Path>,
        posix_locks: bool,
        threads: usize,
        native: bool,
    ) -> Result<Pair> {
        let dir = tempfile::Builder::new()
            .prefix("litefs-perf-replication-")
            .tempdir_in(base)?;
        let replica_dir = match replica_base {
            Some(base) => Some(
                tempfile::Builder::new()
                    .prefix("litefs-perf-replica-")
                    .tempdir_in(base)?,
            ),
            None => None,
        };
        let primary = node(dir.path(), "primary", 1, posix_locks, threads)?;
        let server = Server::start(
            primary.store.clone(),
            ServerOptions {
                addr: "127.0.0.1:0".into(),
                candidate: true,
                hostname: "primary".into(),
            },
        )?;
        let replica_parent = replica_dir.as_ref().map_or(dir.path(), |d| d.path());
        let replica = node(replica_parent, "replica", 2, posix_locks, threads)?;
        let replica_stream = Replica::start(
            replica.store.clone(),
            ReplicaOptions {
                primary: PrimaryInfo {
                    hostname: "primary".into(),
                    advertise_url: format!("http://{}", server.addr()),
                },
                reconnect_delay: Duration::from_millis(100),
                databases: Vec::new(),
                native,
            },
        )?;
        if !replica.store.role().wait_ready(Duration::from_secs(10)) {
            bail!("the replica did not connect within 10 s");
        }
        Ok(Pair {
            transport: if native { "native" } else { "compat" },
            replica_stream: Some(replica_stream),
            replica,
            server: Some(server),
            primary,
            dirs: std::iter::once(dir).chain(replica_dir).collect(),
        })
    }

    /// The primary's native-stream byte counters: (written from user space, sendfile).
    fn native_bytes(&self) -> (u64, u64) {
        self.server
            .as_ref()
            .map_or((0, 0), |s| s.metrics().native_bytes())
    }

    fn primary_db(&self) -> PathBuf {
        self.primary.mnt.join("db")
    }

    /// The primary's position after every commit so far (queued captures published first:
    /// `Db::committed_pos`). Not called between a commit and its visibility on the replica,
    /// where draining here would do the capture thread's work on the measuring thread.
    fn primary_pos(&self) -> Pos {
        self.primary
            .store
            .db("db")
            .map(|d| d.committed_pos())
            .unwrap_or_default()
    }

    /// The replica's `db-pos`, read through its mount; opened once the database exists.
    fn replica_pos_file(&self) -> Result<File> {
        let path = self.replica.mnt.join("db-pos");
        let started = Instant::now();
        loop {
            match File::open(&path) {
                Ok(f) => return Ok(f),
                Err(_) if started.elapsed() < VISIBLE_WAIT_MAX => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
            }
        }
    }
}

impl Pair {
    /// Tears the pair down and hands its directories to `spent`, which the caller removes
    /// after the last measurement: removing a run's ~22,000 LTX files before the next run
    /// would slow that run's file creation several-fold on ext4 without a journal
    /// (ARCHITECTURE §8) — a cost of the harness's cleanup, as for `Target::close`.
    pub fn close(mut self, spent: &mut Vec<tempfile::TempDir>) {
        let dirs = std::mem::take(&mut self.dirs);
        drop(self);
        spent.extend(dirs);
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        drop(self.replica_stream.take());
        if let Some(m) = self.replica.mount.take() {
            let _ = m.unmount();
        }
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        if let Some(m) = self.primary.mount.take() {
            let _ = m.unmount();
        }
    }
}

/// Polls `pos_file` until it shows `txid` (or later); returns when it did.
fn wait_visible(pos_file: &File, txid: u64) -> Result<Instant> {
    let mut buf = [0u8; 34];
    let started = Instant::now();
    loop {
        let n = pos_file.read_at(&mut buf, 0)?;
        if n >= 16 {
            let text = std::str::from_utf8(&buf[..16]).unwrap_or("0");
            if u64::from_str_radix(text, 16).unwrap_or(0) >= txid {
                return Ok(Instant::now());
            }
        }
        if started.elapsed() > VISIBLE_WAIT_MAX {
            bail!("TXID {txid} not visible on the replica after {VISIBLE_WAIT_MAX:?}");
        }
        // Sleep between polls: spinning would take one of the machine's two cores away from
        // the daemon threads being measured.
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[derive(Debug, Serialize)]
pub struct LagResult {
    /// `native` or `compat` (see `litefs::replica::Transport`).
    pub transport: &'static str,
    pub transactions: usize,
    /// The primary's commit rate when it committed back to back (`run_lag_full_rate`);
    /// `None` when each commit waited to be visible before the next.
    pub full_rate_tx_per_sec: Option<f64>,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl LagResult {
    fn new(transport: &'static str, rate: Option<f64>, mut lags_us: Vec<u64>) -> LagResult {
        lags_us.sort_unstable();
        LagResult {
            transport,
            transactions: lags_us.len(),
            full_rate_tx_per_sec: rate,
            p50_us: percentile(&lags_us, 0.50),
            p90_us: percentile(&lags_us, 0.90),
            p99_us: percentile(&lags_us, 0.99),
            max_us: *lags_us.last().unwrap_or(&0),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StreamResult {
    pub transport: &'static str,
    pub bytes: u64,
    /// COMMIT on the primary, including SQLite's checkpoint of the WAL after the commit frame.
    pub commit_ms: f64,
    /// From COMMIT starting to the TXID showing on the replica (capture, LTX file, stream,
    /// verification and apply).
    pub visible_ms: f64,
    /// `bytes` / `visible_ms`.
    pub mb_per_sec: f64,
    /// From the primary publishing the transaction (its LTX file durable) to visible on the
    /// replica: stream, verification and apply, without SQLite's writes on the primary.
    pub ship_ms: f64,
    /// `bytes` / `ship_ms`.
    pub ship_mb_per_sec: f64,
    /// Native transport: bytes the primary wrote from user-space buffers per byte it sent
    /// (the rest went by `sendfile` from the page cache). `None` for compat, where every byte
    /// is copied (file → chunk buffer → HTTP/2 frames → socket).
    pub userspace_bytes_per_sent_byte: Option<f64>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `transactions` single-row commits (WAL, synchronous=NORMAL), one at a time; each is timed
/// from COMMIT returning to its TXID being visible on the replica.
pub fn run_lag(pair: &Pair, transactions: usize) -> Result<LagResult> {
    let conn = Connection::open(pair.primary_db())?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)", [])?;
    let pos_file = pair.replica_pos_file()?;
    let mut txid = pair.primary_pos().txid.0;
    wait_visible(&pos_file, txid)?;
    let mut lags_us = Vec::with_capacity(transactions);
    for _ in 0..transactions {
        conn.execute("INSERT INTO t(v) VALUES (randomblob(100))", [])?;
        let committed = Instant::now();
        // One transaction each (checked after the loop).
        txid += 1;
        let visible = wait_visible(&pos_file, txid)?;
        lags_us.push(visible.duration_since(committed).as_micros() as u64);
    }
    let end = pair.primary_pos().txid.0;
    if end != txid {
        bail!("the primary is at TXID {end} after {transactions} one-row commits, expected {txid}");
    }
    Ok(LagResult::new(pair.transport, None, lags_us))
}

/// Lag with the primary committing as fast as it can (BASELINES: p99 ≤ 5 ms at full primary
/// rate): one thread commits `transactions` single-row transactions back to back and notes
/// when each COMMIT returned; another polls the replica's `db-pos` and notes when each TXID
/// first showed. A TXID seen before its COMMIT returned counts as 0.
pub fn run_lag_full_rate(pair: &Pair, transactions: usize) -> Result<LagResult> {
    let conn = Connection::open(pair.primary_db())?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS full_rate(id INTEGER PRIMARY KEY, v BLOB)",
        [],
    )?;
    let pos_file = pair.replica_pos_file()?;
    let first = pair.primary_pos().txid.0;
    wait_visible(&pos_file, first)?;
    let last = first + transactions as u64;
    let (committed, seen, elapsed) = std::thread::scope(|s| -> Result<_> {
        let poller = s.spawn(|| -> Result<Vec<(u64, Instant)>> {
            // (TXID, first seen): each entry covers the TXIDs after the previous one.
            let mut seen = Vec::new();
            let mut shown = first;
            let mut buf = [0u8; 34];
            let started = Instant::now();
            while shown < last {
                let n = pos_file.read_at(&mut buf, 0)?;
                let text = std::str::from_utf8(&buf[..n.min(16)]).unwrap_or("0");
                let txid = u64::from_str_radix(text, 16).unwrap_or(0);
                if txid > shown {
                    seen.push((txid, Instant::now()));
                    shown = txid;
                }
                if started.elapsed() > VISIBLE_WAIT_MAX {
                    bail!("TXID {last} not visible on the replica after {VISIBLE_WAIT_MAX:?}");
                }
                std::thread::sleep(POLL_INTERVAL);
            }
            Ok(seen)
        });
        let started = Instant::now();
        let mut committed = Vec::with_capacity(transactions);
        for _ in 0..transactions {
            conn.execute("INSERT INTO full_rate(v) VALUES (randomblob(100))", [])?;
            committed.push(Instant::now());
        }
        let elapsed = started.elapsed();
        let seen = poller
            .join()
            .map_err(|_| anyhow::anyhow!("poller panicked"))??;
        Ok((committed, seen, elapsed))
    })?;
    let end = pair.primary_pos().txid.0;
    if end != last {
        bail!("the primary is at TXID {end} after {transactions} commits from {first}");
    }
    let mut lags_us = Vec::with_capacity(transactions);
    let mut covering = seen.iter().peekable();
    for (i, done) in committed.iter().enumerate() {
        let txid = first + 1 + i as u64;
        while covering.peek().is_some_and(|(shown, _)| *shown < txid) {
            covering.next();
        }
        let &(_, visible) = covering.peek().context("a TXID the poller never saw")?;
        lags_us.push(visible.saturating_duration_since(*done).as_micros() as u64);
    }
    let rate = transactions as f64 / elapsed.as_secs_f64();
    // For a timeline of the lag (which commit, when, how late): one line per transaction.
    if let Some(path) = std::env::var_os("LITEFS_PERF_LAG_TIMELINE") {
        let mut text = String::from("commit\tcommitted_us\tlag_us\n");
        let start = committed.first().copied();
        for (i, (done, lag_us)) in committed.iter().zip(&lags_us).enumerate() {
            let at_us = start.map_or(0, |s| done.duration_since(s).as_micros());
            text.push_str(&format!("{i}\t{at_us}\t{lag_us}\n"));
        }
        let path = std::path::PathBuf::from(path).with_extension(pair.transport);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(LagResult::new(pair.transport, Some(rate), lags_us))
}

/// One transaction of `bytes` (1 MiB random blobs; random data does not compress, so the LTX
/// file is as large as the change).
pub fn run_stream(pair: &Pair, bytes: u64) -> Result<StreamResult> {
    const ROW_BYTES: u64 = 1 << 20;
    let conn = Connection::open(pair.primary_db())?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)", [])?;
    let pos_file = pair.replica_pos_file()?;
    wait_visible(&pos_file, pair.primary_pos().txid.0)?;
    let rows = bytes.div_ceil(ROW_BYTES);
    conn.execute("BEGIN", [])?;
    for _ in 0..rows {
        conn.execute("INSERT INTO big(v) VALUES (randomblob(?1))", [ROW_BYTES])?;
    }
    // The replica may apply the transaction before COMMIT returns: SQLite goes on to
    // checkpoint the 100 MB WAL after the commit frame (which is where it is captured), so
    // visibility is watched from another thread, started before COMMIT.
    let before = pair.primary_pos().txid.0;
    let native_before = pair.native_bytes();
    let commit_started = Instant::now();
    // When the primary published the position (its LTX file is durable): the start of the
    // shipping, as opposed to SQLite writing 100 MB of WAL through the primary's mount.
    let mut published = pair.primary.store.subscribe();
    let (visible, published) = std::thread::scope(|s| -> Result<(Instant, Instant)> {
        let watcher = s.spawn(|| wait_visible(&pos_file, before + 1));
        let publish_watcher = s.spawn(move || -> Result<Instant> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()?;
            rt.block_on(async {
                tokio::time::timeout(VISIBLE_WAIT_MAX, published.recv())
                    .await
                    .map_err(|_| anyhow::anyhow!("no commit published"))?
                    .map_err(|e| anyhow::anyhow!("change feed: {e}"))
            })?;
            Ok(Instant::now())
        });
        conn.execute("COMMIT", [])?;
        let visible = watcher
            .join()
            .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
        let published = publish_watcher
            .join()
            .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
        Ok((visible, published))
    })?;
    let committed = Instant::now();
    let commit_s = committed.duration_since(commit_started).as_secs_f64();
    let visible_s = visible.duration_since(commit_started).as_secs_f64();
    let ship_s = visible.duration_since(published).as_secs_f64();
    let total = rows * ROW_BYTES;
    let native_after = pair.native_bytes();
    let written = native_after.0 - native_before.0;
    let sent = written + native_after.1 - native_before.1;
    Ok(StreamResult {
        transport: pair.transport,
        userspace_bytes_per_sent_byte: (pair.transport == "native" && sent > 0)
            .then(|| written as f64 / sent as f64),
        bytes: total,
        commit_ms: commit_s * 1e3,
        visible_ms: visible_s * 1e3,
        mb_per_sec: total as f64 / 1e6 / visible_s,
        ship_ms: ship_s * 1e3,
        ship_mb_per_sec: total as f64 / 1e6 / ship_s,
    })
}
