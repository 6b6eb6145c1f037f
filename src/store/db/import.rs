//! `POST /import` (spec §4.3 `/import`): replace a database with a raw SQLite image, recorded
//! as the next transaction (one LTX file holding every page) and applied like a replicated one.
//!
//! Order, and why:
//! 1. The image is copied to an unlinked spool file in `ltx/` *before* any lock is taken, so a
//!    slow client holds nothing, and a bad header or a short body is refused having changed
//!    nothing.
//! 2. Under the internal write lock (spec §3.9; no SQLite reader or writer is inside a
//!    transaction), the LTX file is encoded from the spool to `ltx/<t>-<t>.ltx.tmp` and
//!    fsynced. Still nothing has changed: a failure removes the temp file.
//! 3. Then the database's files change (spec steps 2 and 5): a journal is invalidated (its
//!    28-byte header zeroed, as PERSIST mode does), the WAL's committed frames are copied into
//!    the database file (fsynced) and the WAL is truncated to 0, the kernel's cached pages
//!    and sizes of both are dropped, the LTX file is renamed and the directory fsynced, and
//!    the file is applied (pages, `-shm`, kernel caches, position,
//!    change feed). From the first change on, an error is fatal (exit 99, as LiteFS): the
//!    restart's recovery re-applies the LTX file if it got its name, and finds the database
//!    at its old position if not. Copying the WAL first (LiteFS just truncates it) keeps the
//!    database file at the current position through that window, instead of relying on
//!    recovery re-applying older LTX files to restore frames that were never checkpointed.

use super::snapshot::create_spool;
use super::{Db, FileKind, JournalMode, State, now_ms, sync_dir};
use crate::ltx::{self, ImageError};
use crate::sqlite::DbHeader;
use crate::store::error::{Error, IoContext, Result};
use crate::store::shared::Invalidation;
use crate::types::Pos;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Default wait for the internal write lock: SQLite transactions in progress on this node
/// hold it off (in WAL mode, read transactions too).
pub const IMPORT_LOCK_TIMEOUT_MS: u64 = 30_000;

/// An import's image, copied to an unlinked local file (see [`Db::spool_image`]).
pub struct SpooledImage {
    file: File,
    path: PathBuf,
    header: DbHeader,
}

impl Db {
    /// Step 1: copies the image read from `r` into an unlinked file in `dir`, checking its
    /// header first and that it is as long as the header says. `db` names the database in
    /// errors. Needs no database: the store spools before it creates one, so a bad image
    /// leaves no trace.
    pub fn spool_image(db: &str, dir: &Path, r: impl Read) -> Result<SpooledImage> {
        let (file, path) = create_spool(dir, "import")?;
        let mut w = BufWriter::with_capacity(256 * 1024, file);
        let header = ltx::copy_image(r, &mut w).map_err(|source| Error::Import {
            db: db.to_string(),
            source,
        })?;
        let mut file = w
            .into_inner()
            .map_err(|e| e.into_error())
            .io_context("write", &path)?;
        file.seek(SeekFrom::Start(0)).io_context("seek", &path)?;
        Ok(SpooledImage { file, path, header })
    }

    /// Imports the SQLite database image read from `r` (spec §4.3 `/import`) as TXID + 1 and
    /// returns the new position. Waits until `deadline` for the internal write lock. Only a
    /// writable node (the primary) imports: `read only replica` otherwise. An image whose
    /// header is bad, or that is shorter than its header says, is [`Error::Import`] with
    /// [`ImageError::is_invalid_input`] true, and nothing changes.
    pub fn import_from(&self, r: impl Read, deadline: Instant) -> Result<Pos> {
        self.check_writable(FileKind::Wal)?;
        let image = Db::spool_image(&self.name, &self.ltx_dir, r)?;
        self.import_spooled(image, deadline)
    }

