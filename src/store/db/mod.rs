//! One database: its backing files, position, page checksums and the capture of each
//! transaction as an LTX file (spec §3.5–§3.7, §3.13, §2.4). The commit paths live in
//! `journal.rs` and `wal.rs`, the LTX writer in `commit.rs`, startup recovery in `recover.rs`.
//!
//! Every durable change follows write → sync → publish: the LTX file is complete and synced
//! under its final name before the position moves and before SQLite hears that the journal
//! was invalidated (the moment SQLite considers the transaction committed).

use crate::ltx::{self, lock_pgno};
use crate::sqlite::{DbHeader, WalCursor, WalHeader};
use crate::store::checksums::PageChecksums;
use crate::store::error::{Error, IoContext, Result};
use crate::store::lock::{
    InternalLockGuard, LockTable, LockTarget, SystemClock, WriteLockMode, acquire_write_lock,
};
use crate::store::shared::Shared;
use crate::types::{NodeId, Pos};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

/// The journal header SQLite zeroes to commit in PERSIST mode (spec §3.6).
pub(super) const JOURNAL_HEADER_SIZE: usize = 28;

/// The backing files of a database, as named in `dbs/<name>/`.
mod apply;
mod checksum_table;
mod commit;
mod deferred;
mod durability;
mod export;
mod halt;
mod import;
mod journal;
mod ltx_log;
mod recover;
mod recover_wal;
mod retention;
mod snapshot;
mod spare;
mod wal;
mod wal_tail;
mod write_behind;

pub use apply::{
    APPLY_LOCK_TIMEOUT_MS, RECEIVE_IN_MEMORY_BYTES_MAX, Receipt, Received, SpilledLtx, VerifiedLtx,
    receives_into_file,
};
pub use export::EXPORT_LOCK_TIMEOUT_MS;
pub use halt::{
    HALT_ACQUIRE_TIMEOUT_MS, HALT_EXPIRY_CHECK_INTERVAL_MS, HALT_LOCK_TTL_MS, HaltLock,
};
pub use import::{IMPORT_LOCK_TIMEOUT_MS, SpooledImage};
pub use retention::retention_victims;
pub use snapshot::SNAPSHOT_LOCK_TIMEOUT_MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Database,
    Journal,
    Wal,
    Shm,
}

impl FileKind {
    pub const ALL: [FileKind; 4] = [
        FileKind::Database,
        FileKind::Journal,
        FileKind::Wal,
        FileKind::Shm,
    ];

    pub fn backing_name(self) -> &'static str {
        match self {
            FileKind::Database => "database",
            FileKind::Journal => "journal",
            FileKind::Wal => "wal",
            FileKind::Shm => "shm",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// How SQLite invalidated the journal, which is how it committed (spec §3.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalMode {
    Delete,
    Truncate,
    Persist,
}

/// The LTX files of a database at one moment ([`Db::ltx_usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LtxUsage {
    pub file_count: u64,
    pub size_bytes: u64,
}

/// Settings shared by every database of a store.
#[derive(Clone, Copy, Debug)]
pub struct DbOptions {
    pub node_id: NodeId,
    pub compress: bool,
    /// Recompute the whole database checksum from disk after every commit (tests run with it).
    pub strict_verify: bool,
    /// This store follows a primary (a static `lease.candidate: false` node). LTX files
    /// received from the primary are applied and recorded without fsync (small ones applied
    /// from memory before they are written), so a transaction is visible without waiting
    /// for the disk; and a database whose recovery
    /// fails at startup is set aside and fetched again by snapshot instead of stopping the
    /// node. The primary holds every transaction durably; a replica's files are a cache of
    /// them (docs/ARCHITECTURE.md §4.1). The node's own commits are always synced.
    pub replica: bool,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// 0 until a database header or journal header told us.
    pub(super) page_size: u32,
    pub(super) page_count: u32,
    pub(super) wal_mode: bool,
    pub(super) pos: Pos,
    pub(super) pos_timestamp_ms: i64,
    pub(super) checksums: PageChecksums,
    /// Pages written since the last commit (rollback-journal modes).
    pub(super) dirty: BTreeSet<u32>,
    pub(super) files: [Option<Arc<File>>; 4],
    /// The current WAL header, once SQLite wrote one (WAL mode).
    pub(super) wal_header: Option<WalHeader>,
    /// Just past the last captured WAL commit: where the next capture scans from.
    pub(super) wal_cursor: Option<WalCursor>,
    /// Page → offset of its newest committed frame in the WAL.
    pub(super) wal_frames: BTreeMap<u32, u64>,
    /// The WAL bytes written after the cursor, when known (`wal_tail.rs`).
    pub(super) wal_tail: wal_tail::WalTail,
    /// A capture's scan that found the transaction after the cursor unfinished (SQLite still
    /// writing, or rewriting stale checksums): the frames it checked, so the next capture goes
    /// on from there. Dropped by any WAL write before where it ended (`wal.rs`).
    pub(super) wal_partial: Option<crate::sqlite::PartialTxn>,
    /// The last frame header SQLite wrote on its own (24 bytes, at this offset): the page
    /// write after it completes the frame, which `wal.rs::scan_ahead` then checks.
    pub(super) wal_frame_header: Option<(u64, [u8; 24])>,
    /// LTX files of WAL commits written but not yet synced (`durability.rs`).
    pub(super) unsynced: durability::Unsynced,
    /// Moves whenever `unsynced` is reset by a sync under the lock or a presync takes files
    /// off it (`Db::presync`), so a presync that counted before never subtracts twice.
    pub(super) unsynced_epoch: u64,
    /// The write buffer of `write_ltx`, kept between commits (at most 256 KiB).
    pub(super) ltx_write_buf: Vec<u8>,
    /// The LTX log (`ltx_log.rs`), once a commit used it, with its length (zeros written).
    pub(super) ltx_log: Option<(File, u64)>,
    /// Where the LTX log's current entries end.
    pub(super) ltx_log_end_bytes: u64,
    /// Growing the LTX log failed (the disk is full): it is not grown again in this process.
    pub(super) ltx_log_unusable: bool,
    /// An entry on its way to the LTX log, kept between commits.
    pub(super) ltx_log_buf: Vec<u8>,
    /// Committed WAL transactions whose LTX files the capture thread writes (`deferred.rs`).
    deferred: std::collections::VecDeque<deferred::DeferredTxn>,
    /// The journal transaction's LTX file, written at SQLite's database fsync and published
    /// at the journal's invalidation (`journal.rs`).
    early_commit: Option<journal::EarlyCommit>,
    /// The thread that wrote the last database page (0 if unknown, [`INTERNAL_CALLER`] for
    /// the daemon's own calls): only its fsync is SQLite's commit (`journal.rs`).
    database_writer: u32,
}

