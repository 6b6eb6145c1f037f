//! LiteFS's own locks when the kernel keeps SQLite's (`fuse.posix-locks: false`).
//!
//! Without `FUSE_POSIX_LOCKS` the kernel arbitrates `fcntl` locks on our files itself and the
//! daemon never sees them. To exclude SQLite while it applies an LTX file (a replica), imports,
//! or snapshots a database, the daemon takes the same bytes SQLite locks — as OFD locks on
//! `<db>` and `<db>-shm` opened **through the mount**, so the kernel arbitrates them against
//! the applications' locks without a FUSE request. The order and kinds are the internal
//! locks' (`store::lock::internal`); only where they are held differs.
//!
//! Must never be used from a FUSE worker, nor while holding a database's state mutex: opening
//! a file through the mount is served by the workers and takes that mutex. A `kill -9` while
//! such an open waits on a worker would leave the daemon unable to exit; `watchdog.rs` frees
//! the mount then.

use crate::sqlite::SHARED_SIZE;
use crate::store::lock::{Hold, LockFile, LockKind, LockSet, LockTarget, LockType};
use crate::store::shared::KernelLocks;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Opens a database's lock files under `mountpoint`, and keeps them open between uses: an
/// open and a close through the mount per acquisition cost a replica two FUSE round trips
/// per applied batch and a hazard each (a thread of ours waiting on its own mount,
/// `watchdog.rs`). Each target gets descriptions of its own — OFD locks belong to the open
/// file description, so two targets sharing one would share their locks — taken from an
/// idle pool and put back once they hold no lock. A database deleted and created again
/// keeps its FUSE node id for the mount's life (`LitefsFs::index_of`), so the kernel maps
/// the new file to the same inode the kept descriptions refer to, and their locks still
/// exclude SQLite's.
#[derive(Debug)]
pub struct MountLocks {
    mountpoint: PathBuf,
    idle: Arc<Mutex<HashMap<String, Vec<LockFiles>>>>,
}

/// Idle descriptions kept per database; more (after a burst of concurrent targets) are closed.
const IDLE_LOCK_FILES_MAX: usize = 4;

impl MountLocks {
    pub fn new(mountpoint: &Path) -> MountLocks {
        MountLocks {
            mountpoint: mountpoint.to_path_buf(),
            idle: Arc::default(),
        }
    }
}

impl KernelLocks for MountLocks {
    fn target(&self, db: &str) -> Box<dyn LockTarget> {
        let files = take_idle(&self.idle, db);
        Box::new(OfdTarget {
            db_name: db.to_string(),
            db_path: self.mountpoint.join(db),
            shm_path: self.mountpoint.join(format!("{db}-shm")),
            files,
            broken: false,
            idle: self.idle.clone(),
            shared: LockSet::EMPTY,
            exclusive: LockSet::EMPTY,
        })
    }
}

/// Idle files of `db` from the pool, or none (opened on first use).
fn take_idle(idle: &Mutex<HashMap<String, Vec<LockFiles>>>, db: &str) -> LockFiles {
    idle.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(db)
        .and_then(Vec::pop)
        .unwrap_or_default()
}

/// A database's files opened through the mount for locking (each on first use).
#[derive(Debug, Default)]
struct LockFiles {
    db: Option<File>,
    shm: Option<File>,
}

/// OFD locks on one database's files; the files go back to the idle pool once no lock is held.
#[derive(Debug)]
struct OfdTarget {
    db_name: String,
    db_path: PathBuf,
    shm_path: PathBuf,
    files: LockFiles,
    /// A lock call failed on these files: they are closed, not pooled.
    broken: bool,
    idle: Arc<Mutex<HashMap<String, Vec<LockFiles>>>>,
    shared: LockSet,
    exclusive: LockSet,
}

/// The bytes of `t` as SQLite locks them: one byte, or the 510-byte SHARED range.
fn byte_range(t: LockType) -> (u64, u64) {
    match t {
        LockType::Shared => (t.byte(), SHARED_SIZE),
        _ => (t.byte(), 1),
    }
}

