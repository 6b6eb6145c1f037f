//! Rollback-journal transactions (spec §3.6): the journal's invalidation is the commit.

use super::commit::{Encoded, PageSource, WalFields};
use super::durability::{Durability, LogSync, write_out};
use super::{Db, FileKind, JOURNAL_HEADER_SIZE, JournalMode, State};
use crate::sqlite;
use crate::store::error::{IoContext, Result};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Db {
    /// Removes the journal in the way SQLite asked, without recording anything.
    pub(super) fn invalidate_journal(&self, state: &mut State, mode: JournalMode) -> Result<()> {
        let path = self.path(FileKind::Journal);
        match mode {
            JournalMode::Delete => {
                state.files[FileKind::Journal.index()] = None;
                fs::remove_file(&path).io_context("remove", &path)
            }
            JournalMode::Truncate => {
                let f = self.file(state, FileKind::Journal)?;
                f.set_len(0).io_context("truncate", &path)?;
                f.sync_all().io_context("fsync", &path)
            }
            JournalMode::Persist => {
                let f = self.file(state, FileKind::Journal)?;
                f.write_all_at(&[0; JOURNAL_HEADER_SIZE], 0)
                    .io_context("write", &path)?;
                f.sync_all().io_context("fsync", &path)
            }
        }
    }

    /// Spec §3.6 `CommitJournal`: the pages SQLite wrote since the journal appeared become
    /// LTX file TXID+1, then the journal is invalidated as SQLite asked. A file written at
    /// SQLite's database fsync is published as it is (see [`Db::fsync_database`]).
    pub(super) fn commit_journal(&self, state: &mut State, mode: JournalMode) -> Result<()> {
        if let Some(early) = state.early_commit.take() {
            let pos = state.pos;
            if early.encoded.txid().0 == pos.txid.0 + 1
                && early.encoded.pre_apply_checksum() == pos.post_apply_checksum
            {
                let wal_mode = early.wal_mode;
                self.persist_and_publish(state, early.encoded, Durability::Written)?;
                // Relaxed: a counter for reporting only.
                self.early_commit_count.fetch_add(1, Ordering::Relaxed);
                return self.finish_journal_commit(state, mode, wal_mode);
            }
            state.early_commit = Some(early);
            self.discard_early_commit(state);
        }
        let Some(plan) = self.journal_commit_plan(state)? else {
            // A rollback, or a journal that never reached the database: nothing to record.
            state.dirty.clear();
            return self.invalidate_journal(state, mode);
        };
        self.write_ltx(
            state,
            PageSource::Database(&plan.db_file),
            plan.commit,
            &plan.pages,
            WalFields::default(),
            Durability::Logged,
        )?;
        self.finish_journal_commit(state, mode, plan.wal_mode)
    }

    fn finish_journal_commit(
        &self,
        state: &mut State,
        mode: JournalMode,
        wal_mode: bool,
    ) -> Result<()> {
        self.invalidate_journal(state, mode)?;
        state.dirty.clear();
        state.wal_mode = wal_mode;
        self.verify_if_strict(state)?;
        Ok(())
    }

    /// What the journal's invalidation would record now, or `None` if nothing: no journal
    /// header (a rollback, or a journal that never reached the database), or no page size.
    fn journal_commit_plan(&self, state: &mut State) -> Result<Option<JournalCommit>> {
        let journal = self.file(state, FileKind::Journal)?;
        let mut magic = [0u8; 8];
        let has_magic =
            journal.read_exact_at(&mut magic, 0).is_ok() && magic == sqlite::journal::JOURNAL_MAGIC;
        if !has_magic || state.page_size == 0 {
            return Ok(None);
        }
        let db_file = self.file(state, FileKind::Database)?;
        let mut head = [0u8; 32];
        db_file
            .read_exact_at(&mut head, 0)
            .io_context("read database header", self.path(FileKind::Database))?;
        let commit = u32::from_be_bytes([head[28], head[29], head[30], head[31]]);
        let wal_mode = head[18] == 2 && head[19] == 2;
        let pages: Vec<u32> = if state.pos.txid.0 == 0 {
            // TXID 1 is a snapshot: every page, whatever this transaction touched.
            (1..=commit).collect()
        } else {
            state
                .dirty
                .iter()
                .copied()
                .filter(|&p| p <= commit)
                .collect()
        };
        Ok(Some(JournalCommit {
            db_file,
            commit,
            pages,
            wal_mode,
        }))
    }

    /// SQLite's fsync of the database file, asked by thread `caller`. In a rollback-journal
    /// transaction it comes after the last page is written and before the journal's
    /// invalidation commits (SQLite writes the pages and fsyncs in one call, COMMIT, and
    /// writes nothing in between), so the LTX file is written here and its LTX-log entry
    /// written to the disk, unflushed, before the database's own fsync: the device flush that
    /// SQLite pays for makes both durable, and the invalidation only publishes the file — one
    /// device flush per commit less than logging it then (ARCHITECTURE §4.1 "The LTX log").
    ///
    /// Until the invalidation the transaction may still not commit: any write to the database
    /// or the journal, a failed fsync, another capture, or the database's close discards the
    /// file and zeroes its entry durably first ([`Db::discard_early_commit`]). A crash before
    /// the invalidation leaves a hot journal and a durable LTX file for TXID+1, which
    /// recovery takes for the truth (spec §2.4: the newest LTX file is re-applied after the
    /// journal's rollback): the transaction commits, as it would have had the crash come just
    /// after the invalidation — SQLite had not answered the COMMIT, or had it fail with the
    /// lost connection.
    pub(super) fn fsync_database(&self, datasync: bool, caller: u32) -> Result<()> {
        let (db_file, early) = {
            // Undrained: a WAL checkpoint's fsync needs no published transaction, and a
            // journal commit's file written below publishes the queue first.
            let mut state = self.lock_undrained();
            let db_file = self.file(&mut state, FileKind::Database)?;
            // Only the thread that wrote the pages is SQLite at its commit: another process's
            // fsync in the middle of a transaction (one that spilled pages early) would
            // otherwise record the half written so far.
            let early = caller != 0
                && caller == state.database_writer
                && self.write_early_commit(&mut state)?;
            (db_file, early)
        };
        let path = self.path(FileKind::Database);
        let synced = if datasync {
            db_file.sync_data().io_context("fdatasync", &path)
        } else {
            db_file.sync_all().io_context("fsync", &path)
        };
        if synced.is_err() && early {
            // SQLite rolls the transaction back: it must not survive a crash.
            self.discard_early_commit(&mut self.lock_undrained());
        }
        synced
    }

    /// Writes the journal transaction's LTX file and LTX-log entry for
    /// [`Db::fsync_database`], if it is one the log can take; true if it did.
    fn write_early_commit(&self, state: &mut State) -> Result<bool> {
        let possible = self.flush_covers_completed_overwrites
            && state.early_commit.is_none()
            && !state.wal_mode
            // TXID 1 (a snapshot of every page) keeps its own rules in recovery.
            && state.pos.txid.0 > 0
            && !state.dirty.is_empty()
            && state.unsynced.unlogged == 0
            && !state.ltx_log_unusable
            && state.files[FileKind::Journal.index()]
                .as_deref()
                .is_some_and(|journal| !names_a_super_journal(journal));
        if !possible {
            return Ok(false);
        }
        let Some(plan) = self.journal_commit_plan(state)? else {
            return Ok(false);
        };
        // Larger files would not fit the LTX log (nor be whole in the write buffer).
        if plan.pages.len() as u64 * u64::from(state.page_size) > EARLY_COMMIT_BYTES_MAX {
            return Ok(false);
        }
        let encoded = self.encode_next(
            state,
            PageSource::Database(&plan.db_file),
            plan.commit,
            &plan.pages,
            WalFields::default(),
        )?;
        // The database's pages go out to the disk while the entry below is written.
        let logged = match (encoded.whole(), write_out(&plan.db_file, 0, 0, false)) {
            // Draining the deferred WAL captures above cannot add unlogged files in journal
            // mode; checked again all the same, as `persist` does.
            (Some(bytes), Ok(())) if state.unsynced.unlogged == 0 => self
                .persist_logged(state, bytes, LogSync::ByNextFlush)
                .map(Some),
            // Too large for the log, or no write-out: logged at the invalidation as before.
            _ => Ok(None),
        };
        match logged {
            Ok(Some(log_at)) => {
                state.early_commit = Some(EarlyCommit {
                    encoded,
                    log_at,
                    wal_mode: plan.wal_mode,
                });
                Ok(true)
            }
            Ok(None) => {
                encoded.discard(self, state);
                Ok(false)
            }
            Err(e) => {
                encoded.discard(self, state);
                Err(e)
            }
        }
    }

    /// Removes a journal commit's file written at SQLite's database fsync that will not be
    /// published, and zeroes its LTX-log entry, both durably; nothing if there is none.
    pub(super) fn discard_early_commit(&self, state: &mut State) {
        let Some(early) = state.early_commit.take() else {
            return;
        };
        if let Some(at) = early.log_at {
            self.zero_ltx_log_entry(state, at);
        }
        early.encoded.discard(self, state);
    }
}

