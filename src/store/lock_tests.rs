//! Tests of `store::lock`: range mapping, words, guard sets, the table, the CKPT rule and the
//! WAL-commit hook. The internal locks and the stress test are in `lock_internal_tests.rs`.

use super::*;
use crate::sqlite::SHARED_SIZE;
use LockKind::{Read as Rd, Unlock as Un, Write as Wr};
use LockType::*;

#[path = "lock_internal_tests.rs"]
mod internal_tests;

fn set(types: &[LockType]) -> LockSet {
    types.iter().copied().collect()
}

/// SHARED's whole 510-byte range, as SQLite locks it.
const SHARED_LAST: u64 = SHARED_FIRST + SHARED_SIZE - 1;

#[test]
fn range_mapping_table() {
    // (file, start, end (inclusive), expected types, the SQLite request it stands for)
    #[rustfmt::skip]
    let rows: &[(LockFile, u64, u64, &[LockType], &str)] = &[
        (LockFile::Db, PENDING_BYTE, PENDING_BYTE, &[Pending], "NONE->SHARED: RDLCK PENDING"),
        (LockFile::Db, SHARED_FIRST, SHARED_LAST, &[Shared], "NONE->SHARED: RDLCK SHARED range"),
        (LockFile::Db, RESERVED_BYTE, RESERVED_BYTE, &[Reserved], "SHARED->RESERVED"),
        (LockFile::Db, PENDING_BYTE, PENDING_BYTE, &[Pending], "RESERVED->EXCLUSIVE: WRLCK PENDING"),
        (LockFile::Db, SHARED_FIRST, SHARED_LAST, &[Shared], "RESERVED->EXCLUSIVE: WRLCK SHARED"),
        (LockFile::Db, PENDING_BYTE, RESERVED_BYTE, &[Pending, Reserved], "EXCLUSIVE->SHARED: UNLCK 2 bytes"),
        (LockFile::Db, 0, u64::MAX, &[Pending, Reserved, Shared], "->NONE: whole file, no HALT"),
        (LockFile::Db, SHARED_FIRST + 1, SHARED_LAST, &[], "SHARED counts by its first byte only"),
        (LockFile::Db, 0, PENDING_BYTE - 1, &[], "below the lock page"),
        (LockFile::Db, RESERVED_BYTE, PENDING_BYTE, &[], "inverted range"),
        (LockFile::Shm, 120, 120, &[Write], "WAL write transaction"),
        (LockFile::Shm, 121, 121, &[Ckpt], "checkpoint"),
        (LockFile::Shm, 122, 122, &[Recover], "recovery, CKPT already held"),
        (LockFile::Shm, 121, 122, &[Ckpt, Recover], "recovery: CKPT+RECOVER in one request"),
        (LockFile::Shm, 123, 123, &[Read0], "read mark 0"),
        (LockFile::Shm, 124, 124, &[Read1], "read mark 1"),
        (LockFile::Shm, 125, 125, &[Read2], "read mark 2"),
        (LockFile::Shm, 126, 126, &[Read3], "read mark 3"),
        (LockFile::Shm, 127, 127, &[Read4], "read mark 4"),
        (LockFile::Shm, 124, 127, &[Read1, Read2, Read3, Read4], "RESTART checkpoint READ1..4"),
        (LockFile::Shm, 128, 128, &[Dms], "DMS"),
        (LockFile::Shm, 0, u64::MAX, &[Write, Ckpt, Recover, Read0, Read1, Read2, Read3, Read4, Dms], "shm whole file"),
        (LockFile::Shm, 0, 119, &[], "below the shm lock bytes"),
        (LockFile::Shm, 72, 72, &[], "HALT byte on -shm is nothing"),
        (LockFile::Lock, 72, 72, &[Halt], "HALT"),
        (LockFile::Lock, 123, 123, &[], "-lock byte 123 is nothing"),
    ];
    for &(file, start, end, want, what) in rows {
        assert_eq!(
            LockType::in_range(file, start, end),
            set(want),
            "{what}: {start}..={end}"
        );
    }
    assert_eq!(LockType::in_db_range(0, u64::MAX), LockSet::DB_FILE);
    assert_eq!(LockType::in_shm_range(120, 128), LockSet::SHM_FILE);
    for i in 0..5 {
        let t = LockType::read(i).unwrap();
        assert_eq!(
            LockType::in_shm_range(WAL_READ_LOCK0 + i, WAL_READ_LOCK0 + i),
            LockSet::one(t)
        );
    }
    assert_eq!(LockType::read(5), None);
    assert_eq!(LockSet::ALL.len(), LockType::COUNT);
    assert_eq!(
        LockSet::DB_FILE
            .union(LockSet::SHM_FILE)
            .union(LockSet::LOCK_FILE),
        LockSet::ALL
    );
    for t in LockType::ALL {
        assert!(t.file().types().contains(t), "{t:?} in its file's set");
    }
}