pub struct Db {
    pub(super) name: String,
    /// Fatal-error and invalidation hooks, writability and the change feed of the store.
    pub(super) shared: Arc<Shared>,
    pub(super) dir: PathBuf,
    pub(super) ltx_dir: PathBuf,
    /// `ltx/`, open for the life of the database: `syncfs` on it makes deferred LTX files
    /// durable and reports every write-back error since it was opened.
    ltx_dir_file: File,
    /// An LTX file's fsync also makes its name durable here (`durability.rs`), so a synced
    /// commit needs no fsync of `ltx/`.
    ltx_names_synced_with_files: bool,
    /// A completed overwrite of the LTX log is made durable by any later fsync on its file
    /// system (`durability.rs`), so a journal commit's entry can ride SQLite's database fsync.
    flush_covers_completed_overwrites: bool,
    /// Where the WAL's uncommitted frames start (the capture cursor), as of the last WAL
    /// write; 0 without a WAL. Read without the state lock by `fuse/prime.rs`.
    wal_cursor_bytes: AtomicU64,
    /// How far the mount has (asked for) the WAL read ahead into the kernel's cache; 0 after
    /// a WAL restart. Kept by `fuse/prime.rs`, here so a WAL write finds it without a lookup.
    wal_primed_bytes: AtomicU64,
    /// `dbs/<name>/spare/`: inodes of retired LTX files, reused for new ones (`spare.rs`).
    spare_dir: PathBuf,
    spares: Mutex<spare::SparePool>,
    pub(super) options: DbOptions,
    state: Mutex<State>,
    /// SQLite's fcntl locks on this database's files, as the FUSE layer reports them (spec
    /// §3.9). Separate from `state`: lock requests never wait for a commit in progress,
    /// except the WAL_WRITE unlock, which captures first ([`Db::capture_wal`]).
    locks: LockTable,
    /// Set while an apply rewrites `-shm` and until the kernel's copy is invalidated: FUSE
    /// writes to `-shm` are then acknowledged and dropped (spec §3.10).
    shm_discard: AtomicBool,
    /// Local commits (journal, WAL, drop) since the database was opened.
    commit_count: AtomicU64,
    /// FUSE writes accepted per backing file ([`FileKind::index`]) since the database was
    /// opened (`litefs_db_{database,journal,wal,shm}_write_count`).
    write_counts: [AtomicU64; 4],
    /// LTX files removed by retention since the database was opened.
    ltx_reap_count: AtomicU64,
    /// How far behind the writer's clock the last applied LTX file was when applied; 0 after
    /// a local commit (spec §8.4 `litefs_db_lag_seconds`).
    lag_ms: AtomicI64,
    /// `State::pos` as of its last change, readable without the state mutex: a stream
    /// catching a replica up must not wait behind a commit's `syncfs` (up to ~20 ms here) to
    /// learn how far to send. Set only with the state mutex held ([`Db::set_pos`]).
    published_pos: Mutex<Pos>,
    /// Recovery finished: only then does a close save the page checksums (a `Db` whose
    /// recovery failed is dropped half-recovered).
    recovered: AtomicBool,
    /// Recovery took the page checksums saved at the last clean close (`checksum_table.rs`).
    checksum_table_used: AtomicBool,
    /// The LTX file this process wrote last, with its length and what its encoder computed
    /// (see [`Db::written_summary`]).
    last_written: Mutex<Option<(u64, ltx::Summary)>>,
    /// This database as the store shares it, for waking the capture thread (`deferred.rs`).
    this: OnceLock<Weak<Db>>,
    /// The capture thread has taken a transaction off `State::deferred` and not yet
    /// published it. Changed only with the state mutex held.
    deferred_in_flight: AtomicBool,
    /// The capture thread's finished transaction, for whoever publishes it first.
    deferred_slot: Mutex<Option<Result<commit::Encoded>>>,
    deferred_done: Condvar,
    /// WAL commits whose LTX files were written after their writes were answered.
    deferred_count: AtomicU64,
    /// Journal commits whose LTX files were written at SQLite's database fsync (`journal.rs`).
    early_commit_count: AtomicU64,
    /// Drops of this database since the process started: the file handle of every FUSE open
    /// (`Db::incarnation`), so that a descriptor opened before a drop cannot write into the
    /// database created after it.
    drops: AtomicU64,
    /// The HALT lock a replica holds here, with the internal write lock it keeps (`halt.rs`).
    halt: Mutex<halt::HaltSlot>,
}

