//! Locks LiteFS takes for itself (spec §3.9 "Internal write lock", "Snapshot/export read
//! locking"): applying an LTX, checkpointing, HALT, restore, import, snapshots and exports.
//!
//! Each uses a fresh anonymous [`GuardSet`] and takes its types one at a time in the documented
//! order, polling each with bounded exponential backoff until a deadline. SQLite clients never
//! wait (their requests are non-blocking and retried by SQLite's busy handler), so polling is
//! the only way to wait here. On timeout everything taken so far is released.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{GuardSet, Hold, LockError, LockKind, LockSet, LockTable, LockType, LockWords};

/// First wait between two attempts at one lock type.
pub const WRITE_LOCK_BACKOFF_START_MS: u64 = 1;
/// Longest wait between two attempts. Upstream's `2 XOR i` quirk makes it poll every few ms;
/// 16 ms keeps the latency added after the last reader leaves small (an apply on a replica
/// waits for readers) while a waiter wakes at most ~60 times a second once backed off. A try
/// costs a few atomic operations, so polling is cheap.
pub const WRITE_LOCK_BACKOFF_MAX_MS: u64 = 16;

/// Time for the internal locks; injectable so tests run without real sleeping.
pub trait Clock {
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration);
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// The journal mode deciding which types the internal locks take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteLockMode {
    /// Rollback journal: full EXCLUSIVE on the database file (blocks readers too).
    Rollback,
    /// WAL: WRITE, CKPT, RECOVER, READ0..4 exclusive (blocks new WAL readers too).
    Wal,
}

/// Which read lock [`LockTable::acquire_read_lock`] leaves held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadLockPurpose {
    /// Snapshot for a replica: in WAL mode CKPT and RECOVER are released again, READ0..4 kept.
    Snapshot,
    /// `GET /export`: keeps CKPT and RECOVER shared too.
    Export,
}

/// Where LiteFS's own locks are taken. Two kinds: the database's [`LockTable`], which sees
/// SQLite's locks when the mount negotiates `FUSE_POSIX_LOCKS`; and, with kernel-local locks,
/// the kernel's record locks on the files as SQLite sees them (OFD locks through the mount,
/// `fuse/kernel_locks.rs`), which the kernel arbitrates against SQLite's own.
pub trait LockTarget: Send + std::fmt::Debug {
    /// One non-blocking attempt at `kind` on `t`: true if it is now held as asked (an unlock
    /// always succeeds).
    fn try_step(&mut self, t: LockType, kind: LockKind) -> bool;
    /// Releases `types`.
    fn unlock(&mut self, types: LockSet);
    /// How `t` is held.
    fn hold(&self, t: LockType) -> Hold;
}

/// The lock table as a [`LockTarget`]: a fresh anonymous guard set.
#[derive(Debug)]
struct TableTarget {
    words: Arc<LockWords>,
    set: GuardSet,
}

impl LockTarget for TableTarget {
    fn try_step(&mut self, t: LockType, kind: LockKind) -> bool {
        self.set.try_set(&self.words, LockSet::one(t), kind).is_ok()
    }

    fn unlock(&mut self, types: LockSet) {
        self.set.unlock(&self.words, types);
    }

    fn hold(&self, t: LockType) -> Hold {
        self.set.hold(t)
    }
}

/// Locks held by LiteFS itself; released when dropped.
#[derive(Debug)]
pub struct InternalLockGuard {
    target: Box<dyn LockTarget>,
    mode: WriteLockMode,
}

impl InternalLockGuard {
    /// An empty guard on `target`, created first so that an error or a panic (in `capture`)
    /// at any step releases what earlier steps took.
    fn new(target: Box<dyn LockTarget>) -> InternalLockGuard {
        InternalLockGuard {
            target,
            mode: WriteLockMode::Rollback,
        }
    }

    /// The mode seen once SHARED was held (stable while the guard lives: no rollback-mode
    /// writer can commit a `journal_mode` change without SHARED exclusively).
    pub fn mode(&self) -> WriteLockMode {
        self.mode
    }

