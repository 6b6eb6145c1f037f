//! When LTX files become durable (docs/ARCHITECTURE.md §4.1).
//!
//! A WAL-mode transaction is held durably by SQLite's own WAL: its committed frames survive a
//! crash of the daemon (page cache) and, once SQLite fsyncs the WAL, of the machine; startup
//! recovery turns committed frames without an LTX file into LTX files (`recover_wal.rs`). So
//! the LTX file of a WAL commit is written without fsync ([`Durability::Deferred`]) and made
//! durable in batches — one `syncfs` — at the latest when its frames could leave the WAL:
//! - before a checkpoint writes or truncates the database file (the file must never hold a
//!   page whose LTX file could be lost, or recovery could not explain it);
//! - before the WAL is restarted (header rewritten), truncated or deleted;
//! - before a synced LTX file (journal commits, deletions, import) is made durable, so the
//!   chain on disk never has a hole behind a durable file;
//! - when [`UNSYNCED_LTX_FILES_MAX`] files or [`UNSYNCED_LTX_BYTES_MAX`] bytes are pending;
//! - when the database is closed, and when it is opened (a killed process's deferred files
//!   are in no counter; recovery syncs before it writes anything).
//!
//! The syncs that happen under the state lock (a checkpoint's, a WAL restart's) first sync
//! what is pending without it ([`Db::presync`]), so WAL writes and captures of the database
//! wait only for the files written meanwhile.
//!
//! A machine crash may then leave the newest LTX files torn (zero-length, short, or garbage).
//! Recovery verifies the files that can be unsynced — those inside [`unsynced_window_len`]
//! — and removes a torn one with every file after it; the WAL re-derives what it still holds.
//! Rollback-journal commits stay synced before SQLite hears of the commit: the journal holds
//! only the old pages, so nothing else could re-derive the new ones.

use super::{Db, State};
use crate::store::error::{Error, Result};
use std::os::fd::AsRawFd;

/// At most this many LTX files are unsynced at once; the commit that reaches it syncs them.
pub(super) const UNSYNCED_LTX_FILES_MAX: u32 = 1024;

/// At most this many bytes of LTX files are unsynced at once; the commit that reaches it
/// syncs them. Bounds what recovery verifies at startup.
pub(super) const UNSYNCED_LTX_BYTES_MAX: u64 = 64 << 20;

/// Before an operation that syncs under the state lock (a checkpoint's database write, a WAL
/// restart, truncation or deletion), the files pending are synced without it first if there
/// are at least this many ([`Db::presync`]).
pub(super) const PRESYNC_FILES_MIN: u32 = 16;

/// Whether `fsync` of a file in `dir` also makes the file's name in `dir` durable — true on
/// the file systems known to do so (a directory fsync would then only cost a second device
/// flush: 252 → ~180 µs per synced LTX file measured on ext4): ext4 (with a journal, fsync
/// commits the transaction holding the create or rename; without one, `ext4_sync_parent`
/// writes the directory of any entry added since the inode was last synced), XFS (the log is
/// forced up to the inode's last change, which the create or rename is part of) and btrfs
/// (fsync logs the inode's new names). Anything else gets the directory fsync POSIX asks for.
pub(super) fn names_durable_with_file_fsync(dir: &std::fs::File) -> bool {
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
    const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct, filled below.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open descriptor for the call and `stat` a valid, writable struct.
    if unsafe { libc::fstatfs(dir.as_raw_fd(), &mut stat) } != 0 {
        return false;
    }
    matches!(
        stat.f_type as i64,
        EXT4_SUPER_MAGIC | XFS_SUPER_MAGIC | BTRFS_SUPER_MAGIC
    )
}

/// Whether an LTX file must be durable before the position moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Durability {
    /// fsync the file and `ltx/` (with any pending files) before publishing.
    Synced,
    /// Publish at once; the file is synced later with its batch (WAL commits only).
    Deferred,
}

/// LTX files written with [`Durability::Deferred`] and not yet synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Unsynced {
    pub(crate) files: u32,
    pub(crate) bytes: u64,
}

impl Unsynced {
    /// Counts one more file; true when the batch must be synced now.
    pub(super) fn add(&mut self, len_bytes: u64) -> bool {
        self.files += 1;
        self.bytes = self.bytes.saturating_add(len_bytes);
        self.files >= UNSYNCED_LTX_FILES_MAX || self.bytes >= UNSYNCED_LTX_BYTES_MAX
    }
}

/// How many of the newest LTX files may not be durable, given their sizes newest first (read
/// lazily: only the files inside the window are looked at). The newest file always may be
/// (a crash between its write and the sync its size called for); before it, at most
/// `UNSYNCED_LTX_FILES_MAX - 1` files of fewer than `UNSYNCED_LTX_BYTES_MAX` bytes in all,
/// since every commit that reached a limit synced.
pub(super) fn unsynced_window_len<E>(
    sizes_newest_first: impl IntoIterator<Item = std::result::Result<u64, E>>,
) -> std::result::Result<usize, E> {
    let mut sizes = sizes_newest_first.into_iter();
    if sizes.next().transpose()?.is_none() {
        return Ok(0);
    }
    let (mut len, mut bytes) = (1usize, 0u64);
    for size in sizes {
        let size = size?;
        if len as u32 >= UNSYNCED_LTX_FILES_MAX
            || bytes.saturating_add(size) >= UNSYNCED_LTX_BYTES_MAX
        {
            break;
        }
        bytes += size;
        len += 1;
    }
    Ok(len)
}

