//! Receiving and applying LTX files from the primary (spec §4.4 "Processing an LTX frame",
//! §3.10, §3.11, §3.12).
//!
//! Order: the file is verified while it is copied to a temp name (so a damaged transfer never
//! gets an LTX name — LiteFS renames first and verifies later, and a bad file then stops the
//! next start), fsynced and renamed; only then are its pages written to the database file.
//! A replica store ([`DbOptions::replica`](super::DbOptions)) skips the fsyncs: the order
//! alone keeps a killed process consistent (the page cache survives it), and after a power
//! loss its recovery falls back to a snapshot from the primary.
//! From that point an error is fatal (exit 99): the LTX file is the truth, and the restart's
//! recovery re-applies it. The transfer happens before the internal write lock is taken (LiteFS
//! holds it for the whole transfer, so a large snapshot on a slow link blocks every reader on
//! the replica); the position check, rename and apply run under it, so no SQLite reader is
//! inside a transaction while pages, the `-shm` index and the kernel's caches change.

use super::{Db, FileKind, State, sync_dir};
use crate::ltx::{self, Header};
use crate::sqlite::shm::{SHM_BLOCK_SIZE_BYTES, WalIndexState, rewrite_wal_index};
use crate::store::error::{Error, IoContext, Result};
use crate::store::shared::Invalidation;
use crate::types::Pos;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest wait for the internal write lock before an apply gives up (SQLite readers on the
/// replica hold it off; LiteFS waits as long as the stream lives). The stream reconnects and
/// the primary resends.
pub const APPLY_LOCK_TIMEOUT_MS: u64 = 30_000;

/// Distinguishes temp files of concurrent receives in one process.
static RECEIVE_SEQ: AtomicU64 = AtomicU64::new(0);

/// What became of a received LTX file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Applied; the database is at this position, committed at `timestamp_ms` on the primary.
    Applied { pos: Pos, timestamp_ms: i64 },
    /// A transaction this node wrote itself (forwarded with a HALT lock): verified, skipped.
    Own,
}

/// Copies everything read from `inner` into `sink` (the temp file being received).
struct Tee<R, W> {
    inner: R,
    sink: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Kernel caches to drop once the state lock is released.
#[derive(Default)]
struct Stale {
    /// Byte ranges of the database file, coalesced; `None` with `whole_db` set.
    db_ranges: Vec<(u64, u64)>,
    whole_db: bool,
    shm: bool,
    deleted: bool,
}

impl Db {
    /// Receives one LTX file of the replication stream: `file` yields the whole file (header
    /// included) and must end exactly at its trailer. Checks the file continues our position
    /// (unless it is a snapshot), verifies it while copying it to `ltx/`, and applies it.
    pub fn receive_ltx(&self, file: impl Read) -> Result<Received> {
        let ltx_err = |source| Error::Ltx {
            db: self.name.clone(),
            source,
        };
        let seq = RECEIVE_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self
            .ltx_dir
            .join(format!("receive-{}-{seq}.tmp", std::process::id()));
        let tmp = File::create(&tmp_path).io_context("create", &tmp_path)?;
        let mut tee = Tee {
            inner: file,
            sink: BufWriter::with_capacity(256 * 1024, tmp),
        };
        let result = (|| {
            let mut head = [0u8; ltx::HEADER_SIZE];
            tee.read_exact(&mut head)
                .io_context("receive LTX header", &tmp_path)?;
            let header = Header::from_bytes(&head).map_err(ltx_err)?;
            // Receive and verify the whole file before taking the lock: SQLite readers on
            // this node wait only for the apply, not for the network.
            let rest = io::Cursor::new(head).chain(&mut tee);
            ltx::verify(rest).map_err(ltx_err)?;
            if header.node_id == self.options.node_id {
                return Ok(Received::Own);
            }
            let deadline = Instant::now() + Duration::from_millis(APPLY_LOCK_TIMEOUT_MS);
            let _guard = self.acquire_write_lock(deadline)?;
            if !header.is_snapshot() {
                let pos = self.pos();
                if pos != header.pre_apply_pos() {
                    return Err(self.position_mismatch(pos, &header));
                }
            }
            let tmp = tee
                .sink
                .into_inner()
                .map_err(|e| e.into_error())
                .io_context("write", &tmp_path)?;
            if !self.options.replica {
                tmp.sync_all().io_context("fsync", &tmp_path)?;
            }
            let final_path = self
                .ltx_dir
                .join(ltx::format_filename(header.min_txid, header.max_txid));
            fs::rename(&tmp_path, &final_path).io_context("rename", &final_path)?;
            if header.is_snapshot() {
                self.remove_ltx_except(&final_path)?;
            }
            if !self.options.replica {
                sync_dir(&self.ltx_dir)?;
            }
            // The LTX file is durable: from here on the database must reach its position.
            self.apply_received(&final_path)
                .map(|pos| Received::Applied {
                    pos,
                    timestamp_ms: header.timestamp_ms,
                })
                .inspect_err(|e| {
                    self.shared.fatal.raise(&format!(
                        "apply {} to database {:?}: {e}; restart to re-apply it",
                        final_path.display(),
                        self.name
                    ));
                })
        })();
        if !matches!(result, Ok(Received::Applied { .. })) {
            let _ = fs::remove_file(&tmp_path);
        }
        result
    }

