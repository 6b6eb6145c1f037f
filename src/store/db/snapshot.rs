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
use crate::store::lock::{InternalLockGuard, ReadLockPurpose, SystemClock, acquire_read_lock};
use crate::types::{Checksum, Pos, TxId};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, ErrorKind, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest wait for the snapshot read lock by default: `data.retention`'s default, which is
/// what `http.snapshot-timeout: 0` means (spec §4.4).
pub const SNAPSHOT_LOCK_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// What a snapshot or an export reads, captured at one position under the read lock.
pub(super) struct View {
    pub(super) pos: Pos,
    pub(super) page_size: u32,
    pub(super) commit: u32,
    pub(super) frames: BTreeMap<u32, u64>,
    pub(super) wal: Option<Arc<File>>,
    pub(super) db: Option<Arc<File>>,
}

impl View {
    /// Reads the latest committed version of page `pgno` into `page` (one page long): its
    /// newest captured WAL frame, else the database file. The lock page is read as the file
    /// stores it, zeros where the file has nothing (SQLite never writes it).
    pub(super) fn read_page(&self, db: &Db, pgno: u32, page: &mut [u8]) -> Result<()> {
        if let Some(&frame) = self.frames.get(&pgno) {
            let wal = self
                .wal
                .as_ref()
                .ok_or_else(|| db.read_error("WAL frames recorded without a WAL file"))?;
            return wal
                .read_exact_at(page, frame + 24)
                .io_context("read frame", db.path(FileKind::Wal));
        }
        let offset = u64::from(pgno - 1) * u64::from(self.page_size);
        if pgno == lock_pgno(self.page_size) {
            page.fill(0);
            let Some(file) = &self.db else {
                return Ok(());
            };
            let mut done = 0;
            while done < page.len() {
                match file.read_at(&mut page[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).io_context("read page", db.path(FileKind::Database)),
                }
            }
            return Ok(());
        }
        let file = self
            .db
            .as_ref()
            .ok_or_else(|| db.read_error(&format!("page {pgno} is in no file")))?;
        file.read_exact_at(page, offset)
            .io_context("read page", db.path(FileKind::Database))
    }
}

fn purpose_name(purpose: ReadLockPurpose) -> &'static str {
    match purpose {
        ReadLockPurpose::Snapshot => "snapshot",
        ReadLockPurpose::Export => "export",
    }
}

/// Distinguishes concurrent spool files of one process.
static SPOOL_SEQ: AtomicU64 = AtomicU64::new(0);

/// Creates an unlinked read-write file in `dir` named after `what` (the name appears in
/// error messages only): a spool that disappears with its last handle. Named `*.tmp` so that
/// startup recovery deletes it if we crash before the unlink (in an `ltx/` directory).
pub(super) fn create_spool(dir: &Path, what: &str) -> Result<(File, PathBuf)> {
    let seq = SPOOL_SEQ.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{what}-{}-{seq}.tmp", std::process::id()));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .io_context("create", &path)?;
    fs::remove_file(&path).io_context("remove", &path)?;
    Ok((file, path))
}

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
        let (_guard, view) = self.capture_read_view(ReadLockPurpose::Snapshot, deadline)?;
        self.encode_snapshot(&view, w)?;
        Ok(view.pos)
    }

    /// Takes the snapshot/export read lock (spec §3.9) and captures the [`View`] under it;
    /// the view's pages keep their contents while the returned guard lives.
    pub(super) fn capture_read_view(
        &self,
        purpose: ReadLockPurpose,
        deadline: Instant,
    ) -> Result<(InternalLockGuard, View)> {
        let mut view: Option<Result<View>> = None;
        let guard = acquire_read_lock(
            self.lock_target(),
            purpose,
            || self.write_lock_mode(),
            || view = Some(self.capture_view(purpose)),
            deadline,
            &SystemClock,
        )
        .map_err(|source| Error::Lock {
            db: self.name.clone(),
            source,
        })?;
        let view = view.ok_or_else(|| self.read_error("read lock taken without capture"))??;
        Ok((guard, view))
    }

    /// Creates an unlinked read-write file in `ltx/` (see [`create_spool`]).
    pub(super) fn create_spool(&self, what: &str) -> Result<(File, PathBuf)> {
        create_spool(&self.ltx_dir, what)
    }

    /// Writes a snapshot into an unlinked spool file in `ltx/` and returns it rewound, with its
    /// position: the read lock is held for the encode only, however slowly the file is sent.
    pub fn write_snapshot_spooled(&self) -> Result<(File, Pos)> {
        let (file, path) = self.create_spool("snapshot")?;
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
        self.read_error(&format!("snapshot: {message}"))
    }

    pub(super) fn read_error(&self, message: &str) -> Error {
        Error::Corrupt {
            db: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// Runs under the read lock: copies what the reads need under the state mutex. An export
    /// of a database without any transaction is empty; a snapshot of one is an error.
    fn capture_view(&self, purpose: ReadLockPurpose) -> Result<View> {
        let mut state = self.lock();
        if state.pos.txid.0 == 0 && purpose == ReadLockPurpose::Snapshot {
            return Err(self.snapshot_error("no transaction to snapshot yet"));
        }
        if !state.wal_mode && !state.dirty.is_empty() {
            // Unreachable while the read lock holds SHARED: no writer can be mid-transaction.
            return Err(self.read_error(&format!(
                "{}: a rollback-journal transaction is in progress",
                purpose_name(purpose)
            )));
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
        let pages = crate::sqlite::pages_through(view.commit, view.page_size);
        let mut enc = Encoder::with_page_count(w, &header, pages).map_err(ltx_err)?;
        let lock = lock_pgno(view.page_size);
        let mut page = vec![0u8; view.page_size as usize];
        for pgno in 1..=view.commit {
            if pgno == lock {
                continue;
            }
            view.read_page(self, pgno, &mut page)?;
            enc.encode_page(pgno, &page).map_err(ltx_err)?;
        }
        // The encoder checks that the pages add up to the position's checksum (spec §1.8:
        // "snapshot checksum mismatch"), so a torn read fails here instead of shipping.
        let (mut w, _) = enc.finish(view.pos.post_apply_checksum).map_err(ltx_err)?;
        w.flush().io_context("write", self.ltx_dir.clone())?;
        Ok(())
    }
}
