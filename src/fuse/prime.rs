//! Keeps a reused WAL's pages in the kernel's page cache, so that SQLite's frame writes reach
//! the daemon as one request each instead of two.
//!
//! Without a write-back cache the kernel sends a `write` to the daemon page by page until it
//! meets a page that is partly written and not up to date in its cache; there it ends the
//! request (`fuse_fill_write_pages`). A WAL frame is a 24-byte header and a page, so its page
//! write straddles two kernel pages and arrived as two WRITE requests: three round trips per
//! single-frame commit (perf/README.md). Pages the kernel holds up to date do not split.
//!
//! When SQLite restarts its WAL (a new header at offset 0, after a checkpoint), the file keeps
//! its length and the next frames overwrite it from the start. Right then a helper thread
//! reads the whole file **through the mount**: the kernel fills its cache with FUSE READs
//! (kept, as every open answers `KEEP_CACHE`), and the frames that follow land on up-to-date
//! pages. Coherent by construction: a READ is answered from the backing file, which every
//! write reaches before its reply, and the kernel holds a page locked while a write to it that
//! could not leave it up to date is in flight. A WAL that grows past its old end (the first
//! generation) is not helped: there is nothing to read there yet.
//!
//! Never from a FUSE worker: the reads are served by the workers. Requests beyond what the
//! channel holds are dropped — priming is an optimisation.

use crate::store::Store;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// WAL restarts waiting for the helper; more are dropped (a busy mount restarts a WAL every
/// ~1,000 commits per database).
const PRIME_QUEUE_MAX: usize = 16;
/// Read size through the mount.
const PRIME_READ_BYTES: usize = 1 << 20;
/// How often the idle helper looks at its stop flag (the file system keeps a sender, so the
/// channel does not close at unmount).
const PRIME_STOP_POLL: Duration = Duration::from_millis(50);
/// Largest WAL read whole: a WAL larger than this (SQLite's default stays near 4 MiB) is read
/// only this far, so one huge WAL does not fill the page cache.
const PRIME_WAL_BYTES_MAX: u64 = 64 << 20;

/// The file system's end: asks for a database's WAL to be read through the mount.
#[derive(Clone)]
pub struct PrimeRequests {
    tx: SyncSender<String>,
}

impl PrimeRequests {
    /// Called by a worker after serving a WAL header write; never blocks. A full queue (or a
    /// stopped helper) drops the request: that WAL generation's frames are two requests each.
    pub fn wal_restarted(&self, db: &str) {
        let _ = self.tx.try_send(db.to_string());
    }
}

/// The helper thread of one mount.
pub struct Primer {
    requests: PrimeRequests,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    primed: Arc<AtomicU64>,
}

impl Primer {
    pub fn start(mountpoint: &Path, store: Arc<Store>) -> std::io::Result<Primer> {
        let (tx, rx) = sync_channel(PRIME_QUEUE_MAX);
        let primed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mountpoint = mountpoint.to_path_buf();
        let (counter, stopping) = (primed.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("litefs-prime".into())
            .spawn(move || serve(&mountpoint, &store, &rx, &counter, &stopping))?;
        Ok(Primer {
            requests: PrimeRequests { tx },
            thread: Some(thread),
            stop,
            primed,
        })
    }

    /// The sender the file system uses.
    pub fn requests(&self) -> PrimeRequests {
        self.requests.clone()
    }

    /// WALs read through the mount so far.
    pub fn primed(&self) -> u64 {
        self.primed.load(Ordering::Acquire)
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
    rx: &Receiver<String>,
    primed: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; PRIME_READ_BYTES];
    while !stop.load(Ordering::Acquire) {
        let db = match rx.recv_timeout(PRIME_STOP_POLL) {
            Ok(db) => db,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Writes moved on: a database that was dropped meanwhile has nothing to read.
        if store.db(&db).is_none() {
            continue;
        }
        let path: PathBuf = mountpoint.join(format!("{db}-wal"));
        // Errors are not worth reporting: a WAL removed or truncated meanwhile needs no cache.
        if let Ok(file) = std::fs::File::open(&path) {
            let mut limited = file.take(PRIME_WAL_BYTES_MAX);
            while matches!(limited.read(&mut buf), Ok(n) if n > 0) {}
        }
        primed.fetch_add(1, Ordering::Release);
    }
}

impl Drop for Primer {
    fn drop(&mut self) {
        self.stop();
    }
}
