//! Writing one LTX file for a captured transaction, then publishing the new position.
//!
//! Order: write the file under its final name, make it as durable as its kind needs, and only
//! then change the in-memory checksums and position. A synced file (deletions) is fsynced and
//! `ltx/` fsynced before the position moves; a journal commit's file is appended to the LTX
//! log and the log `fdatasync`ed instead (`ltx_log.rs`), or both are done at SQLite's database
//! fsync, whose flush covers them (`journal.rs`); a failure removes the file and leaves
//! the state as it was. A WAL commit's file is not synced: the WAL holds the transaction until
//! the file is synced with its batch (`durability.rs`). Either way a crash can leave the
//! newest file short, which recovery restores from the log or removes (the torn-tail check).

use super::durability::{Durability, LogSync};
use super::wal_tail::WalBytes;
use super::{Db, FileKind, State, now_ms};
use crate::ltx::{self, Encoder, Header, lock_pgno};
use crate::store::error::{Error, IoContext, Result};
use crate::store::events::Event;
use crate::types::{Checksum, Pos, TxId};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Where the pages of a captured transaction come from.
pub(super) enum PageSource<'a> {
    /// A rollback-journal commit: the database file. Every page must match the checksum the
    /// write path cached (asserting that what we read back is what SQLite wrote).
    Database(&'a File),
    /// A WAL commit: `frames` (pgno → frame offset) of this transaction are new versions;
    /// any other page (a TXID 1 snapshot needs all) comes from an earlier frame or the
    /// database file and must match its cached checksum.
    Wal {
        wal: &'a File,
        /// The WAL bytes after the cursor, held or mapped: this transaction's frames are
        /// read from here rather than from `wal`.
        bytes: WalBytes<'a>,
        frames: &'a BTreeMap<u32, u64>,
        db: Option<&'a File>,
    },
}

impl<'a> PageSource<'a> {
    /// This transaction's new version of `pgno` where it is held or mapped: encoded in place,
    /// with no copy.
    fn in_memory(&self, pgno: u32, page_size_bytes: usize) -> Option<&'a [u8]> {
        match self {
            PageSource::Wal { bytes, frames, .. } => {
                let frame = *frames.get(&pgno)?;
                bytes.get(frame + 24, page_size_bytes)
            }
            PageSource::Database(_) => None,
        }
    }
}

/// Bytes an LTX file is buffered in before they are written: a small commit's file is one
/// `write`; a large one is written in chunks of this size.
const LTX_WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// An LTX file written under its final name, not yet durable or published.
pub(super) struct Encoded {
    header: Header,
    path: std::path::PathBuf,
    file: File,
    len_bytes: u64,
    trailer: ltx::Trailer,
    /// New page checksums, applied once it is published.
    updates: Vec<(u32, u64)>,
    post_apply: Checksum,
    /// Pages in the file (the lock page is never one).
    page_count: u32,
    /// The write buffer, given back to `State::ltx_write_buf`.
    buf: Vec<u8>,
    /// When the capture began (`litefs_commit_duration`).
    started: Instant,
}

impl Encoded {
    pub(super) fn txid(&self) -> TxId {
        self.header.max_txid
    }

    /// The database's checksum before this transaction (its header's pre-apply checksum).
    pub(super) fn pre_apply_checksum(&self) -> Checksum {
        self.header.pre_apply_checksum
    }

    /// The whole file, if every byte of it is still in the write buffer.
    pub(super) fn whole(&self) -> Option<&[u8]> {
        LtxWriter::whole(&self.buf, self.len_bytes)
    }

