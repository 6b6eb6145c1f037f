//! HALT locks on the primary (spec §5, §4.3 `/halt` and `/tx`): a replica that must write (a
//! migration under `litefs run -with-halt-lock-on`) freezes this node's writers by having it
//! hold its internal write lock, commits on its own node, and sends each transaction's LTX
//! file here, to be applied and streamed to every replica like a local commit.
//!
//! Where this differs from LiteFS, and why:
//! - A forwarded file is applied under the halt lock it names (`lockID`, which LiteFS ignores:
//!   an upstream TODO). While another replica's halt lock is held, a file naming a different
//!   lock is refused: applying it would break that replica's exclusivity. With no halt lock at
//!   all (the sender's expired before its commit arrived), the file is applied under a write
//!   lock of its own after the same settling a halt does — as LiteFS would apply it, minus
//!   the race with this node's writers.
//! - A halt lock cannot be released or expire while a forwarded file is applied (the other
//!   upstream TODO): both take [`Db::halt`]'s mutex.
//! - A hot journal (a writer died mid-transaction) is not rolled back under the halt but
//!   refused with what to do: SQLite rolls it back at the next open, and the database cannot
//!   change under a halt until then.
//! - Both routes are refused on a replica (LiteFS does not check).

use super::{Db, FileKind, now_ms};
use crate::store::error::{Error, IoContext, Result};
use crate::store::lock::InternalLockGuard;
use crate::types::Pos;
use std::fs::File;
use std::io::{self, Read};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

/// Longest wait for the write lock behind a `/halt` (spec `HaltAcquireTimeout`).
pub const HALT_ACQUIRE_TIMEOUT_MS: u64 = 10_000;

/// A halt lock lapses this long after it was taken; there is no renewal (spec `HaltLockTTL`).
pub const HALT_LOCK_TTL_MS: u64 = 30_000;

/// How often lapsed halt locks are looked for (spec §5.5).
pub const HALT_EXPIRY_CHECK_INTERVAL_MS: u64 = 5_000;

/// While waiting for the write lock, how often a retried `/halt` looks for the lock its first
/// attempt may have taken meanwhile (LiteFS checks at each retry of the write lock).
const HALT_RETRY_CHECK_MS: u64 = 50;

/// A HALT lock as `/halt` answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HaltLock {
    /// The replica's random lock id (non-zero), which dedups its retried requests.
    pub id: i64,
    /// The position the replica must reach before it writes.
    pub pos: Pos,
    /// When it lapses, in milliseconds since the epoch (the replica ignores it).
    pub expires_ms: i64,
}

/// The halt lock held, with the write lock it keeps.
struct HeldHalt {
    lock: HaltLock,
    expires_at: Instant,
    /// Released when this is dropped.
    _guard: InternalLockGuard,
}

/// [`Db::halt`]: the halt lock held, if any.
#[derive(Default)]
pub(super) struct HaltSlot {
    held: Option<HeldHalt>,
    /// The node is stopping ([`Db::close_halt_locks`]): no halt lock is taken any more, or
    /// one taken by a request still waiting would hold files open on the mount at unmount.
    closed: bool,
}

/// Which write lock a forwarded file is applied under; held until the apply is done.
enum ApplyUnder<'a> {
    Halt { _held: MutexGuard<'a, HaltSlot> },
    Own { _guard: InternalLockGuard },
}

impl Db {
    fn halt_state(&self) -> MutexGuard<'_, HaltSlot> {
        self.halt.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn halt_error(&self, message: String) -> Error {
        Error::Halt {
            db: self.name.clone(),
            message,
        }
    }

    /// The halt lock held now, if any.
    pub fn halt_lock(&self) -> Option<HaltLock> {
        self.halt_state().held.as_ref().map(|held| held.lock)
    }

    /// `POST /halt` (spec §4.3): takes the internal write lock on behalf of replica lock `id`
    /// for [`HALT_LOCK_TTL_MS`], waiting at most [`HALT_ACQUIRE_TIMEOUT_MS`]; folds the WAL
    /// into the database file so forwarded files apply to the file alone. A retried request
    /// (the same id, already held) gets the lock it holds.
    pub fn acquire_halt_lock(&self, id: i64) -> Result<HaltLock> {
        if id == 0 {
            return Err(self.halt_error("halt lock id required".into()));
        }
        self.check_writable(FileKind::Wal)?;
        let deadline = Instant::now() + Duration::from_millis(HALT_ACQUIRE_TIMEOUT_MS);
        let guard = loop {
            if let Some(held) = self.halt_state().held.as_ref()
                && held.lock.id == id
            {
                return Ok(held.lock);
            }
            let slice_end =
                deadline.min(Instant::now() + Duration::from_millis(HALT_RETRY_CHECK_MS));
            match self.acquire_write_lock(slice_end) {
                Ok(guard) => break guard,
                Err(Error::Lock { .. }) if Instant::now() < deadline => continue,
                Err(e) => return Err(e),
            }
        };
        self.check_writable(FileKind::Wal)?;
        self.capture_wal()?;
        self.settle_for_forwarded()?;
        let ttl = Duration::from_millis(HALT_LOCK_TTL_MS);
        let lock = HaltLock {
            id,
            pos: self.pos(),
            expires_ms: now_ms() + HALT_LOCK_TTL_MS as i64,
        };
        let mut state = self.halt_state();
        if state.closed {
            return Err(self.halt_error("the node is stopping".into()));
        }
        // There is none: its write lock would have kept ours off until it went.
        state.held = Some(HeldHalt {
            lock,
            expires_at: Instant::now() + ttl,
            _guard: guard,
        });
        Ok(lock)
    }