impl Drop for Db {
    /// A clean close leaves every LTX file durable (`durability.rs`) and saves the page
    /// checksums for the next start (`checksum_table.rs`).
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut state = std::mem::take(state);
        // A journal transaction written at its database fsync can no longer reach the
        // invalidation, and SQLite's COMMIT fails (the mount is going): it must not come back
        // at the next start. Even after a fatal error: this only removes what was never
        // published.
        self.discard_early_commit(&mut state);
        if self.shared.fatal.is_raised() {
            return;
        }
        // Nothing is in flight: the capture thread holds the database while it works on it.
        self.drain_deferred(&mut state);
        if self.shared.fatal.is_raised() {
            return;
        }
        if let Err(e) = self.sync_unsynced(&mut state) {
            eprintln!("litefs: database {:?}: at close: {e}", self.name);
            return;
        }
        // Every file is durable: the next start need not read the LTX log.
        let _ = self.retire_ltx_log_round(&state, false);
        if self.recovered.load(Ordering::Relaxed) {
            self.save_checksum_table(&mut state);
        }
    }
}

/// The caller of [`Db::write`] and [`Db::fsync`]: the daemon itself (tools, tests), never a
/// FUSE request's thread id (Linux's are below 2^22).
pub const INTERNAL_CALLER: u32 = u32::MAX;

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// At most this much a WAL may grow by one size change through the mount (the read-ahead's
/// step and margin fit well inside): a hole, but every capture maps the WAL to its end.
pub const WAL_GROWTH_MAX_BYTES: u64 = 8 << 20;

/// Reads into `buf` at `offset` until it is full or the file ends; the bytes read.
pub(super) fn read_full_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// fsyncs a directory so a rename or create inside it is durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .io_context("fsync directory", dir)
}

impl Db {
    /// Opens (or creates) `dbs/<name>` and recovers it (spec §2.4): a hot journal is rolled
    /// back, page checksums are computed, and the newest LTX file is re-applied and must
    /// match the database's checksum.
    pub(crate) fn open(
        dbs_dir: &Path,
        name: &str,
        options: DbOptions,
        shared: Arc<Shared>,
    ) -> Result<Db> {
        let dir = dbs_dir.join(name);
        let ltx_dir = dir.join("ltx");
        fs::create_dir_all(&ltx_dir).io_context("create directory", &ltx_dir)?;
        let ltx_dir_file = File::open(&ltx_dir).io_context("open", &ltx_dir)?;
        let ltx_names_synced_with_files = durability::names_durable_with_file_fsync(&ltx_dir_file);
        // Of `dir`, which holds the LTX log and the database file.
        let flush_covers_completed_overwrites =
            File::open(&dir).is_ok_and(|d| durability::flush_covers_completed_overwrites(&d));
        let spare_dir = dir.join("spare");
        let spares = Mutex::new(spare::SparePool::open(&spare_dir)?);
        let db = Db {
            name: name.to_string(),
            dir,
            ltx_dir,
            ltx_dir_file,
            ltx_names_synced_with_files,
            flush_covers_completed_overwrites,
            wal_cursor_bytes: AtomicU64::new(0),
            wal_primed_bytes: AtomicU64::new(0),
            spare_dir,
            spares,
            options,
            shared,
            state: Mutex::new(State::default()),
            locks: LockTable::default(),
            shm_discard: AtomicBool::new(false),
            commit_count: AtomicU64::new(0),
            write_counts: Default::default(),
            ltx_reap_count: AtomicU64::new(0),
            lag_ms: AtomicI64::new(0),
            checksum_table_used: AtomicBool::new(false),
            recovered: AtomicBool::new(false),
            published_pos: Mutex::new(Pos::default()),
            last_written: Mutex::new(None),
            halt: Mutex::new(halt::HaltSlot::default()),
            this: OnceLock::new(),
            deferred_in_flight: AtomicBool::new(false),
            deferred_slot: Mutex::new(None),
            deferred_done: Condvar::new(),
            deferred_count: AtomicU64::new(0),
            early_commit_count: AtomicU64::new(0),
            drops: AtomicU64::new(0),
        };
        db.recover()?;
        db.recovered.store(true, Ordering::Relaxed);
        Ok(db)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this start took the page checksums saved at the last clean close instead of
    /// reading the whole database file.
    pub fn started_from_saved_checksums(&self) -> bool {
        self.checksum_table_used.load(Ordering::Relaxed)
    }

    /// Which types the internal locks take: the database's journal mode now.
    pub(super) fn write_lock_mode(&self) -> WriteLockMode {
        if self.lock().wal_mode {
            WriteLockMode::Wal
        } else {
            WriteLockMode::Rollback
        }
    }

    /// Where LiteFS's own locks are taken: the kernel's record locks through the mount when
    /// it leaves SQLite's locks to the kernel, else the lock table (which then sees them).
    pub(super) fn lock_target(&self) -> Box<dyn LockTarget> {
        match self.shared.kernel_locks.get() {
            Some(kernel) => kernel.target(&self.name),
            None => self.locks.target(),
        }
    }

    /// The internal write lock (spec §3.9) in the current mode, waiting until `deadline`.
    pub(super) fn acquire_write_lock(
        &self,
        deadline: std::time::Instant,
    ) -> Result<InternalLockGuard> {
        acquire_write_lock(
            self.lock_target(),
            || self.write_lock_mode(),
            deadline,
            &SystemClock,
        )
        .map_err(|source| Error::Lock {
            db: self.name.clone(),
            source,
        })
    }

    /// The lock table of this database (decisions live in `store::lock`).
    pub fn locks(&self) -> &LockTable {
        &self.locks
    }

    /// Captures every WAL transaction committed but not yet recorded as an LTX file. Called
    /// before SQLite's WAL_WRITE lock is released (spec §3.7): a safety net, since commits are
    /// normally captured at the write that completes their commit frame (see `wal.rs`).
    pub fn capture_wal(&self) -> Result<()> {
        let mut state = self.lock();
        // Fails closed after a fatal error: the caller then keeps WAL_WRITE held.
        self.refuse_after_fatal()?;
        self.capture_or_die(&mut state)
    }

    /// Shares the database, so that it can hand itself to the capture thread.
    pub(crate) fn into_shared(self) -> Arc<Db> {
        let db = Arc::new(self);
        let _ = db.this.set(Arc::downgrade(&db));
        db
    }

    /// The state, with every deferred capture published (`deferred.rs`): what the caller
    /// reads or changes follows every transaction SQLite committed.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock_undrained();
        self.drain_deferred(&mut state);
        state
    }