    fn position_mismatch(&self, pos: Pos, header: &Header) -> Error {
        Error::PositionMismatch {
            db: self.name.clone(),
            local: pos,
            remote: header.pre_apply_pos(),
        }
    }

    /// After a snapshot, the files before it no longer form a chain with it (spec §4.4 step 7).
    fn remove_ltx_except(&self, keep: &Path) -> Result<()> {
        let entries = fs::read_dir(&self.ltx_dir).io_context("read directory", &self.ltx_dir)?;
        for entry in entries {
            let path = entry.io_context("read directory", &self.ltx_dir)?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path != keep && ltx::parse_filename(&name).is_some() {
                fs::remove_file(&path).io_context("remove", &path)?;
            }
        }
        Ok(())
    }

    /// Spec §3.11: writes the file's pages (or deletes the database), checks the checksum,
    /// moves the position, rewrites `-shm` and drops the kernel's stale caches. The caller
    /// holds the internal write lock.
    pub(super) fn apply_received(&self, path: &Path) -> Result<Pos> {
        let mut stale = Stale::default();
        let result = {
            let mut state = self.lock();
            self.apply_locked(&mut state, path, &mut stale)
        };
        // The kernel may answer an invalidation with requests that take the state lock
        // (writing back a dirty `-shm` page), so it runs after the lock is released; SHM
        // writes stay discarded until it is done (spec §3.10).
        self.send_invalidations(&stale);
        self.shm_discard.store(false, Ordering::Release);
        let (pos, header) = result?;
        self.shared.changes.publish(&self.name);
        self.publish_tx_event(&header, pos.post_apply_checksum);
        self.lag_ms
            .store(super::now_ms() - header.timestamp_ms, Ordering::Relaxed);
        Ok(pos)
    }