/// One `F_OFD_SETLK`: true if granted, false if another holder conflicts.
fn ofd_setlk(file: &File, kind: LockKind, (start, len): (u64, u64)) -> io::Result<bool> {
    let l_type = match kind {
        LockKind::Read => libc::F_RDLCK,
        LockKind::Write => libc::F_WRLCK,
        LockKind::Unlock => libc::F_UNLCK,
    };
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct; the fields that
    // matter are set below (OFD locks require `l_pid` 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // SAFETY: `file` is open for the call and `fl` is a valid `flock` it only reads.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

impl OfdTarget {
    /// The open file `t` lives on; `None` when the database file does not exist (then no
    /// SQLite connection can hold its locks either). `-shm` is created if missing: a WAL
    /// reader starting now would create it and lock it.
    fn file(&mut self, t: LockType) -> io::Result<Option<&File>> {
        if self.files.db.is_none() && self.files.shm.is_none() && !self.broken {
            // Given back by an unlock before a retry: take idle ones again, not new ones.
            self.files = take_idle(&self.idle, &self.db_name);
        }
        let (slot, path, create) = match t.file() {
            LockFile::Db => (&mut self.files.db, &self.db_path, false),
            LockFile::Shm => (&mut self.files.shm, &self.shm_path, true),
            LockFile::Lock => return Ok(None),
        };
        if slot.is_none() {
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(path);
            match opened {
                Ok(file) => *slot = Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(slot.as_ref())
    }
}

impl LockTarget for OfdTarget {
    fn try_step(&mut self, t: LockType, kind: LockKind) -> bool {
        let range = byte_range(t);
        let granted = match self.file(t) {
            Ok(Some(file)) => ofd_setlk(file, kind, range),
            Ok(None) => Ok(true),
            Err(e) => Err(e),
        };
        match granted {
            Ok(true) => {
                // A granted request replaces the previous hold of this byte range (POSIX).
                let without = |set: LockSet| set.iter().filter(|&x| x != t).collect::<LockSet>();
                self.shared = without(self.shared);
                self.exclusive = without(self.exclusive);
                match kind {
                    LockKind::Read => self.shared = self.shared.with(t),
                    LockKind::Write => self.exclusive = self.exclusive.with(t),
                    LockKind::Unlock => {}
                }
                true
            }
            Ok(false) => false,
            Err(e) => {
                // These descriptions failed once: closed at the end, never pooled again.
                self.broken = true;
                // Retried until the caller's deadline, whose error names the lock type.
                eprintln!(
                    "litefs: {} lock through {}: {e}",
                    t,
                    match t.file() {
                        LockFile::Db => self.db_path.display(),
                        _ => self.shm_path.display(),
                    }
                );
                false
            }
        }
    }

    fn unlock(&mut self, types: LockSet) {
        for t in types.intersection(self.shared.union(self.exclusive)).iter() {
            // An unlock cannot conflict; a failure leaves the lock to the close below.
            let _ = self.try_step(t, LockKind::Unlock);
        }
        if self.shared.union(self.exclusive).is_empty() {
            self.give_back();
        }
    }

    fn hold(&self, t: LockType) -> Hold {
        if self.exclusive.contains(t) {
            Hold::Exclusive
        } else if self.shared.contains(t) {
            Hold::Shared
        } else {
            Hold::None
        }
    }
}

impl OfdTarget {
    /// Returns the files (holding no lock) to the idle pool, or closes them if it is full.
    fn give_back(&mut self) {
        let files = std::mem::take(&mut self.files);
        if self.broken || (files.db.is_none() && files.shm.is_none()) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = idle.entry(self.db_name.clone()).or_default();
        if pool.len() < IDLE_LOCK_FILES_MAX {
            pool.push(files);
        }
    }
}

impl Drop for OfdTarget {
    /// Files still holding a lock are closed (which releases it); others go back to the pool.
    fn drop(&mut self) {
        if self.shared.union(self.exclusive).is_empty() {
            self.give_back();
        }
    }
}
