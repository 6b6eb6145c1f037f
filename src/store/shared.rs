//! What every database of a store shares: where fatal errors and kernel cache invalidations
//! go, whether this node may write, the change and event feeds, and commit timings.

use super::changes::Changes;
use super::db::FileKind;
use super::events::Events;
use super::lock::LockTarget;
use super::stats::Histogram;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock, RwLock};

/// Where a database reports an error the process cannot continue after (a WAL commit that
/// could not be captured, spec §3.7 step 8; an apply that failed half way, spec §3.11 step 7:
/// exit code 99). Set once by the store's owner.
#[derive(Default)]
pub struct FatalHook {
    handler: OnceLock<FatalHandler>,
    raised: std::sync::atomic::AtomicBool,
}

/// Called with the error's text; must not block (it runs on a FUSE worker).
pub type FatalHandler = Box<dyn Fn(&str) + Send + Sync>;

impl FatalHook {
    /// Installs the handler; later calls are ignored.
    pub fn set(&self, handler: FatalHandler) {
        let _ = self.handler.set(handler);
    }

    pub fn raise(&self, message: &str) {
        eprintln!("litefs: FATAL: {message}");
        self.raised
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(handler) = self.handler.get() {
            handler(message);
        }
    }

    /// Whether a fatal error was raised: the process is going down, nothing more may change.
    pub fn is_raised(&self) -> bool {
        self.raised.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Where LiteFS takes its own locks when the kernel keeps SQLite's (`fuse.posix-locks:
/// false`): the mount supplies targets holding OFD locks on the files as SQLite sees them
/// (`fuse/kernel_locks.rs`). Without one, the database's lock table is the target.
pub trait KernelLocks: Send + Sync {
    /// A fresh target for `db`'s locks (files are opened when first locked).
    fn target(&self, db: &str) -> Box<dyn LockTarget>;
}

/// The store's slot for [`KernelLocks`], set by a mount without `FUSE_POSIX_LOCKS` and
/// cleared before it unmounts.
#[derive(Default)]
pub struct KernelLocksHook {
    inner: RwLock<Option<Arc<dyn KernelLocks>>>,
}

impl KernelLocksHook {
    pub fn set(&self, locks: Arc<dyn KernelLocks>) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = Some(locks);
    }

    pub fn clear(&self) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn get(&self) -> Option<Arc<dyn KernelLocks>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A change the daemon made behind the kernel's back, which the kernel may have cached
/// (spec §3.12). Only the FUSE layer knows inodes; the store names files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation<'a> {
    /// Cached data of `<db>`'s backing file `kind` in `offset..offset + len` (`len` 0: to the
    /// end of the file), and its attributes (size).
    Data {
        db: &'a str,
        kind: FileKind,
        offset: u64,
        len: u64,
    },
    /// The cached name of `<db>`'s file `kind`, which no longer exists.
    Entry { db: &'a str, kind: FileKind },
    /// `<db>` may have appeared without passing through the mount (an import): the kernel
    /// may remember its names as missing (a negative entry, cached on the primary only) from
    /// a lookup before — even one of LiteFS's own (`fuse/kernel_locks.rs`).
    Created { db: &'a str },
}

/// Called for each [`Invalidation`], never with a database's state lock held: the kernel may
/// answer an invalidation by sending requests (writing back dirty `-shm` pages) that take it.
pub type InvalidateHandler = Box<dyn Fn(Invalidation<'_>) + Send + Sync>;

/// Where the store sends kernel cache invalidations: set by the mount while it is mounted
/// (a store outlives its mounts in tests), a no-op otherwise.
#[derive(Default)]
pub struct InvalidateHook(RwLock<Option<InvalidateHandler>>);

impl InvalidateHook {
    /// Installs the handler, replacing any earlier one.
    pub fn set(&self, handler: InvalidateHandler) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    /// Removes the handler (at unmount).
    pub fn clear(&self) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn send(&self, invalidation: Invalidation<'_>) {
        if let Some(handler) = &*self.0.read().unwrap_or_else(|p| p.into_inner()) {
            handler(invalidation);
        }
    }
}

/// Shared by the store and each of its databases.
#[derive(Default)]
pub struct Shared {
    pub fatal: FatalHook,
    pub invalidate: InvalidateHook,
    /// Set while mounted with kernel-local locks.
    pub kernel_locks: KernelLocksHook,
    /// False on a replica (spec §3.5 `Writeable()`).
    pub writable: AtomicBool,
    /// Where each new position is announced (to `/stream` handlers).
    pub changes: Changes,
    /// Where each transaction and role change is described (to `/events` responses).
    pub events: Events,
    /// Local commits, from the start of writing the LTX file to the position published
    /// (`litefs_commit_duration_seconds`).
    pub commit_duration: Histogram,
    /// Where WAL commits' LTX files are written off the FUSE reply path, while mounted.
    pub capture: super::capture::CaptureHook,
}