#[test]
fn word_shared_exclusive_upgrade_downgrade() {
    let words = LockWords::default();
    let (a, b) = (GuardSet::new(&words).tag(), GuardSet::new(&words).tag());
    assert_ne!(a, b);
    let w = RwWord::new(Write);
    assert_eq!(w.state(), RwState::Unlocked);
    assert!(w.try_shared() && w.try_shared());
    assert_eq!(w.state(), RwState::Shared { count: 2 });
    assert!(!w.try_exclusive(a), "exclusive while shared");
    assert!(!w.try_upgrade(a), "upgrade with another sharer");
    w.release_shared();
    assert!(w.try_upgrade(a), "sole sharer upgrades");
    assert_eq!(w.state(), RwState::Exclusive { tag: a });
    assert!(!w.try_shared() && !w.try_exclusive(b));
    w.downgrade(a);
    assert_eq!(w.state(), RwState::Shared { count: 1 });
    w.release_shared();
    assert!(w.try_exclusive(b));
    w.release_exclusive(b);
    assert_eq!(w.state(), RwState::Unlocked);
}

#[test]
#[should_panic(expected = "release_shared with count 0 on Write")]
fn word_release_shared_underflow_panics() {
    RwWord::new(Write).release_shared();
}

#[test]
#[should_panic(expected = "release_exclusive on Ckpt by tag")]
fn word_release_exclusive_by_non_holder_panics() {
    let words = LockWords::default();
    let (a, b) = (GuardSet::new(&words).tag(), GuardSet::new(&words).tag());
    let w = RwWord::new(Ckpt);
    assert!(w.try_exclusive(a));
    w.release_exclusive(b);
}

/// Rollback-journal session, two SQLite processes A and B, plus a late reader C.
#[test]
fn scripted_two_owner_rollback_session() {
    let t = LockTable::default();
    let (a, b, c) = (1, 2, 3);
    let pending = LockType::in_db_range(PENDING_BYTE, PENDING_BYTE);
    let reserved = LockType::in_db_range(RESERVED_BYTE, RESERVED_BYTE);
    let shared = LockType::in_db_range(SHARED_FIRST, SHARED_LAST);
    let pending_reserved = LockType::in_db_range(PENDING_BYTE, RESERVED_BYTE);
    let whole = LockType::in_db_range(0, u64::MAX);
    let blocked = |lock_type| Err(LockError::WouldBlock { lock_type });
    let to_shared = |owner| {
        t.set_lock(owner, pending, Rd)?;
        t.set_lock(owner, shared, Rd)?;
        t.set_lock(owner, pending, Un)
    };

    assert_eq!(to_shared(a), Ok(()));
    assert_eq!(to_shared(b), Ok(()));
    assert_eq!(t.set_lock(b, reserved, Wr), Ok(()), "B: SHARED -> RESERVED");
    assert_eq!(
        t.set_lock(a, reserved, Wr),
        blocked(Reserved),
        "one RESERVED at a time"
    );
    assert_eq!(t.set_lock(b, pending, Wr), Ok(()), "B: PENDING exclusive");
    assert_eq!(t.set_lock(b, shared, Wr), blocked(Shared), "A still reads");
    assert_eq!(
        t.set_lock(c, pending, Rd),
        blocked(Pending),
        "PENDING keeps new readers out"
    );
    assert_eq!(
        t.owner_count(),
        2,
        "C's failed first request leaves no guard set"
    );
    assert_eq!(t.set_lock(a, whole, Un), Ok(()), "A: -> NONE");
    assert_eq!(t.owner_count(), 1, "A holds nothing: freed");
    assert_eq!(
        t.set_lock(b, shared, Wr),
        Ok(()),
        "B: EXCLUSIVE (sole sharer upgrades)"
    );
    assert_eq!(
        t.words().word(Shared).state(),
        RwState::Exclusive { tag: t_tag(&t, b) }
    );
    assert_eq!(to_shared(a), blocked(Pending));
    assert_eq!(t.set_lock(b, shared, Rd), Ok(()), "B: EXCLUSIVE -> SHARED");
    assert_eq!(t.set_lock(b, pending_reserved, Un), Ok(()));
    assert_eq!(
        (t.hold(b, Pending), t.hold(b, Reserved), t.hold(b, Shared)),
        (Hold::None, Hold::None, Hold::Shared)
    );
    assert_eq!(to_shared(a), Ok(()), "readers are back");
    assert_eq!(t.words().word(Shared).state(), RwState::Shared { count: 2 });
    assert_eq!(t.set_lock(b, whole, Un), Ok(()));
    assert_eq!(t.set_lock(a, whole, Un), Ok(()));
    assert_all_free(&t);
}