    /// Removes the unpublished file durably ([`Db::discard_unpublished`]) and gives the
    /// write buffer back to `state` — unless its name now holds another file (one put there
    /// since, an import's or a received one, is not this one's to remove).
    pub(super) fn discard(self, db: &Db, state: &mut State) {
        use std::os::unix::fs::MetadataExt;
        let txid = self.txid();
        let Encoded {
            path, file, buf, ..
        } = self;
        state.ltx_write_buf = buf;
        let same_file = match (file.metadata(), fs::symlink_metadata(&path)) {
            (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
            (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => false,
            // Unknown: removed, as a file that may be this one must not survive.
            _ => true,
        };
        drop(file);
        if same_file {
            db.discard_unpublished(&path, txid);
        }
    }
}

/// What encoding needs of the database's page checksums before the transaction: the running
/// checksum of pages `1..=commit`, and each page's cached checksum.
pub(super) struct ChecksumBasis<'a> {
    pub rolling: u64,
    pub cached: &'a dyn Fn(u32) -> Option<u64>,
}

/// Buffers an LTX file on its way to `file` in a buffer kept between commits
/// (`State::ltx_write_buf`), so a commit allocates nothing for it; counts the bytes. A file
/// that fits is still whole in the buffer when written (for the LTX log).
struct LtxWriter {
    file: File,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `file`.
    flushed_bytes: usize,
    len_bytes: u64,
}

impl LtxWriter {
    fn new(file: File, mut buf: Vec<u8>) -> LtxWriter {
        buf.clear();
        LtxWriter {
            file,
            buf,
            flushed_bytes: 0,
            len_bytes: 0,
        }
    }

    /// The whole file, if every byte of it is in the buffer.
    fn whole(buf: &[u8], len_bytes: u64) -> Option<&[u8]> {
        (buf.len() as u64 == len_bytes).then_some(buf)
    }
}

impl Write for LtxWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > LTX_WRITE_BUFFER_BYTES {
            self.flush()?;
            self.buf.clear();
            self.flushed_bytes = 0;
            if data.len() >= LTX_WRITE_BUFFER_BYTES {
                self.file.write_all(data)?;
                self.len_bytes += data.len() as u64;
                return Ok(data.len());
            }
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(LTX_WRITE_BUFFER_BYTES);
        }
        self.buf.extend_from_slice(data);
        self.len_bytes += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.write_all(&self.buf[self.flushed_bytes..])?;
        self.flushed_bytes = self.buf.len();
        Ok(())
    }
}

/// The WAL fields of an LTX header (spec §1.2); zero for rollback-journal commits.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct WalFields {
    pub offset: i64,
    pub size: i64,
    pub salt1: u32,
    pub salt2: u32,
}

impl Db {
    pub(super) fn corrupt(&self, message: String) -> Error {
        Error::Corrupt {
            db: self.name.clone(),
            message,
        }
    }

    /// Reads page `pgno` for the LTX file into `page` from the files; returns whether it is a
    /// new version. (A new version in memory is taken from [`PageSource::in_memory`].)
    fn read_source_page(
        &self,
        state: &State,
        source: &PageSource<'_>,
        pgno: u32,
        page: &mut [u8],
    ) -> Result<bool> {
        let page_offset = u64::from(pgno - 1) * page.len() as u64;
        match source {
            PageSource::Database(db) => {
                db.read_exact_at(page, page_offset)
                    .io_context("read page", self.path(FileKind::Database))?;
                Ok(false)
            }
            PageSource::Wal {
                wal, frames, db, ..
            } => {
                if let Some(&frame) = frames.get(&pgno) {
                    wal.read_exact_at(page, frame + 24)
                        .io_context("read frame", self.path(FileKind::Wal))?;
                    return Ok(true);
                }
                if let Some(&frame) = state.wal_frames.get(&pgno) {
                    wal.read_exact_at(page, frame + 24)
                        .io_context("read frame", self.path(FileKind::Wal))?;
                } else if let Some(db) = db {
                    db.read_exact_at(page, page_offset)
                        .io_context("read page", self.path(FileKind::Database))?;
                } else {
                    return Err(self.corrupt(format!(
                        "page {pgno} is in neither the WAL nor the database file"
                    )));
                }
                Ok(false)
            }
        }
    }

    /// Announces the transaction of `header` to event subscribers (spec §8.3 `tx`).
    pub(super) fn publish_tx_event(&self, header: &Header, post_apply_checksum: Checksum) {
        self.shared.events.publish(Event::Tx {
            db: Arc::from(self.name.as_str()),
            txid: header.max_txid,
            post_apply_checksum,
            page_size: header.page_size,
            commit: header.commit,
            timestamp_ms: header.timestamp_ms,
        });
    }

