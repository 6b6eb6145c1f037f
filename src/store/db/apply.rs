//! Receiving and applying LTX files from the primary (spec §4.4 "Processing an LTX frame",
//! §3.10, §3.11, §3.12).
//!
//! Order: the whole file is received and verified first (so a damaged transfer never gets an
//! LTX name — LiteFS renames first and verifies later, and a bad file then stops the next
//! start): read and checked as it arrives ([`Db::receive_verified`]), or, for a large file on
//! the native stream, spliced into a temp file and checked from a mapping of it
//! ([`Db::receive_into_file`]). Then, under the internal write lock, either
//! - (large files, and every file of a non-replica store) it is fsynced and renamed from its
//!   temp name, and only then are its pages written — from a mapping of the file, runs of
//!   pages by `pwritev` from where they lie ([`ltx::PageSlices`]); or
//! - (a replica store's files up to [`RECEIVE_IN_MEMORY_BYTES_MAX`]) its pages are written from
//!   memory first — visible at once — and the file is written under its final name after.
//!
//! A replica store ([`DbOptions::replica`](super::DbOptions)) never fsyncs received files; a
//! crash or power loss that leaves its database unexplained by its files makes its recovery
//! fall back to a snapshot from the primary (ARCHITECTURE §4.1).
//!
//! From the first change to the database on, an error is fatal (exit 99) and the restart's
//! recovery settles it. The transfer happens before the internal write lock is taken (LiteFS
//! holds it for the whole transfer, so a large snapshot on a slow link blocks every reader on
//! the replica); the position check, rename and apply run under it, so no SQLite reader is
//! inside a transaction while pages, the `-shm` index and the kernel's caches change.

use super::recover::LtxInput;
use super::write_behind::WriteBehind;
use super::{Db, FileKind, State, sync_dir};
use crate::ltx::{self, Header};
use crate::sqlite::shm::{SHM_BLOCK_SIZE_BYTES, WalIndexState, rewrite_wal_index};
use crate::store::error::{Error, IoContext, Result};
use crate::store::shared::Invalidation;
use crate::types::Pos;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
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

/// Largest received file a replica keeps in memory (applied before it is written to `ltx/`);
/// larger ones go through a temp file. Single-row transactions are a few KiB.
pub const RECEIVE_IN_MEMORY_BYTES_MAX: usize = 1 << 20;

/// Most bytes a received file's compressed LZ4 blocks are decoded into at once for its apply
/// (`ltx::PageSlices`): a large transaction of incompressible pages has few (its B-tree pages);
/// a file with more is decoded as it is read instead.
const APPLY_DECODED_BYTES_MAX: usize = 16 << 20;

/// Most page checksums a receive keeps from its verification for the apply (8 bytes each:
/// 32 MiB, a 16 GiB snapshot of 4 KiB pages); beyond, the apply re-checks the file instead.
const RECEIVE_CHECKSUMS_MAX: usize = 4 << 20;

/// The page checksums a receive keeps from its verification for the apply, in file order; past
/// [`RECEIVE_CHECKSUMS_MAX`] none (the apply then checks the file again as it decodes it).
struct KeptChecksums(Option<Vec<u64>>);

impl Default for KeptChecksums {
    fn default() -> Self {
        KeptChecksums(Some(Vec::new()))
    }
}

impl KeptChecksums {
    fn with_capacity(pages: u64) -> Self {
        let pages = usize::try_from(pages).unwrap_or(usize::MAX);
        KeptChecksums(Some(Vec::with_capacity(pages.min(RECEIVE_CHECKSUMS_MAX))))
    }

    fn push(&mut self, checksum: u64) {
        match &mut self.0 {
            Some(kept) if kept.len() < RECEIVE_CHECKSUMS_MAX => kept.push(checksum),
            _ => self.0 = None,
        }
    }
}

/// Where a received file goes while it is verified: memory (replica stores, up to
/// [`RECEIVE_IN_MEMORY_BYTES_MAX`]) or a temp file in `ltx/`, which it spills to once larger.
/// The temp file is written by a helper thread ([`WriteBehind`]) while this one receives and
/// verifies: a 100 MB file's writes took ~50 of the ~135 ms its receive took here.
struct Spool<'a> {
    ltx_dir: &'a Path,
    memory: Option<Vec<u8>>,
    file: Option<(WriteBehind, PathBuf)>,
}