/// The tag of `owner`'s guard set, read back through an exclusive hold.
fn t_tag(t: &LockTable, owner: u64) -> OwnerTag {
    let slot = t.existing(owner).expect("owner has a guard set");
    lock_unpoisoned(&slot).set.tag()
}

pub(super) fn assert_all_free(t: &LockTable) {
    for lt in LockType::ALL {
        assert_eq!(
            t.words().word(lt).state(),
            RwState::Unlocked,
            "{lt:?} still held"
        );
    }
    assert_eq!(t.owner_count(), 0, "guard sets left");
}

/// WAL session: A reads, B writes, C checkpoints.
#[test]
fn scripted_wal_session() {
    let t = LockTable::default();
    let (a, b, c) = (10, 20, 30);
    let one = |byte| LockType::in_shm_range(byte, byte);
    assert_eq!(
        t.set_lock(a, one(WAL_DMS_LOCK), Wr),
        Ok(()),
        "A first connection: DMS W"
    );
    assert_eq!(
        t.set_lock(a, one(WAL_DMS_LOCK), Rd),
        Ok(()),
        "then DMS R (downgrade)"
    );
    assert_eq!(t.set_lock(b, one(WAL_DMS_LOCK), Rd), Ok(()));
    assert_eq!(
        t.set_lock(a, one(WAL_READ_LOCK0), Rd),
        Ok(()),
        "A reads at mark 0"
    );
    assert_eq!(t.set_lock(b, one(WAL_WRITE_LOCK), Wr), Ok(()), "B writes");
    assert_eq!(
        t.set_lock(a, one(WAL_WRITE_LOCK), Wr),
        Err(LockError::WouldBlock { lock_type: Write })
    );
    assert_eq!(
        t.set_lock(c, one(WAL_CKPT_LOCK), Wr),
        Err(LockError::WouldBlock { lock_type: Ckpt }),
        "CKPT rule: B holds WRITE"
    );
    assert!(
        t.needs_wal_commit(b, one(WAL_WRITE_LOCK)),
        "B's unlock commits first"
    );
    assert!(!t.needs_wal_commit(a, one(WAL_WRITE_LOCK)));
    assert_eq!(t.set_lock(b, one(WAL_WRITE_LOCK), Un), Ok(()));
    assert_eq!(
        t.set_lock(c, one(WAL_CKPT_LOCK), Wr),
        Ok(()),
        "checkpoint once WRITE free"
    );
    assert_eq!(
        t.set_lock(c, one(WAL_READ_LOCK0), Wr),
        Err(LockError::WouldBlock { lock_type: Read0 }),
        "A's read mark"
    );
    for owner in [a, b, c] {
        t.release_all(owner, LockFile::Shm);
    }
    assert_all_free(&t);
}

