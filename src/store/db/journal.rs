//! Rollback-journal transactions (spec §3.6): the journal's invalidation is the commit.

use super::commit::{PageSource, WalFields};
use super::durability::Durability;
use super::{Db, FileKind, JOURNAL_HEADER_SIZE, JournalMode, State};
use crate::sqlite;
use crate::store::error::{IoContext, Result};
use std::fs;
use std::os::unix::fs::FileExt;

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
    /// LTX file TXID+1, then the journal is invalidated as SQLite asked.
    pub(super) fn commit_journal(&self, state: &mut State, mode: JournalMode) -> Result<()> {
        let journal = self.file(state, FileKind::Journal)?;
        let mut magic = [0u8; 8];
        let has_magic =
            journal.read_exact_at(&mut magic, 0).is_ok() && magic == sqlite::journal::JOURNAL_MAGIC;
        if !has_magic || state.page_size == 0 {
            // A rollback, or a journal that never reached the database: nothing to record.
            state.dirty.clear();
            return self.invalidate_journal(state, mode);
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
        self.write_ltx(
            state,
            PageSource::Database(&db_file),
            commit,
            &pages,
            WalFields::default(),
            Durability::Logged,
        )?;
        self.invalidate_journal(state, mode)?;
        state.dirty.clear();
        state.wal_mode = wal_mode;
        self.verify_if_strict(state)?;
        Ok(())
    }
}
