//! Startup recovery (spec §2.4).

use super::durability::unsynced_window_len;
use super::{Db, FileKind, State, ltx_log, sync_dir};
use crate::ltx::{self, lock_pgno};
use crate::sqlite::{self, DbHeader, JournalReader};
use crate::store::error::{Error, IoContext, Result};
use crate::types::{Pos, TxId};
use std::fs::{self, File};
use std::io::Read as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Largest run of adjacent pages written with one `pwrite` when applying an LTX file.
const APPLY_RUN_BYTES_MAX: usize = 1 << 20;

/// A whole LTX file to apply.
pub(super) enum LtxInput<'a, R> {
    /// Decoded from a reader; with its pages' checksums if this process verified it already.
    Reader(R, Option<&'a [u64]>),
    /// Verified by this process and held in memory, located page by page
    /// ([`ltx::PageSlices`]), with its pages' checksums.
    Slices(Box<ltx::PageSlices<'a>>, &'a [u64]),
}

impl Db {
    /// Startup recovery (spec §2.4, in its order).
    pub(super) fn recover(&self) -> Result<()> {
        let mut state = self.lock();
        let db_path = self.path(FileKind::Database);
        // 1. The database header: page size, page count and mode.
        // Only the header: the file may be far larger than memory.
        let head = File::open(&db_path).and_then(|f| {
            let mut head = Vec::with_capacity(100);
            std::io::Read::take(f, 100).read_to_end(&mut head)?;
            Ok(head)
        });
        match head {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => match DbHeader::parse(&bytes) {
                Ok(Some(h)) => {
                    state.page_size = h.page_size_bytes;
                    state.page_count = h.page_count;
                    state.wal_mode = h.is_wal();
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::Corrupt {
                        db: self.name.clone(),
                        message: format!(
                            "{}: {e}; move {} aside (it is not a SQLite database) and restart",
                            db_path.display(),
                            self.dir.display()
                        ),
                    });
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).io_context("read", &db_path),
        }
        // 3. The shared-memory index is rebuilt by SQLite; a stale one must not survive.
        let shm = self.path(FileKind::Shm);
        if shm.exists() {
            fs::remove_file(&shm).io_context("remove", &shm)?;
        }
        // Journal commits' files torn by a machine crash are restored from the LTX log first.
        self.restore_from_ltx_log(self.scan_ltx_dir()?)?;
        // Temp files are LTX files that never became durable: discard them. So are torn ones
        // (a machine crash before their batch was synced); the WAL re-derives what it holds.
        let files = self.drop_torn_tail(self.scan_ltx_dir()?)?;
        // What a killed process left unsynced is durable before anything below writes the
        // database file or empties the WAL (`durability.rs`).
        self.syncfs(&mut state)?;
        // So is every file the LTX log holds: its round is over.
        self.retire_ltx_log_at_start()?;
        let last = match files.last() {
            Some(path) => Some(self.read_ltx_ends(path)?),
            None => None,
        };
        // Taken before anything below writes the database file (a write makes it stale).
        let saved = self.take_checksum_table();
        // 6a. Roll back a hot journal.
        self.rollback_hot_journal(&mut state)?;
        // 5 + 6b. Fold the WAL frames the LTX files already hold into the database file.
        let wal = self.read_wal_for_recovery(&mut state, last.as_ref())?;
        if let Some(r) = &wal {
            self.checkpoint_covered(&state, r)?;
        }
        // 7. Page checksums: saved at the last clean close if they still describe the file,
        // else from the file.
        let newest = last.as_ref().map(|(h, t)| Pos {
            txid: h.max_txid,
            post_apply_checksum: t.post_apply_checksum,
        });
        let installed = match (saved, newest) {
            (Some(saved), Some(newest)) => self.install_checksum_table(&mut state, saved, newest),
            _ => false,
        };
        if !installed {
            self.init_checksums(&mut state)?;
        } else if self.options.strict_verify {
            let from_table = state.checksums.value();
            self.init_checksums(&mut state)?;
            if state.checksums.value() != from_table {
                return Err(Error::Corrupt {
                    db: self.name.clone(),
                    message: format!(
                        "the page checksums saved at the last close add up to {from_table:016x} \
                         but the database file to {:016x} (a bug: please report it)",
                        state.checksums.value()
                    ),
                });
            }
        }
        // 8. Re-apply the newest LTX file: it is the truth about the last commit.
        self.reapply_ltx_suffix(&mut state, &files)?;
        // Ours: committed WAL transactions without an LTX file become LTX files.
        if let Some(r) = wal {
            self.derive_uncovered(&mut state, r)?;
        }
        Ok(())
    }