#[test]
fn getlk_answers_table() {
    let conflict = |kind| Some(Conflict { kind });
    let s = LockSet::one(Shared);
    const A: u64 = 1;
    const B: u64 = 2;
    const X: u64 = 3;
    let (a, b, x) = (A, B, X);
    // (setup: (owner, kind) requests on SHARED, querier, query kind, expected answer, why)
    type Row = (
        &'static [(u64, LockKind)],
        u64,
        LockKind,
        Option<Conflict>,
        &'static str,
    );
    let rows: &[Row] = &[
        (&[], A, Rd, None, "free: read"),
        (&[], A, Wr, None, "free: write"),
        (&[(B, Rd)], A, Rd, None, "other sharer: read ok"),
        (&[(B, Rd)], A, Wr, conflict(Rd), "other sharer: F_RDLCK"),
        (&[(B, Rd)], B, Wr, None, "sole sharer may upgrade"),
        (&[(A, Rd), (B, Rd)], B, Wr, conflict(Rd), "two sharers"),
        (
            &[(B, Wr)],
            A,
            Rd,
            conflict(Wr),
            "exclusive: read gets F_WRLCK",
        ),
        (
            &[(B, Wr)],
            A,
            Wr,
            conflict(Wr),
            "exclusive: write gets F_WRLCK",
        ),
        (&[(B, Wr)], B, Wr, None, "own exclusive"),
        (&[(B, Wr)], B, Rd, None, "own exclusive, read"),
        (&[(B, Wr)], A, Un, None, "unlock never conflicts"),
        (&[(B, Rd)], X, Wr, conflict(Rd), "unknown owner"),
    ];
    for &(setup, querier, kind, want, why) in rows {
        let t = LockTable::default();
        for &(owner, k) in setup {
            t.set_lock(owner, s, k).unwrap();
        }
        let owners = t.owner_count();
        assert_eq!(t.get_lock(querier, s, kind), want, "{why}");
        assert_eq!(t.owner_count(), owners, "{why}: GETLK creates no guard set");
    }
    assert_eq!(CONFLICT_PID, -1);

    // Several types: the first blocked one decides; the CKPT rule is not a lock (not reported).
    let t = LockTable::default();
    t.set_lock(b, LockSet::one(Recover), Rd).unwrap();
    t.set_lock(x, LockSet::one(Write), Wr).unwrap();
    assert_eq!(t.get_lock(a, set(&[Ckpt, Recover]), Wr), conflict(Rd));
    assert_eq!(t.get_lock(a, LockSet::one(Ckpt), Wr), None);
    assert!(t.set_lock(a, LockSet::one(Ckpt), Wr).is_err());
}

#[test]
fn ckpt_rule_cases() {
    let shared1 = RwState::Shared { count: 1 };
    let words = LockWords::default();
    let excl = RwState::Exclusive {
        tag: GuardSet::new(&words).tag(),
    };
    // (WAL_WRITE word, requester's WAL_WRITE hold, allowed)
    let rows = [
        (RwState::Unlocked, Hold::None, true),
        (shared1, Hold::None, false),
        (shared1, Hold::Shared, false),
        (excl, Hold::None, false),
        (excl, Hold::Exclusive, true),
    ];
    for (word, hold, want) in rows {
        assert_eq!(ckpt_allowed(word, hold), want, "{word:?} {hold:?}");
    }

    let t = LockTable::default();
    let (w, c) = (1, 2);
    let ckpt = LockSet::one(Ckpt);
    let write = LockSet::one(Write);
    t.set_lock(w, write, Rd).unwrap();
    assert!(t.set_lock(c, ckpt, Wr).is_err(), "WRITE shared by another");
    assert!(
        t.set_lock(w, ckpt, Wr).is_err(),
        "requester holds WRITE only shared"
    );
    assert_eq!(
        t.set_lock(c, ckpt, Rd),
        Ok(()),
        "the rule is for exclusive CKPT only"
    );
    t.set_lock(c, ckpt, Un).unwrap();
    t.set_lock(w, write, Wr).unwrap();
    assert_eq!(
        t.set_lock(w, ckpt, Wr),
        Ok(()),
        "WRITE exclusive holder checkpoints"
    );
    assert_eq!(
        t.set_lock(w, set(&[Write, Ckpt]), Wr),
        Ok(()),
        "re-locking held bytes is a no-op"
    );
    t.set_lock(w, write, Un).unwrap();
    assert_eq!(t.set_lock(c, write, Wr), Ok(()));
    assert_eq!(
        t.set_lock(w, ckpt, Wr),
        Ok(()),
        "already exclusive: no re-check"
    );
    t.release_all(w, LockFile::Shm);
    t.release_all(c, LockFile::Shm);
    assert_all_free(&t);
}