/// A received, verified file, ready to be applied.
enum Kept {
    Memory(Vec<u8>),
    File(File, PathBuf),
}

impl<'a> Spool<'a> {
    fn new(ltx_dir: &'a Path, in_memory: bool) -> Spool<'a> {
        Spool {
            ltx_dir,
            memory: in_memory.then(Vec::new),
            file: None,
        }
    }

    fn spill(&mut self) -> io::Result<()> {
        let seq = RECEIVE_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = self
            .ltx_dir
            .join(format!("receive-{}-{seq}.tmp", std::process::id()));
        let file = File::create(&path)?;
        // Removed here if its writer cannot start; once in `self.file`, by `Drop` or
        // `discard` if the receive fails.
        let mut w = match WriteBehind::new(file) {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        let held = self.memory.take();
        let written = held.as_deref().map_or(Ok(()), |bytes| w.write_all(bytes));
        self.file = Some((w, path));
        written
    }

    fn into_kept(mut self) -> Result<Kept> {
        if let Some(bytes) = self.memory.take() {
            return Ok(Kept::Memory(bytes));
        }
        if self.file.is_none() {
            // Nothing was received into a file (an empty body cannot verify, but be safe).
            self.spill().io_context("create", self.ltx_dir)?;
        }
        let (w, path) = self.file.take().expect("spilled above");
        match w.finish() {
            Ok(file) => Ok(Kept::File(file, path)),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e).io_context("write", &path)
            }
        }
    }

    /// Drops what was received (a temp file is removed).
    fn discard(mut self) {
        if let Some((_, path)) = self.file.take() {
            let _ = fs::remove_file(path);
        }
    }
}

