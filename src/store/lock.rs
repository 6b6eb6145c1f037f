//! The daemon's record of SQLite's POSIX locks on one database (spec §3.8, §3.9, §3.16).
//!
//! When the mount negotiates `FUSE_POSIX_LOCKS` (the default, as LiteFS), every `fcntl` lock
//! SQLite takes on the database and `-shm` files arrives as a FUSE `SETLK`/`GETLK` and is
//! decided here. Three layers:
//!
//! - [`LockType`] / [`LockSet`]: which lock bytes a byte range `[start, end]` covers.
//! - [`RwWord`]: one `AtomicU64` per lock type per database holding the shared count, the
//!   exclusive bit and the exclusive holder's [`OwnerTag`]. This is the lock-free part: every
//!   acquire and release is one compare-exchange.
//! - [`GuardSet`]: one lock owner's state per type (none / shared / exclusive). [`LockTable`]
//!   keeps one per FUSE `lock_owner` (a bounded map, freed when the owner holds nothing), and
//!   the internal write lock ([`LockTable::acquire_write_lock`]) uses an anonymous one.
//!
//! Pure: no FUSE types, no I/O, no logging. Time reaches the internal lock through [`Clock`].
//!
//! Decisions that differ from Go LiteFS v0.5.11 (all deliberate, all tested):
//! - A `SETLK` that fails part-way is rolled back: the owner's locks are exactly as before the
//!   request, as POSIX requires and as Linux does (it checks the whole range before changing
//!   anything). Upstream keeps the types acquired before the failing one (a quirk in spec
//!   §3.9); SQLite's recovery path locks CKPT+RECOVER (121..=122) in one request, and keeping
//!   CKPT after a failure would leave a lock SQLite believes it does not hold until the
//!   process closes.
//! - Guard sets are freed when their owner holds nothing (upstream never frees them), and the
//!   number of owners holding locks is capped ([`LockTable::new`], [`OWNERS_MAX_DEFAULT`]).
//! - A request that re-asks for a lock the owner already holds exclusively succeeds without
//!   re-checking the CKPT rule (POSIX: re-locking a held range is a no-op).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::sqlite::{
    PENDING_BYTE, RESERVED_BYTE, SHARED_FIRST, WAL_CKPT_LOCK, WAL_DMS_LOCK, WAL_READ_LOCK0,
    WAL_RECOVER_LOCK, WAL_WRITE_LOCK,
};

mod internal;
mod word;
pub use internal::{
    Clock, InternalLockGuard, LockTarget, ReadLockPurpose, SystemClock, WRITE_LOCK_BACKOFF_MAX_MS,
    WRITE_LOCK_BACKOFF_START_MS, WriteLockMode, acquire_read_lock, acquire_write_lock,
};
pub use word::{LockWords, OwnerTag, RwState, RwWord};

/// `-lock` file byte of the LiteFS HALT lock (spec §5.1): an OFD write lock, length 1.
pub const HALT_BYTE: u64 = 72;

/// Default for [`LockTable::new`]: how many lock owners may hold locks on one database at once.
/// A lock owner is a process (POSIX locks) or an open file description (OFD locks); thousands of
/// processes holding locks on one SQLite database at the same instant is far beyond what SQLite
/// serves well, so reaching this means a leak or abuse and is refused rather than grown.
pub const OWNERS_MAX_DEFAULT: usize = 4096;

/// The PID reported in a `GETLK` conflict: LiteFS does not track which process holds a lock.
pub const CONFLICT_PID: i32 = -1;

/// Which file of a database a lock range applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockFile {
    /// `<db>`: PENDING, RESERVED, SHARED.
    Db,
    /// `<db>-shm`: WAL_WRITE .. WAL_DMS.
    Shm,
    /// `<db>-lock`: HALT.
    Lock,
}

impl LockFile {
    /// Every lock type living on this file (what a `FLUSH` of a handle of this file releases).
    pub const fn types(self) -> LockSet {
        match self {
            LockFile::Db => LockSet::DB_FILE,
            LockFile::Shm => LockSet::SHM_FILE,
            LockFile::Lock => LockSet::LOCK_FILE,
        }
    }
}