    /// Deletes `*.tmp` files (LTX files that never became durable) and returns the LTX files
    /// sorted by MaxTXID.
    fn scan_ltx_dir(&self) -> Result<Vec<PathBuf>> {
        let mut files: Vec<(TxId, PathBuf)> = Vec::new();
        let mut temps = Vec::new();
        let entries = fs::read_dir(&self.ltx_dir).io_context("read directory", &self.ltx_dir)?;
        for entry in entries {
            let entry = entry.io_context("read directory", &self.ltx_dir)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                temps.push(entry.path());
            } else if let Some((_, max)) = ltx::parse_filename(&name) {
                files.push((max, entry.path()));
            }
        }
        // Removed after the listing: removing while reading a directory may skip entries.
        for path in temps {
            fs::remove_file(&path).io_context("remove", &path)?;
        }
        files.sort();
        Ok(files.into_iter().map(|(_, p)| p).collect())
    }

    fn rollback_hot_journal(&self, state: &mut State) -> Result<()> {
        let path = self.path(FileKind::Journal);
        let journal = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).io_context("open", &path),
        };
        let db_path = self.path(FileKind::Database);
        let page_size = (state.page_size != 0).then_some(state.page_size);
        let corrupt = |e: sqlite::Error| Error::Corrupt {
            db: self.name.clone(),
            message: format!("hot journal {}: {e}", path.display()),
        };
        let mut reader =
            JournalReader::new(std::io::BufReader::new(journal), page_size).map_err(corrupt)?;
        let (db_file, _) = self.open_database_rw()?;
        let journal_page_size = reader.page_size_bytes();
        let size = sqlite::rollback(&mut reader, |pgno, page| {
            let offset = u64::from(pgno - 1) * page.len() as u64;
            db_file
                .write_all_at(page, offset)
                .io_context("write", &db_path)
        })?;
        if let Some(size_pages) = size {
            db_file
                .set_len(u64::from(size_pages) * u64::from(journal_page_size))
                .io_context("truncate", &db_path)?;
            if state.page_size == 0 {
                state.page_size = journal_page_size;
            }
            state.page_count = size_pages;
        }
        db_file.sync_all().io_context("fsync", &db_path)?;
        fs::remove_file(&path).io_context("remove", &path)?;
        sync_dir(&self.dir)
    }

    pub(super) fn init_checksums(&self, state: &mut State) -> Result<()> {
        state.checksums.clear();
        if state.page_size == 0 {
            return Ok(());
        }
        let path = self.path(FileKind::Database);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).io_context("open", &path),
        };
        // The header again: recovery may have rewritten page 1 since step 1.
        let mut head = [0u8; 100];
        if f.read_exact_at(&mut head, 0).is_ok()
            && let Ok(Some(h)) = DbHeader::parse(&head)
        {
            state.page_size = h.page_size_bytes;
            state.page_count = h.page_count;
            state.wal_mode = h.is_wal();
        }
        // A short file: the re-applied LTX file below fills in the rest.
        let checksums =
            scan_page_checksums(&f, state.page_size, state.page_count).io_context("read", &path)?;
        let lock = lock_pgno(state.page_size);
        for (pgno, checksum) in (1..).zip(checksums) {
            if pgno != lock {
                state.checksums.set_checksum(pgno, checksum);
            }
        }
        Ok(())
    }

    /// The header and trailer of an LTX file, without reading its pages.
    fn read_ltx_ends(&self, path: &Path) -> Result<(ltx::Header, ltx::Trailer)> {
        let file = File::open(path).io_context("open", path)?;
        let len_bytes = file.metadata().io_context("stat", path)?.len();
        let mut trailer = [0u8; ltx::TRAILER_SIZE];
        let at = len_bytes.checked_sub(ltx::TRAILER_SIZE as u64);
        at.map_or(Err(std::io::ErrorKind::UnexpectedEof.into()), |at| {
            file.read_exact_at(&mut trailer, at)
        })
        .io_context("read trailer", path)?;
        let dec =
            ltx::Decoder::new(std::io::BufReader::new(file)).map_err(|source| Error::Ltx {
                db: self.name.clone(),
                source,
            })?;
        Ok((*dec.header(), ltx::Trailer::from_bytes(&trailer)))
    }

    /// Rewrites each LTX file the LTX log holds (`ltx_log.rs`) whose file in `ltx/` is
    /// missing or differs (torn by a machine crash before its batch was synced) — if it
    /// continues the chain on disk: its predecessor's post-apply checksum is its pre-apply
    /// checksum, and a whole file after it starts from its post-apply checksum. A pending
    /// file's predecessor is always on disk (retention syncs before it removes anything,
    /// `retention.rs`), while retention removes a leading run of files, so a retired file's
    /// predecessor is gone too: an entry of an older round that retention since removed is
    /// never restored, and neither is one of another history (a snapshot removes the log
    /// first, but a crash may come between). TXID 1 has no predecessor: a missing file 1 is
    /// restored only where no gap follows (`no_gap` below). A whole file of the same TXIDs is
    /// never replaced. `files` are sorted by MaxTXID.
    fn restore_from_ltx_log(&self, files: Vec<PathBuf>) -> Result<()> {
        let log_path = self.dir.join(ltx_log::LTX_LOG_NAME);
        // Its head first: after a clean close it starts no entry, and nothing else is read.
        let mut head = [0u8; ltx_log::ENTRY_HEADER_BYTES];
        let log = match File::open(&log_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).io_context("open", &log_path),
        };
        let head_len = super::read_full_at(&log, &mut head, 0).io_context("read", &log_path)?;
        if !ltx_log::starts_an_entry(&head[..head_len]) {
            return Ok(());
        }
        let log = fs::read(&log_path).io_context("read", &log_path)?;
        let mut by_max_txid: std::collections::BTreeMap<TxId, PathBuf> = files
            .into_iter()
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                Some((ltx::parse_filename(name)?.1, p))
            })
            .collect();
        let entries = ltx_log::entries(&log);
        // Whether restoring entry `i` leaves no gap after it: the TXID after it has a file on
        // disk (torn or not), or nothing on disk is newer, or the entry after it (which starts
        // at that TXID) leaves none. Asked of a missing file 1 only: a round that starts at
        // TXID 1 and that retention removed since would otherwise come back before a gap, and
        // the torn-tail check would then take the files after the gap for torn. (Any other
        // entry needs its predecessor, which retention removed first; a gap after it is then
        // a file lost in the crash, which the torn-tail check and the WAL deal with.)
        let mut no_gap = vec![false; entries.len()];
        for i in (0..entries.len()).rev() {
            let next = TxId(entries[i].0.header.max_txid.0 + 1);
            no_gap[i] = by_max_txid.contains_key(&next)
                || by_max_txid.range(next..).next().is_none()
                || no_gap.get(i + 1).copied().unwrap_or(false);
        }
        let mut restored = 0;
        for ((summary, bytes), no_gap) in entries.into_iter().zip(no_gap) {
            let header = summary.header;
            let path = self
                .ltx_dir
                .join(ltx::format_filename(header.min_txid, header.max_txid));
            // A file of these TXIDs that verifies is never replaced: the same one, or one of
            // another history. (A whole file of other TXIDs is a spare renamed in but not
            // overwritten: torn.)
            let whole = |on_disk: Vec<u8>| {
                on_disk == bytes
                    || ltx::verify(&on_disk[..]).is_ok_and(|s| {
                        (s.header.min_txid, s.header.max_txid) == (header.min_txid, header.max_txid)
                    })
            };
            if fs::read(&path).is_ok_and(whole) {
                continue;
            }
            let ends = |txid: u64| {
                let path = by_max_txid.get(&TxId(txid))?;
                self.read_ltx_ends(path).ok()
            };
            let follows = match header.min_txid.0.saturating_sub(1) {
                0 => by_max_txid.contains_key(&header.max_txid) || no_gap,
                before => ends(before)
                    .is_some_and(|(_, t)| t.post_apply_checksum == header.pre_apply_checksum),
            };
            // A whole file after it must continue from it, too.
            let next = TxId(header.max_txid.0 + 1);
            let followed = ends(next.0).is_none_or(|(h, _)| {
                h.min_txid != next || h.pre_apply_checksum == summary.trailer.post_apply_checksum
            });
            if !follows || !followed {
                continue;
            }
            eprintln!(
                "litefs: database {:?}: restoring {} ({} bytes) from {}: torn or lost by a crash before it was synced",
                self.name,
                path.display(),
                bytes.len(),
                log_path.display()
            );
            fs::write(&path, bytes)
                .and_then(|()| File::open(&path)?.sync_all())
                .io_context("restore", &path)?;
            by_max_txid.insert(header.max_txid, path);
            restored += 1;
        }
        if restored > 0 {
            sync_dir(&self.ltx_dir)?;
        }
        Ok(())
    }

    /// Zeroes the LTX log's head, durably, if it starts an entry (a process stopped without a
    /// clean close): every file of that round is durable now (restored, or synced by the
    /// start's `syncfs`), and the log need not be read again — nor its round retired by a
    /// retention pass in a process that never opens the log.
    fn retire_ltx_log_at_start(&self) -> Result<()> {
        let path = self.dir.join(ltx_log::LTX_LOG_NAME);
        let log = match fs::OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).io_context("open", &path),
        };
        let mut head = [0u8; ltx_log::ENTRY_HEADER_BYTES];
        let head_len = super::read_full_at(&log, &mut head, 0).io_context("read", &path)?;
        if ltx_log::starts_an_entry(&head[..head_len]) {
            log.write_all_at(&[0; ltx_log::ENTRY_HEADER_BYTES], 0)
                .and_then(|()| log.sync_data())
                .io_context("zero the head of", &path)?;
        }
        Ok(())
    }

    /// Verifies every LTX file that may not have been synced (`durability.rs`), oldest first;
    /// the first torn one ([`Db::torn_reason`]) and every later file are removed (a later file
    /// cannot be applied without it). Returns the files that remain.
    fn drop_torn_tail(&self, mut files: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
        let newest_first = files
            .iter()
            .rev()
            .map(|p| fs::metadata(p).map(|m| m.len()).io_context("stat", p));
        let window_start = files.len() - unsynced_window_len(newest_first)?;
        for i in window_start..files.len() {
            let previous = i.checked_sub(1).map(|p| files[p].as_path());
            let Some(why) = self.torn_reason(previous, &files[i])? else {
                continue;
            };
            for torn in &files[i..] {
                eprintln!(
                    "litefs: database {:?}: removing {} ({} bytes): {}; an LTX file torn by a crash before it was synced — the WAL restores what it still holds",
                    self.name,
                    torn.display(),
                    fs::metadata(torn).map_or(0, |m| m.len()),
                    if torn == &files[i] {
                        why.as_str()
                    } else {
                        "after a torn file"
                    }
                );
                fs::remove_file(torn).io_context("remove", torn)?;
            }
            sync_dir(&self.ltx_dir)?;
            files.truncate(i);
            break;
        }
        Ok(files)
    }

    /// Why the LTX file `path` is torn, if it is: its predecessor `previous` is missing (the
    /// file between them lost its name), it holds other TXIDs than its name (a reused spare
    /// inode not yet overwritten, `spare.rs`), or it does not decode. An I/O error other
    /// than a short read is an error, not a torn file.
    fn torn_reason(&self, previous: Option<&Path>, path: &Path) -> Result<Option<String>> {
        let range = |path: &Path| {
            let name = path.file_name()?.to_string_lossy();
            ltx::parse_filename(&name)
        };
        if let (Some(Some((_, prev_max))), Some((min, _))) = (previous.map(range), range(path))
            && min.0 != prev_max.0 + 1
        {
            return Ok(Some("the file before it is missing".into()));
        }
        let file = File::open(path).io_context("open", path)?;
        match ltx::verify(std::io::BufReader::new(file)) {
            Ok(s) if range(path) == Some((s.header.min_txid, s.header.max_txid)) => Ok(None),
            Ok(s) => Ok(Some(format!(
                "it holds TXIDs {}-{}, not those of its name",
                s.header.min_txid, s.header.max_txid
            ))),
            Err(e) => match e.root() {
                ltx::Error::Io(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
                    Err(Error::Ltx {
                        db: self.name.clone(),
                        source: e,
                    })
                }
                _ => Ok(Some(e.to_string())),
            },
        }
    }

    /// Writes one LTX file's pages into the database file (or removes the files for a
    /// deletion) and updates the checksum cache and the mode (page 1 says WAL: spec §3.11
    /// step 2); returns the header, the trailer and the pages written.
    pub(super) fn apply_ltx_file(
        &self,
        state: &mut State,
        path: &Path,
    ) -> Result<(ltx::Header, ltx::Trailer, Vec<u32>)> {
        let file = File::open(path).io_context("open", path)?;
        self.apply_ltx(state, LtxInput::Reader(std::io::BufReader::new(file), None))
    }

    /// [`Db::apply_ltx_file`] from any whole LTX file.
    pub(super) fn apply_ltx(
        &self,
        state: &mut State,
        input: LtxInput<'_, impl std::io::Read>,
    ) -> Result<(ltx::Header, ltx::Trailer, Vec<u32>)> {
        match input {
            LtxInput::Reader(file, verified) => self.apply_decoded(state, file, verified),
            LtxInput::Slices(pages, verified) => self.apply_slices(state, *pages, verified),
        }
    }

    /// [`Db::apply_ltx`] of a file decoded from a reader. `verified`: the file was verified
    /// whole by this process, and these are its pages' checksums in file order; it is then
    /// decoded without checksumming it again.
    fn apply_decoded(
        &self,
        state: &mut State,
        file: impl std::io::Read,
        verified: Option<&[u64]>,
    ) -> Result<(ltx::Header, ltx::Trailer, Vec<u32>)> {
        let ltx_err = |source| Error::Ltx {
            db: self.name.clone(),
            source,
        };
        let mut dec = match verified {
            Some(_) => ltx::Decoder::new_verified(file),
            None => ltx::Decoder::new(file),
        }
        .map_err(ltx_err)?;
        // The checksums of the pages of the run being built: `verified`'s from `run_index` on.
        let known = |run_index: usize, run_pages: usize| -> Result<Option<&[u64]>> {
            verified
                .map(|all| self.verified_run(all, run_index, run_pages))
                .transpose()
        };
        let h = *dec.header();
        state.page_size = h.page_size;
        state.page_count = h.commit;
        if h.commit == 0 {
            // A deletion (spec §1.9): the file is checked whole before the database's files go.
            let (trailer, _) = dec.finish().map_err(ltx_err)?;
            for kind in [FileKind::Database, FileKind::Journal, FileKind::Wal] {
                match fs::remove_file(self.path(kind)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).io_context("remove", self.path(kind)),
                }
            }
            state.checksums.clear();
            return Ok((h, trailer, Vec::new()));
        }
        let mut pages = self.page_applier(h.page_size)?;
        let page_size = h.page_size as usize;
        // Pages are decoded straight into the run; a page that does not continue it is moved
        // to the front once the run before it is written. The buffer grows a page at a time
        // (a one-page transaction zeroes one page, not the run's maximum).
        let run_bytes_max = APPLY_RUN_BYTES_MAX.max(page_size);
        let mut run = Vec::new();
        let (mut run_first, mut run_pages, mut run_index) = (0u32, 0usize, 0usize);
        loop {
            let slot = run_pages * page_size;
            if run.len() < slot + page_size {
                run.resize(slot + page_size, 0);
            }
            let Some(pgno) = dec
                .decode_page(&mut run[slot..slot + page_size])
                .map_err(ltx_err)?
            else {
                break;
            };
            // (Checked: the decoder leaves page order to the encoder, so a file may end a
            // run at page u32::MAX.)
            let continues = run_pages > 0 && run_first.checked_add(run_pages as u32) == Some(pgno);
            if run_pages > 0 && !continues {
                let checksums = known(run_index, run_pages)?;
                pages.write_run(state, run_first, &run[..slot], checksums)?;
                run.copy_within(slot..slot + page_size, 0);
                run_index += run_pages;
                run_pages = 0;
            }
            if run_pages == 0 {
                run_first = pgno;
            }
            run_pages += 1;
            if (run_pages + 1) * page_size > run_bytes_max {
                let checksums = known(run_index, run_pages)?;
                pages.write_run(state, run_first, &run[..run_pages * page_size], checksums)?;
                run_index += run_pages;
                run_pages = 0;
            }
        }
        let checksums = known(run_index, run_pages)?;
        pages.write_run(state, run_first, &run[..run_pages * page_size], checksums)?;
        let (trailer, _) = dec.finish().map_err(ltx_err)?;
        let pgnos = pages.finish(state, &h)?;
        Ok((h, trailer, pgnos))
    }

    /// [`Db::apply_ltx`] of a verified file in memory: each run of adjacent pages is written by
    /// one `pwritev` from where the pages lie — the file's own bytes for blocks stored raw —
    /// never copied into a run buffer first (for a 100 MB transaction that was a `read` and a
    /// copy per page). `verified` holds its pages' checksums in file order.
    fn apply_slices(
        &self,
        state: &mut State,
        mut file: ltx::PageSlices<'_>,
        verified: &[u64],
    ) -> Result<(ltx::Header, ltx::Trailer, Vec<u32>)> {
        let h = *file.header();
        if h.commit == 0 {
            return Err(Error::Corrupt {
                db: self.name.clone(),
                message: "a deletion was handed to the page-slice apply".into(),
            });
        }
        state.page_size = h.page_size;
        state.page_count = h.commit;
        let mut pages = self.page_applier(h.page_size)?;
        let page_size = h.page_size as usize;
        let run_pages_max = (APPLY_RUN_BYTES_MAX / page_size).max(1);
        let mut run: Vec<&[u8]> = Vec::new();
        let (mut run_first, mut run_pages, mut index) = (0u32, 0usize, 0usize);
        let mut next = Vec::new();
        let ltx_err = |source| Error::Ltx {
            db: self.name.clone(),
            source,
        };
        loop {
            next.clear();
            let pgno = file.next_page(&mut next).map_err(ltx_err)?;
            let continues = run_pages > 0
                && pgno.is_some_and(|pgno| {
                    run_pages < run_pages_max
                        && run_first.checked_add(run_pages as u32) == Some(pgno)
                });
            if run_pages > 0 && !continues {
                let checksums = self.verified_run(verified, index, run_pages)?;
                pages.write_run_from(state, run_first, &run, checksums)?;
                index += run_pages;
                run.clear();
                run_pages = 0;
            }
            let Some(pgno) = pgno else {
                break;
            };
            if run_pages == 0 {
                run_first = pgno;
            }
            run.extend_from_slice(&next);
            run_pages += 1;
        }
        let trailer = file.trailer();
        let pgnos = pages.finish(state, &h)?;
        Ok((h, trailer, pgnos))
    }

    /// The checksums a verification kept for the `len` pages from page `index` of a file on.
    fn verified_run<'v>(&self, verified: &'v [u64], index: usize, len: usize) -> Result<&'v [u64]> {
        verified
            .get(index..index + len)
            .ok_or_else(|| Error::Corrupt {
                db: self.name.clone(),
                message: format!(
                    "LTX file has more pages than the {} verified before",
                    verified.len()
                ),
            })
    }

    /// Opens the database file for an apply's page writes.
    fn page_applier(&self, page_size: u32) -> Result<PageApplier> {
        let (db_file, db_path) = self.open_database_rw()?;
        Ok(PageApplier {
            db_file,
            db_path,
            page_size: page_size as usize,
            pgnos: Vec::new(),
        })
    }

    /// Step 8, made robust: re-apply the newest LTX file and require the database checksum to
    /// match its post-apply checksum. If it does not, the database file is older than the file
    /// before it too (e.g. `synchronous=NORMAL` WAL frames lost with the machine while their
    /// LTX files were durable), so re-apply a longer suffix of the chain — 2, 4, 8 … files, up
    /// to all of them — which is correct whenever the suffix starts at or before the state the
    /// database file holds.
    fn reapply_ltx_suffix(&self, state: &mut State, files: &[PathBuf]) -> Result<()> {
        let mut suffix_len = 1usize;
        loop {
            let start = files.len() - suffix_len.min(files.len());
            let mut last = None;
            for path in &files[start..] {
                let (h, trailer, _) = self.apply_ltx_file(state, path)?;
                last = Some(((h, trailer), path));
            }
            let Some(((h, trailer), path)) = last else {
                return Ok(());
            };
            let actual = state.checksums.value();
            if actual == trailer.post_apply_checksum.0 {
                if h.commit > 0 {
                    let db_path = self.path(FileKind::Database);
                    File::open(&db_path)
                        .and_then(|f| f.sync_all())
                        .io_context("fsync", &db_path)?;
                }
                let pos = Pos {
                    txid: h.max_txid,
                    post_apply_checksum: trailer.post_apply_checksum,
                };
                self.set_pos(state, pos, h.timestamp_ms);
                if suffix_len > 1 {
                    eprintln!(
                        "litefs: database {:?}: recovered by re-applying the last {} LTX files",
                        self.name,
                        files.len() - start
                    );
                }
                return Ok(());
            }
            if start == 0 {
                return Err(Error::Corrupt {
                    db: self.name.clone(),
                    message: format!(
                        "recover ltx: database checksum {actual:016x} on TXID {} does not match LTX post-apply checksum {} ({}), even after re-applying all {} LTX files",
                        h.max_txid,
                        trailer.post_apply_checksum,
                        path.display(),
                        files.len()
                    ),
                });
            }
            suffix_len *= 2;
        }
    }
}