    /// Which life of the database this is (drops since the process started): what a FUSE
    /// open answers as its file handle, checked by [`Db::check_incarnation`].
    fn incarnation(&self) -> u64 {
        self.drops.load(Ordering::Acquire)
    }

    /// Refuses a change through a file opened in an earlier life of the database. The kernel
    /// reuses the inode (its number is fixed per database and file), so a process that had
    /// the database open when it was dropped would otherwise write its pages into the new
    /// one — and they would be captured and replicated. `-shm` is exempt: the kernel writes
    /// its mapped pages back through any descriptor open on it.
    fn check_incarnation(&self, kind: FileKind, opened: u64) -> Result<()> {
        if kind == FileKind::Shm || opened == self.incarnation() {
            return Ok(());
        }
        Err(Error::Dropped {
            db: self.name.clone(),
            file: kind.backing_name(),
        })
    }

    /// The state as it is, deferred captures possibly queued: only for WAL frame writes,
    /// `-shm` writes, reads and fsyncs, which need no published transaction, and for the
    /// capture thread itself.
    pub(super) fn lock_undrained(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves state that was only ever changed after its
        // file changes were durable; continuing is as safe as the restart recovery would be.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn remember_written(&self, len_bytes: u64, summary: ltx::Summary) {
        *self.last_written.lock().unwrap_or_else(|p| p.into_inner()) = Some((len_bytes, summary));
    }

