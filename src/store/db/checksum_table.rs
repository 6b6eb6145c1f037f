//! The page checksum table saved at a clean close and taken back at the next start, so a
//! start costs a read of 8 bytes per page instead of a read of the whole database
//! (ARCHITECTURE §4.2). The format is pure (`store::checksums::SavedTable`); this is its I/O.

use super::{Db, FileKind, State};
use crate::store::checksums::{FileIdentity, SavedTable};
use crate::types::Pos;
use std::fs;
use std::path::PathBuf;

/// `dbs/<name>/page-checksums`.
const TABLE_FILE: &str = "page-checksums";

impl Db {
    fn checksum_table_path(&self) -> PathBuf {
        self.dir.join(TABLE_FILE)
    }

    /// Saves the table when the database file alone holds the database: no WAL frames (a
    /// start may fold them into the file or not, and the table would not know which) and no
    /// transaction in flight. The database file is synced first; the table itself is best
    /// effort, never synced: a lost or torn table costs a scan.
    /// Takes the table out of `state` (the database is closing).
    pub(super) fn save_checksum_table(&self, state: &mut State) {
        let wal_empty = match fs::metadata(self.path(FileKind::Wal)) {
            Ok(meta) => meta.len() == 0,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        let settled = state.page_size != 0
            && state.pos.txid.0 > 0
            && state.checksums.value() == state.pos.post_apply_checksum.0
            && state.checksums.len() == state.page_count as usize;
        if !wal_empty || !settled {
            return;
        }
        // The file's data on disk first: a replica writes it without fsync, and after a power
        // loss its metadata (the identity below) could be on disk without its pages.
        let db_path = self.path(FileKind::Database);
        let synced = fs::File::open(&db_path).and_then(|f| f.sync_data());
        let Ok(meta) = synced.and_then(|()| fs::metadata(&db_path)) else {
            return;
        };
        let saved = SavedTable {
            page_size: state.page_size,
            pos: state.pos,
            file: FileIdentity::of(&meta),
            checksums: std::mem::take(&mut state.checksums),
        };
        let path = self.checksum_table_path();
        let tmp = path.with_extension("tmp");
        let written = fs::write(&tmp, saved.encode()).and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            eprintln!(
                "litefs: database {:?}: cannot save page checksums to {} ({e}); the next \
                 start reads the whole database instead",
                self.name,
                path.display()
            );
        }
    }

    /// Reads and removes the saved table (it describes the file only until the next write).
    pub(super) fn take_checksum_table(&self) -> Option<SavedTable> {
        let path = self.checksum_table_path();
        let bytes = fs::read(&path).ok()?;
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(path.with_extension("tmp"));
        SavedTable::decode(&bytes)
    }

    /// Installs `saved` if it describes the database file as it is now — same file, not
    /// written since (identity), same page size and count — and adds up to `newest`, the
    /// position of the newest LTX file. Returns whether it did.
    pub(super) fn install_checksum_table(
        &self,
        state: &mut State,
        saved: SavedTable,
        newest: Pos,
    ) -> bool {
        let Ok(meta) = fs::metadata(self.path(FileKind::Database)) else {
            return false;
        };
        let usable = saved.file == FileIdentity::of(&meta)
            && saved.pos == newest
            && saved.page_size == state.page_size
            && saved.checksums.len() == state.page_count as usize;
        if usable {
            state.checksums = saved.checksums;
        }
        self.checksum_table_used
            .store(usable, std::sync::atomic::Ordering::Relaxed);
        usable
    }
}
