//! Tests of the internal write/read locks and a multi-threaded stress test with a shadow model.

use super::*;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A clock that advances only when slept on, recording each sleep and calling `on_sleep` with
/// the number of sleeps so far (to release a lock "later" without threads).
struct FakeClock<'a> {
    now: Cell<Instant>,
    sleeps: RefCell<Vec<Duration>>,
    on_sleep: Box<dyn Fn(usize) + 'a>,
}

impl<'a> FakeClock<'a> {
    fn new(on_sleep: impl Fn(usize) + 'a) -> Self {
        FakeClock {
            now: Cell::new(Instant::now()),
            sleeps: RefCell::new(Vec::new()),
            on_sleep: Box::new(on_sleep),
        }
    }

    fn sleeps_ms(&self) -> Vec<u128> {
        self.sleeps
            .borrow()
            .iter()
            .map(Duration::as_millis)
            .collect()
    }
}

impl Clock for FakeClock<'_> {
    fn now(&self) -> Instant {
        self.now.get()
    }

    fn sleep(&self, duration: Duration) {
        self.now.set(self.now.get() + duration);
        self.sleeps.borrow_mut().push(duration);
        (self.on_sleep)(self.sleeps.borrow().len());
    }
}

fn wal() -> WriteLockMode {
    WriteLockMode::Wal
}

fn rollback() -> WriteLockMode {
    WriteLockMode::Rollback
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[test]
fn write_lock_when_free_wal_mode() {
    let t = LockTable::default();
    let guard = t.acquire_write_lock(wal, soon(), &SystemClock).unwrap();
    assert_eq!(guard.mode(), WriteLockMode::Wal);
    assert_eq!(guard.hold(Shared), Hold::Shared);
    assert_eq!(guard.hold(Dms), Hold::Shared);
    assert_eq!(
        guard.hold(Pending),
        Hold::None,
        "PENDING released after SHARED"
    );
    for lt in [Write, Ckpt, Recover, Read0, Read1, Read2, Read3, Read4] {
        assert_eq!(guard.hold(lt), Hold::Exclusive, "{lt:?}");
    }
    let reader = 1;
    assert_eq!(
        t.set_lock(reader, set(&[Pending, Shared]), Rd),
        Ok(()),
        "db file open"
    );
    assert_eq!(t.set_lock(reader, LockSet::one(Dms), Rd), Ok(()));
    assert_eq!(
        t.set_lock(reader, LockSet::one(Read0), Rd),
        Err(LockError::WouldBlock { lock_type: Read0 }),
        "no new WAL readers during apply"
    );
    drop(guard);
    t.release_all(reader, LockFile::Db);
    t.release_all(reader, LockFile::Shm);
    assert_all_free(&t);
}

#[test]
fn write_lock_when_free_rollback_mode() {
    let t = LockTable::default();
    let guard = t
        .acquire_write_lock(rollback, soon(), &SystemClock)
        .unwrap();
    assert_eq!(guard.held(), LockSet::DB_FILE);
    assert!(
        LockSet::DB_FILE
            .iter()
            .all(|lt| guard.hold(lt) == Hold::Exclusive)
    );
    assert_eq!(
        t.set_lock(1, LockSet::one(Pending), Rd),
        Err(LockError::WouldBlock { lock_type: Pending }),
        "full EXCLUSIVE keeps readers out"
    );
    drop(guard);
    assert_all_free(&t);
}

#[test]
fn write_lock_backs_off_and_succeeds_once_reader_leaves() {
    let t = LockTable::default();
    let reader = 7;
    t.set_lock(reader, set(&[Shared]), Rd).unwrap();
    // The reader closes its database during the 4th sleep.
    let clock = FakeClock::new(|n| {
        if n == 4 {
            t.release_all(reader, LockFile::Db);
        }
    });
    let guard = t.acquire_write_lock(rollback, clock.now() + Duration::from_secs(1), &clock);
    assert!(guard.is_ok(), "{guard:?}");
    assert_eq!(clock.sleeps_ms(), [1, 2, 4, 8], "exponential from 1 ms");
    drop(guard);
    assert_all_free(&t);
}

#[test]
fn write_lock_waits_for_a_reader_thread() {
    let t = LockTable::default();
    let reader = 7;
    t.set_lock(reader, set(&[Pending, Shared]), Rd).unwrap();
    t.set_lock(reader, LockSet::one(Pending), Un).unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(30));
            t.release_all(reader, LockFile::Db);
        });
        let guard = t.acquire_write_lock(rollback, started + Duration::from_secs(10), &SystemClock);
        let waited = started.elapsed();
        assert!(guard.is_ok(), "{guard:?}");
        assert!(
            waited >= Duration::from_millis(30),
            "got EXCLUSIVE while read: {waited:?}"
        );
        assert!(waited < Duration::from_secs(5), "took {waited:?}");
    });
    assert_all_free(&t);
}