    /// The header of LTX file TXID+1 for a transaction leaving `commit` pages.
    pub(super) fn ltx_header(&self, state: &State, commit: u32, wal: WalFields) -> Header {
        let txid = TxId(state.pos.txid.0 + 1);
        Header {
            flags: if self.options.compress {
                ltx::FLAG_COMPRESS_LZ4
            } else {
                0
            },
            page_size: state.page_size,
            commit,
            min_txid: txid,
            max_txid: txid,
            timestamp_ms: now_ms(),
            pre_apply_checksum: if txid.0 == 1 {
                Checksum(0)
            } else {
                state.pos.post_apply_checksum
            },
            wal_offset: wal.offset,
            wal_size: wal.size,
            wal_salt1: wal.salt1,
            wal_salt2: wal.salt2,
            node_id: self.options.node_id,
            ..Header::new()
        }
    }

    /// Writes LTX file TXID+1 holding `pgnos` (ascending) read from `source`, makes it as
    /// durable as `durability` asks, and publishes the new position and page checksums.
    /// Deferred WAL captures queued before it are written first (`deferred.rs`).
    pub(super) fn write_ltx(
        &self,
        state: &mut State,
        source: PageSource<'_>,
        commit: u32,
        pgnos: &[u32],
        wal: WalFields,
        durability: Durability,
    ) -> Result<()> {
        let encoded = self.encode_next(state, source, commit, pgnos, wal)?;
        self.persist_and_publish(state, encoded, durability)
    }

    /// The first half of [`Db::write_ltx`]: LTX file TXID+1 written, nothing published. A
    /// journal commit's file written early at SQLite's database fsync goes first (`journal.rs`).
    pub(super) fn encode_next(
        &self,
        state: &mut State,
        source: PageSource<'_>,
        commit: u32,
        pgnos: &[u32],
        wal: WalFields,
    ) -> Result<Encoded> {
        self.drain_deferred(state);
        self.discard_early_commit(state);
        self.refuse_after_fatal()?;
        let started = Instant::now();
        let header = self.ltx_header(state, commit, wal);
        let buf = std::mem::take(&mut state.ltx_write_buf);
        let st: &State = state;
        let basis = ChecksumBasis {
            rolling: st.checksums.value_truncated(commit),
            cached: &|pgno| st.checksums.get(pgno),
        };
        self.encode_ltx(
            &header,
            &source,
            pgnos,
            &basis,
            &mut |pgno, page| self.read_source_page(st, &source, pgno, page),
            buf,
            started,
        )
    }

