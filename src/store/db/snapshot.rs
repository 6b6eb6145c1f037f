//! Snapshots for replicas (spec §1.8 `WriteSnapshotTo`) and access to single-TXID LTX files
//! for streaming (spec §4.4).
//!
//! Consistency: a snapshot must hold the pages of exactly one position. We do as LiteFS does
//! (spec §3.9 "Snapshot/export read locking"): take SQLite-level read locks in the database's
//! lock table, capture (position, page count, WAL frame map, file handles) under the state
//! mutex inside that lock protocol, release the state mutex, then read and encode the pages.
//! - Rollback mode: shared SHARED keeps every writer from reaching EXCLUSIVE, so the database
//!   file cannot change (and no transaction is half-written in it) until we are done.
//! - WAL mode: exclusive WRITE is held only while capturing; then shared READ0 blocks every
//!   backfill (a checkpoint needs READ0 exclusive) and READ1..4 block a WAL restart, so the
//!   captured frame offsets and the database file keep their contents. Writers go on appending.
//!
//! Trade-off: holding the state mutex for the whole encode would also be correct for WAL mode
//! but would block every FUSE read and write of the database (they all take that mutex) for the
//! encode's duration, and it would still not be correct in rollback mode mid-transaction. The
//! lock-table approach blocks only rollback-mode writers and WAL checkpoints, and only for the
//! encode; callers should write to a fast sink (a spool file), never straight to a socket,
//! so a slow replica cannot stretch that window. It relies on the lock table seeing SQLite's
//! locks (`FUSE_POSIX_LOCKS`, the default); without them a concurrent writer is caught by the
//! encoder's final check (the pages' checksum must equal the captured position's) and the
//! snapshot fails rather than ship a torn image.

use super::{Db, FileKind, now_ms};
use crate::ltx::{self, Encoder, Header, lock_pgno};
use crate::store::error::{Error, IoContext, Result};
use crate::store::lock::{ReadLockPurpose, SystemClock, WriteLockMode};
use crate::types::{Checksum, Pos, TxId};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest wait for the snapshot read lock by default: `data.retention`'s default, which is
/// what `http.snapshot-timeout: 0` means (spec §4.4).
pub const SNAPSHOT_LOCK_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// What a snapshot reads, captured at one position.
struct View {
    pos: Pos,
    page_size: u32,
    commit: u32,
    frames: BTreeMap<u32, u64>,
    wal: Option<Arc<File>>,
    db: Option<Arc<File>>,
}

/// Distinguishes concurrent spool files of one process.
static SPOOL_SEQ: AtomicU64 = AtomicU64::new(0);

impl Db {
    /// The path of the single-TXID LTX file `<txid>-<txid>.ltx`.
    pub fn ltx_path(&self, txid: TxId) -> PathBuf {
        self.ltx_dir.join(ltx::format_filename(txid, txid))
    }