    /// The types held, in any state.
    pub fn held(&self) -> LockSet {
        LockType::ALL
            .into_iter()
            .filter(|&t| self.target.hold(t) != Hold::None)
            .collect()
    }

    /// How `t` is held.
    pub fn hold(&self, t: LockType) -> Hold {
        self.target.hold(t)
    }
}

impl Drop for InternalLockGuard {
    fn drop(&mut self) {
        self.target.unlock(LockSet::ALL);
    }
}

/// One attempt sequence: acquires `steps` in order on a target, polling each until `deadline`.
struct Acquirer<'a> {
    clock: &'a dyn Clock,
    deadline: Instant,
    started: Instant,
    purpose: &'static str,
}

impl Acquirer<'_> {
    fn step(
        &self,
        target: &mut dyn LockTarget,
        t: LockType,
        kind: LockKind,
    ) -> Result<(), LockError> {
        let mut backoff = Duration::from_millis(WRITE_LOCK_BACKOFF_START_MS);
        let backoff_max = Duration::from_millis(WRITE_LOCK_BACKOFF_MAX_MS);
        loop {
            if target.try_step(t, kind) {
                return Ok(());
            }
            let now = self.clock.now();
            if now >= self.deadline {
                // The caller's guard releases what was taken when it drops with this error.
                let waited_ms = now.saturating_duration_since(self.started).as_millis();
                return Err(LockError::Timeout {
                    purpose: self.purpose,
                    lock_type: t,
                    kind,
                    waited_ms: u64::try_from(waited_ms).unwrap_or(u64::MAX),
                });
            }
            // Never sleep past the deadline: the last attempt happens at it.
            self.clock.sleep(backoff.min(self.deadline - now));
            backoff = (backoff * 2).min(backoff_max);
        }
    }

    fn steps(
        &self,
        target: &mut dyn LockTarget,
        steps: &[(LockType, LockKind)],
    ) -> Result<(), LockError> {
        steps
            .iter()
            .try_for_each(|&(t, kind)| self.step(target, t, kind))
    }
}

const WAL_EXCLUSIVE_STEPS: [(LockType, LockKind); 9] = [
    (LockType::Dms, LockKind::Read),
    (LockType::Write, LockKind::Write),
    (LockType::Ckpt, LockKind::Write),
    (LockType::Recover, LockKind::Write),
    (LockType::Read0, LockKind::Write),
    (LockType::Read1, LockKind::Write),
    (LockType::Read2, LockKind::Write),
    (LockType::Read3, LockKind::Write),
    (LockType::Read4, LockKind::Write),
];

const ROLLBACK_EXCLUSIVE_STEPS: [(LockType, LockKind); 3] = [
    (LockType::Reserved, LockKind::Write),
    (LockType::Pending, LockKind::Write),
    (LockType::Shared, LockKind::Write),
];

/// Shared SHARED via PENDING, as SQLite's NONE → SHARED does: a writer holding PENDING
/// exclusively (about to take EXCLUSIVE) keeps us out, so we cannot starve it.
const SHARED_STEPS: [(LockType, LockKind); 3] = [
    (LockType::Pending, LockKind::Read),
    (LockType::Shared, LockKind::Read),
    (LockType::Pending, LockKind::Unlock),
];

const WAL_READ_STEPS: [(LockType, LockKind); 7] = [
    (LockType::Ckpt, LockKind::Read),
    (LockType::Recover, LockKind::Read),
    (LockType::Read0, LockKind::Read),
    (LockType::Read1, LockKind::Read),
    (LockType::Read2, LockKind::Read),
    (LockType::Read3, LockKind::Read),
    (LockType::Read4, LockKind::Read),
];

impl LockTable {
    /// A fresh anonymous guard set on this table.
    pub fn target(&self) -> Box<dyn LockTarget> {
        Box::new(TableTarget {
            words: self.words.clone(),
            set: GuardSet::new(&self.words),
        })
    }