    /// Creates LTX file `header.max_txid` (reusing a spare inode when there is one) and
    /// encodes `pgnos` into it from `source`; nothing is published. A failure removes the
    /// file. Needs no database state: a deferred capture runs it without the state lock.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn encode_ltx(
        &self,
        header: &Header,
        source: &PageSource<'_>,
        pgnos: &[u32],
        basis: &ChecksumBasis<'_>,
        read_page: &mut dyn FnMut(u32, &mut [u8]) -> Result<bool>,
        buf: Vec<u8>,
        started: Instant,
    ) -> Result<Encoded> {
        let txid = header.max_txid;
        let name = ltx::format_filename(txid, txid);
        let path = self.ltx_dir.join(&name);
        // Written under its final name whatever its durability: it is not published before
        // the position moves, and a crash that leaves it short is what recovery's torn-tail
        // check is for (the newest file is always verified). No `.tmp` and rename: for a
        // journal commit that saved a rename and a directory open per commit (measured 315–383
        // → 252 µs per synced file on ext4; ARCHITECTURE §4.1).
        let (file, reused) = self.create_reusing_spare(&path)?;
        let writer = LtxWriter::new(file, buf);
        self.encode_pages(
            writer, reused, &path, header, source, pgnos, basis, read_page, started,
        )
        .inspect_err(|_| {
            // A complete file under this name would be taken for TXID `txid` by the next
            // start although it was never published (and for a capture before the reply,
            // SQLite is told the commit failed): it must go.
            self.discard_unpublished(&path, txid);
        })
    }

    /// Encodes the pages into `writer` (a reused spare if `reused`, then cut to length).
    #[allow(clippy::too_many_arguments)]
    fn encode_pages(
        &self,
        writer: LtxWriter,
        reused: bool,
        path: &Path,
        header: &Header,
        source: &PageSource<'_>,
        pgnos: &[u32],
        basis: &ChecksumBasis<'_>,
        read_page: &mut dyn FnMut(u32, &mut [u8]) -> Result<bool>,
        started: Instant,
    ) -> Result<Encoded> {
        let ltx_err = |source| Error::Ltx {
            db: self.name.clone(),
            source,
        };
        let lock = lock_pgno(header.page_size);
        let pages = pgnos.iter().filter(|&&pgno| pgno != lock).count();
        let mut enc = Encoder::with_page_count(writer, header, pages as u32).map_err(ltx_err)?;
        let mut page = vec![0u8; header.page_size as usize];
        let mut updates: Vec<(u32, u64)> = Vec::new();
        let mut rolling = basis.rolling;
        let mut page_count = 0;
        for &pgno in pgnos {
            if pgno == lock {
                continue;
            }
            page_count += 1;
            let (data, is_new) = match source.in_memory(pgno, page.len()) {
                Some(held) => (held, true),
                None => {
                    let is_new = read_page(pgno, &mut page)?;
                    (&page[..], is_new)
                }
            };
            // The encoder checksums the page in the pass that feeds the file checksum.
            let actual = enc.encode_page(pgno, data).map_err(ltx_err)?;
            let cached = (basis.cached)(pgno);
            if is_new {
                rolling ^= cached.unwrap_or(0) ^ actual;
                updates.push((pgno, actual));
            } else if cached != Some(actual) {
                return Err(self.corrupt(format!(
                    "updated page ({pgno}) does not match in-memory checksum: {cached:x?} <> {actual:016x}"
                )));
            }
        }
        let post_apply = Checksum(rolling | crate::types::CHECKSUM_FLAG);
        let (mut writer, trailer) = enc.finish(post_apply).map_err(ltx_err)?;
        writer.flush().io_context("write", path)?;
        let LtxWriter {
            file,
            buf,
            len_bytes,
            ..
        } = writer;
        if reused {
            // The spare's old bytes past this file's end.
            file.set_len(len_bytes).io_context("truncate", path)?;
        }
        Ok(Encoded {
            header: *header,
            path: path.to_path_buf(),
            file,
            len_bytes,
            trailer,
            updates,
            post_apply,
            page_count,
            buf,
            started,
        })
    }

    /// Makes an encoded file as durable as `durability` asks, then publishes it: page
    /// checksums, position, subscribers. A failure removes the file and publishes nothing.
    pub(super) fn persist_and_publish(
        &self,
        state: &mut State,
        encoded: Encoded,
        durability: Durability,
    ) -> Result<()> {
        let Encoded {
            header,
            path,
            file,
            len_bytes,
            trailer,
            updates,
            post_apply,
            page_count,
            buf,
            started,
        } = encoded;
        let txid = header.max_txid;
        let whole = LtxWriter::whole(&buf, len_bytes);
        let persisted = self.persist(state, &file, &path, len_bytes, durability, whole);
        state.ltx_write_buf = buf;
        let sync_batch_after_publish = match persisted {
            Ok(sync) => sync,
            Err(e) => {
                self.discard_unpublished(&path, txid);
                return Err(e);
            }
        };
        drop(file);
        self.remember_written(
            len_bytes,
            ltx::Summary {
                header,
                trailer,
                page_count,
            },
        );
        // Published: the transaction is durable, as an LTX file or (deferred) in the WAL.
        let commit = header.commit;
        for (pgno, checksum) in updates {
            state.checksums.set_checksum(pgno, checksum);
        }
        state.checksums.truncate(commit);
        debug_assert_eq!(
            state.checksums.value(),
            post_apply.0,
            "checksum cache diverged at TXID {txid}"
        );
        state.page_count = commit;
        let pos = Pos {
            txid,
            post_apply_checksum: post_apply,
        };
        self.set_pos(state, pos, header.timestamp_ms);
        // Subscribers (the streams) wake and read the published position; they send LTX
        // files, which are complete, and need none of the WAL bookkeeping the caller finishes
        // before unlocking.
        self.shared.changes.publish(&self.name);
        self.publish_tx_event(&header, post_apply);
        // Relaxed: counters for reporting; they order no other memory.
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        self.lag_ms.store(0, Ordering::Relaxed);
        self.shared.commit_duration.record(started.elapsed());
        if sync_batch_after_publish {
            // Only bounds what recovery verifies; the WAL holds these transactions, and the
            // newest file may always be unsynced (`unsynced_window_len`), so the streams need
            // not wait for it: a 100 MB transaction ships while its batch reaches the disk
            // (~280 ms here). A failure is fatal, as for any sync.
            self.sync_unsynced(state)?;
        }
        Ok(())
    }

    /// Makes a written LTX file as durable as `durability` asks; `whole` is its bytes, when
    /// they are all in memory. Returns whether the deferred batch, grown past its limits by
    /// this file, must be synced once the file is published.
    fn persist(
        &self,
        state: &mut State,
        file: &File,
        path: &Path,
        len_bytes: u64,
        durability: Durability,
        whole: Option<&[u8]>,
    ) -> Result<bool> {
        // The log must cover every pending file, and take the whole file; else it is synced.
        let logged = match durability {
            Durability::Logged => whole.filter(|_| state.unsynced.unlogged == 0),
            _ => None,
        };
        if let Some(bytes) = logged {
            return self
                .persist_logged(state, bytes, LogSync::Now)
                .map(|_| false);
        }
        match durability {
            // Pending deferred files first: one syncfs covers them, this file and its name.
            Durability::Synced | Durability::Logged if state.unsynced.files > 0 => {
                self.sync_unsynced(state)?
            }
            Durability::Synced | Durability::Logged => {
                file.sync_all().io_context("fsync", path)?;
                // The name (a new entry, or a spare renamed in), unless the file's fsync
                // already made it durable on this file system.
                if !self.ltx_names_synced_with_files {
                    self.ltx_dir_file
                        .sync_all()
                        .io_context("fsync directory", &self.ltx_dir)?;
                }
            }
            Durability::Deferred => {
                state.unsynced.unlogged += 1;
                return Ok(state.unsynced.add(len_bytes));
            }
            Durability::Written => {}
        }
        Ok(false)
    }

    /// Removes the file a failed [`Db::write_ltx`] left at `path`, durably: a complete file
    /// whose directory fsync failed could otherwise come back after a machine crash and be
    /// re-applied over the rolled-back journal. If that cannot be done, the process stops: a
    /// restart would take a complete file for TXID `txid`.
    fn discard_unpublished(&self, path: &Path, txid: TxId) {
        let removed = match fs::remove_file(path) {
            Ok(()) => self.ltx_dir_file.sync_all(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            self.shared.fatal.raise(&format!(
                "database {:?}: cannot remove {} durably after its capture (TXID {txid}) failed: {e}; \
                 restarting would take it for a published transaction",
                self.name,
                path.display()
            ));
        }
    }

    /// Runs `strict-verify` once the caller has finished updating its WAL bookkeeping.
    pub(super) fn verify_if_strict(&self, state: &State) -> Result<()> {
        if self.options.strict_verify {
            self.verify_on_disk(state)?;
        }
        Ok(())
    }

    /// Recomputes the database checksum from the files (database file overlaid with the
    /// WAL's committed frames) and compares it with the position.
    fn verify_on_disk(&self, state: &State) -> Result<()> {
        let path = self.path(FileKind::Database);
        let mut image = match fs::read(&path) {
            Ok(image) => image,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).io_context("read", &path),
        };
        let page_size = state.page_size as usize;
        image.resize(state.page_count as usize * page_size, 0);
        if !state.wal_frames.is_empty() {
            let wal_path = self.path(FileKind::Wal);
            let wal = File::open(&wal_path).io_context("open", &wal_path)?;
            for (&pgno, &frame) in &state.wal_frames {
                if pgno <= state.page_count {
                    let at = (pgno as usize - 1) * page_size;
                    wal.read_exact_at(&mut image[at..at + page_size], frame + 24)
                        .io_context("read frame", self.path(FileKind::Wal))?;
                }
            }
        }
        let actual = ltx::database_checksum(&image, state.page_size);
        if actual != state.pos.post_apply_checksum.0 {
            return Err(self.corrupt(format!(
                "strict verify: database checksum {actual:016x} on TXID {} does not match position checksum {}",
                state.pos.txid, state.pos.post_apply_checksum
            )));
        }
        Ok(())
    }
}