#[test]
fn write_lock_times_out_naming_the_type_and_wait() {
    let t = LockTable::default();
    let writer = 3;
    t.set_lock(writer, LockSet::one(Write), Wr).unwrap();
    let clock = FakeClock::new(|_| {});
    let deadline = clock.now() + Duration::from_millis(100);
    let err = t.acquire_write_lock(wal, deadline, &clock).unwrap_err();
    assert_eq!(
        err,
        LockError::Timeout {
            purpose: "internal write lock",
            lock_type: Write,
            kind: Wr,
            waited_ms: 100
        }
    );
    assert_eq!(
        err.to_string(),
        "timed out after 100 ms waiting for an exclusive WAL_WRITE lock (internal write lock)"
    );
    // 1, 2, 4, 8, then capped at 16; the last sleep stops exactly at the deadline.
    assert_eq!(clock.sleeps_ms(), [1, 2, 4, 8, 16, 16, 16, 16, 16, 5]);
    assert_eq!(WRITE_LOCK_BACKOFF_MAX_MS, 16);
    for lt in [Pending, Shared, Dms, Ckpt] {
        assert_eq!(
            t.words().word(lt).state(),
            RwState::Unlocked,
            "{lt:?} released"
        );
    }
    assert_eq!(
        t.hold(writer, Write),
        Hold::Exclusive,
        "the SQLite writer keeps its lock"
    );
    t.release_all(writer, LockFile::Shm);
    assert_all_free(&t);
}

#[test]
fn write_lock_past_deadline_still_tries_once() {
    let t = LockTable::default();
    let clock = FakeClock::new(|_| {});
    let past = clock.now() - Duration::from_millis(1);
    let guard = t.acquire_write_lock(wal, past, &clock).unwrap();
    assert!(clock.sleeps_ms().is_empty());
    drop(guard);
    assert_all_free(&t);
}

#[test]
fn read_locks_for_snapshot_and_export() {
    let t = LockTable::default();
    for purpose in [ReadLockPurpose::Snapshot, ReadLockPurpose::Export] {
        let seen = Cell::new(RwState::Unlocked);
        let capture = || seen.set(t.words().word(Write).state());
        let guard = t
            .acquire_read_lock(purpose, wal, capture, soon(), &SystemClock)
            .unwrap();
        assert!(
            matches!(seen.get(), RwState::Exclusive { .. }),
            "captured under WRITE"
        );
        let mut want = set(&[Shared, Read0, Read1, Read2, Read3, Read4]);
        if purpose == ReadLockPurpose::Export {
            want = want.with(Ckpt).with(Recover);
        }
        assert_eq!(guard.held(), want, "{purpose:?}");
        assert!(want.iter().all(|lt| guard.hold(lt) == Hold::Shared));
        assert_eq!(
            t.set_lock(1, LockSet::one(Write), Wr),
            Ok(()),
            "writers go on"
        );
        t.release_all(1, LockFile::Shm);
        drop(guard);
        assert_all_free(&t);
    }
    let seen = Cell::new(RwState::Unlocked);
    let capture = || seen.set(t.words().word(Shared).state());
    let guard = t
        .acquire_read_lock(
            ReadLockPurpose::Snapshot,
            rollback,
            capture,
            soon(),
            &SystemClock,
        )
        .unwrap();
    assert_eq!(
        seen.get(),
        RwState::Shared { count: 1 },
        "rollback: captured under SHARED"
    );
    assert_eq!(guard.held(), LockSet::one(Shared));
    drop(guard);
    assert_all_free(&t);
}