/// One lock byte SQLite (or LiteFS, for HALT) locks. Ordered by file, then byte: requests touch
/// their types in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockType {
    Pending,
    Reserved,
    Shared,
    Write,
    Ckpt,
    Recover,
    Read0,
    Read1,
    Read2,
    Read3,
    Read4,
    Dms,
    Halt,
}

impl LockType {
    /// Number of lock types, and of lock words per database.
    pub const COUNT: usize = 13;

    /// Every lock type, in index order.
    pub const ALL: [LockType; LockType::COUNT] = [
        LockType::Pending,
        LockType::Reserved,
        LockType::Shared,
        LockType::Write,
        LockType::Ckpt,
        LockType::Recover,
        LockType::Read0,
        LockType::Read1,
        LockType::Read2,
        LockType::Read3,
        LockType::Read4,
        LockType::Dms,
        LockType::Halt,
    ];

    /// Position in [`LockType::ALL`] and in a per-database word array.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// `WAL_READ_LOCK(i)` for `i` in `0..5`; `None` beyond.
    pub const fn read(i: u64) -> Option<LockType> {
        match i {
            0 => Some(LockType::Read0),
            1 => Some(LockType::Read1),
            2 => Some(LockType::Read2),
            3 => Some(LockType::Read3),
            4 => Some(LockType::Read4),
            _ => None,
        }
    }

    /// The file this lock byte lives on.
    pub const fn file(self) -> LockFile {
        match self {
            LockType::Pending | LockType::Reserved | LockType::Shared => LockFile::Db,
            LockType::Halt => LockFile::Lock,
            _ => LockFile::Shm,
        }
    }

    /// The byte offset that decides whether a range covers this type. For SHARED it is the first
    /// byte of the 510-byte SHARED range: LiteFS tests only that byte (spec §3.9).
    pub const fn byte(self) -> u64 {
        match self {
            LockType::Pending => PENDING_BYTE,
            LockType::Reserved => RESERVED_BYTE,
            LockType::Shared => SHARED_FIRST,
            LockType::Write => WAL_WRITE_LOCK,
            LockType::Ckpt => WAL_CKPT_LOCK,
            LockType::Recover => WAL_RECOVER_LOCK,
            LockType::Read0 => WAL_READ_LOCK0,
            LockType::Read1 => WAL_READ_LOCK0 + 1,
            LockType::Read2 => WAL_READ_LOCK0 + 2,
            LockType::Read3 => WAL_READ_LOCK0 + 3,
            LockType::Read4 => WAL_READ_LOCK0 + 4,
            LockType::Dms => WAL_DMS_LOCK,
            LockType::Halt => HALT_BYTE,
        }
    }

    /// Types of `file` whose byte lies in `[start, end]` (inclusive, as FUSE passes it; a
    /// whole-file lock has `end == u64::MAX`). An inverted range covers nothing.
    pub fn in_range(file: LockFile, start: u64, end: u64) -> LockSet {
        file.types()
            .iter()
            .filter(|t| start <= t.byte() && t.byte() <= end)
            .collect()
    }

    /// [`LockType::in_range`] on the database file (never includes HALT).
    pub fn in_db_range(start: u64, end: u64) -> LockSet {
        Self::in_range(LockFile::Db, start, end)
    }

    /// [`LockType::in_range`] on the `-shm` file.
    pub fn in_shm_range(start: u64, end: u64) -> LockSet {
        Self::in_range(LockFile::Shm, start, end)
    }
}

impl fmt::Display for LockType {
    /// SQLite's names, so messages read like `os_unix.c`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            LockType::Pending => "PENDING",
            LockType::Reserved => "RESERVED",
            LockType::Shared => "SHARED",
            LockType::Write => "WAL_WRITE",
            LockType::Ckpt => "WAL_CKPT",
            LockType::Recover => "WAL_RECOVER",
            LockType::Read0 => "WAL_READ0",
            LockType::Read1 => "WAL_READ1",
            LockType::Read2 => "WAL_READ2",
            LockType::Read3 => "WAL_READ3",
            LockType::Read4 => "WAL_READ4",
            LockType::Dms => "WAL_DMS",
            LockType::Halt => "HALT",
        };
        f.write_str(name)
    }
}