/// Writes an apply's pages into the database file, a run of adjacent pages per `pwrite`, and
/// keeps the checksum cache and the mode (page 1 says WAL: spec §3.11 step 2) up to date.
struct PageApplier {
    db_file: File,
    db_path: PathBuf,
    page_size: usize,
    pgnos: Vec<u32>,
}

impl PageApplier {
    /// Writes `bytes`, whole pages from `first` on; `checksums` are their page checksums if
    /// already known (else computed here).
    fn write_run(
        &mut self,
        state: &mut State,
        first: u32,
        bytes: &[u8],
        checksums: Option<&[u64]>,
    ) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let offset = u64::from(first - 1) * self.page_size as u64;
        self.db_file
            .write_all_at(bytes, offset)
            .io_context("write", &self.db_path)?;
        for (i, page) in bytes.chunks_exact(self.page_size).enumerate() {
            let pgno = first + i as u32;
            match checksums {
                Some(known) => state.checksums.set_checksum(pgno, known[i]),
                None => state.checksums.set(pgno, page),
            }
            self.written(state, pgno, page);
        }
        Ok(())
    }

    /// [`PageApplier::write_run`] of `checksums.len()` whole pages held in `slices` (in
    /// order; a page may span several), written with `pwritev` straight from them.
    fn write_run_from(
        &mut self,
        state: &mut State,
        first: u32,
        slices: &[&[u8]],
        checksums: &[u64],
    ) -> Result<()> {
        let offset = u64::from(first - 1) * self.page_size as u64;
        write_all_vectored_at(&self.db_file, slices, offset).io_context("write", &self.db_path)?;
        for (i, &checksum) in checksums.iter().enumerate() {
            // (`first + i` is at most the run's last page, which the caller checked fits.)
            let pgno = first + i as u32;
            state.checksums.set_checksum(pgno, checksum);
            let mut header = [0u8; sqlite::db_header::DB_HEADER_SIZE_BYTES];
            if pgno == 1 {
                // The database header may be split between two slices.
                let mut filled = 0;
                for slice in slices {
                    let n = slice.len().min(header.len() - filled);
                    header[filled..filled + n].copy_from_slice(&slice[..n]);
                    filled += n;
                    if filled == header.len() {
                        break;
                    }
                }
            }
            self.written(state, pgno, &header);
        }
        Ok(())
    }

    /// Notes page `pgno` written; `page` holds at least its first 100 bytes if it is page 1.
    fn written(&mut self, state: &mut State, pgno: u32, page: &[u8]) {
        if pgno == 1 && DbHeader::parse(page).is_ok_and(|d| d.is_some_and(|d| d.is_wal())) {
            // Only ever upgraded here, as LiteFS: a deletion resets it.
            state.wal_mode = true;
        }
        self.pgnos.push(pgno);
    }

    /// Cuts the database file to the header's page count; returns the pages written.
    fn finish(self, state: &mut State, h: &ltx::Header) -> Result<Vec<u32>> {
        self.db_file
            .set_len(u64::from(h.commit) * u64::from(h.page_size))
            .io_context("truncate", &self.db_path)?;
        state.checksums.truncate(h.commit);
        Ok(self.pgnos)
    }
}