/// Two threads issuing requests for the same owner (as two FUSE workers could): an owner's
/// entry is freed and recreated thousands of times, and no acquisition may land in a freed one.
#[test]
fn same_owner_from_two_threads_never_loses_a_hold() {
    let t = LockTable::default();
    let owner = 5;
    std::thread::scope(|s| {
        for lt in [Read0, Read1] {
            let t = &t;
            s.spawn(move || {
                for i in 0..5_000 {
                    t.set_lock(owner, LockSet::one(lt), Rd).unwrap();
                    assert_eq!(
                        t.hold(owner, lt),
                        Hold::Shared,
                        "iteration {i}: {lt:?} lost"
                    );
                    t.set_lock(owner, LockSet::one(lt), Un).unwrap();
                }
            });
        }
    });
    assert_all_free(&t);
}

use crate::testkit::XorShift64 as Rng;

/// Who holds what, counted independently of the words: updated after an acquisition and before
/// a release, so whenever a thread has just acquired, the counts are exact for that type.
struct Shadow {
    seed: u64,
    shared: [AtomicU32; LockType::COUNT],
    exclusive: [AtomicU32; LockType::COUNT],
}

impl Shadow {
    fn add(&self, lt: LockType, hold: Hold, delta: i32) {
        let counter = match hold {
            Hold::None => return,
            Hold::Shared => &self.shared[lt.index()],
            Hold::Exclusive => &self.exclusive[lt.index()],
        };
        if delta > 0 {
            counter.fetch_add(1, Ordering::SeqCst);
        } else {
            counter.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Checks the invariant right after this thread acquired `lt` as `hold`.
    fn check(&self, lt: LockType, hold: Hold, what: &str) {
        let shared = self.shared[lt.index()].load(Ordering::SeqCst);
        let exclusive = self.exclusive[lt.index()].load(Ordering::SeqCst);
        let ok = match hold {
            Hold::Exclusive => exclusive == 1 && shared == 0,
            Hold::Shared => exclusive == 0 && shared >= 1,
            Hold::None => true,
        };
        assert!(
            ok,
            "seed {}: {what}: {lt:?} held {hold:?} with {shared} shared, {exclusive} exclusive",
            self.seed
        );
    }
}

const STRESS_THREADS: usize = 4;
const STRESS_OPS_PER_THREAD: usize = 20_000;
const STRESS_OWNERS_PER_THREAD: u64 = 3;

fn stress_sets() -> Vec<LockSet> {
    let mut sets: Vec<LockSet> = LockType::ALL.into_iter().map(LockSet::one).collect();
    sets.extend([
        set(&[Pending, Reserved]),
        LockSet::DB_FILE,
        set(&[Ckpt, Recover]),
        set(&[Read1, Read2, Read3, Read4]),
        set(&[Write, Ckpt]),
        LockSet::SHM_FILE,
    ]);
    sets
}

/// One owner's step: a random request, shadow kept in step, table state checked against the
/// owner's own model (which a failed request must leave unchanged).
fn stress_step(t: &LockTable, sh: &Shadow, rng: &mut Rng, owner: u64, model: &mut [Hold; 13]) {
    let sets = stress_sets();
    let types = sets[rng.below(sets.len())];
    let kind = match rng.below(20) {
        0..=7 => Rd,
        8..=14 => Wr,
        _ => Un,
    };
    match kind {
        Un => {
            for lt in types.iter() {
                sh.add(lt, model[lt.index()], -1);
                model[lt.index()] = Hold::None;
            }
            t.set_lock(owner, types, Un).unwrap();
        }
        Rd => {
            let downgrades: Vec<LockType> = types
                .iter()
                .filter(|lt| model[lt.index()] == Hold::Exclusive)
                .collect();
            for &lt in &downgrades {
                sh.add(lt, Hold::Exclusive, -1);
                sh.add(lt, Hold::Shared, 1);
            }
            if t.set_lock(owner, types, Rd).is_ok() {
                for lt in types.iter().filter(|lt| model[lt.index()] == Hold::None) {
                    sh.add(lt, Hold::Shared, 1);
                }
                for lt in types.iter() {
                    model[lt.index()] = Hold::Shared;
                    sh.check(lt, Hold::Shared, "after read");
                }
            } else {
                for &lt in &downgrades {
                    sh.add(lt, Hold::Shared, -1);
                    sh.add(lt, Hold::Exclusive, 1);
                }
            }
        }
        Wr => {
            if t.set_lock(owner, types, Wr).is_ok() {
                for lt in types.iter() {
                    if model[lt.index()] != Hold::Exclusive {
                        sh.add(lt, model[lt.index()], -1);
                        sh.add(lt, Hold::Exclusive, 1);
                    }
                    model[lt.index()] = Hold::Exclusive;
                    sh.check(lt, Hold::Exclusive, "after write");
                }
            }
        }
    }
    for lt in LockType::ALL {
        let held = t.hold(owner, lt);
        assert_eq!(
            held,
            model[lt.index()],
            "seed {}: owner {owner} {lt:?}",
            sh.seed
        );
    }
}

/// Occasionally takes the internal write lock with a short deadline, checking it like a client.
fn stress_internal(t: &LockTable, sh: &Shadow, rng: &mut Rng) {
    let mode = if rng.below(2) == 0 { wal } else { rollback };
    let deadline = Instant::now() + Duration::from_millis(2);
    let Ok(guard) = t.acquire_write_lock(mode, deadline, &SystemClock) else {
        return;
    };
    for lt in guard.held().iter() {
        sh.add(lt, guard.hold(lt), 1);
    }
    for lt in guard.held().iter() {
        sh.check(lt, guard.hold(lt), "internal write lock");
    }
    for lt in guard.held().iter() {
        sh.add(lt, guard.hold(lt), -1);
    }
}

#[test]
fn stress_no_exclusive_overlaps() {
    let seed = std::env::var("LITEFS_LOCK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            nanos | 1
        });
    println!("stress seed {seed} (rerun with LITEFS_LOCK_SEED={seed})");
    let sh = Shadow {
        seed,
        shared: Default::default(),
        exclusive: Default::default(),
    };
    let t = LockTable::default();
    std::thread::scope(|s| {
        for thread in 0..STRESS_THREADS {
            let (t, sh) = (&t, &sh);
            s.spawn(move || {
                let mut rng = Rng(seed.wrapping_add(thread as u64 * 0x9E37_79B9) | 1);
                let owners: Vec<u64> = (0..STRESS_OWNERS_PER_THREAD)
                    .map(|k| thread as u64 * 100 + k)
                    .collect();
                let mut models = vec![[Hold::None; 13]; owners.len()];
                for op in 0..STRESS_OPS_PER_THREAD {
                    // Thread 0 also competes as LiteFS itself.
                    if thread == 0 && op % 200 == 0 {
                        stress_internal(t, sh, &mut rng);
                        continue;
                    }
                    let i = rng.below(owners.len());
                    stress_step(t, sh, &mut rng, owners[i], &mut models[i]);
                }
                for (i, &owner) in owners.iter().enumerate() {
                    for lt in LockType::ALL {
                        sh.add(lt, models[i][lt.index()], -1);
                    }
                    for file in [LockFile::Db, LockFile::Shm, LockFile::Lock] {
                        t.release_all(owner, file);
                    }
                }
            });
        }
    });
    assert_all_free(&t);
}