    /// `DELETE /halt`: releases the halt lock if it is `id`'s; otherwise nothing.
    pub fn release_halt_lock(&self, id: i64) {
        let mut state = self.halt_state();
        if state.held.as_ref().is_some_and(|held| held.lock.id == id) {
            state.held = None;
        }
    }

    /// Releases the halt lock if it lapsed by `now` (spec §5.5), and returns it.
    pub fn expire_halt_lock(&self, now: Instant) -> Option<HaltLock> {
        let mut state = self.halt_state();
        if state
            .held
            .as_ref()
            .is_some_and(|held| held.expires_at <= now)
        {
            return state.held.take().map(|held| held.lock);
        }
        None
    }

    /// Releases the halt lock, whoever holds it, and refuses any from now on: the node is
    /// stopping.
    pub fn close_halt_locks(&self) {
        let mut state = self.halt_state();
        state.closed = true;
        state.held = None;
    }

    /// `POST /tx` (spec §4.3): a transaction a halted replica committed, as its raw LTX file.
    /// It is received and verified into a temp file first (a bad file changes nothing), then
    /// applied under halt lock `lock_id` — or under a write lock of its own when no halt lock
    /// is held — if it continues this node's position, and published as a local commit is.
    pub fn apply_forwarded(&self, body: impl Read, lock_id: i64) -> Result<Pos> {
        self.check_writable(FileKind::Wal)?;
        let spilled = match self.receive_verified_into(body, false)? {
            super::Receipt::Spilled(spilled) => spilled,
            super::Receipt::Own => {
                return Err(self.halt_error(format!(
                    "the forwarded transaction carries this node's id {}",
                    self.options.node_id
                )));
            }
            super::Receipt::Memory(_) => {
                return Err(self.halt_error("a forwarded file was kept in memory".into()));
            }
        };
        let header = *spilled.header();
        let _under = match self.halt_state() {
            state if state.held.is_some() => {
                let held_id = state.held.as_ref().map_or(0, |held| held.lock.id);
                if held_id != lock_id {
                    return Err(self.halt_error(format!(
                        "halt lock {lock_id} is not held (halt lock {held_id} is): \
                         acquire it with POST /halt, then send the transaction again"
                    )));
                }
                // The halt settled the database; nothing has written since.
                self.check_continues(&header)?;
                ApplyUnder::Halt { _held: state }
            }
            state => {
                drop(state);
                let deadline = Instant::now() + Duration::from_millis(HALT_ACQUIRE_TIMEOUT_MS);
                let guard = self.acquire_write_lock(deadline)?;
                self.check_writable(FileKind::Wal)?;
                self.capture_wal()?;
                // Before the settling: a refused file changes nothing.
                self.check_continues(&header)?;
                self.settle_for_forwarded()?;
                ApplyUnder::Own { _guard: guard }
            }
        };
        match self.apply_spilled_locked(spilled)? {
            super::Received::Applied { pos, .. } => Ok(pos),
            super::Received::Own => Err(self.halt_error("the forwarded file was skipped".into())),
        }
    }

    /// A forwarded file must start where the database is (a snapshot starts anywhere).
    fn check_continues(&self, header: &crate::ltx::Header) -> Result<()> {
        let pos = self.pos();
        if header.is_snapshot() || pos == header.pre_apply_pos() {
            return Ok(());
        }
        Err(self.halt_error(format!(
            "the forwarded transaction {}-{} starts from {}, but the database is at {pos}: \
             the sender must catch up with this node before it writes",
            header.min_txid,
            header.max_txid,
            header.pre_apply_pos()
        )))
    }

    /// What a halt settles before files are applied to the database file alone: every
    /// committed WAL frame folded into it and the WAL emptied (`-shm` saying so); a hot
    /// journal refused. Called with the internal write lock held, so no SQLite transaction
    /// is open, and after every commit was captured.
    fn settle_for_forwarded(&self) -> Result<()> {
        if self.journal_is_hot()? {
            return Err(self.halt_error(format!(
                "{} is a hot journal (a writer stopped mid-transaction): open the database \
                 with SQLite on this node to roll it back, then retry",
                self.path(FileKind::Journal).display()
            )));
        }
        self.fold_wal_for_apply()
    }

    /// A journal whose header is not zeroed: SQLite would roll it back. Under the internal
    /// write lock no writer is inside a transaction, so only one that died leaves it.
    fn journal_is_hot(&self) -> Result<bool> {
        let path = self.path(FileKind::Journal);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).io_context("open", &path),
        };
        let mut magic = [0u8; 8];
        match file.read_exact(&mut magic) {
            Ok(()) => Ok(magic != [0; 8]),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e).io_context("read", &path),
        }
    }
}
