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

    /// [`Db::create_reusing_spare`] for a name that may exist: creates `path` only if it
    /// does not (`O_EXCL`, or a rename that refuses to replace), and returns `None` if it
    /// does — without a separate existence check, which cost a replica ~5 µs per received
    /// transaction (a `statx` through the large `ltx/` directory).
    pub(super) fn create_new_reusing_spare(&self, path: &Path) -> Result<Option<(File, bool)>> {
        let spare = self.spares().files.pop();
        // A spare removed by hand is no reason to fail.
        if let Some(spare) = spare
            && let Ok(file) = OpenOptions::new().write(true).open(&spare)
        {
            match rename_noreplace(&spare, path) {
                Ok(()) => return Ok(Some((file, true))),
                Err(e) => {
                    self.spares().files.push(spare);
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        return Ok(None);
                    }
                    // Another error (a file system without RENAME_NOREPLACE): no spare.
                }
            }
        }
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(file) => Ok(Some((file, false))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e).io_context("create", path),
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

/// `renameat2(RENAME_NOREPLACE)`: `from` becomes `to` unless `to` exists (`AlreadyExists`).
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (from, to) = (cstr(from)?, cstr(to)?);
    // SAFETY: both are NUL-terminated strings that outlive the call; AT_FDCWD makes them
    // relative to the working directory, as `std::fs::rename` does.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store::{DbOptions, Store};
    use crate::types::NodeId;

    /// A name that exists is never replaced nor rewritten, with or without a spare; a free
    /// one is created from a spare when there is one.
    #[test]
    fn create_new_reuses_a_spare_and_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let options = DbOptions {
            node_id: NodeId(1),
            compress: false,
            strict_verify: false,
            replica: true,
        };
        let store = Store::open(dir.path(), options).unwrap();
        let (db, _) = store.create_db("db").unwrap();
        let ltx = db.ltx_dir().to_path_buf();
        let existing = ltx.join("existing");
        std::fs::write(&existing, b"keep").unwrap();
        assert!(db.create_new_reusing_spare(&existing).unwrap().is_none());
        let (_, reused) = db
            .create_new_reusing_spare(&ltx.join("a"))
            .unwrap()
            .unwrap();
        assert!(!reused, "no spare yet");
        let old = ltx.join("old");
        std::fs::write(&old, b"retired").unwrap();
        assert!(db.retire_ltx_file(&old).unwrap());
        assert_eq!(db.spare_ltx_files(), 1);
        assert!(db.create_new_reusing_spare(&existing).unwrap().is_none());
        assert_eq!(db.spare_ltx_files(), 1, "the spare stays in the pool");
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep");
        let (_, reused) = db
            .create_new_reusing_spare(&ltx.join("b"))
            .unwrap()
            .unwrap();
        assert!(reused);
        assert_eq!(db.spare_ltx_files(), 0);
        assert!(ltx.join("b").exists());
    }
}