    /// Applies the file at `path`; returns the new position and the file's header.
    fn apply_locked(
        &self,
        state: &mut State,
        path: &Path,
        stale: &mut Stale,
    ) -> Result<(Pos, Header)> {
        let (header, trailer, pgnos) = self.apply_ltx_file(state, path)?;
        if header.commit == 0 {
            // A deletion: the SHM goes too, and the mode falls back to rollback.
            let shm = self.path(FileKind::Shm);
            match fs::remove_file(&shm) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).io_context("remove", &shm),
            }
            state.files = Default::default();
            state.wal_mode = false;
            stale.deleted = true;
        } else {
            if !self.options.replica {
                let db_path = self.path(FileKind::Database);
                File::open(&db_path)
                    .and_then(|f| f.sync_all())
                    .io_context("fsync", &db_path)?;
            }
            stale.whole_db = header.is_snapshot();
            stale.db_ranges = coalesce(&pgnos, header.page_size);
        }
        let actual = state.checksums.value();
        if actual != trailer.post_apply_checksum.0 {
            return Err(Error::Corrupt {
                db: self.name.clone(),
                message: format!(
                    "database checksum {actual:016x} on TXID {} does not match LTX post-apply checksum {}",
                    header.max_txid, trailer.post_apply_checksum
                ),
            });
        }
        state.pos = Pos {
            txid: header.max_txid,
            post_apply_checksum: trailer.post_apply_checksum,
        };
        state.pos_timestamp_ms = header.timestamp_ms;
        if header.commit > 0 {
            stale.shm = self.rewrite_shm(state)?;
        }
        Ok((state.pos, header))
    }

    /// Spec §3.10: a WAL index saying "empty WAL over `page_count` pages, changed". Only when a
    /// `-shm` exists: without one no reader has an index to refresh, and SQLite builds it.
    /// Returns whether the file was rewritten (its kernel cache must then be dropped).
    fn rewrite_shm(&self, state: &mut State) -> Result<bool> {
        let path = self.path(FileKind::Shm);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).io_context("open", &path),
        };
        // FUSE writes to `-shm` (SQLite's mmap written back) are dropped from now until the
        // kernel's copy is invalidated, or they would overwrite the new index.
        self.shm_discard.store(true, Ordering::Release);
        let mut block = vec![0u8; SHM_BLOCK_SIZE_BYTES];
        let mut read = 0;
        while read < block.len() {
            match file.read_at(&mut block[read..], read as u64) {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).io_context("read", &path),
            }
        }
        let (salt1, salt2) = state.wal_header.map_or((0, 0), |h| (h.salt1, h.salt2));
        let wal_state = WalIndexState {
            page_size_bytes: state.page_size,
            page_count: state.page_count,
            frame_checksum: Default::default(),
            salt1,
            salt2,
        };
        rewrite_wal_index(&mut block, &wal_state);
        file.write_all_at(&block, 0).io_context("write", &path)?;
        file.set_len(SHM_BLOCK_SIZE_BYTES as u64)
            .io_context("truncate", &path)?;
        Ok(true)
    }

    fn send_invalidations(&self, stale: &Stale) {
        let hook = &self.shared.invalidate;
        let db = self.name.as_str();
        if stale.deleted {
            for kind in FileKind::ALL {
                hook.send(Invalidation::Entry { db, kind });
            }
            return;
        }
        let kind = FileKind::Database;
        if stale.whole_db {
            hook.send(Invalidation::Data {
                db,
                kind,
                offset: 0,
                len: 0,
            });
        } else {
            for &(offset, len) in &stale.db_ranges {
                hook.send(Invalidation::Data {
                    db,
                    kind,
                    offset,
                    len,
                });
            }
        }
        if stale.shm {
            hook.send(Invalidation::Data {
                db,
                kind: FileKind::Shm,
                offset: 0,
                len: 0,
            });
        }
    }
}

/// Byte ranges covering `pgnos` (ascending), adjacent pages merged.
fn coalesce(pgnos: &[u32], page_size: u32) -> Vec<(u64, u64)> {
    let page = u64::from(page_size);
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for &pgno in pgnos {
        let offset = u64::from(pgno - 1) * page;
        match ranges.last_mut() {
            Some((start, len)) if *start + *len == offset => *len += page,
            _ => ranges.push((offset, page)),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::coalesce;

    #[test]
    fn coalesce_merges_adjacent_pages_only() {
        assert_eq!(
            coalesce(&[1, 2, 3, 5, 7, 8], 4096),
            [(0, 3 * 4096), (4 * 4096, 4096), (6 * 4096, 2 * 4096)]
        );
        assert!(coalesce(&[], 512).is_empty());
    }
}