    /// [`acquire_write_lock`] on this table.
    pub fn acquire_write_lock(
        &self,
        mode: impl FnOnce() -> WriteLockMode,
        deadline: Instant,
        clock: &dyn Clock,
    ) -> Result<InternalLockGuard, LockError> {
        acquire_write_lock(self.target(), mode, deadline, clock)
    }

    /// [`acquire_read_lock`] on this table.
    pub fn acquire_read_lock(
        &self,
        purpose: ReadLockPurpose,
        mode: impl FnOnce() -> WriteLockMode,
        capture: impl FnOnce(),
        deadline: Instant,
        clock: &dyn Clock,
    ) -> Result<InternalLockGuard, LockError> {
        acquire_read_lock(self.target(), purpose, mode, capture, deadline, clock)
    }
}

fn acquirer<'a>(clock: &'a dyn Clock, deadline: Instant, purpose: &'static str) -> Acquirer<'a> {
    Acquirer {
        clock,
        deadline,
        started: clock.now(),
        purpose,
    }
}

/// The internal write lock (spec §3.9) on `target`: shared PENDING, shared SHARED, release
/// PENDING; then `mode()` is read (the mode cannot change while SHARED is held) and either
/// exclusive RESERVED, PENDING, SHARED (rollback) or shared DMS and exclusive WRITE, CKPT,
/// RECOVER, READ0..READ4 (WAL). Each type is polled with backoff from
/// [`WRITE_LOCK_BACKOFF_START_MS`] doubling to [`WRITE_LOCK_BACKOFF_MAX_MS`] until `deadline`;
/// on timeout everything taken is released and the error names the type and the total time
/// waited. At least one attempt is made at each type even past the deadline.
pub fn acquire_write_lock(
    target: Box<dyn LockTarget>,
    mode: impl FnOnce() -> WriteLockMode,
    deadline: Instant,
    clock: &dyn Clock,
) -> Result<InternalLockGuard, LockError> {
    let acquirer = acquirer(clock, deadline, "internal write lock");
    let mut guard = InternalLockGuard::new(target);
    acquirer.steps(guard.target.as_mut(), &SHARED_STEPS)?;
    guard.mode = mode();
    let steps: &[(LockType, LockKind)] = match guard.mode {
        WriteLockMode::Rollback => &ROLLBACK_EXCLUSIVE_STEPS,
        WriteLockMode::Wal => &WAL_EXCLUSIVE_STEPS,
    };
    acquirer.steps(guard.target.as_mut(), steps)?;
    Ok(guard)
}

/// Snapshot/export read locking (spec §3.9) on `target`: shared PENDING+SHARED (PENDING
/// released). In WAL mode, exclusive WRITE is taken briefly and `capture` runs under it (to
/// record the position, page count and frame offsets no writer can change then), WRITE is
/// released, and CKPT, RECOVER, READ0..4 are taken shared; a snapshot then releases CKPT and
/// RECOVER, an export keeps them. In rollback mode `capture` runs under shared SHARED.
pub fn acquire_read_lock(
    target: Box<dyn LockTarget>,
    purpose: ReadLockPurpose,
    mode: impl FnOnce() -> WriteLockMode,
    capture: impl FnOnce(),
    deadline: Instant,
    clock: &dyn Clock,
) -> Result<InternalLockGuard, LockError> {
    let name = match purpose {
        ReadLockPurpose::Snapshot => "snapshot read lock",
        ReadLockPurpose::Export => "export read lock",
    };
    let acquirer = acquirer(clock, deadline, name);
    let mut guard = InternalLockGuard::new(target);
    let target = guard.target.as_mut();
    acquirer.steps(target, &SHARED_STEPS)?;
    let mode = mode();
    if mode == WriteLockMode::Wal {
        acquirer.step(target, LockType::Write, LockKind::Write)?;
        capture();
        target.unlock(LockSet::one(LockType::Write));
        acquirer.steps(target, &WAL_READ_STEPS)?;
        if purpose == ReadLockPurpose::Snapshot {
            target.unlock(LockSet::one(LockType::Ckpt).with(LockType::Recover));
        }
    } else {
        capture();
    }
    guard.mode = mode;
    Ok(guard)
}