    /// Steps 2 and 3 of [`Db::import_from`], for an image spooled already.
    pub fn import_spooled(&self, image: SpooledImage, deadline: Instant) -> Result<Pos> {
        // `Error::ReadOnly` ("read only replica", LiteFS's text) is what the WAL kind yields.
        self.check_writable(FileKind::Wal)?;
        let _guard = self.acquire_write_lock(deadline)?;
        self.check_writable(FileKind::Wal)?;
        // Nothing is uncaptured under the write lock unless a capture failed (and the process
        // is going down); recording it here keeps TXIDs unique either way.
        self.capture_wal()?;
        let header = ltx::image_ltx_header(
            &image.header,
            self.pos(),
            self.options.node_id,
            now_ms(),
            self.options.compress,
        );
        let txid = header.max_txid;
        let name = ltx::format_filename(txid, txid);
        let final_path = self.ltx_dir.join(&name);
        let tmp_path = self.ltx_dir.join(format!("{name}.tmp"));
        let spool = BufReader::with_capacity(256 * 1024, image.file);
        if let Err(e) = self.write_import_ltx(spool, &image.path, &header, &tmp_path) {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        self.replace_with(&tmp_path, &final_path).inspect_err(|e| {
            self.shared.fatal.raise(&format!(
                "import into database {:?} failed after its files changed: {e}; restart to recover",
                self.name
            ));
        })
    }

    fn import_error(&self, source: ImageError) -> Error {
        Error::Import {
            db: self.name.clone(),
            source,
        }
    }

    /// Step 2: the LTX file under its temp name, fsynced. `spool_path` names the (unlinked)
    /// spool in errors.
    fn write_import_ltx(
        &self,
        spool: impl Read,
        spool_path: &Path,
        header: &ltx::Header,
        tmp_path: &Path,
    ) -> Result<()> {
        let file = File::create(tmp_path).io_context("create", tmp_path)?;
        let w = BufWriter::with_capacity(256 * 1024, file);
        let (w, _) = ltx::encode_image(spool, header, w).map_err(|e| match e {
            ImageError::Read(source) => Error::Io {
                op: "read",
                path: spool_path.to_path_buf(),
                source,
            },
            ImageError::Write(source) | ImageError::Ltx(ltx::Error::Io(source)) => Error::Io {
                op: "write",
                path: tmp_path.to_path_buf(),
                source,
            },
            source => self.import_error(source),
        })?;
        let file = w
            .into_inner()
            .map_err(|e| e.into_error())
            .io_context("write", tmp_path)?;
        file.sync_all().io_context("fsync", tmp_path)
    }

    /// Step 3: clear the journal and the WAL, name the LTX file, apply it.
    fn replace_with(&self, tmp_path: &Path, final_path: &Path) -> Result<Pos> {
        let journal_cleared = self.clear_journal(&mut self.lock())?;
        // The journal changed behind the kernel, which caches every file's pages and size
        // (KEEP_CACHE): SQLite must read the zeroed header. Dropped while the internal write
        // lock still keeps every SQLite process out, and with the state lock released
        // (`InvalidateHandler`). The WAL's are dropped the same way.
        if journal_cleared {
            self.shared.invalidate.send(Invalidation::Data {
                db: &self.name,
                kind: FileKind::Journal,
                offset: 0,
                len: 0,
            });
        }
        self.fold_wal_for_apply()?;
        fs::rename(tmp_path, final_path).io_context("rename", final_path)?;
        sync_dir(&self.ltx_dir)?;
        self.apply_received(final_path)
    }

    /// Spec step 2: a journal left behind (a hot one, or PERSIST mode's) must never roll the
    /// imported pages back: its header is zeroed, as PERSIST mode commits. True if there was
    /// one.
    fn clear_journal(&self, state: &mut State) -> Result<bool> {
        // A transaction written at its database fsync whose writer died before the unlink
        // (nothing holds the locks) is rolled back with its journal: its file would take the
        // imported file's TXID.
        self.discard_early_commit(state);
        state.dirty.clear();
        if !self.path(FileKind::Journal).exists() {
            return Ok(false);
        }
        self.invalidate_journal(state, JournalMode::Persist)?;
        Ok(true)
    }

    /// Spec step 2 (truncate the WAL), after copying its committed frames into the database
    /// file so that the file holds the current position until the LTX file is applied. True
    /// if there was a WAL. The caller drops the kernel's cached copy of the WAL after: its
    /// next frames must not land on pages and a size the kernel kept from before the
    /// truncation (seen: a frame's page reached the daemon as zeros, and the commit was never
    /// captured).
    pub(super) fn fold_and_truncate_wal(&self, state: &mut State) -> Result<bool> {
        // The frames go into the database file and then away: their LTX files first.
        self.sync_unsynced(state)?;
        if !state.wal_frames.is_empty() {
            let wal = self.file(state, FileKind::Wal)?;
            let (db_file, db_path) = self.open_database_rw()?;
            let mut page = vec![0u8; state.page_size as usize];
            for (&pgno, &frame) in state.wal_frames.iter() {
                if pgno > state.page_count {
                    continue;
                }
                wal.read_exact_at(&mut page, frame + 24)
                    .io_context("read frame", self.path(FileKind::Wal))?;
                let offset = u64::from(pgno - 1) * u64::from(state.page_size);
                db_file
                    .write_all_at(&page, offset)
                    .io_context("write", &db_path)?;
            }
            // A WAL commit that shrank the database leaves pages past its end (spec §3.8).
            let len_bytes = u64::from(state.page_count) * u64::from(state.page_size);
            let file_len_bytes = db_file.metadata().io_context("stat", &db_path)?.len();
            if len_bytes > 0 && file_len_bytes > len_bytes {
                db_file
                    .set_len(len_bytes)
                    .io_context("truncate", &db_path)?;
            }
            db_file.sync_all().io_context("fsync", &db_path)?;
        }
        let wal_path = self.path(FileKind::Wal);
        if !wal_path.exists() {
            return Ok(false);
        }
        // Captures anything committed and not yet recorded (nothing, under the write lock).
        self.reset_wal(state)?;
        let wal = self.file(state, FileKind::Wal)?;
        wal.set_len(0).io_context("truncate", &wal_path)?;
        wal.sync_all().io_context("fsync", &wal_path)?;
        Ok(true)
    }
}