impl Write for Spool<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(bytes) = &mut self.memory {
            if bytes.len() + buf.len() <= RECEIVE_IN_MEMORY_BYTES_MAX {
                bytes.extend_from_slice(buf);
                return Ok(buf.len());
            }
            self.spill()?;
        }
        if self.file.is_none() {
            self.spill()?;
        }
        let (w, _) = self.file.as_mut().expect("spilled above");
        w.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some((w, _)) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Spool<'_> {
    fn drop(&mut self) {
        // An error before `into_kept`: the temp file is not wanted.
        if let Some((_, path)) = self.file.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Kernel caches to drop once the state lock is released.
#[derive(Default)]
struct Stale {
    /// Database pages written (any order, repeats allowed); unused with `whole_db` set.
    db_pages: Vec<u32>,
    page_size: u32,
    whole_db: bool,
    shm: bool,
    deleted: bool,
}

/// A received file a replica verified and holds in memory (up to
/// [`RECEIVE_IN_MEMORY_BYTES_MAX`]), not yet applied: what [`Db::apply_received_batch`]
/// takes, so that files arriving back to back share one lock, one `-shm` rewrite and one
/// round of invalidations.
#[derive(Debug)]
pub struct VerifiedLtx {
    header: Header,
    bytes: Vec<u8>,
    /// Page checksums from the verification, in file order (see `Db::apply_ltx`).
    checksums: Option<Vec<u64>>,
}

impl VerifiedLtx {
    /// A plain transaction (not a snapshot, not a deletion): one that can join a batch.
    pub fn is_increment(&self) -> bool {
        !self.header.is_snapshot() && self.header.commit > 0
    }

    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// A received file verified into a temp file in `ltx/` (larger than
/// [`RECEIVE_IN_MEMORY_BYTES_MAX`], or any file of a store that is not a replica), not yet
/// applied: [`Db::apply_spilled`]. Dropped unapplied, the temp file is removed.
#[derive(Debug)]
pub struct SpilledLtx {
    header: Header,
    tmp: Option<(File, PathBuf)>,
    checksums: Option<Vec<u64>>,
    /// The mapping it was verified from, if it was ([`Db::receive_into_file`]): the apply
    /// reads the same pages (a rename leaves a mapping valid).
    map: Option<memmap2::Mmap>,
}

impl SpilledLtx {
    pub fn header(&self) -> &Header {
        &self.header
    }
}

impl Drop for SpilledLtx {
    fn drop(&mut self) {
        if let Some((_, path)) = self.tmp.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// What [`Db::receive_verified`] made of a received file. Nothing is applied yet: the caller
/// applies files in the order they arrived (a batch held back must go before a later file).
pub enum Receipt {
    /// A transaction this node wrote itself (forwarded with a HALT lock): skipped.
    Own,
    /// Held in memory, verified: apply with [`Db::apply_received_batch`].
    Memory(VerifiedLtx),
    /// In a temp file, verified: apply with [`Db::apply_spilled`].
    Spilled(SpilledLtx),
}

impl Db {
    /// Receives one LTX file of the replication stream: `file` yields the whole file (header
    /// included) and must end exactly at its trailer. Checks the file continues our position
    /// (unless it is a snapshot), verifies it while copying it to `ltx/`, and applies it.
    pub fn receive_ltx(&self, file: impl Read) -> Result<Received> {
        match self.receive_verified(file)? {
            Receipt::Own => Ok(Received::Own),
            Receipt::Memory(verified) => self.apply_received_batch(vec![verified]),
            Receipt::Spilled(spilled) => self.apply_spilled(spilled),
        }
    }

    /// Receives and verifies one LTX file of the stream (as [`Db::receive_ltx`]), without
    /// applying it: a small file on a replica is returned in memory, any other in a temp file.
    pub fn receive_verified(&self, file: impl Read) -> Result<Receipt> {
        self.receive_verified_into(file, self.options.replica)
    }

    /// [`Db::receive_verified`], keeping a small file in memory only if `in_memory`.
    pub(super) fn receive_verified_into(
        &self,
        file: impl Read,
        in_memory: bool,
    ) -> Result<Receipt> {
        let ltx_err = |source| Error::Ltx {
            db: self.name.clone(),
            source,
        };
        // Receive and verify the whole file before taking the lock: SQLite readers on this
        // node wait only for the apply, not for the network.
        let mut spool = Spool::new(&self.ltx_dir, in_memory);
        // The verification computes each page's checksum with the file checksum, in one pass;
        // the apply, which needs them for the checksum cache, decodes again without any CRC.
        // Past RECEIVE_CHECKSUMS_MAX pages they are not kept, and the apply checks the file
        // again as it decodes it.
        let mut checksums = KeptChecksums::default();
        let summary = {
            let mut tee = Tee {
                inner: file,
                sink: &mut spool,
            };
            ltx::verify_pages(&mut tee, |_, _, checksum| checksums.push(checksum))
                .map_err(ltx_err)?
        };
        let checksums = checksums.0;
        let header = summary.header;
        if header.node_id == self.options.node_id {
            spool.discard();
            return Ok(Receipt::Own);
        }
        Ok(match spool.into_kept()? {
            Kept::Memory(bytes) => Receipt::Memory(VerifiedLtx {
                header,
                bytes,
                checksums,
            }),
            Kept::File(tmp, tmp_path) => Receipt::Spilled(SpilledLtx {
                header,
                tmp: Some((tmp, tmp_path)),
                checksums,
                map: None,
            }),
        })
    }

    /// Receives one LTX file of `len_bytes` that `fill` writes into a temp file in `ltx/` (a
    /// replica's native stream splices it there from the socket, never through user space),
    /// then verifies it from a mapping of that file: the same checks as
    /// [`Db::receive_verified`], whose receipt it returns (a file of this node's own, or a
    /// spilled one). Nothing is applied yet.
    ///
    /// `head` is the file's first [`ltx::HEADER_SIZE`] bytes, read by the caller: a header that
    /// does not validate, or a length no file with it can have, is refused before anything is
    /// stored (a length field garbled in transit would otherwise be filled from whatever
    /// follows it on the stream). `fill` writes the rest, from offset `HEADER_SIZE` on.
    pub fn receive_into_file(
        &self,
        len_bytes: u64,
        head: &[u8; ltx::HEADER_SIZE],
        fill: impl FnOnce(&File) -> io::Result<()>,
    ) -> Result<Receipt> {
        let ltx_err = |source| Error::Ltx {
            db: self.name.clone(),
            source,
        };
        let header = ltx::Header::from_bytes(head)
            .and_then(|h| h.validate().map(|()| h))
            .map_err(|e| ltx_err(e.context("decode header")))?;
        if len_bytes > header.file_len_bound() {
            return Err(Error::Corrupt {
                db: self.name.clone(),
                message: format!(
                    "a received LTX file of TXID {} claims {len_bytes} bytes, more than any with \
                     {} pages of {} bytes can take",
                    header.max_txid, header.commit, header.page_size
                ),
            });
        }
        let seq = RECEIVE_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = self
            .ltx_dir
            .join(format!("receive-{}-{seq}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .io_context("create", &path)?;
        // Holds the temp file until it is handed on (removed on any error or for our own).
        let mut spilled = SpilledLtx {
            header: Header::new(),
            tmp: Some((file, path.clone())),
            checksums: None,
            map: None,
        };
        let file = &spilled.tmp.as_ref().expect("just set").0;
        file.write_all_at(head, 0)
            .and_then(|()| fill(file))
            .io_context("receive", &path)?;
        let written = file.metadata().io_context("stat", &path)?.len();
        if written != len_bytes {
            return Err(Error::Corrupt {
                db: self.name.clone(),
                message: format!(
                    "received LTX file {} holds {written} bytes, {len_bytes} expected",
                    path.display()
                ),
            });
        }
        // Room for as many checksums as the file can hold pages stored whole (compressed
        // pages may be more): growing the vector page by page cost ~11 ms of a 100 MB file's
        // receive here, in fresh memory.
        let pages_max = len_bytes / (u64::from(header.page_size) + 4) + 1;
        let mut checksums = KeptChecksums::with_capacity(pages_max.min(u64::from(header.commit)));
        let mut mapped = map_ltx(file).ok();
        let summary = match &mapped {
            Some(map) => ltx::verify_in_memory(map, APPLY_DECODED_BYTES_MAX, |_, checksum| {
                checksums.push(checksum)
            }),
            // Not mappable (the caller keeps files over APPLY_MAP_BYTES_MAX off this path;
            // the mapping itself may still fail): read back.
            None => {
                let back = File::open(&path).io_context("open", &path)?;
                let mut back = io::BufReader::new(back);
                ltx::verify_pages(&mut back, |_, _, checksum| checksums.push(checksum)).and_then(
                    |summary| match back.fill_buf()?.is_empty() {
                        true => Ok(summary),
                        // The trailer must end the file.
                        false => Err(ltx::Error::InvalidFile.context("close reader")),
                    },
                )
            }
        }
        .map_err(ltx_err)?;
        if summary.header.node_id == self.options.node_id {
            return Ok(Receipt::Own);
        }
        spilled.header = summary.header;
        spilled.checksums = checksums.0;
        spilled.map = mapped.take();
        Ok(Receipt::Spilled(spilled))
    }

    /// Applies a file [`Db::receive_verified`] left in a temp file: under the internal write
    /// lock, checks it continues the position (unless a snapshot), fsyncs it (not on a
    /// replica), renames it to its LTX name, and applies it from there.
    pub fn apply_spilled(&self, spilled: SpilledLtx) -> Result<Received> {
        let deadline = Instant::now() + Duration::from_millis(APPLY_LOCK_TIMEOUT_MS);
        // Held until the apply is done.
        let _guard = self.acquire_write_lock(deadline)?;
        self.apply_spilled_locked(spilled)
    }

    /// [`Db::apply_spilled`] with the internal write lock held by the caller (a halt lock's,
    /// for a forwarded transaction).
    pub(super) fn apply_spilled_locked(&self, mut spilled: SpilledLtx) -> Result<Received> {
        let header = spilled.header;
        let pos = self.pos();
        if !header.is_snapshot() && pos != header.pre_apply_pos() {
            return Err(self.position_mismatch(pos, &header));
        }
        let Some((tmp, tmp_path)) = spilled.tmp.take() else {
            return Err(Error::Corrupt {
                db: self.name.clone(),
                message: "a received file was applied twice".into(),
            });
        };
        let checksums = spilled.checksums.take();
        let verified_map = spilled.map.take();
        if header.is_snapshot() {
            // Before the database holds the snapshot (`remove_ltx_log`).
            self.remove_ltx_log()?;
        }
        let final_path = self
            .ltx_dir
            .join(ltx::format_filename(header.min_txid, header.max_txid));
        let renamed = (|| {
            if !self.options.replica {
                tmp.sync_all().io_context("fsync", &tmp_path)?;
            }
            fs::rename(&tmp_path, &final_path).io_context("rename", &final_path)
        })();
        if let Err(e) = renamed {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        if header.is_snapshot() {
            self.remove_ltx_except(&final_path)?;
        }
        if !self.options.replica {
            sync_dir(&self.ltx_dir)?;
        }
        // The LTX file is durable: from here on the database must reach its position.
        let pos = self.apply_fatal(&final_path, || {
            // The temp file this process just wrote and verified is trusted: it is read back
            // without checking it again (a fault of the page cache in between is not guarded
            // against; neither is the database's).
            // (A spooled `tmp` was opened write-only, and its offset is at the end.)
            drop(tmp);
            let file = File::open(&final_path).io_context("open", &final_path)?;
            // Mapped if that can help and works (an error here would be fatal: anything
            // unusual takes the reader); mapped already if it was verified from a mapping.
            let mapped = match checksums.as_deref() {
                Some(checksums) if header.commit > 0 => verified_map
                    .or_else(|| map_ltx(&file).ok())
                    .map(|map| (checksums, map)),
                _ => None,
            };
            let Some((checksums, map)) = mapped else {
                let reader = io::BufReader::new(file);
                return self.apply_received_from(LtxInput::Reader(reader, checksums.as_deref()));
            };
            let mut decoded = Vec::new();
            let pages = ltx::PageSlices::new(&map, &mut decoded, APPLY_DECODED_BYTES_MAX);
            match pages.map_err(|source| Error::Ltx {
                db: self.name.clone(),
                source,
            })? {
                // Pages stored raw are written straight from the mapping.
                Some(pages) => {
                    self.apply_received_from(LtxInput::<&[u8]>::Slices(Box::new(pages), checksums))
                }
                None => self.apply_received_from(LtxInput::Reader(&map[..], Some(checksums))),
            }
        })?;
        Ok(Received::Applied {
            pos,
            timestamp_ms: header.timestamp_ms,
        })
    }

    /// Applies files received in memory, in order, under one internal write lock: their pages
    /// and positions one by one (each checked against its checksum), then one `-shm` rewrite
    /// and one round of kernel invalidations — visible together — and then writes each under
    /// its final name (ARCHITECTURE §4.1: a crash in between leaves the database ahead of its
    /// newest LTX file, which the replica's recovery resolves by fetching a snapshot). A file
    /// that does not continue the position ends the batch with a position mismatch, after
    /// the ones before it are recorded. Returns the last file's outcome.
    pub fn apply_received_batch(&self, batch: Vec<VerifiedLtx>) -> Result<Received> {
        let deadline = Instant::now() + Duration::from_millis(APPLY_LOCK_TIMEOUT_MS);
        let guard = self.acquire_write_lock(deadline)?;
        if batch.iter().any(|v| v.header.is_snapshot()) {
            // Before the database holds the snapshot (`remove_ltx_log`).
            self.remove_ltx_log()?;
        }
        let mut stale = Stale::default();
        let mut applied: Vec<(Pos, &VerifiedLtx)> = Vec::with_capacity(batch.len());
        let mut mismatch = None;
        let result = {
            let mut state = self.lock();
            let mut run = || -> Result<()> {
                for verified in &batch {
                    let header = &verified.header;
                    if !header.is_snapshot() && state.pos != header.pre_apply_pos() {
                        mismatch = Some(self.position_mismatch(state.pos, header));
                        break;
                    }
                    let path = self
                        .ltx_dir
                        .join(ltx::format_filename(header.min_txid, header.max_txid));
                    let pos = self.apply_fatal(&path, || {
                        let bytes = &verified.bytes[..];
                        let checksums = verified.checksums.as_deref();
                        let input = LtxInput::Reader(bytes, checksums);
                        self.apply_locked(&mut state, input, &mut stale)
                            .map(|(pos, _)| pos)
                    })?;
                    applied.push((pos, verified));
                }
                if applied.iter().any(|(_, v)| v.header.commit > 0) {
                    stale.shm = self
                        .apply_fatal(&self.path(FileKind::Shm), || self.rewrite_shm(&mut state))?;
                }
                Ok(())
            };
            run()
        };
        self.finish_apply(&stale);
        result?;
        let Some(&(last_pos, last)) = applied.last() else {
            return match mismatch {
                Some(e) => Err(e),
                None => Ok(Received::Applied {
                    pos: self.pos(),
                    timestamp_ms: self.pos_timestamp_ms(),
                }),
            };
        };
        self.shared.changes.publish(&self.name);
        for (pos, verified) in &applied {
            self.publish_tx_event(&verified.header, pos.post_apply_checksum);
        }
        self.lag_ms.store(
            super::now_ms() - last.header.timestamp_ms,
            Ordering::Relaxed,
        );
        // The database is consistent at its new position: SQLite readers need not wait
        // (SQLITE_BUSY) while we write our own files.
        drop(guard);
        for (_, verified) in &applied {
            let header = &verified.header;
            let final_path = self
                .ltx_dir
                .join(ltx::format_filename(header.min_txid, header.max_txid));
            self.write_received(&final_path, &verified.bytes)?;
            if header.is_snapshot() {
                self.remove_ltx_except(&final_path)?;
            }
        }
        match mismatch {
            Some(e) => Err(e),
            None => Ok(Received::Applied {
                pos: last_pos,
                timestamp_ms: last.header.timestamp_ms,
            }),
        }
    }

    /// Writes a received file under its final name after it was applied from memory. A file of
    /// that name may exist (the same snapshot sent again after a divergence): it is replaced
    /// by rename, never rewritten in place. A failure is fatal like the apply's: the database
    /// is ahead of its files until the restart's recovery settles it.
    fn write_received(&self, final_path: &Path, bytes: &[u8]) -> Result<()> {
        // A spare inode when retention left one (`spare.rs`: creating files soon after many
        // deletions is slow on ext4 without a journal; a replica creates one per transaction).
        let written = match self.create_new_reusing_spare(final_path) {
            Ok(Some((file, reused))) => (|| {
                file.write_all_at(bytes, 0)?;
                if reused {
                    file.set_len(bytes.len() as u64)?;
                }
                Ok(())
            })()
            .inspect_err(|_: &io::Error| {
                // No half-written file under an LTX name.
                let _ = fs::remove_file(final_path);
            }),
            Ok(None) => {
                let seq = RECEIVE_SEQ.fetch_add(1, Ordering::Relaxed);
                let tmp = self
                    .ltx_dir
                    .join(format!("receive-{}-{seq}.tmp", std::process::id()));
                fs::write(&tmp, bytes)
                    .and_then(|()| fs::rename(&tmp, final_path))
                    .inspect_err(|_| {
                        let _ = fs::remove_file(&tmp);
                    })
            }
            Err(e) => Err(io::Error::other(e)),
        };
        written.io_context("write", final_path).inspect_err(|e| {
            self.shared.fatal.raise(&format!(
                "record {} for database {:?} after applying it: {e}; restart to recover it",
                final_path.display(),
                self.name
            ));
        })
    }

    /// Runs an apply whose failure leaves the database between two positions: fatal (exit
    /// 99, spec §3.11 step 7); the restart's recovery settles it.
    fn apply_fatal<T>(&self, path: &Path, apply: impl FnOnce() -> Result<T>) -> Result<T> {
        apply().inspect_err(|e| {
            self.shared.fatal.raise(&format!(
                "apply {} to database {:?}: {e}; restart to recover it",
                path.display(),
                self.name
            ));
        })
    }

    fn position_mismatch(&self, pos: Pos, header: &Header) -> Error {
        Error::PositionMismatch {
            db: self.name.clone(),
            local: pos,
            remote: header.pre_apply_pos(),
        }
    }

    /// After a snapshot, the files before it no longer form a chain with it (spec §4.4 step 7).
    /// (The LTX log of this node's own commits went before the snapshot was applied.)
    fn remove_ltx_except(&self, keep: &Path) -> Result<()> {
        // List first, remove after: removing entries while reading a directory may make
        // readdir skip others (POSIX leaves it unspecified; seen on ext4).
        let mut doomed = Vec::new();
        let entries = fs::read_dir(&self.ltx_dir).io_context("read directory", &self.ltx_dir)?;
        for entry in entries {
            let path = entry.io_context("read directory", &self.ltx_dir)?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path != keep && ltx::parse_filename(&name).is_some() {
                doomed.push(path);
            }
        }
        for path in doomed {
            match fs::remove_file(&path) {
                Ok(()) => {}
                // Retention removed it meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).io_context("remove", &path),
            }
        }
        Ok(())
    }

    /// Spec §3.11: writes the file's pages (or deletes the database), checks the checksum,
    /// moves the position, rewrites `-shm` and drops the kernel's stale caches. The caller
    /// holds the internal write lock.
    pub(super) fn apply_received(&self, path: &Path) -> Result<Pos> {
        let file = File::open(path).io_context("open", path)?;
        self.apply_received_from(LtxInput::Reader(io::BufReader::new(file), None))
    }

    /// [`Db::apply_received`] of any whole LTX file.
    fn apply_received_from(&self, input: LtxInput<'_, impl Read>) -> Result<Pos> {
        let mut stale = Stale::default();
        let result = {
            let mut state = self.lock();
            self.apply_locked(&mut state, input, &mut stale)
                .and_then(|(pos, header)| {
                    if header.commit > 0 {
                        stale.shm = self.rewrite_shm(&mut state)?;
                    }
                    Ok((pos, header))
                })
        };
        self.finish_apply(&stale);
        let (pos, header) = result?;
        self.shared.changes.publish(&self.name);
        self.publish_tx_event(&header, pos.post_apply_checksum);
        self.lag_ms
            .store(super::now_ms() - header.timestamp_ms, Ordering::Relaxed);
        Ok(pos)
    }

    /// Copies the WAL's committed frames into the database file and empties the WAL (an
    /// import, a halt), rewrites `-shm` to say so, and drops the kernel's copies of all
    /// three: SQLite reads the folded pages from the database file from now on, and the
    /// kernel may hold that file's pages from before the fold (seen: an open connection no
    /// longer found a table created in the WAL); an `-shm` still naming the frames would
    /// send readers past the WAL's end, and a writer would append after frames that are
    /// gone (uncaptured: the WAL has no header). Under the internal write lock.
    pub(super) fn fold_wal_for_apply(&self) -> Result<()> {
        let mut stale = Stale::default();
        let truncated = {
            let mut state = self.lock();
            let truncated = self.fold_and_truncate_wal(&mut state)?;
            if truncated {
                stale.shm = self.rewrite_shm(&mut state)?;
            }
            truncated
        };
        if truncated {
            for kind in [FileKind::Database, FileKind::Wal] {
                self.shared.invalidate.send(Invalidation::Data {
                    db: &self.name,
                    kind,
                    offset: 0,
                    len: 0,
                });
            }
        }
        self.finish_apply(&stale);
        Ok(())
    }

    /// After an apply, with the state lock released: the kernel may answer an invalidation
    /// with requests that take it (writing back a dirty `-shm` page). SHM writes stay
    /// discarded until the invalidations are done (spec §3.10).
    fn finish_apply(&self, stale: &Stale) {
        self.send_invalidations(stale);
        self.shm_discard.store(false, Ordering::Release);
    }

    /// Applies the LTX file `file`; returns the new position and the file's header. The
    /// caller rewrites `-shm` (once for a batch) unless the file deleted the database.
    fn apply_locked(
        &self,
        state: &mut State,
        input: LtxInput<'_, impl Read>,
        stale: &mut Stale,
    ) -> Result<(Pos, Header)> {
        let (header, trailer, pgnos) = self.apply_ltx(state, input)?;
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
            // A drop like one on the primary: descriptors opened before it are of the old
            // database, should this node be promoted (`Db::check_incarnation`).
            self.drops.fetch_add(1, Ordering::AcqRel);
        } else {
            if !self.options.replica {
                let db_path = self.path(FileKind::Database);
                File::open(&db_path)
                    .and_then(|f| f.sync_all())
                    .io_context("fsync", &db_path)?;
            }
            stale.whole_db |= header.is_snapshot();
            stale.page_size = header.page_size;
            stale.db_pages.extend_from_slice(&pgnos);
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
        let pos = Pos {
            txid: header.max_txid,
            post_apply_checksum: trailer.post_apply_checksum,
        };
        self.set_pos(state, pos, header.timestamp_ms);
        Ok((pos, header))
    }

    /// Spec §3.10: a WAL index saying "empty WAL over `page_count` pages, changed". Only when a
    /// `-shm` of at least one block exists: without one no reader has an index to refresh,
    /// and SQLite builds it. Returns whether the file was rewritten (its kernel cache must
    /// then be dropped).
    ///
    /// Never changes the file's size, which LiteFS does (it truncates to one block): a size
    /// changed behind the kernel can reach a reader's `fstat` through a GETATTR reply the
    /// kernel itself then ignores (our invalidation overtook it), so SQLite maps `-shm`
    /// without growing it while the kernel still holds the old size, and dies of SIGBUS at
    /// the first touch — the likely cause of two CI aborts of
    /// `cluster::open_connection_sees_each_commit_wal*` at a replica's first read (found by
    /// reading the kernel's `fuse_change_attributes`; not reproduced). A file shorter than a
    /// block has no mapping yet (SQLite grows `-shm` with its own writes before it maps it)
    /// and no index worth keeping (SQLite only ever truncates it to 3 bytes), and whoever
    /// maps it rebuilds the index from the WAL. A longer one keeps its length: truncating it
    /// would fault a reader that has a second region mapped.
    fn rewrite_shm(&self, state: &mut State) -> Result<bool> {
        let path = self.path(FileKind::Shm);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).io_context("open", &path),
        };
        let len_bytes = file.metadata().io_context("stat", &path)?.len();
        if len_bytes < SHM_BLOCK_SIZE_BYTES as u64 {
            return Ok(false);
        }
        // FUSE writes to `-shm` (SQLite's mmap written back) are dropped from now until the
        // kernel's copy is invalidated, or they would overwrite the new index.
        self.shm_discard.store(true, Ordering::Release);
        let mut block = vec![0u8; SHM_BLOCK_SIZE_BYTES];
        super::read_full_at(&file, &mut block, 0).io_context("read", &path)?;
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
            let mut pages = stale.db_pages.clone();
            pages.sort_unstable();
            pages.dedup();
            for (offset, len) in coalesce(&pages, stale.page_size) {
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

/// Whether a received file of `len_bytes` is best stored by the caller with
/// [`Db::receive_into_file`] rather than read through [`Db::receive_verified`]: larger than a
/// replica keeps in memory, and small enough to be mapped for its verification.
pub fn receives_into_file(len_bytes: u64) -> bool {
    len_bytes > RECEIVE_IN_MEMORY_BYTES_MAX as u64 && len_bytes <= APPLY_MAP_BYTES_MAX
}

/// Largest received file applied from a mapping (populated whole before the apply: page
/// tables take ~8 bytes per 4 KiB, and a file larger than memory would be read twice); larger
/// ones are read.
const APPLY_MAP_BYTES_MAX: u64 = 1 << 30;

/// Maps a received LTX file (whole, read-only) for its apply; an error if it is empty or
/// larger than [`APPLY_MAP_BYTES_MAX`].
fn map_ltx(file: &File) -> io::Result<memmap2::Mmap> {
    let len_bytes = file.metadata()?.len();
    if len_bytes == 0 || len_bytes > APPLY_MAP_BYTES_MAX {
        return Err(io::Error::other("not mapped: empty or too large"));
    }
    // SAFETY: read-only, for the verification of a received temp file or the apply of the
    // file it was renamed to, which holds the internal write lock. Nothing truncates it
    // meanwhile: `receive-*.tmp` is no LTX name, so neither retention nor a snapshot's
    // clean-up takes it, and startup only removes such files (an unlink leaves a mapping
    // valid). Once renamed, commits, which create LTX files, wait for that lock; retention
    // (which truncates the files it retires, `spare.rs`) only takes files at or below the
    // position it read, never the newest, and this file is above the position until its
    // apply moves it, and the newest after. A truncation from outside the process would
    // fault (SIGBUS), as would a disk error reading a mapped page; a process writing the
    // data directory from outside is not supported (the same terms as the WAL scan's
    // mapping, `wal.rs`). Populated at once: the reader goes over every byte, in order.
    unsafe { memmap2::MmapOptions::new().populate().map(file) }
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