/// At most this many bytes of pages go into a file written at SQLite's database fsync: the
/// LTX write buffer (256 KiB) must hold the whole file for the LTX log, and incompressible
/// pages grow by LZ4's framing (~1 %) plus the LTX headers.
const EARLY_COMMIT_BYTES_MAX: u64 = 224 * 1024;

/// The pages a journal's invalidation records as LTX file TXID+1.
struct JournalCommit {
    db_file: Arc<File>,
    /// The database's size in pages (its header's).
    commit: u32,
    pages: Vec<u32>,
    /// The database header says WAL mode (the transaction switched to it).
    wal_mode: bool,
}

/// A journal commit's LTX file written at SQLite's database fsync, not yet published
/// ([`Db::fsync_database`]).
pub(super) struct EarlyCommit {
    encoded: Encoded,
    /// Where its entry lies in the LTX log; `None` if its batch was synced instead.
    log_at: Option<u64>,
    wal_mode: bool,
}

impl std::fmt::Debug for EarlyCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyCommit")
            .field("txid", &self.encoded.txid())
            .field("log_at", &self.log_at)
            .finish()
    }
}

/// Whether a hot journal names a super-journal (a transaction over several attached
/// databases, committed by the super-journal's deletion, not this journal's): SQLite writes
/// the name at its end, closed by the journal magic.
fn names_a_super_journal(journal: &File) -> bool {
    let Ok(len_bytes) = journal.metadata().map(|m| m.len()) else {
        return true;
    };
    let mut tail = [0u8; 8];
    len_bytes >= 8
        && journal.read_exact_at(&mut tail, len_bytes - 8).is_ok()
        && tail == sqlite::journal::JOURNAL_MAGIC
}