/// Spec §3.9 quirk, decided the POSIX way: a failed request changes nothing.
#[test]
fn failed_request_rolls_back_earlier_types() {
    let t = LockTable::default();
    let (a, b) = (1, 2);
    // Recovery's CKPT+RECOVER request while another process holds RECOVER.
    t.set_lock(b, LockSet::one(Recover), Rd).unwrap();
    assert_eq!(
        t.set_lock(a, set(&[Ckpt, Recover]), Wr),
        Err(LockError::WouldBlock { lock_type: Recover })
    );
    assert_eq!(
        t.hold(a, Ckpt),
        Hold::None,
        "CKPT not kept (upstream keeps it)"
    );
    assert_eq!(t.words().word(Ckpt).state(), RwState::Unlocked);
    assert_eq!(t.owner_count(), 1, "A holds nothing: no guard set");

    // An upgrade undone: A holds READ1 shared, asks READ1..4 exclusive, READ3 is busy.
    let reads = set(&[Read1, Read2, Read3, Read4]);
    t.set_lock(a, LockSet::one(Read1), Rd).unwrap();
    t.set_lock(b, LockSet::one(Read3), Rd).unwrap();
    assert!(t.set_lock(a, reads, Wr).is_err());
    assert_eq!(
        t.hold(a, Read1),
        Hold::Shared,
        "upgrade undone by a downgrade"
    );
    assert_eq!(t.hold(a, Read2), Hold::None);
    assert_eq!(t.words().word(Read1).state(), RwState::Shared { count: 1 });
    assert_eq!(t.words().word(Read2).state(), RwState::Unlocked);

    // A read request that cannot get everything keeps its exclusive holds exclusive.
    t.set_lock(a, LockSet::one(Read2), Wr).unwrap();
    t.set_lock(b, LockSet::one(Read4), Wr).unwrap();
    assert_eq!(
        t.set_lock(a, set(&[Read1, Read2, Read4]), Rd),
        Err(LockError::WouldBlock { lock_type: Read4 })
    );
    assert_eq!(t.hold(a, Read2), Hold::Exclusive, "no downgrade on failure");
    assert_eq!(t.hold(a, Read1), Hold::Shared);
    t.release_all(a, LockFile::Shm);
    t.release_all(b, LockFile::Shm);
    assert_all_free(&t);
}

#[test]
fn upgrade_and_downgrade_through_the_table() {
    let t = LockTable::default();
    let (a, b) = (1, 2);
    let s = LockSet::one(Shared);
    t.set_lock(a, s, Rd).unwrap();
    t.set_lock(b, s, Rd).unwrap();
    assert!(t.set_lock(a, s, Wr).is_err(), "not the sole sharer");
    assert_eq!(
        t.hold(a, Shared),
        Hold::Shared,
        "failed upgrade keeps shared"
    );
    t.set_lock(b, s, Un).unwrap();
    assert_eq!(t.set_lock(a, s, Wr), Ok(()));
    assert_eq!(t.set_lock(a, s, Wr), Ok(()), "already exclusive");
    assert!(t.set_lock(b, s, Rd).is_err());
    assert_eq!(t.set_lock(a, s, Rd), Ok(()), "downgrade");
    assert_eq!(t.set_lock(b, s, Rd), Ok(()));
    assert_eq!(t.words().word(Shared).state(), RwState::Shared { count: 2 });
    assert_eq!(
        t.set_lock(a, s, Rd),
        Ok(()),
        "already shared: count unchanged"
    );
    assert_eq!(t.words().word(Shared).state(), RwState::Shared { count: 2 });
    t.release_all(a, LockFile::Db);
    t.release_all(b, LockFile::Db);
    assert_all_free(&t);
}

