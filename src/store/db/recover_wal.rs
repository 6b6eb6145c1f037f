//! WAL recovery at startup — better than LiteFS (spec §2.4 steps 5 and 6b).
//!
//! LiteFS truncates WAL frames that have no LTX file. Those frames may hold transactions
//! SQLite reported as committed (the daemon died after SQLite's write, before the LTX was
//! durable). We keep them: every committed transaction after the last LTX file becomes a new
//! LTX file, then all frames are copied into the database file and the WAL is emptied.

use super::wal_tail::WalBytes;
use super::{Db, FileKind, State};
use crate::ltx::{Header, Trailer};
use crate::sqlite::{WalHeader, WalTxn, committed_transactions};
use crate::store::error::{Error, IoContext, Result};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::BufReader;
use std::os::unix::fs::FileExt;

/// The committed WAL transactions split by whether an LTX file already records them.
pub(super) struct WalRecovery {
    wal: File,
    header: WalHeader,
    covered: Vec<WalTxn>,
    uncovered: Vec<WalTxn>,
}

/// The read buffer of a WAL scan at startup: with the default 8 KiB, scanning a 100 MB
/// transaction took 12,500 `read`s and ~80 ms; std leaves the buffer uninitialised, so it
/// costs no zeroing.
const WAL_SCAN_BUFFER_BYTES: usize = 1 << 20;

impl Db {
    /// Reads the WAL and decides which transactions the LTX files already hold. A WAL that
    /// belongs to neither the last LTX file nor a generation after it is set aside as
    /// `wal.removed` (as LiteFS does), never replayed.
    pub(super) fn read_wal_for_recovery(
        &self,
        state: &mut State,
        last: Option<&(Header, Trailer)>,
    ) -> Result<Option<WalRecovery>> {
        let path = self.path(FileKind::Wal);
        let mut wal = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).io_context("open", &path),
        };
        let Some(header) = WalHeader::read_from(&mut wal).ok().flatten() else {
            // No valid header: SQLite treats the WAL as empty, and so do we.
            fs::remove_file(&path).io_context("remove", &path)?;
            return Ok(None);
        };
        let reader = BufReader::with_capacity(WAL_SCAN_BUFFER_BYTES, &wal);
        let (txns, _) =
            committed_transactions(reader, &header, header.start()).map_err(Error::Sqlite)?;
        let last_header = last.map(|(h, _)| h);
        let same_generation =
            last_header.is_some_and(|h| h.wal_salt1 == header.salt1 && h.wal_salt2 == header.salt2);
        let (covered, uncovered) = if same_generation {
            let end = last_header.map_or(0, |h| (h.wal_offset + h.wal_size) as u64);
            txns.into_iter().partition(|t| t.end.offset_bytes <= end)
        } else if self.wal_follows(state, &header, last)? {
            (Vec::new(), txns)
        } else {
            let removed = self.dir.join("wal.removed");
            eprintln!(
                "litefs: database {:?}: WAL salts {:08x}/{:08x} match no LTX file; moved to {}",
                self.name,
                header.salt1,
                header.salt2,
                removed.display()
            );
            fs::rename(&path, &removed).io_context("rename", &removed)?;
            return Ok(None);
        };
        if state.page_size == 0 {
            state.page_size = header.page_size_bytes;
        }
        Ok(Some(WalRecovery {
            wal,
            header,
            covered,
            uncovered,
        }))
    }

    /// Whether a WAL of another generation than the last LTX file was written after it: the
    /// last file recorded no WAL, or the WAL was restarted from its generation (salt-1 + 1),
    /// or — a WAL created afresh after the old one was checkpointed and deleted — the
    /// database file holds exactly the last file's state, which the WAL's frames build on.
    /// The last case matters when every LTX file of the new WAL was torn by a crash.
    fn wal_follows(
        &self,
        state: &mut State,
        header: &WalHeader,
        last: Option<&(Header, Trailer)>,
    ) -> Result<bool> {
        let Some((h, trailer)) = last else {
            return Ok(true);
        };
        if (h.wal_salt1 == 0 && h.wal_salt2 == 0) || header.salt1 == h.wal_salt1.wrapping_add(1) {
            return Ok(true);
        }
        // Recomputed after this decision; reading the file twice happens only here.
        self.init_checksums(state)?;
        Ok(state.checksums.value() == trailer.post_apply_checksum.0)
    }

    /// Copies the newest committed frame of every page in `txns` into the database file and
    /// truncates it to the last commit's size.
    fn checkpoint_txns(&self, state: &State, wal: &File, txns: &[WalTxn]) -> Result<()> {
        let Some(last) = txns.last() else {
            return Ok(());
        };
        let mut newest: BTreeMap<u32, u64> = BTreeMap::new();
        for txn in txns {
            newest.extend(txn.frame_offsets.iter().map(|(&p, &o)| (p, o)));
        }
        let (db, db_path) = self.open_database_rw()?;
        let mut page = vec![0u8; state.page_size as usize];
        for (&pgno, &frame) in newest.iter().filter(|(p, _)| **p <= last.commit_size_pages) {
            wal.read_exact_at(&mut page, frame + 24)
                .io_context("read frame", self.path(FileKind::Wal))?;
            db.write_all_at(&page, u64::from(pgno - 1) * page.len() as u64)
                .io_context("write", &db_path)?;
        }
        db.set_len(u64::from(last.commit_size_pages) * u64::from(state.page_size))
            .io_context("truncate", &db_path)?;
        db.sync_all().io_context("fsync", &db_path)
    }

    /// Before checksums are computed: fold the already-recorded frames into the database file.
    pub(super) fn checkpoint_covered(&self, state: &State, r: &WalRecovery) -> Result<()> {
        self.checkpoint_txns(state, &r.wal, &r.covered)
    }

    /// After the last LTX file is re-applied: record the remaining transactions as new LTX
    /// files, copy them into the database file, and empty the WAL.
    pub(super) fn derive_uncovered(&self, state: &mut State, r: WalRecovery) -> Result<()> {
        let (db, _) = self.open_database_rw()?;
        for txn in &r.uncovered {
            // Read from the file: nothing of a WAL found at startup is held in memory.
            self.record_wal_txn(
                state,
                &r.wal,
                &r.header,
                txn,
                Some(&db),
                WalBytes::default(),
            )?;
            eprintln!(
                "litefs: database {:?}: recovered TXID {} from committed WAL frames at offset {}",
                self.name, state.pos.txid, txn.offset_bytes
            );
        }
        // Durable before their frames reach the database file and leave the WAL.
        self.sync_unsynced(state)?;
        self.checkpoint_txns(state, &r.wal, &r.uncovered)?;
        state.wal_frames.clear();
        let wal_path = self.path(FileKind::Wal);
        let wal = OpenOptions::new()
            .write(true)
            .open(&wal_path)
            .io_context("open", &wal_path)?;
        wal.set_len(0).io_context("truncate", &wal_path)?;
        wal.sync_all().io_context("fsync", &wal_path)
    }
}