/// A set of lock types (one bit per [`LockType::index`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LockSet(u16);

impl LockSet {
    pub const EMPTY: LockSet = LockSet(0);
    /// PENDING, RESERVED, SHARED.
    pub const DB_FILE: LockSet = LockSet(0b111);
    /// WAL_WRITE ..= WAL_DMS.
    pub const SHM_FILE: LockSet = LockSet(0b1111_1111_1000);
    /// HALT.
    pub const LOCK_FILE: LockSet = LockSet(1 << 12);
    /// Every type.
    pub const ALL: LockSet = LockSet((1 << LockType::COUNT) - 1);

    pub const fn one(t: LockType) -> LockSet {
        LockSet(1 << t.index())
    }

    #[must_use]
    pub const fn with(self, t: LockType) -> LockSet {
        LockSet(self.0 | 1 << t.index())
    }

    #[must_use]
    pub const fn union(self, other: LockSet) -> LockSet {
        LockSet(self.0 | other.0)
    }

    #[must_use]
    pub const fn intersection(self, other: LockSet) -> LockSet {
        LockSet(self.0 & other.0)
    }

    pub const fn contains(self, t: LockType) -> bool {
        self.0 & (1 << t.index()) != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Members in index order.
    pub fn iter(self) -> impl Iterator<Item = LockType> {
        LockType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

impl FromIterator<LockType> for LockSet {
    fn from_iter<I: IntoIterator<Item = LockType>>(iter: I) -> Self {
        iter.into_iter().fold(LockSet::EMPTY, LockSet::with)
    }
}

impl fmt::Debug for LockSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The `l_type` of a lock request: `F_RDLCK`, `F_WRLCK`, `F_UNLCK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
    Unlock,
}

/// What one owner holds of one lock type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hold {
    #[default]
    None,
    Shared,
    Exclusive,
}

/// The CKPT rule (spec §3.8) as a pure decision: may an owner whose own WAL_WRITE hold is
/// `requester_write` take WAL_CKPT exclusively while the WAL_WRITE word is `write_word`?
///
/// Refused while anyone (the requester included) holds WAL_WRITE in any state, unless the
/// requester holds it exclusively: a checkpoint must not copy WAL frames of a transaction whose
/// LTX is not written yet, and LiteFS writes the LTX when WAL_WRITE is released.
pub fn ckpt_allowed(write_word: RwState, requester_write: Hold) -> bool {
    requester_write == Hold::Exclusive || write_word == RwState::Unlocked
}

/// A `GETLK` answer: the request would conflict with a lock of this kind (report it with the
/// request's own range and pid [`CONFLICT_PID`]). Spec §3.9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// [`LockKind::Read`] (`F_RDLCK`) or [`LockKind::Write`] (`F_WRLCK`).
    pub kind: LockKind,
}

/// One lock owner's holds, one per lock type. Not itself synchronised: [`LockTable`] keeps each
/// behind a mutex, and an [`InternalLockGuard`] owns its own.
#[derive(Debug)]
pub struct GuardSet {
    tag: OwnerTag,
    holds: [Hold; LockType::COUNT],
}

impl GuardSet {
    pub fn new(words: &LockWords) -> GuardSet {
        GuardSet {
            tag: words.new_tag(),
            holds: [Hold::None; LockType::COUNT],
        }
    }

    pub fn tag(&self) -> OwnerTag {
        self.tag
    }

    pub fn hold(&self, t: LockType) -> Hold {
        self.holds[t.index()]
    }

    /// The types held in any state.
    pub fn held(&self) -> LockSet {
        LockType::ALL
            .into_iter()
            .filter(|t| self.hold(*t) != Hold::None)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.holds.iter().all(|h| *h == Hold::None)
    }

    /// `SETLK`: all of `types` become `kind`, or nothing changes and the first type that could
    /// not be had is returned.
    pub fn try_set(
        &mut self,
        words: &LockWords,
        types: LockSet,
        kind: LockKind,
    ) -> Result<(), LockType> {
        match kind {
            LockKind::Write => self.try_exclusive(words, types),
            LockKind::Read => self.try_shared(words, types),
            LockKind::Unlock => {
                self.unlock(words, types);
                Ok(())
            }
        }
    }

    fn try_exclusive(&mut self, words: &LockWords, types: LockSet) -> Result<(), LockType> {
        // Types changed by this request, with their hold before it, for rollback.
        let mut changed: Vec<(LockType, Hold)> = Vec::with_capacity(types.len());
        for t in types.iter() {
            let before = self.hold(t);
            let got = match before {
                Hold::Exclusive => continue,
                Hold::None => self.ckpt_check(words, t) && words.word(t).try_exclusive(self.tag),
                Hold::Shared => self.ckpt_check(words, t) && words.word(t).try_upgrade(self.tag),
            };
            // Re-check after taking CKPT: the request then linearises at an instant where we
            // hold CKPT and WAL_WRITE is free, instead of at a check that may be stale.
            if got && !self.ckpt_check(words, t) {
                self.undo_exclusive(words, t, before);
                self.rollback(words, &changed);
                return Err(t);
            }
            if !got {
                self.rollback(words, &changed);
                return Err(t);
            }
            self.holds[t.index()] = Hold::Exclusive;
            changed.push((t, before));
        }
        Ok(())
    }

    fn ckpt_check(&self, words: &LockWords, t: LockType) -> bool {
        t != LockType::Ckpt
            || ckpt_allowed(
                words.word(LockType::Write).state(),
                self.hold(LockType::Write),
            )
    }

    fn undo_exclusive(&self, words: &LockWords, t: LockType, before: Hold) {
        match before {
            Hold::None => words.word(t).release_exclusive(self.tag),
            Hold::Shared => words.word(t).downgrade(self.tag),
            Hold::Exclusive => {}
        }
    }

    fn rollback(&mut self, words: &LockWords, changed: &[(LockType, Hold)]) {
        for &(t, before) in changed.iter().rev() {
            self.undo_exclusive(words, t, before);
            self.holds[t.index()] = before;
        }
    }

    fn try_shared(&mut self, words: &LockWords, types: LockSet) -> Result<(), LockType> {
        // New shared holds first (they can fail and are undone by a release); downgrades last,
        // because they cannot fail and could not be undone (another reader may slip in).
        let fresh: LockSet = types
            .iter()
            .filter(|t| self.hold(*t) == Hold::None)
            .collect();
        let downgrades: LockSet = types
            .iter()
            .filter(|t| self.hold(*t) == Hold::Exclusive)
            .collect();
        let mut acquired = LockSet::EMPTY;
        for t in fresh.iter() {
            if !words.word(t).try_shared() {
                for a in acquired.iter() {
                    words.word(a).release_shared();
                    self.holds[a.index()] = Hold::None;
                }
                return Err(t);
            }
            self.holds[t.index()] = Hold::Shared;
            acquired = acquired.with(t);
        }
        for t in downgrades.iter() {
            words.word(t).downgrade(self.tag);
            self.holds[t.index()] = Hold::Shared;
        }
        Ok(())
    }

    /// `F_UNLCK`: releases whatever of `types` is held. Never fails.
    pub fn unlock(&mut self, words: &LockWords, types: LockSet) {
        for t in types.iter() {
            match self.hold(t) {
                Hold::None => {}
                Hold::Shared => words.word(t).release_shared(),
                Hold::Exclusive => words.word(t).release_exclusive(self.tag),
            }
            self.holds[t.index()] = Hold::None;
        }
    }

    /// `GETLK` (spec §3.9), for the first type of `types` that this owner could not get:
    /// a read query conflicts with `F_WRLCK`; a write query conflicts with `F_WRLCK` when the
    /// word is held exclusively, else `F_RDLCK`. The CKPT rule is not a lock and is not
    /// reported (as upstream). An unlock query never conflicts.
    pub fn conflict(&self, words: &LockWords, types: LockSet, kind: LockKind) -> Option<Conflict> {
        for t in types.iter() {
            let state = words.word(t).state();
            let free = match (kind, self.hold(t)) {
                (LockKind::Unlock, _) => true,
                (_, Hold::Exclusive) => true,
                (LockKind::Read, Hold::Shared) => true,
                (LockKind::Read, Hold::None) => !matches!(state, RwState::Exclusive { .. }),
                (LockKind::Write, Hold::Shared) => state == RwState::Shared { count: 1 },
                (LockKind::Write, Hold::None) => state == RwState::Unlocked,
            };
            if !free {
                let conflict_kind = match (kind, state) {
                    (LockKind::Write, RwState::Shared { .. }) => LockKind::Read,
                    _ => LockKind::Write,
                };
                return Some(Conflict {
                    kind: conflict_kind,
                });
            }
        }
        None
    }
}

/// Why a lock request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Another owner holds a conflicting lock, or the CKPT rule refused (`EAGAIN`).
    #[error("{lock_type} lock is not available")]
    WouldBlock { lock_type: LockType },
    /// A new owner would exceed the owner cap (`ENOLCK`).
    #[error("too many lock owners on this database (maximum {owners_max})")]
    TooManyOwners { owners_max: usize },
    /// The internal lock could not be taken before its deadline.
    #[error(
        "timed out after {waited_ms} ms waiting for {} {lock_type} lock ({purpose})",
        kind_word(*.kind)
    )]
    Timeout {
        purpose: &'static str,
        lock_type: LockType,
        kind: LockKind,
        waited_ms: u64,
    },
}

fn kind_word(kind: LockKind) -> &'static str {
    match kind {
        LockKind::Read => "a shared",
        LockKind::Write => "an exclusive",
        LockKind::Unlock => "an unlock of the",
    }
}

#[derive(Debug)]
struct OwnerGuards {
    set: GuardSet,
    /// Set (under the map lock) when the entry leaves the map; a request that fetched the entry
    /// before that must fetch again rather than record holds nobody will find.
    retired: bool,
}

type OwnerSlot = Arc<Mutex<OwnerGuards>>;

fn lock_unpoisoned<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these mutexes is an assertion failure inside a guard-set
    // operation; the maps themselves stay consistent, so keep serving rather than cascade.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// All of one database's locks: the 13 words and the guard set of every lock owner that holds
/// something. Lock order: the owner map, then one owner's mutex; never the reverse.
#[derive(Debug)]
pub struct LockTable {
    words: Arc<LockWords>,
    owners: Mutex<HashMap<u64, OwnerSlot>>,
    owners_max: usize,
}

impl Default for LockTable {
    fn default() -> Self {
        LockTable::new(OWNERS_MAX_DEFAULT)
    }
}

impl LockTable {
    /// A table admitting at most `owners_max` owners holding locks at once; a request that would
    /// add one more fails with [`LockError::TooManyOwners`]. Owners that hold nothing take no
    /// room (their guard set is freed).
    pub fn new(owners_max: usize) -> LockTable {
        LockTable {
            words: Arc::new(LockWords::default()),
            owners: Mutex::new(HashMap::new()),
            owners_max,
        }
    }

    pub fn words(&self) -> &LockWords {
        &self.words
    }

    /// Number of owners currently holding at least one lock.
    pub fn owner_count(&self) -> usize {
        lock_unpoisoned(&self.owners).len()
    }

    /// What `owner` holds of `t`.
    pub fn hold(&self, owner: u64, t: LockType) -> Hold {
        self.existing(owner)
            .map_or(Hold::None, |slot| lock_unpoisoned(&slot).set.hold(t))
    }

    /// `SETLK` (spec §3.9). `types` comes from [`LockType::in_range`]; an empty set (a range
    /// with no lock byte) succeeds without recording anything, as upstream.
    ///
    /// For [`LockKind::Unlock`] the caller must first ask [`LockTable::needs_wal_commit`] and
    /// run CommitWAL while the owner still holds WAL_WRITE (spec §3.7).
    pub fn set_lock(&self, owner: u64, types: LockSet, kind: LockKind) -> Result<(), LockError> {
        if types.is_empty() {
            return Ok(());
        }
        if kind == LockKind::Unlock {
            self.release(owner, types);
            return Ok(());
        }
        loop {
            let slot = self.get_or_insert(owner)?;
            let mut guards = lock_unpoisoned(&slot);
            if guards.retired {
                // Freed between our lookup and our lock: the next lookup inserts a fresh entry.
                // Each retry needs another request of this owner to have emptied and freed it,
                // so this only loops while that owner keeps racing itself.
                continue;
            }
            let result = guards.set.try_set(&self.words, types, kind);
            let empty = guards.set.is_empty();
            drop(guards);
            if empty {
                self.free_if_empty(owner, &slot);
            }
            return result.map_err(|lock_type| LockError::WouldBlock { lock_type });
        }
    }

    /// `GETLK` (spec §3.9): `None` means "F_UNLCK, you could have it".
    pub fn get_lock(&self, owner: u64, types: LockSet, kind: LockKind) -> Option<Conflict> {
        match self.existing(owner) {
            Some(slot) => lock_unpoisoned(&slot)
                .set
                .conflict(&self.words, types, kind),
            // An owner holding nothing is judged with an empty guard set; none is created.
            None => GuardSet::new(&self.words).conflict(&self.words, types, kind),
        }
    }

    /// Whether unlocking `types` drops `owner`'s exclusive WAL_WRITE, so the store must run
    /// CommitWAL *before* calling [`LockTable::set_lock`] / [`LockTable::release_all`]
    /// (spec §3.7). Only the owner's own requests change this answer.
    pub fn needs_wal_commit(&self, owner: u64, types: LockSet) -> bool {
        types.contains(LockType::Write) && self.hold(owner, LockType::Write) == Hold::Exclusive
    }

    /// `FLUSH` of a handle of `file`: POSIX close drops the owner's locks on that file. For the
    /// `-shm` file, ask [`LockTable::needs_wal_commit`] with `file.types()` first.
    pub fn release_all(&self, owner: u64, file: LockFile) {
        self.release(owner, file.types());
    }

    fn release(&self, owner: u64, types: LockSet) {
        let Some(slot) = self.existing(owner) else {
            return;
        };
        let mut guards = lock_unpoisoned(&slot);
        // A retired entry holds nothing, so there is nothing to release.
        guards.set.unlock(&self.words, types);
        let empty = guards.set.is_empty();
        drop(guards);
        if empty {
            self.free_if_empty(owner, &slot);
        }
    }

    fn existing(&self, owner: u64) -> Option<OwnerSlot> {
        lock_unpoisoned(&self.owners).get(&owner).cloned()
    }

    fn get_or_insert(&self, owner: u64) -> Result<OwnerSlot, LockError> {
        let mut owners = lock_unpoisoned(&self.owners);
        if let Some(slot) = owners.get(&owner) {
            return Ok(slot.clone());
        }
        if owners.len() >= self.owners_max {
            return Err(LockError::TooManyOwners {
                owners_max: self.owners_max,
            });
        }
        let slot = Arc::new(Mutex::new(OwnerGuards {
            set: GuardSet::new(&self.words),
            retired: false,
        }));
        owners.insert(owner, slot.clone());
        Ok(slot)
    }

    /// Drops `owner`'s entry if it is still `slot` and still holds nothing (another request of
    /// the same owner may have acquired something since we looked).
    fn free_if_empty(&self, owner: u64, slot: &OwnerSlot) {
        let mut owners = lock_unpoisoned(&self.owners);
        let Some(current) = owners.get(&owner) else {
            return;
        };
        if !Arc::ptr_eq(current, slot) {
            return;
        }
        let mut guards = lock_unpoisoned(slot);
        if guards.set.is_empty() && !guards.retired {
            guards.retired = true;
            drop(guards);
            owners.remove(&owner);
        }
    }
}

#[cfg(test)]
#[path = "lock_tests.rs"]
mod tests;