#[test]
fn flush_releases_the_owners_locks_on_that_file_only() {
    let t = LockTable::default();
    let (a, b) = (1, 2);
    t.set_lock(a, set(&[Pending, Shared]), Rd).unwrap();
    t.set_lock(a, LockSet::one(Reserved), Wr).unwrap();
    t.set_lock(a, set(&[Dms, Read0]), Rd).unwrap();
    t.set_lock(a, LockSet::one(Write), Wr).unwrap();
    t.set_lock(b, LockSet::one(Shared), Rd).unwrap();
    t.set_lock(a, LockSet::one(Halt), Wr).unwrap();

    t.release_all(a, LockFile::Db);
    assert_eq!(
        LockSet::DB_FILE
            .iter()
            .map(|lt| t.hold(a, lt))
            .collect::<Vec<_>>(),
        [Hold::None; 3]
    );
    assert_eq!(
        t.hold(a, Write),
        Hold::Exclusive,
        "closing the db fd keeps -shm locks"
    );
    assert_eq!(
        t.words().word(Shared).state(),
        RwState::Shared { count: 1 },
        "B keeps SHARED"
    );
    assert!(
        t.needs_wal_commit(a, LockFile::Shm.types()),
        "shm flush commits first"
    );
    t.release_all(a, LockFile::Shm);
    assert_eq!(t.hold(a, Halt), Hold::Exclusive, "HALT lives on -lock");
    t.release_all(a, LockFile::Lock);
    t.release_all(b, LockFile::Db);
    t.release_all(99, LockFile::Db); // unknown owner: nothing to do
    assert_all_free(&t);
}

#[test]
fn wal_commit_hook_only_for_exclusive_write_holder() {
    let t = LockTable::default();
    let (a, b) = (1, 2);
    let write = LockSet::one(Write);
    assert!(!t.needs_wal_commit(a, write), "holds nothing");
    t.set_lock(a, write, Rd).unwrap();
    assert!(
        !t.needs_wal_commit(a, write),
        "shared WRITE never writes frames"
    );
    t.set_lock(a, write, Wr).unwrap();
    assert!(t.needs_wal_commit(a, write));
    assert!(
        t.needs_wal_commit(a, LockType::in_shm_range(0, u64::MAX)),
        "whole-file unlock"
    );
    assert!(t.needs_wal_commit(a, LockType::in_shm_range(120, 122)));
    assert!(
        !t.needs_wal_commit(a, LockType::in_shm_range(121, 128)),
        "range without 120"
    );
    assert!(!t.needs_wal_commit(a, LockFile::Db.types()), "db flush");
    assert!(!t.needs_wal_commit(b, write), "another owner");
    t.set_lock(a, write, Rd).unwrap();
    assert!(!t.needs_wal_commit(a, write), "after downgrade");
    t.set_lock(a, write, Un).unwrap();
    assert_all_free(&t);
}

#[test]
fn owner_cap_refuses_new_owners_and_frees_empty_ones() {
    let t = LockTable::new(2);
    let s = LockSet::one(Shared);
    t.set_lock(1, s, Rd).unwrap();
    t.set_lock(2, s, Rd).unwrap();
    assert_eq!(
        t.set_lock(3, s, Rd),
        Err(LockError::TooManyOwners { owners_max: 2 })
    );
    assert_eq!(
        LockError::TooManyOwners { owners_max: 2 }.to_string(),
        "too many lock owners on this database (maximum 2)"
    );
    assert_eq!(
        t.set_lock(1, LockSet::one(Pending), Rd),
        Ok(()),
        "existing owners go on"
    );
    assert_eq!(
        t.set_lock(3, s, Un),
        Ok(()),
        "unlock by an unknown owner is a no-op"
    );
    assert_eq!(
        t.set_lock(3, LockSet::EMPTY, Wr),
        Ok(()),
        "no lock byte: nothing recorded"
    );
    assert_eq!(t.owner_count(), 2);
    t.set_lock(2, s, Un).unwrap();
    assert_eq!(t.owner_count(), 1, "owner 2 freed");
    assert_eq!(t.set_lock(3, s, Rd), Ok(()), "room again");
    t.release_all(1, LockFile::Db);
    t.release_all(3, LockFile::Db);
    assert_all_free(&t);
}

#[test]
fn lock_set_basics() {
    let s = set(&[Write, Pending, Read4]);
    assert_eq!(
        s.iter().collect::<Vec<_>>(),
        [Pending, Write, Read4],
        "index order"
    );
    assert_eq!(format!("{s:?}"), "{Pending, Write, Read4}");
    assert_eq!(s.intersection(LockSet::SHM_FILE), set(&[Write, Read4]));
    assert!(LockSet::EMPTY.is_empty() && !s.is_empty());
    assert_eq!(Write.to_string(), "WAL_WRITE");
    assert_eq!(Halt.byte(), 72);
    assert_eq!(
        LockError::WouldBlock { lock_type: Ckpt }.to_string(),
        "WAL_CKPT lock is not available"
    );
}