    /// Opens the single-TXID LTX file for `txid`; `None` when it does not exist (retention
    /// removed it, or only a snapshot or compacted file covers it).
    pub fn open_ltx(&self, txid: TxId) -> Result<Option<File>> {
        let path = self.ltx_path(txid);
        match File::open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).io_context("open", &path),
        }
    }

    /// Writes an LTX snapshot of the current position to `w` (spec §1.8): MinTXID 1, MaxTXID
    /// the current TXID, every page 1..Commit but the lock page, timestamp now, our node id,
    /// compressed per `data.compress`. Waits at most [`SNAPSHOT_LOCK_TIMEOUT_MS`] for the read
    /// lock. Returns the snapshot's position.
    pub fn write_snapshot_to(&self, w: impl Write) -> Result<Pos> {
        let deadline = Instant::now() + Duration::from_millis(SNAPSHOT_LOCK_TIMEOUT_MS);
        self.write_snapshot_until(w, deadline)
    }

    /// [`Db::write_snapshot_to`] with an explicit deadline for the read lock.
    pub fn write_snapshot_until(&self, w: impl Write, deadline: Instant) -> Result<Pos> {
        let mut view: Option<Result<View>> = None;
        let _guard = self
            .locks()
            .acquire_read_lock(
                ReadLockPurpose::Snapshot,
                || {
                    if self.lock().wal_mode {
                        WriteLockMode::Wal
                    } else {
                        WriteLockMode::Rollback
                    }
                },
                || view = Some(self.capture_view()),
                deadline,
                &SystemClock,
            )
            .map_err(|source| Error::Lock {
                db: self.name.clone(),
                source,
            })?;
        let view = view.ok_or_else(|| self.snapshot_error("read lock taken without capture"))??;
        self.encode_snapshot(&view, w)?;
        Ok(view.pos)
    }

    /// Writes a snapshot into an unlinked spool file in `ltx/` and returns it rewound, with its
    /// position: the read lock is held for the encode only, however slowly the file is sent.
    pub fn write_snapshot_spooled(&self) -> Result<(File, Pos)> {
        let seq = SPOOL_SEQ.fetch_add(1, Ordering::Relaxed);
        // `.tmp` so that startup recovery deletes it if we crash before the unlink below.
        let path = self
            .ltx_dir
            .join(format!("snapshot-{}-{seq}.tmp", std::process::id()));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .io_context("create", &path)?;
        fs::remove_file(&path).io_context("remove", &path)?;
        let mut w = BufWriter::with_capacity(256 * 1024, file);
        let pos = self.write_snapshot_to(&mut w)?;
        let mut file = w
            .into_inner()
            .map_err(|e| e.into_error())
            .io_context("write", &path)?;
        file.seek(SeekFrom::Start(0)).io_context("seek", &path)?;
        Ok((file, pos))
    }

    fn snapshot_error(&self, message: &str) -> Error {
        Error::Corrupt {
            db: self.name.clone(),
            message: format!("snapshot: {message}"),
        }
    }

    /// Runs under the snapshot read lock: copies what the encode needs under the state mutex.
    fn capture_view(&self) -> Result<View> {
        let mut state = self.lock();
        if state.pos.txid.0 == 0 {
            return Err(self.snapshot_error("no transaction to snapshot yet"));
        }
        if !state.wal_mode && !state.dirty.is_empty() {
            // Only reachable when the lock table does not see SQLite's locks.
            return Err(self.snapshot_error("a rollback-journal transaction is in progress"));
        }
        let db = self.file(&mut state, FileKind::Database).ok();
        let wal = if state.wal_frames.is_empty() {
            None
        } else {
            Some(self.file(&mut state, FileKind::Wal)?)
        };
        Ok(View {
            pos: state.pos,
            page_size: state.page_size,
            commit: state.page_count,
            frames: state.wal_frames.clone(),
            wal,
            db,
        })
    }

    fn encode_snapshot(&self, view: &View, w: impl Write) -> Result<()> {
        let header = Header {
            flags: if self.options.compress {
                ltx::FLAG_COMPRESS_LZ4
            } else {
                0
            },
            page_size: view.page_size,
            commit: view.commit,
            min_txid: TxId(1),
            max_txid: view.pos.txid,
            timestamp_ms: now_ms(),
            pre_apply_checksum: Checksum(0),
            node_id: self.options.node_id,
            ..Header::new()
        };
        let ltx_err = |source| Error::Ltx {
            db: self.name.clone(),
            source,
        };
        let mut enc = Encoder::new(w, &header).map_err(ltx_err)?;
        let lock = lock_pgno(view.page_size);
        let mut page = vec![0u8; view.page_size as usize];
        for pgno in 1..=view.commit {
            if pgno == lock {
                continue;
            }
            if let Some(&frame) = view.frames.get(&pgno) {
                let wal = view
                    .wal
                    .as_ref()
                    .ok_or_else(|| self.snapshot_error("WAL frames recorded without a WAL file"))?;
                wal.read_exact_at(&mut page, frame + 24)
                    .io_context("read frame", self.path(FileKind::Wal))?;
            } else {
                let db = view
                    .db
                    .as_ref()
                    .ok_or_else(|| self.snapshot_error(&format!("page {pgno} is in no file")))?;
                let offset = u64::from(pgno - 1) * u64::from(view.page_size);
                db.read_exact_at(&mut page, offset)
                    .io_context("read page", self.path(FileKind::Database))?;
            }
            enc.encode_page(pgno, &page).map_err(ltx_err)?;
        }
        // The encoder checks that the pages add up to the position's checksum (spec §1.8:
        // "snapshot checksum mismatch"), so a torn read fails here instead of shipping.
        let (mut w, _) = enc.finish(view.pos.post_apply_checksum).map_err(ltx_err)?;
        w.flush().io_context("write", self.ltx_dir.clone())?;
        Ok(())
    }
}
