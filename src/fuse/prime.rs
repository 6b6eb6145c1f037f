//! Keeps a WAL's pages in the kernel's page cache, so that SQLite's frame writes reach the
//! daemon as one request each instead of two (docs/ARCHITECTURE.md §7.4.2, §7.4.3).
//!
//! Without a write-back cache the kernel sends a `write` to the daemon page by page until it
//! meets a page that is partly written and not up to date in its cache; there it ends the
//! request (`fuse_fill_write_pages`). A WAL frame is a 24-byte header and a page, so its page
//! write straddles two kernel pages and arrived as two WRITE requests: three round trips per
//! single-frame commit (perf/README.md). Pages the kernel holds up to date do not split.
//!
//! When SQLite restarts its WAL (a new header at offset 0, after a checkpoint), the file keeps
//! its length and the next frames overwrite it from the start. Right then a helper thread
//! has the whole file read **through the mount** (by a `dd` child: `read_through_mount` says
//! why never by a thread of ours): the kernel fills its cache with FUSE READs (kept, as every
//! open answers `KEEP_CACHE`), and the frames that follow land on up-to-date pages. Coherent
//! by construction: a READ is answered from the backing file, which every write reaches
//! before its reply, and the kernel holds a page locked while a write to it that could not
//! leave it up to date is in flight.
//!
//! A WAL that grows past its end (its first generation, a large transaction) has nothing to
//! read there yet, so its frames would still split. When a transaction has written at least
//! [`GROW_TXN_BYTES_MIN`] and SQLite's writes come within [`GROW_MARGIN_BYTES`] of what is
//! primed, the helper extends the file through the mount (a size-only `ftruncate`; the daemon
//! makes a hole, `Db::truncate`, under the database's lock) up to the next
//! [`GROW_STEP_BYTES`] boundary and reads the new range through the mount: the kernel caches
//! zero pages that SQLite's frames then overwrite one request each. SQLite reads a WAL's
//! frames only up to the first that does not verify, so zeros past its last frame are what a
//! reused WAL has too (old frames) and change nothing for it or for our scans. A WAL is only
//! ever grown, by at most `WAL_GROWTH_MAX_BYTES` at a time, and only while it has a known
//! generation; a truncation to 0 still empties it (a grow queued behind one then finds no
//! generation, or grows the next generation's WAL: a hole either way).
//!
//! Never from a FUSE worker: the reads are served by the workers. Requests beyond what the
//! channel holds are dropped — priming is an optimisation.
//!
//! Not on a replica: SQLite may not write its WAL there (`Db::open_file`), so nothing asks.

use crate::store::{Db, Store};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// Requests waiting for the helper (WAL restarts, growth steps); more are dropped (a busy
/// mount restarts a WAL every ~1,000 commits per database; a large transaction asks once per
/// 4 MiB).
const PRIME_QUEUE_MAX: usize = 16;
/// How often the idle helper looks at its stop flag (the file system keeps a sender, so the
/// channel does not close at unmount).
const PRIME_STOP_POLL: Duration = Duration::from_millis(50);
/// Largest WAL read whole: a WAL larger than this (SQLite's default stays near 4 MiB) is read
/// only this far, so one huge WAL does not fill the page cache.
const PRIME_WAL_BYTES_MAX: u64 = 64 << 20;
/// Only a transaction that has written this many bytes of frames has its WAL read ahead:
/// each step's read keeps the workers busy for a moment, which small commits would feel
/// (read-ahead for every growing WAL raised lag p99 from 136–287 to 249–641 µs).
const GROW_TXN_BYTES_MIN: u64 = 1 << 20;
/// A growing WAL is extended and read ahead in steps of this many bytes...
const GROW_STEP_BYTES: u64 = 4 << 20;
/// ...when SQLite writes within this many bytes of the primed end, so the helper (on another
/// core) stays ahead of a transaction writing frames back to back.
const GROW_MARGIN_BYTES: u64 = 1 << 20;

