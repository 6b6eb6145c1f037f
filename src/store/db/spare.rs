//! Spare LTX inodes: files retention would remove are renamed into `dbs/<db>/spare/` and
//! reused for new LTX files, instead of being unlinked and created afresh.
//!
//! Why: on ext4 without a journal (the root file system of these VMs), the inode allocator
//! skips every free inode deleted in the last 60–300 s, probing each one in the buffer cache.
//! A busy database under retention deletes one LTX file per commit and creates one, so every
//! create would scan past minutes' worth of deletions (measured: ~200 µs instead of ~25 µs per
//! file after ten thousand deletions). Renaming a spare into place and overwriting it allocates
//! no inode (measured 27 µs against 160 µs for a create 2 s after ten thousand deletions),
//! and retention then deletes nothing while the pool has room. Spares are emptied when
//! retired (retention's thread), so the pool holds inodes, not disk space.
//!
//! The pool lives outside `ltx/`, so no LTX scan (ours or Go LiteFS's) sees it; spares are
//! plain files with a number for a name. Bounded by [`SPARE_LTX_FILES_MAX`]; beyond it,
//! retention unlinks as before. Spares are not synced: losing one in a crash costs nothing.

use super::Db;
use crate::store::error::{IoContext, Result};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

/// At most this many spare files per database.
pub(super) const SPARE_LTX_FILES_MAX: usize = 4096;

/// The spare files of one database, by path.
#[derive(Debug, Default)]
pub(crate) struct SparePool {
    files: Vec<PathBuf>,
    /// The number the next spare is named with.
    next_name: u64,
}

impl SparePool {
    /// The spares left in `dir` by an earlier run (created if missing); extra files beyond
    /// the limit are removed.
    pub(super) fn open(dir: &Path) -> Result<SparePool> {
        fs::create_dir_all(dir).io_context("create directory", dir)?;
        let mut pool = SparePool::default();
        for entry in fs::read_dir(dir).io_context("read directory", dir)? {
            let entry = entry.io_context("read directory", dir)?;
            let name = entry.file_name();
            let number = name.to_str().and_then(|n| n.parse::<u64>().ok());
            match number {
                Some(n) if pool.files.len() < SPARE_LTX_FILES_MAX => {
                    pool.next_name = pool.next_name.max(n + 1);
                    pool.files.push(entry.path());
                }
                _ => fs::remove_file(entry.path()).io_context("remove", entry.path())?,
            }
        }
        Ok(pool)
    }

    pub(super) fn len(&self) -> usize {
        self.files.len()
    }
}

impl Db {
    /// Creates `path` for writing, reusing a spare inode when there is one; true if reused.
    /// Spares are emptied when retired, so this is an open and a rename; the caller still
    /// cuts a reused file to the length it wrote (a spare found non-empty, e.g. from an
    /// older version). A crash in between leaves a file that is short, holds other TXIDs
    /// than its name, or does not verify: recovery treats each as torn
    /// (`recover.rs::drop_torn_tail`).
    pub(super) fn create_reusing_spare(&self, path: &Path) -> Result<(File, bool)> {
        let spare = self.spares().files.pop();
        // A spare that vanished or fails (removed by hand) is no reason to fail a commit.
        let reused = spare.and_then(|spare| {
            let file = OpenOptions::new().write(true).open(&spare).ok()?;
            fs::rename(&spare, path).ok()?;
            Some(file)
        });
        match reused {
            Some(file) => Ok((file, true)),
            None => Ok((File::create(path).io_context("create", path)?, false)),
        }
    }

    /// Retires an LTX file: moves it into the spare pool, or removes it when the pool is
    /// full. Returns false if the file was already gone.
    pub(super) fn retire_ltx_file(&self, path: &Path) -> Result<bool> {
        let mut spares = self.spares();
        if spares.files.len() < SPARE_LTX_FILES_MAX {
            // Emptied first: a spare then never holds disk space, and a crash that makes a
            // reused spare's rename durable but not its new length cannot leave it longer
            // than what was written into it (recovery's torn-tail window is by size).
            match OpenOptions::new().write(true).open(path) {
                Ok(f) => f.set_len(0).io_context("truncate", path)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e).io_context("open", path),
            }
            let spare = self.spare_dir.join(spares.next_name.to_string());
            match fs::rename(path, &spare) {
                Ok(()) => {
                    spares.next_name += 1;
                    spares.files.push(spare);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e).io_context("rename", path),
            }
        }
        drop(spares);
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).io_context("remove", path),
        }
    }

    /// How many spare inodes this database holds.
    pub fn spare_ltx_files(&self) -> usize {
        self.spares().len()
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, SparePool> {
        self.spares.lock().unwrap_or_else(|p| p.into_inner())
    }
}