impl Db {
    /// Makes every deferred LTX file of this database durable (names included), with one
    /// `syncfs` of the file system holding `ltx/`. A failure is fatal: after a failed sync
    /// the kernel may have dropped the pages, and only a restart (whose recovery verifies the
    /// unsynced files and re-derives torn ones from the WAL) can tell what is on disk.
    pub(super) fn sync_unsynced(&self, state: &mut State) -> Result<()> {
        if state.unsynced.files == 0 {
            return Ok(());
        }
        self.syncfs(state)
    }

    /// [`Db::sync_unsynced`] whatever the count says. Recovery starts with it: files a killed
    /// process deferred are in no counter of ours, and must be durable before recovery writes
    /// the database file or truncates the WAL (and before this process's own count starts).
    pub(super) fn syncfs(&self, state: &mut State) -> Result<()> {
        self.syncfs_or_die(state.unsynced.files, state.pos)?;
        // `syncfs` reports a write-back error once per descriptor: if a concurrent
        // `presync` took it (and raised the fatal error), this call succeeded without the
        // files being on disk.
        self.refuse_after_fatal()?;
        state.unsynced = Unsynced::default();
        state.unsynced_epoch += 1;
        Ok(())
    }

    /// One `syncfs` of the file system holding `ltx/`; a failure is fatal (see above).
    fn syncfs_or_die(&self, files: u32, pos: crate::types::Pos) -> Result<()> {
        // SAFETY: syncfs takes a file descriptor we own (the open `ltx/` directory, alive for
        // the call) and no pointers.
        let rc = unsafe { libc::syncfs(self.ltx_dir_file.as_raw_fd()) };
        if rc != 0 {
            let source = std::io::Error::last_os_error();
            let message = format!(
                "database {:?}: syncfs of {} for {} LTX files ending at TXID {}: {source}",
                self.name,
                self.ltx_dir.display(),
                files,
                pos.txid
            );
            self.shared.fatal.raise(&message);
            return Err(Error::Io {
                op: "syncfs",
                path: self.ltx_dir.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Syncs the deferred LTX files counted so far **without** the state lock, when there are
    /// at least `files_min`: every WAL write and capture of the database waits while a sync
    /// runs under it, and a `syncfs` of ~1,000 small files takes ~12 ms here against ~0.5 ms
    /// for five. A sync needed under the lock afterwards covers only the files written since.
    /// Files counted before the `syncfs` started are durable when it returns, so they leave
    /// the count — unless the count changed hands meanwhile: a sync under the lock reset it,
    /// or another presync took its files off (either moves the epoch; the count then stays
    /// as it is, an over-estimate, which is safe). A failure is fatal and returned: the
    /// caller must not go on to let frames leave the WAL.
    pub(super) fn presync(&self, files_min: u32) -> Result<()> {
        let (before, epoch, pos) = {
            let state = self.lock_undrained();
            (state.unsynced, state.unsynced_epoch, state.pos)
        };
        if before.files < files_min.max(1) {
            return Ok(());
        }
        self.syncfs_or_die(before.files, pos)?;
        self.refuse_after_fatal()?;
        take_off_synced(&mut self.lock_undrained(), before, epoch);
        Ok(())
    }
}

/// Takes `synced` (counted at `epoch`, durable since) off the pending count, if the count has
/// not changed hands since (see [`Db::presync`]).
pub(super) fn take_off_synced(state: &mut State, synced: Unsynced, epoch: u64) {
    if state.unsynced_epoch == epoch {
        state.unsynced.files -= synced.files;
        state.unsynced.bytes -= synced.bytes;
        state.unsynced_epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_batch_reaches_its_limits() {
        let mut u = Unsynced::default();
        for i in 1..UNSYNCED_LTX_FILES_MAX {
            assert!(!u.add(100), "synced early at file {i}");
        }
        assert!(u.add(100), "not synced at {} files", u.files);
        let mut u = Unsynced::default();
        assert!(!u.add(UNSYNCED_LTX_BYTES_MAX - 1));
        assert!(u.add(1), "not synced at {} bytes", u.bytes);
    }

    /// The index (in TXID order) of the oldest file in the window.
    fn unsynced_window_start(sizes_bytes: &[u64]) -> usize {
        let newest_first = sizes_bytes.iter().rev().map(|&s| Ok::<u64, ()>(s));
        sizes_bytes.len() - unsynced_window_len(newest_first).unwrap()
    }

    #[test]
    fn window_covers_every_file_that_can_be_unsynced() {
        assert_eq!(unsynced_window_start(&[]), 0);
        assert_eq!(unsynced_window_start(&[10]), 0);
        assert_eq!(unsynced_window_start(&[10, 20, 30]), 0);
        // The newest file is always in, however large.
        let big = UNSYNCED_LTX_BYTES_MAX * 4;
        assert_eq!(unsynced_window_start(&[10, big]), 0);
        // An older file that alone reaches the byte limit was synced when written.
        assert_eq!(unsynced_window_start(&[10, big, 10, 10]), 2);
        assert_eq!(
            unsynced_window_start(&[10, UNSYNCED_LTX_BYTES_MAX - 20, 10, 5]),
            1
        );
        // By count: the newest plus UNSYNCED_LTX_FILES_MAX - 1 before it.
        let sizes = vec![1u64; UNSYNCED_LTX_FILES_MAX as usize + 10];
        let start = unsynced_window_start(&sizes);
        assert_eq!(
            sizes.len() - start,
            UNSYNCED_LTX_FILES_MAX as usize,
            "window of {} files from {start}",
            sizes.len() - start
        );
    }
}