/// What the helper is asked to do.
enum Request {
    /// SQLite rewrote the WAL header: read the file as it is.
    Restarted(String),
    /// SQLite's frames near the primed end: extend the WAL to `to` bytes and read it from
    /// `from` (where SQLite writes now) on.
    Grow { db: String, from: u64, to: u64 },
}

/// The file system's end: asks for a database's WAL to be read through the mount.
#[derive(Clone)]
pub struct PrimeRequests {
    tx: SyncSender<Request>,
}

impl PrimeRequests {
    /// Called by a worker after serving a WAL write of `offset..end` to `db`, in a transaction
    /// that has written `txn_bytes` so far; never blocks, and allocates only to ask. A full
    /// queue (or a stopped helper) drops the request: those frames are two requests each.
    pub fn wal_written(&self, db: &Db, offset: u64, end: u64, txn_bytes: u64) {
        let primed = db.wal_primed_bytes();
        if offset == 0 {
            primed.store(0, Ordering::Relaxed);
            let _ = self.tx.try_send(Request::Restarted(db.name().to_string()));
            return;
        }
        let was = primed.load(Ordering::Relaxed);
        if end.saturating_add(GROW_MARGIN_BYTES) <= was || txn_bytes < GROW_TXN_BYTES_MIN {
            return;
        }
        let to = (end + GROW_MARGIN_BYTES).next_multiple_of(GROW_STEP_BYTES);
        // Another worker moving the mark first has asked for this range (or a restart reset
        // it): either way, nothing to ask here.
        if primed
            .compare_exchange(was, to, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let _ = self.tx.try_send(Request::Grow {
            db: db.name().to_string(),
            from: offset,
            to,
        });
    }
}

/// The helper thread of one mount.
pub struct Primer {
    requests: PrimeRequests,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    counts: Arc<PrimeCounts>,
}

/// What the helper has read through the mount so far.
#[derive(Default)]
struct PrimeCounts {
    /// Whole WALs, after a restart.
    restarted: AtomicU64,
    /// Ranges a growing WAL was extended by.
    grown: AtomicU64,
}

impl Primer {
    pub fn start(mountpoint: &Path, store: Arc<Store>) -> std::io::Result<Primer> {
        let (tx, rx) = sync_channel(PRIME_QUEUE_MAX);
        let counts = Arc::new(PrimeCounts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mountpoint = mountpoint.to_path_buf();
        let (counter, stopping) = (counts.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("litefs-prime".into())
            .spawn(move || serve(&mountpoint, &store, &rx, &counter, &stopping))?;
        Ok(Primer {
            requests: PrimeRequests { tx },
            thread: Some(thread),
            stop,
            counts,
        })
    }

    /// The sender the file system uses.
    pub fn requests(&self) -> PrimeRequests {
        self.requests.clone()
    }

    /// Restarted WALs read through the mount so far.
    pub fn primed(&self) -> u64 {
        self.counts.restarted.load(Ordering::Acquire)
    }

    /// Growing WALs extended and read ahead so far (one per [`GROW_STEP_BYTES`] step).
    pub fn grown(&self) -> u64 {
        self.counts.grown.load(Ordering::Acquire)
    }

    /// Ends the helper once its current read is done (at most [`PRIME_WAL_BYTES_MAX`]); before
    /// unmounting, since a file open on the mount would make the unmount fail.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    mountpoint: &Path,
    store: &Store,
    rx: &Receiver<Request>,
    counts: &PrimeCounts,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Acquire) {
        let request = match rx.recv_timeout(PRIME_STOP_POLL) {
            Ok(request) => request,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let db = match &request {
            Request::Restarted(db) | Request::Grow { db, .. } => db.as_str(),
        };
        // Writes moved on: a database that was dropped meanwhile has nothing to read.
        let Some(handle) = store.db(db) else {
            continue;
        };
        let path = mountpoint.join(format!("{db}-wal"));
        match request {
            Request::Restarted(_) => {
                // Errors are not worth reporting: a WAL removed or truncated meanwhile needs
                // no cache.
                let _ = read_through_mount(&path, 0..PRIME_WAL_BYTES_MAX);
                counts.restarted.fetch_add(1, Ordering::Release);
            }
            Request::Grow { from, to, .. } => {
                // Errors are not worth reporting: priming is an optimisation, and a WAL that
                // cannot be extended is written as before.
                // A reused WAL may be that long already (a restart's read has cached it).
                let long_enough = handle.wal_len_bytes().is_some_and(|len| len >= to);
                if long_enough || extend_through_mount(&path, to) {
                    let _ = read_through_mount(&path, from / 4096 * 4096..to);
                    counts.grown.fetch_add(1, Ordering::Release);
                }
            }
        }
    }
}

/// Extends `path` on the mount to `to` bytes in a child process (for the reason
/// [`read_through_mount`] gives); true if it did. `dd` opens the file without creating it
/// (a WAL deleted meanwhile stays deleted) and sets its size (`ftruncate`: a size-only
/// SETATTR, which the daemon answers for a WAL by growing it with a hole, `Db::truncate`);
/// the kernel takes the new size from the reply. Asked instead with an attribute invalidation
/// and a read, it ignored a size that raced SQLite's writes past the old end and dropped every
/// cached page when it did take one — in a debug build the read-ahead then missed most steps
/// of a large transaction.
fn extend_through_mount(path: &Path, to: u64) -> bool {
    let status = std::process::Command::new("dd")
        .arg("if=/dev/null")
        .arg(format!("of={}", path.display()))
        .args(["bs=1", "conv=nocreat", "status=none"])
        .arg(format!("seek={to}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output();
    succeeded(status, || {
        format!("extending {} to {to} bytes", path.display())
    })
    .is_some()
}

/// The child's output if it ran and succeeded; else says once per process why not (later
/// failures are silent: the read-ahead is an optimisation and the WAL works as before
/// without it; a WAL deleted or a mount going away while `dd` ran fails it too).
fn succeeded(
    output: std::io::Result<std::process::Output>,
    what: impl FnOnce() -> String,
) -> Option<std::process::Output> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let why = match output {
        Ok(output) if output.status.success() => return Some(output),
        Ok(output) => {
            let said = String::from_utf8_lossy(&output.stderr);
            format!(
                "dd {}: {}",
                output.status,
                said.lines().next().unwrap_or("")
            )
        }
        Err(e) => format!("cannot run dd ({e}; is GNU dd on PATH?)"),
    };
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "litefs: WAL read-ahead: {} failed: {why}; those frames cost an extra FUSE request \
             (said once)",
            what()
        );
    }
    None
}

/// Reads `range` of `path` on the mount in a child process (`dd`), returning the bytes read
/// (`None` if it failed or said nothing we understand).
///
/// Never in this process: a thread of ours waiting in the kernel for a FUSE reply would keep
/// the process from ever exiting if it were killed (`kill -9`) after a worker took the
/// request — the kernel waits for a request already in userspace without interruption, the
/// thread keeps the process's `/dev/fuse` descriptor open, and only its release aborts the
/// connection. Found by `crash::kill_nine_during_wal_writes` hanging. A child stuck that way
/// is released when our descriptor closes, and then fails and exits. Spawned without a
/// `pre_exec` hook, so std can use `posix_spawn` rather than copy this process's page tables
/// with `fork`.
fn read_through_mount(path: &Path, range: std::ops::Range<u64>) -> Option<u64> {
    // At the lowest CPU priority: the reads are an optimisation and must not delay commits.
    let mut command = std::process::Command::new("nice");
    command
        .args(["-n", "19", "dd"])
        .arg(format!("if={}", path.display()))
        .args(["of=/dev/null", "bs=1M", "iflag=skip_bytes,count_bytes"])
        .arg(format!("skip={}", range.start))
        .arg(format!("count={}", range.end - range.start))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let output = succeeded(command.output(), || format!("reading {}", path.display()))?;
    // GNU dd's summary ends with "<bytes> bytes (...) copied, ..." (or "1 byte copied").
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr.lines().find_map(|line| {
        let mut words = line.split(' ');
        let bytes = words.next()?.parse().ok()?;
        words.next()?.starts_with("byte").then_some(bytes)
    })
}

impl Drop for Primer {
    fn drop(&mut self) {
        self.stop();
    }
}