/// Writes every byte of `slices`, in order, at `offset` (`pwritev`; std has no stable
/// positioned vectored write).
fn write_all_vectored_at(file: &File, slices: &[&[u8]], mut offset: u64) -> std::io::Result<()> {
    /// Slices per call at most (Linux's `IOV_MAX`).
    const SLICES_PER_CALL_MAX: usize = 1024;
    let mut iov: Vec<std::io::IoSlice<'_>> =
        slices.iter().map(|s| std::io::IoSlice::new(s)).collect();
    let mut left = &mut iov[..];
    // Drops leading empty slices: nothing left to write never reaches `pwritev` (whose 0
    // would read as `WriteZero`).
    std::io::IoSlice::advance_slices(&mut left, 0);
    while !left.is_empty() {
        let count = left.len().min(SLICES_PER_CALL_MAX);
        let at = libc::off_t::try_from(offset)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: std guarantees `IoSlice` is ABI-compatible with `iovec` on Unix; the first
        // `count` entries borrow live buffers for the whole call, and `file` is open.
        let n = unsafe {
            libc::pwritev(
                std::os::fd::AsRawFd::as_raw_fd(file),
                left.as_ptr().cast(),
                count as libc::c_int,
                at,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        offset += n as u64;
        std::io::IoSlice::advance_slices(&mut left, n as usize);
    }
    Ok(())
}

/// Bytes read per `pread` by the page-checksum scan: a page at a time cost one system call
/// per 4 KiB (2.4 million for a 10 GB database).
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// A database smaller than this is scanned by one thread.
const SCAN_PARALLEL_MIN_BYTES: u64 = 64 << 20;
/// Threads of one scan at most (each holds one chunk).
const SCAN_THREADS_MAX: usize = 4;

/// The checksums of pages `1..=page_count` of `f` as far as the file holds whole pages, in
/// page order (the caller skips the lock page). Large files are split into contiguous ranges
/// scanned in parallel: after a crash there is no saved table and the whole file is read
/// (docs/ARCHITECTURE.md §4.2), and with the file in the page cache the CRC is the cost.
fn scan_page_checksums(f: &File, page_size: u32, page_count: u32) -> std::io::Result<Vec<u64>> {
    let total_bytes = u64::from(page_count) * u64::from(page_size);
    let threads = if total_bytes < SCAN_PARALLEL_MIN_BYTES {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(SCAN_THREADS_MAX)
    };
    scan_page_checksums_in(f, page_size, page_count, threads)
}

/// [`scan_page_checksums`] on `threads` threads.
fn scan_page_checksums_in(
    f: &File,
    page_size: u32,
    page_count: u32,
    threads: usize,
) -> std::io::Result<Vec<u64>> {
    let threads = threads.max(1);
    let per_thread = page_count.div_ceil(threads as u32).max(1);
    let ranges: Vec<(u32, u32)> = (0..threads as u32)
        .map(|i| (1 + i * per_thread, page_count.min((i + 1) * per_thread)))
        .filter(|(first, last)| first <= last)
        .collect();
    let parts: Vec<std::io::Result<(Vec<u64>, bool)>> = std::thread::scope(|s| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(first, last)| s.spawn(move || scan_range(f, page_size, first, last)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("scan panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(page_count as usize);
    for part in parts {
        let (checksums, whole) = part?;
        all.extend(checksums);
        if !whole {
            break;
        }
    }
    Ok(all)
}

/// The checksums of pages `first..=last`, and whether the file held all of them (it stops at
/// the first page the file does not hold whole).
fn scan_range(
    f: &File,
    page_size: u32,
    first: u32,
    last: u32,
) -> std::io::Result<(Vec<u64>, bool)> {
    let page_bytes = page_size as usize;
    let pages_per_chunk = (SCAN_CHUNK_BYTES / page_bytes).max(1);
    let mut buf = vec![0u8; pages_per_chunk * page_bytes];
    let mut out = Vec::with_capacity((last - first + 1) as usize);
    let mut pgno = first;
    while pgno <= last {
        let pages = pages_per_chunk.min((last - pgno + 1) as usize);
        let want = &mut buf[..pages * page_bytes];
        let offset = u64::from(pgno - 1) * u64::from(page_size);
        let got = super::read_full_at(f, want, offset)?;
        for page in want[..got].chunks_exact(page_bytes) {
            out.push(crate::ltx::page_checksum(pgno, page));
            pgno += 1;
        }
        if got < want.len() {
            return Ok((out, false));
        }
    }
    Ok((out, true))
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    /// Slices of every size, empty ones among them and more than one call takes, land in
    /// order at the offset (the file's bytes before it untouched).
    #[test]
    fn a_vectored_write_writes_every_slice_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [0xEEu8; 10]).unwrap();
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut rng = crate::testkit::XorShift64(9);
        let data = rng.bytes(3000 * 7 + 5);
        let mut slices: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        for len in [0usize, 7, 0, 7, 1].into_iter().cycle() {
            let end = (at + len).min(data.len());
            slices.push(&data[at..end]);
            at = end;
            if at == data.len() {
                break;
            }
        }
        assert!(slices.len() > 2 * 1024, "{} slices", slices.len());
        write_all_vectored_at(&file, &slices, 3).unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(back.len(), 3 + data.len());
        assert_eq!(back[..3], [0xEE; 3]);
        assert!(back[3..] == data[..], "the file differs from the slices");
    }

    /// Every split of the scan gives the page-by-page answer, up to the last whole page of a
    /// short file, whichever range the file ends in.
    #[test]
    fn a_parallel_scan_matches_page_by_page_up_to_the_last_whole_page() {
        const PAGE: u32 = 512;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // 5,000 pages and half a page: more than one chunk per range.
        let bytes: Vec<u8> = (0..5_000 * PAGE as usize + PAGE as usize / 2)
            .map(|i| (i * 7 + i / 511) as u8)
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        let whole = bytes.len() / PAGE as usize;
        let expected: Vec<u64> = bytes
            .chunks_exact(PAGE as usize)
            .zip(1..)
            .map(|(page, pgno)| ltx::page_checksum(pgno, page))
            .collect();
        for threads in [1, 2, 3, 4] {
            for page_count in [1, 2_500, 5_000, 5_001, 9_000] {
                let got = scan_page_checksums_in(&f, PAGE, page_count, threads).unwrap();
                let want = whole.min(page_count as usize);
                assert_eq!(
                    got.len(),
                    want,
                    "{threads} threads, {page_count} pages asked: pages scanned"
                );
                assert!(
                    got == expected[..want],
                    "{threads} threads, {page_count} pages: checksums differ"
                );
            }
        }
    }
}
