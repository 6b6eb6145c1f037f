//! One reader/writer lock per lock type as a single `AtomicU64`, and the 13 words of a database.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::LockType;

/// Identifies the exclusive holder inside a [`RwWord`], so a release by anyone else is caught.
/// 31 bits, never 0. Tags wrap after 2^31 - 1 guard sets; a reused tag only weakens that check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerTag(u32);

impl OwnerTag {
    const MAX: u32 = 0x7FFF_FFFF;

    pub const fn get(self) -> u32 {
        self.0
    }
}

/// What a [`RwWord`] says right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RwState {
    Unlocked,
    Shared { count: u32 },
    Exclusive { tag: OwnerTag },
}

// Word layout: bits 0..=31 shared count, bits 32..=62 exclusive holder tag, bit 63 exclusive.
// Exclusive implies a zero count (an upgrade swaps count 1 for the bit in one exchange).
const SHARED_COUNT_MASK: u64 = 0xFFFF_FFFF;
const TAG_SHIFT: u32 = 32;
const EXCLUSIVE_BIT: u64 = 1 << 63;

const fn exclusive_word(tag: OwnerTag) -> u64 {
    EXCLUSIVE_BIT | (tag.0 as u64) << TAG_SHIFT
}

fn decode(word: u64) -> RwState {
    if word & EXCLUSIVE_BIT != 0 {
        // The mask keeps 31 bits, so the cast cannot truncate.
        let tag = ((word >> TAG_SHIFT) as u32) & OwnerTag::MAX;
        RwState::Exclusive { tag: OwnerTag(tag) }
    } else if word & SHARED_COUNT_MASK == 0 {
        RwState::Unlocked
    } else {
        RwState::Shared {
            count: (word & SHARED_COUNT_MASK) as u32,
        }
    }
}

/// One reader/writer lock as a single atomic word, lock-free.
///
/// Memory orderings: an operation that *gains* access (shared, exclusive, upgrade) uses
/// `Acquire` on its successful exchange, and one that *gives up* access (releases, downgrade)
/// uses `Release`, so whatever the daemon did under a lock (applying an LTX under the internal
/// write lock, capturing a WAL commit under WAL_WRITE) happens-before the next holder's access.
/// Failed exchanges and plain loads use `Relaxed` (a failed try grants nothing), except
/// [`RwWord::state`], which uses `Acquire` so a decision based on seeing a lock free (the CKPT
/// rule) is ordered after the release that freed it.
///
/// Progress: the compare-exchange loops only retry when another thread changed the word in
/// between, i.e. made progress; the count cannot exceed the owner cap, so they are bounded by
/// contention, never by waiting for a holder. Nothing here blocks.
///
/// The word trusts its caller (a [`GuardSet`](super::GuardSet)) to release only what it holds; a violation is a
/// bug in this module, not reachable from FUSE input, and panics with the numbers.
#[derive(Debug)]
pub struct RwWord {
    lock_type: LockType,
    word: AtomicU64,
}

impl RwWord {
    pub const fn new(lock_type: LockType) -> RwWord {
        RwWord {
            lock_type,
            word: AtomicU64::new(0),
        }
    }

    pub const fn lock_type(&self) -> LockType {
        self.lock_type
    }

    /// Adds a sharer unless someone holds the word exclusively.
    pub fn try_shared(&self) -> bool {
        let mut cur = self.word.load(Ordering::Relaxed);
        loop {
            // A full count is unreachable under the owner cap; refusing keeps it out of the tag.
            if cur & EXCLUSIVE_BIT != 0 || cur & SHARED_COUNT_MASK == SHARED_COUNT_MASK {
                return false;
            }
            match self.word.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes the word exclusively if nobody holds it at all.
    pub fn try_exclusive(&self, tag: OwnerTag) -> bool {
        self.word
            .compare_exchange(0, exclusive_word(tag), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Shared → exclusive, only if the caller (which must hold it shared) is the sole sharer.
    pub fn try_upgrade(&self, tag: OwnerTag) -> bool {
        match self.word.compare_exchange(
            1,
            exclusive_word(tag),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => true,
            Err(actual) => {
                let count = actual & SHARED_COUNT_MASK;
                assert!(
                    actual & EXCLUSIVE_BIT == 0 && count >= 1,
                    "try_upgrade on {:?} by tag {} without holding it shared: word {actual:#x}",
                    self.lock_type,
                    tag.0
                );
                false
            }
        }
    }

    /// Exclusive → shared (count 1). Never fails: only the holder changes an exclusive word.
    pub fn downgrade(&self, tag: OwnerTag) {
        let held = exclusive_word(tag);
        if let Err(actual) =
            self.word
                .compare_exchange(held, 1, Ordering::Release, Ordering::Relaxed)
        {
            panic!(
                "downgrade on {:?} by tag {} not holding it exclusively: word {actual:#x}",
                self.lock_type, tag.0
            );
        }
    }

    /// Removes one sharer.
    pub fn release_shared(&self) {
        let mut cur = self.word.load(Ordering::Relaxed);
        loop {
            let count = cur & SHARED_COUNT_MASK;
            assert!(
                cur & EXCLUSIVE_BIT == 0 && count > 0,
                "release_shared with count {count} on {:?} (word {cur:#x})",
                self.lock_type
            );
            match self.word.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Releases an exclusive hold by `tag`.
    pub fn release_exclusive(&self, tag: OwnerTag) {
        let held = exclusive_word(tag);
        if let Err(actual) =
            self.word
                .compare_exchange(held, 0, Ordering::Release, Ordering::Relaxed)
        {
            panic!(
                "release_exclusive on {:?} by tag {} not holding it: word {actual:#x}",
                self.lock_type, tag.0
            );
        }
    }

    /// The current state (for `GETLK`, the CKPT rule and tests).
    pub fn state(&self) -> RwState {
        decode(self.word.load(Ordering::Acquire))
    }
}

/// The lock words of one database plus the source of owner tags. Shared (via `Arc`) between
/// the [`LockTable`](super::LockTable) and internal lock guards, which outlive any one request.
#[derive(Debug)]
pub struct LockWords {
    words: [RwWord; LockType::COUNT],
    next_tag: AtomicU32,
}

impl Default for LockWords {
    fn default() -> Self {
        LockWords {
            words: LockType::ALL.map(RwWord::new),
            next_tag: AtomicU32::new(0),
        }
    }
}

impl LockWords {
    pub fn word(&self, t: LockType) -> &RwWord {
        &self.words[t.index()]
    }

    pub(super) fn new_tag(&self) -> OwnerTag {
        // Relaxed: tags only need to differ, not to order anything.
        let n = self.next_tag.fetch_add(1, Ordering::Relaxed);
        OwnerTag(n % OwnerTag::MAX + 1)
    }
}