    /// The summary of the single-TXID LTX file for `txid`, if it is the one this process wrote
    /// last and still has the length it was written with: the stream then need not read the
    /// file back to verify it (the encoder computed every checksum, and the replica verifies
    /// every byte it receives). Older files are verified before they are sent, as LiteFS does.
    pub fn written_summary(
        &self,
        txid: crate::types::TxId,
        len_bytes: u64,
    ) -> Option<ltx::Summary> {
        let last = self.last_written.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some((len, summary))
                if *len == len_bytes
                    && summary.header.min_txid == txid
                    && summary.header.max_txid == txid =>
            {
                Some(*summary)
            }
            _ => None,
        }
    }

    pub fn path(&self, kind: FileKind) -> PathBuf {
        self.dir.join(kind.backing_name())
    }

    /// The published position, read without the state lock: it can trail the transactions
    /// SQLite committed by those still queued for capture (`deferred.rs`). For what a client
    /// that just committed must see, [`Db::committed_pos`].
    pub fn pos(&self) -> Pos {
        *self.published_pos.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The position after every transaction SQLite committed (queued captures are published
    /// first): what `-pos` shows.
    pub fn committed_pos(&self) -> Pos {
        self.lock().pos
    }

    /// Moves the position (the caller holds the state mutex: `state` is its guard's).
    pub(super) fn set_pos(&self, state: &mut State, pos: Pos, timestamp_ms: i64) {
        state.pos = pos;
        state.pos_timestamp_ms = timestamp_ms;
        *self.published_pos.lock().unwrap_or_else(|p| p.into_inner()) = pos;
    }

    /// Milliseconds since the epoch of the last committed transaction.
    pub fn pos_timestamp_ms(&self) -> i64 {
        self.lock().pos_timestamp_ms
    }

    pub fn page_count(&self) -> u32 {
        self.lock().page_count
    }

    pub fn page_size(&self) -> u32 {
        self.lock().page_size
    }

    pub fn ltx_dir(&self) -> &Path {
        &self.ltx_dir
    }

    /// Local commits (journal, WAL, drop) since the database was opened
    /// (`litefs_db_commit_count`).
    pub fn commit_count(&self) -> u64 {
        self.commit_count.load(Ordering::Relaxed)
    }

    /// WAL commits since the database was opened whose LTX files were written after
    /// SQLite's write was answered (`deferred.rs`).
    pub fn deferred_capture_count(&self) -> u64 {
        self.deferred_count.load(Ordering::Relaxed)
    }

    /// Journal commits since the database was opened whose LTX files were written, and their
    /// LTX-log entries made durable, by SQLite's fsync of the database (`journal.rs`).
    pub fn early_commit_count(&self) -> u64 {
        self.early_commit_count.load(Ordering::Relaxed)
    }

    /// Whether this database's file system lets a journal commit's LTX-log entry ride
    /// SQLite's database fsync (ext4, XFS: `durability::flush_covers_completed_overwrites`).
    pub fn commits_at_database_fsync(&self) -> bool {
        self.flush_covers_completed_overwrites
    }

    /// FUSE writes to the backing file `kind` accepted since the database was opened.
    pub fn write_count(&self, kind: FileKind) -> u64 {
        self.write_counts[kind.index()].load(Ordering::Relaxed)
    }

    /// LTX files of WAL commits written and not yet synced (`durability.rs`).
    pub fn unsynced_ltx_files(&self) -> u32 {
        self.lock().unsynced.files
    }

    /// LTX files removed by retention since the database was opened
    /// (`litefs_db_ltx_reap_count`).
    pub fn ltx_reap_count(&self) -> u64 {
        self.ltx_reap_count.load(Ordering::Relaxed)
    }

    /// Milliseconds between the writer's timestamp of the last applied LTX file and its apply
    /// here; 0 after a local commit (`litefs_db_lag_seconds`).
    pub fn lag_ms(&self) -> i64 {
        self.lag_ms.load(Ordering::Relaxed)
    }

    /// How many LTX files `ltx/` holds and their total size in bytes, counted now (temp and
    /// spool files excluded).
    pub fn ltx_usage(&self) -> Result<LtxUsage> {
        let dir = &self.ltx_dir;
        let mut usage = LtxUsage::default();
        for entry in fs::read_dir(dir).io_context("read directory", dir)? {
            let entry = entry.io_context("read directory", dir)?;
            if ltx::parse_filename(&entry.file_name().to_string_lossy()).is_none() {
                continue;
            }
            match entry.metadata() {
                Ok(meta) => {
                    usage.file_count += 1;
                    usage.size_bytes += meta.len();
                }
                // Removed by retention or a snapshot since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).io_context("stat", entry.path()),
            }
        }
        Ok(usage)
    }

    /// The text of `<db>-pos`: `"%016x/%016x\n"`, 34 bytes.
    pub fn pos_text(&self) -> String {
        // After every committed transaction: a client reading it after its commit must see it.
        let pos = self.committed_pos();
        format!("{}/{}\n", pos.txid, pos.post_apply_checksum)
    }

    pub fn exists(&self, kind: FileKind) -> bool {
        self.path(kind).exists()
    }

    pub(super) fn file(&self, state: &mut State, kind: FileKind) -> Result<Arc<File>> {
        if let Some(f) = &state.files[kind.index()] {
            return Ok(f.clone());
        }
        let path = self.path(kind);
        let f = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .io_context("open", &path)?,
        );
        state.files[kind.index()] = Some(f.clone());
        Ok(f)
    }

    /// After a fatal error nothing may change (`Shared::fatal`): a transaction queued for
    /// capture was dropped, and anything published or written after it would leave a hole in
    /// the LTX files that no restart could fill.
    pub(super) fn refuse_after_fatal(&self) -> Result<()> {
        if self.shared.fatal.is_raised() {
            return Err(Error::Stopping(self.name.clone()));
        }
        Ok(())
    }

    /// Spec §3.5: only a writable node (the primary) changes a database. SQLite must see
    /// `EACCES` for the journal and the WAL (it reports SQLITE_READONLY for a journal it may
    /// not create) and `EIO` for the database file itself, as with LiteFS.
    fn check_writable(&self, kind: FileKind) -> Result<()> {
        if self.shared.writable.load(Ordering::Acquire) {
            return Ok(());
        }
        match kind {
            FileKind::Database => Err(self.invalid_write("read only replica".into())),
            _ => Err(Error::ReadOnly),
        }
    }

    /// Opens the database file for recovery, creating it if missing (a WAL-only or
    /// LTX-only database); returns it with its path for error messages.
    pub(super) fn open_database_rw(&self) -> Result<(File, PathBuf)> {
        let path = self.path(FileKind::Database);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .io_context("open", &path)?;
        Ok((file, path))
    }

    /// Creates a backing file that must not exist yet (O_CREAT|O_EXCL, as LiteFS).
    /// Returns the database's incarnation (read under the lock), the new descriptor's handle.
    pub fn create(&self, kind: FileKind) -> Result<u64> {
        self.refuse_after_fatal()?;
        if kind == FileKind::Journal {
            self.check_writable(kind)?;
        }
        if kind == FileKind::Wal {
            self.refuse_wal_writer_on_replica()?;
        }
        let mut state = self.lock();
        let path = self.path(kind);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .io_context("create", &path)?;
        state.files[kind.index()] = Some(Arc::new(f));
        Ok(self.incarnation())
    }

    /// Opens a backing file for a FUSE open (`write`: the open asks for write access); fails
    /// with not-found if it does not exist. Returns the database's incarnation (read under
    /// the lock), the descriptor's handle.
    pub fn open_file(&self, kind: FileKind, write: bool) -> Result<u64> {
        if kind == FileKind::Wal && write {
            self.refuse_wal_writer_on_replica()?;
        }
        let mut state = self.lock();
        self.file(&mut state, kind)?;
        Ok(self.incarnation())
    }

    /// On a replica, SQLite may open the WAL only for reading. Refusing a read-write open
    /// (EACCES) makes SQLite retry read-only (`unixOpen`), mark the WAL read-only and answer
    /// a write transaction with SQLITE_READONLY — "attempt to write a readonly database",
    /// as in rollback modes — where LiteFS gives "disk I/O error" at the first WAL write.
    /// The retry needs the file to exist (a refused create is retried only then), so an
    /// empty one is made first; replicas never write it (their transactions arrive as LTX
    /// files applied to the database file), and reads need only `-shm`.
    fn refuse_wal_writer_on_replica(&self) -> Result<()> {
        if self.shared.writable.load(Ordering::Acquire) {
            return Ok(());
        }
        let path = self.path(FileKind::Wal);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .io_context("create", &path)?;
        Err(Error::ReadOnly)
    }

    pub fn metadata(&self, kind: FileKind) -> Result<fs::Metadata> {
        let path = self.path(kind);
        fs::metadata(&path).io_context("stat", &path)
    }

    pub fn read(&self, kind: FileKind, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let f = {
            let mut state = self.lock_undrained();
            self.file(&mut state, kind)?
        };
        read_full_at(&f, buf, offset).io_context("read", self.path(kind))
    }

    pub fn write(&self, kind: FileKind, offset: u64, data: &[u8]) -> Result<()> {
        self.write_opened(kind, None, INTERNAL_CALLER, offset, data)
    }

    /// [`Db::write`] through a descriptor whose handle is `opened` (a FUSE write) by thread
    /// `caller` (the request's; 0 if unknown): refused if it was opened in an earlier life of
    /// the database ([`Db::check_incarnation`], checked under the state lock, which every
    /// drop holds).
    pub fn write_opened(
        &self,
        kind: FileKind,
        opened: Option<u64>,
        caller: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.refuse_after_fatal()?;
        if kind != FileKind::Shm {
            self.check_writable(kind)?;
        }
        if kind == FileKind::Database || (kind == FileKind::Wal && offset == 0) {
            // Both sync pending LTX files under the lock: most of them first, without it.
            let unlogged_only = kind == FileKind::Database;
            self.presync(durability::PRESYNC_FILES_MIN, unlogged_only)?;
        }
        // A WAL frame (not a new header) and `-shm` need no published transaction: a commit
        // frame's write queues its capture rather than wait for the ones before it.
        let mut state = match kind {
            FileKind::Wal if offset != 0 => self.lock_undrained(),
            FileKind::Shm => self.lock_undrained(),
            _ => self.lock(),
        };
        if let Some(opened) = opened {
            self.check_incarnation(kind, opened)?;
        }
        // Under the lock: a write-back that waited here while an apply rewrote `-shm` would
        // put the old index back.
        if kind == FileKind::Shm && self.shm_discard.load(Ordering::Acquire) {
            return self.discard_shm_write(&mut state, offset + data.len() as u64);
        }
        let result = match kind {
            FileKind::Database => {
                state.database_writer = caller;
                self.write_database(&mut state, offset, data)
            }
            FileKind::Journal => self.write_journal(&mut state, offset, data),
            FileKind::Wal => {
                let result = self.write_wal(&mut state, offset, data);
                let cursor = state.wal_cursor.map_or(0, |c| c.offset_bytes);
                // Relaxed: a hint for read-ahead; it orders no other memory.
                self.wal_cursor_bytes.store(cursor, Ordering::Relaxed);
                result
            }
            FileKind::Shm => self.write_at(&mut state, kind, offset, data),
        };
        if result.is_ok() {
            // Relaxed: a counter for reporting only.
            self.write_counts[kind.index()].fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// A `-shm` write while an apply's index rewrite is not yet visible to the kernel
    /// (spec §3.10): its bytes are dropped, but the file still grows to `end_bytes`. The
    /// kernel takes the file's size from the reply, and SQLite grows `-shm` by writing the
    /// last byte of each page before it maps it (`unixShmMap`): a file left shorter than the
    /// kernel believes makes the first fault on the mapping read past the end, and SQLite
    /// dies of SIGBUS. Growing adds zeros, what those writes carry, and never overwrites the
    /// new index. (A defence: no sequence is known that reaches it with a short file; a
    /// SIGBUS in `cluster::open_connection_sees_each_commit_wal*` twice in CI is unexplained.)
    fn discard_shm_write(&self, state: &mut State, end_bytes: u64) -> Result<()> {
        let path = self.path(FileKind::Shm);
        if state.files[FileKind::Shm.index()].is_none() && !path.exists() {
            // Removed meanwhile (SQLite deletes it at its last close): nothing to grow.
            return Ok(());
        }
        let f = self.file(state, FileKind::Shm)?;
        if f.metadata().io_context("stat", &path)?.len() < end_bytes {
            f.set_len(end_bytes).io_context("extend", &path)?;
        }
        Ok(())
    }

    pub(super) fn write_at(
        &self,
        state: &mut State,
        kind: FileKind,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        let f = self.file(state, kind)?;
        f.write_all_at(data, offset)
            .io_context("write", self.path(kind))
    }

    pub(super) fn invalid_write(&self, message: String) -> Error {
        Error::InvalidWrite {
            db: self.name.clone(),
            message,
        }
    }

    /// Spec §3.5: whole, page-aligned pages; the first write teaches us the page size.
    fn write_database(&self, state: &mut State, offset: u64, data: &[u8]) -> Result<()> {
        if state.page_size == 0 {
            if offset != 0 {
                return Err(self.invalid_write(format!(
                    "first database write must be at offset 0 to learn the page size, got offset {offset}"
                )));
            }
            let header = DbHeader::parse(data)
                .map_err(|e| self.invalid_write(format!("first database write: {e}")))?
                .ok_or_else(|| self.invalid_write("first database write is empty".into()))?;
            state.page_size = header.page_size_bytes;
        }
        let page_size = u64::from(state.page_size);
        if !offset.is_multiple_of(page_size) {
            return Err(self.invalid_write(format!(
                "database writes must be page-aligned: offset {offset}, page size {page_size}"
            )));
        }
        if data.len() as u64 != page_size {
            return Err(self.invalid_write(format!(
                "database write must be exactly one page: {} bytes, page size {page_size}",
                data.len()
            )));
        }
        let pgno = u32::try_from(offset / page_size + 1).map_err(|_| {
            self.invalid_write(format!(
                "database write at offset {offset} is beyond the largest page number"
            ))
        })?;
        // The file must not receive a page whose LTX file could still be lost (a file in the
        // LTX log cannot be). Whatever the write is (a checkpoint, usually): a journal left
        // behind by PERSIST or TRUNCATE mode after a switch to WAL makes `in_transaction`
        // below true for checkpoints too.
        self.sync_unlogged(state)?;
        // The transaction goes on: what its fsync wrote early is not the commit.
        self.discard_early_commit(state);
        // In WAL mode with no journal, database writes are SQLite's checkpoints copying frames
        // we already captured: the logical database (and its checksum) does not change.
        let in_transaction = !state.wal_mode || state.files[FileKind::Journal.index()].is_some();
        self.write_at(state, FileKind::Database, offset, data)?;
        if in_transaction {
            if pgno != lock_pgno(state.page_size) {
                state.checksums.set(pgno, data);
            }
            state.dirty.insert(pgno);
        }
        Ok(())
    }

    fn write_journal(&self, state: &mut State, offset: u64, data: &[u8]) -> Result<()> {
        if offset == 0 && data.len() == JOURNAL_HEADER_SIZE && data.iter().all(|&b| b == 0) {
            // PERSIST mode commits by zeroing the header (spec §3.6).
            self.commit_journal(state, JournalMode::Persist)?;
            return Ok(());
        }
        self.discard_early_commit(state);
        if state.page_size == 0 && offset == 0 && data.len() >= JOURNAL_HEADER_SIZE {
            let page_size = u32::from_be_bytes([data[24], data[25], data[26], data[27]]);
            if ltx::is_valid_page_size(page_size) {
                state.page_size = page_size;
            }
        }
        self.write_at(state, FileKind::Journal, offset, data)
    }

    /// Truncation through FUSE setattr (spec §3.3, §3.6).
    pub fn truncate(&self, kind: FileKind, size: u64) -> Result<()> {
        self.truncate_opened(kind, None, size)
    }

    /// [`Db::truncate`] through a descriptor whose handle is `opened` (`ftruncate`; a
    /// `truncate(2)` by name has none), checked as for [`Db::write_opened`].
    pub fn truncate_opened(&self, kind: FileKind, opened: Option<u64>, size: u64) -> Result<()> {
        self.refuse_after_fatal()?;
        if kind == FileKind::Journal || kind == FileKind::Database {
            self.check_writable(kind)?;
        }
        if kind == FileKind::Database || (kind == FileKind::Wal && size == 0) {
            let unlogged_only = kind == FileKind::Database;
            self.presync(durability::PRESYNC_FILES_MIN, unlogged_only)?;
        }
        let mut state = self.lock();
        if let Some(opened) = opened {
            self.check_incarnation(kind, opened)?;
        }
        match kind {
            FileKind::Journal if size == 0 => {
                self.commit_journal(&mut state, JournalMode::Truncate)
            }
            FileKind::Journal => Err(self.invalid_write(format!(
                "journal can only be truncated to 0 bytes, not {size}"
            ))),
            FileKind::Wal if size != 0 => {
                self.check_writable(kind)?;
                if self.grow_wal_file(&mut state, size)? {
                    return Ok(());
                }
                Err(self.invalid_write(format!(
                    "wal can only be truncated to 0 bytes or grown by up to {WAL_GROWTH_MAX_BYTES} bytes, not to {size}"
                )))
            }
            FileKind::Wal => {
                self.reset_wal(&mut state)?;
                let f = self.file(&mut state, kind)?;
                f.set_len(0).io_context("truncate", self.path(kind))
            }
            FileKind::Database => {
                let want = u64::from(state.page_count) * u64::from(state.page_size);
                if size != want {
                    return Err(self.invalid_write(format!(
                        "truncation size ({} pages) does not match database header size ({} pages)",
                        size / u64::from(state.page_size.max(1)),
                        state.page_count
                    )));
                }
                // A checkpoint's truncation: as for its writes (`write_database`).
                self.sync_unlogged(&mut state)?;
                self.discard_early_commit(&mut state);
                let f = self.file(&mut state, kind)?;
                f.set_len(size).io_context("truncate", self.path(kind))
            }
            FileKind::Shm => {
                let f = self.file(&mut state, kind)?;
                f.set_len(size).io_context("truncate", self.path(kind))
            }
        }
    }

    /// Unlink through FUSE: the journal commits (DELETE mode), WAL and SHM are deleted.
    pub fn unlink(&self, kind: FileKind) -> Result<()> {
        self.refuse_after_fatal()?;
        if kind == FileKind::Wal {
            self.presync(durability::PRESYNC_FILES_MIN, false)?;
        }
        if kind == FileKind::Journal || kind == FileKind::Database {
            self.check_writable(kind)?;
        }
        let mut state = self.lock();
        // The kernel sends UNLINK only for a name it believes exists. A companion file the
        // daemon removed behind it (a dropped database's, `drop_database`; the kernel keeps
        // the name for up to a minute) is gone already: done, or SQLite's cleanup of what it
        // takes for a leftover WAL or journal fails with "disk I/O error". Checked only for a
        // file not open here, so a DELETE-mode commit costs no extra `stat`.
        if kind != FileKind::Database && state.files[kind.index()].is_none() {
            match fs::symlink_metadata(self.path(kind)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                // Anything else is for the unlink itself to report.
                _ => {}
            }
        }
        match kind {
            FileKind::Journal => self.commit_journal(&mut state, JournalMode::Delete),
            FileKind::Wal => {
                self.reset_wal(&mut state)?;
                state.files[kind.index()] = None;
                fs::remove_file(self.path(kind)).io_context("remove", self.path(kind))
            }
            FileKind::Shm => {
                state.files[kind.index()] = None;
                fs::remove_file(self.path(kind)).io_context("remove", self.path(kind))
            }
            FileKind::Database => self.drop_database(&mut state),
        }
    }

    /// The WAL backing file's length, if it exists.
    pub fn wal_len_bytes(&self) -> Option<u64> {
        fs::metadata(self.path(FileKind::Wal)).ok().map(|m| m.len())
    }

    /// How many bytes of uncommitted WAL frames lie before `end` (the end of a WAL write just
    /// served): the size of the transaction SQLite is writing, as far as it got.
    pub fn wal_txn_bytes(&self, end: u64) -> u64 {
        end.saturating_sub(self.wal_cursor_bytes.load(Ordering::Relaxed))
    }

    /// See the field: the mount's read-ahead mark for this WAL.
    pub fn wal_primed_bytes(&self) -> &AtomicU64 {
        &self.wal_primed_bytes
    }

    /// Extends the WAL's backing file to `to` bytes with a hole, for the mount's read-ahead
    /// (`fuse/prime.rs`, which asks with a size-only `ftruncate` through the mount: see
    /// [`Db::truncate`]). Only a WAL of a known generation (header written through the mount,
    /// file not empty) that is shorter, by at most [`WAL_GROWTH_MAX_BYTES`]: false for any
    /// other request, which the caller refuses. Zeros after the last frame change nothing:
    /// SQLite and our scans stop at the first frame that does not verify.
    fn grow_wal_file(&self, state: &mut State, to: u64) -> Result<bool> {
        if state.wal_header.is_none() {
            return Ok(false);
        }
        let wal = self.file(state, FileKind::Wal)?;
        let path = self.path(FileKind::Wal);
        let len_bytes = wal.metadata().io_context("stat", &path)?.len();
        if len_bytes == 0 || to <= len_bytes || to - len_bytes > WAL_GROWTH_MAX_BYTES {
            return Ok(false);
        }
        wal.set_len(to).io_context("extend", &path)?;
        Ok(true)
    }

    /// SQLite's fsync (`datasync`: its fdatasync) of a backing file, passed through as asked.
    pub fn fsync(&self, kind: FileKind, datasync: bool) -> Result<()> {
        self.fsync_from(kind, datasync, INTERNAL_CALLER)
    }

    /// [`Db::fsync`] asked by thread `caller` (a FUSE request's; 0 if unknown).
    pub fn fsync_from(&self, kind: FileKind, datasync: bool, caller: u32) -> Result<()> {
        if kind == FileKind::Database {
            return self.fsync_database(datasync, caller);
        }
        let f = {
            // A WAL commit's LTX file is synced with its batch, not here (`durability.rs`).
            let mut state = self.lock_undrained();
            self.file(&mut state, kind)?
        };
        if datasync {
            f.sync_data().io_context("fdatasync", self.path(kind))
        } else {
            f.sync_all().io_context("fsync", self.path(kind))
        }
    }

    /// Spec §3.13: unlinking the database records a deletion (Commit 0, no pages) as LTX
    /// file TXID+1, then removes the backing files. The database stays known (hidden from
    /// listings) and its TXIDs continue if it is created again.
    fn drop_database(&self, state: &mut State) -> Result<()> {
        if state.pos.txid.0 > 0 && state.page_size != 0 {
            let db_file = self.file(state, FileKind::Database)?;
            self.write_ltx(
                state,
                commit::PageSource::Database(&db_file),
                0,
                &[],
                commit::WalFields::default(),
                durability::Durability::Synced,
            )?;
        }
        for kind in FileKind::ALL {
            state.files[kind.index()] = None;
            let path = self.path(kind);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).io_context("remove", &path),
            }
        }
        sync_dir(&self.dir)?;
        // Under the state lock, where writes and truncations check it: from here on no
        // descriptor of the old files changes anything.
        self.drops.fetch_add(1, Ordering::AcqRel);
        state.page_count = 0;
        state.wal_mode = false;
        state.dirty.clear();
        state.checksums.clear();
        state.wal_header = None;
        state.wal_cursor = None;
        state.wal_frames.clear();
        state.wal_tail.forget();
        state.wal_partial = None;
        Ok(())
    }
}
