//! Rollback-journal reader tests: hand-made segments, hot journals written by real SQLite.

use std::io::Cursor;

use super::*;
use crate::sqlite::test_util::{Rng, apply_rollback, journal_fixture};

const PAGE: u32 = 512;
const SECTOR: u32 = 512;

/// A hand-made first header, one row per field.
fn hand_made_header() -> [u8; 28] {
    let bytes: [u8; 28] = [
        0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7, //  0: magic
        0x00, 0x00, 0x00, 0x02, //                          8: nRec 2
        0xca, 0xfe, 0xba, 0xbe, //                         12: nonce (checksum seed)
        0x00, 0x00, 0x00, 0x03, //                         16: database size 3 pages
        0x00, 0x00, 0x02, 0x00, //                         20: sector size 512
        0x00, 0x00, 0x02, 0x00, //                         24: page size 512
    ];
    bytes
}

fn page_filled(byte: u8) -> Vec<u8> {
    (0..PAGE as usize)
        .map(|i| byte.wrapping_add(i as u8))
        .collect()
}

/// One segment: its header padded to a sector, then `pgno | page | checksum` records.
fn segment(nrec: u32, nonce: u32, db_size_pages: u32, records: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let header = JournalHeader {
        offset_bytes: 0,
        nrec,
        nonce,
        db_size_pages,
        sector_size_bytes: SECTOR,
        page_size_bytes: PAGE,
    };
    let mut out = header.to_bytes().to_vec();
    out.resize(SECTOR as usize, 0);
    for (pgno, page) in records {
        out.extend_from_slice(&pgno.to_be_bytes());
        out.extend_from_slice(page);
        out.extend_from_slice(&journal_checksum(nonce, page).to_be_bytes());
    }
    out
}

/// Concatenates segments, each starting at a sector boundary (as SQLite's `journalHdrOffset`).
fn journal(segments: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in segments {
        out.resize(out.len().next_multiple_of(SECTOR as usize), 0);
        out.extend_from_slice(s);
    }
    out
}

/// A record as (segment index, pgno, page).
type Rec = (u32, u32, Vec<u8>);

/// All records as (segment, pgno, page), plus the end reason and original size.
fn read_all(
    bytes: &[u8],
    db_page_size: Option<u32>,
) -> (Vec<Rec>, Option<JournalEnd>, Option<u32>) {
    let mut reader = JournalReader::new(Cursor::new(bytes), db_page_size).unwrap();
    let mut records = Vec::new();
    while reader.next_segment().unwrap().is_some() {
        while let Some(r) = reader.next_record().unwrap() {
            records.push((r.segment_index, r.pgno, r.page.to_vec()));
        }
    }
    (
        records,
        reader.end_reason(),
        reader.original_db_size_pages(),
    )
}

fn two_segments() -> (Vec<u8>, Vec<Rec>) {
    let seg0 = vec![(1, page_filled(1)), (3, page_filled(3))];
    let seg1 = vec![(2, page_filled(2))];
    let bytes = journal(&[segment(2, 0x1111, 3, &seg0), segment(1, 0x2222, 3, &seg1)]);
    let expected = vec![
        (0, 1, page_filled(1)),
        (0, 3, page_filled(3)),
        (1, 2, page_filled(2)),
    ];
    (bytes, expected)
}

#[test]
fn parses_hand_made_header() {
    let bytes = hand_made_header();
    let h = JournalHeader::parse(&bytes, 0).unwrap();
    assert_eq!(
        h,
        JournalHeader {
            offset_bytes: 0,
            nrec: 2,
            nonce: 0xcafe_babe,
            db_size_pages: 3,
            sector_size_bytes: 512,
            page_size_bytes: 512,
        }
    );
    assert_eq!(h.to_bytes(), bytes);
    assert!(JournalHeader::parse(&bytes[..27], 0).is_none());
    assert!(
        JournalHeader::parse(&[0; 28], 0).is_none(),
        "zeroed PERSIST header"
    );
}

#[test]
fn checksum_by_hand() {
    // 1024-byte page: bytes 824, 624, 424, 224, 24 are summed (i > 0, so never byte 0).
    let mut page = vec![0u8; 1024];
    for (i, v) in [
        (824, 1),
        (624, 2),
        (424, 3),
        (224, 4),
        (24, 5),
        (0, 100),
        (1023, 100),
    ] {
        page[i] = v;
    }
    assert_eq!(journal_checksum(10, &page), 10 + 1 + 2 + 3 + 4 + 5);
    // 512-byte page: bytes 312 and 112.
    let mut page = vec![0u8; 512];
    page[312] = 0xff;
    page[112] = 0xff;
    assert_eq!(journal_checksum(u32::MAX, &page), 0x1fd);
    assert_eq!(journal_checksum(7, &[1; 200]), 7, "index 0 is never summed");
    assert_eq!(journal_checksum(7, &[]), 7);
}

#[test]
fn reads_two_hand_made_segments() {
    let (bytes, expected) = two_segments();
    // Second header starts at the first sector boundary after segment 0's records.
    let second = (512 + 2 * (PAGE as usize + 8)).next_multiple_of(512);
    assert_eq!(&bytes[second..second + 8], &JOURNAL_MAGIC);
    let (records, end, size) = read_all(&bytes, Some(PAGE));
    assert_eq!(records, expected);
    assert_eq!(end, Some(JournalEnd::NoHeader));
    assert_eq!(size, Some(3));
}

#[test]
fn zero_header_ends_journal() {
    let (mut bytes, expected) = two_segments();
    let second = (512 + 2 * (PAGE as usize + 8)).next_multiple_of(512);
    bytes[second..second + 28].fill(0); // PERSIST-style zeroed header
    let (records, end, _) = read_all(&bytes, Some(PAGE));
    assert_eq!(records, expected[..2]);
    assert_eq!(end, Some(JournalEnd::NoHeader));
    // A zeroed first header: nothing to roll back, and no size to truncate to.
    bytes[..28].fill(0);
    assert_eq!(
        read_all(&bytes, Some(PAGE)),
        (vec![], Some(JournalEnd::NoHeader), None)
    );
}

#[test]
fn bad_checksum_ends_whole_journal() {
    let (bytes, expected) = two_segments();
    // Record k = 1 (pgno 3) of segment 0: its checksum byte.
    let mut damaged = bytes.clone();
    let record1 = 512 + (PAGE as usize + 8);
    damaged[record1 + 4 + PAGE as usize + 3] ^= 1;
    let (records, end, size) = read_all(&damaged, Some(PAGE));
    // SQLite stops playback entirely: segment 1 is not read either.
    assert_eq!(records, expected[..1]);
    assert_eq!(end, Some(JournalEnd::ChecksumMismatch));
    assert_eq!(size, Some(3), "a valid first header still truncates");
    // A damaged page byte on a summed position is caught too.
    let mut damaged = bytes.clone();
    damaged[record1 + 4 + 312] ^= 1;
    assert_eq!(
        read_all(&damaged, Some(PAGE)).1,
        Some(JournalEnd::ChecksumMismatch)
    );
}

#[test]
fn nrec_to_end_of_file_and_zero() {
    let recs = vec![
        (1, page_filled(1)),
        (2, page_filled(2)),
        (3, page_filled(3)),
    ];
    // 0xFFFFFFFF (no-sync journal): as many whole records as the file holds.
    let mut bytes = segment(NREC_TO_END_OF_FILE, 9, 3, &recs);
    bytes.extend_from_slice(&[0xab; 100]); // a partial record at the end is not counted
    let (records, end, _) = read_all(&bytes, Some(PAGE));
    assert_eq!(records.len(), 3);
    assert_eq!(end, Some(JournalEnd::NoHeader));
    // 0 in a hot journal: the segment was never synced, so nothing in it is played back; the
    // next header position holds record bytes (no magic), which ends the journal.
    let bytes = journal(&[segment(0, 9, 3, &recs), segment(1, 5, 3, &recs[..1])]);
    let (records, end, size) = read_all(&bytes, Some(PAGE));
    assert_eq!(records, vec![]);
    assert_eq!(end, Some(JournalEnd::NoHeader));
    assert_eq!(size, Some(3));
    // ... but a first segment with nRec 0 followed directly by a header at the next sector
    // (a spill right after the header was written) continues into that segment.
    let bytes = journal(&[segment(0, 9, 3, &[]), segment(1, 5, 3, &recs[..1])]);
    assert_eq!(read_all(&bytes, Some(PAGE)).0.len(), 1);
}

#[test]
fn truncated_record_and_bad_pgno() {
    let recs = vec![(1, page_filled(1)), (2, page_filled(2))];
    let full = segment(2, 9, 3, &recs);
    let (records, end, _) = read_all(&full[..full.len() - 1], Some(PAGE));
    assert_eq!(records.len(), 1);
    assert_eq!(end, Some(JournalEnd::ShortRead));
    for bad in [0, lock_pgno(PAGE)] {
        let bytes = segment(
            2,
            9,
            u32::MAX,
            &[(1, page_filled(1)), (bad, page_filled(2))],
        );
        let (records, end, _) = read_all(&bytes, Some(PAGE));
        assert_eq!(records.len(), 1, "pgno {bad}");
        assert_eq!(end, Some(JournalEnd::BadPgno));
    }
    // A page past the original size is skipped (even with a bad checksum), as SQLite does.
    let mut bytes = segment(
        3,
        9,
        2,
        &[
            (1, page_filled(1)),
            (5, page_filled(5)),
            (2, page_filled(2)),
        ],
    );
    let record1 = 512 + (PAGE as usize + 8);
    bytes[record1 + 4 + PAGE as usize] ^= 0xff;
    let (records, _, _) = read_all(&bytes, Some(PAGE));
    assert_eq!(records.iter().map(|r| r.1).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn header_validation() {
    let recs = vec![(1, page_filled(1))];
    let good = segment(1, 9, 3, &recs);
    // Page size differs from the database: error, text as LiteFS.
    let err = JournalReader::new(Cursor::new(&good), Some(4096)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "journal header page size (512) does not match database (4096)"
    );
    // Page size 0 (pre-3.5.8): the database's is used; unknown database → error.
    let mut zero = good.clone();
    zero[24..28].fill(0);
    assert_eq!(read_all(&zero, Some(PAGE)).0.len(), 1);
    assert!(matches!(
        JournalReader::new(Cursor::new(&zero), None),
        Err(Error::JournalPageSizeUnknown)
    ));
    // Unknown database page size: the journal's is used.
    let reader = JournalReader::new(Cursor::new(&good), None).unwrap();
    assert_eq!(reader.page_size_bytes(), PAGE);
    // Out-of-range sector or page size: the writer crashed before syncing; nothing to do.
    for (at, value) in [
        (20, 16u32),
        (20, 48),
        (20, 131072),
        (24, 256),
        (24, 1000),
        (24, 131072),
    ] {
        let mut bad = good.clone();
        bad[at..at + 4].copy_from_slice(&value.to_be_bytes());
        let (records, end, size) = read_all(&bad, None);
        assert_eq!(
            (records.len(), end, size),
            (0, Some(JournalEnd::InvalidHeader), None),
            "{at}={value}"
        );
    }
    // The header sector must be complete.
    assert_eq!(
        read_all(&good[..300], Some(PAGE)),
        (vec![], Some(JournalEnd::NoHeader), None)
    );
}

/// Hot journals from real SQLite, captured mid-transaction after several cache spills.
#[test]
fn real_hot_journals_roll_back_exactly() {
    for mode in ["DELETE", "TRUNCATE", "PERSIST"] {
        for page_size in [512u32, 4096] {
            let fx = journal_fixture(page_size, mode, 200);
            let what = format!("{mode} {page_size}");
            let original_pages = (fx.db_before.len() / page_size as usize) as u32;
            assert!(
                fx.db_during != fx.db_before,
                "{what}: cache spilled into the db file"
            );

            let mut reader = JournalReader::new(Cursor::new(&fx.journal), Some(page_size)).unwrap();
            let first = *reader.first_header().unwrap();
            assert_eq!(first.page_size_bytes, page_size, "{what}");
            assert_eq!(first.db_size_pages, original_pages, "{what}");
            assert_eq!(
                first.sector_size_bytes, 512,
                "{what}: unix VFS with powersafe overwrite"
            );
            assert_ne!(first.nrec, 0, "{what}: first segment synced by the spill");

            let mut records = Vec::new();
            let mut last = first;
            while let Some(header) = reader.next_segment().unwrap() {
                last = header;
                while let Some(r) = reader.next_record().unwrap() {
                    records.push((r.pgno, r.page.to_vec()));
                }
            }
            // Spills start new segments: the journal is naturally multi-segment.
            assert!(
                reader.segment_count() >= 2,
                "{what}: {} segments",
                reader.segment_count()
            );
            assert_eq!(reader.end_reason(), Some(JournalEnd::NoHeader), "{what}");
            // SQLite writes a segment header with magic and nRec zeroed and fills both in only
            // when it syncs the segment, so the open transaction's newest (unsynced) segment
            // has no magic yet: that is where reading stops.
            let next =
                (last.offset_bytes as usize + 512 + last.nrec as usize * (page_size as usize + 8))
                    .next_multiple_of(512);
            assert!(
                fx.journal.len() > next + 28,
                "{what}: unsynced segment present"
            );
            assert_eq!(
                &fx.journal[next..next + 12],
                &[0; 12],
                "{what}: magic + nRec still zero"
            );
            assert_eq!(
                &fx.journal[next + 20..next + 28],
                &first.to_bytes()[20..28],
                "{what}: sizes"
            );
            assert!(!records.is_empty());
            let ps = page_size as usize;
            for (pgno, page) in &records {
                let at = (*pgno as usize - 1) * ps;
                assert!(
                    page.as_slice() == &fx.db_before[at..at + ps],
                    "{what}: page {pgno}"
                );
            }
            let mut db = fx.db_during.clone();
            apply_rollback(&mut db, page_size, &records, first.db_size_pages);
            assert!(
                db == fx.db_before,
                "{what}: rollback reproduces the original"
            );

            // The `rollback` helper gives the same result.
            let mut reader = JournalReader::new(Cursor::new(&fx.journal), Some(page_size)).unwrap();
            let mut pages = Vec::new();
            let size = rollback(&mut reader, |pgno, page| {
                pages.push((pgno, page.to_vec()));
                Ok::<_, Error>(())
            })
            .unwrap();
            assert_eq!(size, Some(original_pages));
            assert_eq!(pages, records);
        }
    }
}

#[test]
fn rollback_first_occurrence_wins() {
    let bytes = journal(&[
        segment(1, 1, 3, &[(2, page_filled(20))]),
        segment(1, 2, 3, &[(2, page_filled(99))]),
    ]);
    let mut reader = JournalReader::new(Cursor::new(&bytes), Some(PAGE)).unwrap();
    let mut written = Vec::new();
    rollback(&mut reader, |pgno, page| {
        written.push((pgno, page.to_vec()));
        Ok::<_, Error>(())
    })
    .unwrap();
    assert_eq!(written, vec![(2, page_filled(20))]);
}

#[test]
fn truncated_prefixes_and_random_bytes_never_panic() {
    let fx = journal_fixture(512, "DELETE", 40);
    let full = read_all(&fx.journal, Some(512)).0.len();
    let mut last = 0;
    for len in (0..=fx.journal.len()).filter(|l| *l < 2048 || l % 97 == 0 || *l == fx.journal.len())
    {
        let (records, _, size) = read_all(&fx.journal[..len], Some(512));
        // Prefixes only ever lose records at the end.
        assert!(records.len() >= last || len < 512, "len {len}");
        assert!(records.len() <= full);
        assert_eq!(size.is_some(), len >= 512, "len {len}");
        last = records.len();
    }
    assert_eq!(last, full);
    let mut rng = Rng(0xbeef);
    for round in 0..2000 {
        let len = (rng.next_u64() % 4000) as usize;
        let mut bytes = rng.bytes(len);
        if round % 2 == 0 && len >= 28 {
            bytes[..8].copy_from_slice(&JOURNAL_MAGIC);
        }
        if round % 4 == 0 && len >= 28 {
            bytes[20..28].copy_from_slice(&[0, 0, 0, 32, 0, 0, 2, 0]); // sector 32, page 512
        }
        if let Ok(mut reader) = JournalReader::new(Cursor::new(&bytes), None) {
            let _ = rollback(&mut reader, |_, page| {
                assert_eq!(page.len(), 512);
                Ok::<_, Error>(())
            });
        }
    }
}

/// After a PERSIST commit SQLite zeroes the header: the journal holds nothing to roll back.
#[test]
fn real_persist_journal_after_commit_is_empty() {
    let _serial = crate::sqlite::test_util::sqlite_lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "PERSIST").unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(5000));")
        .unwrap();
    let journal = std::fs::read(dir.path().join("db-journal")).unwrap();
    drop(conn);
    assert!(journal.len() > 28, "PERSIST keeps the file");
    assert_eq!(&journal[..28], &[0; 28]);
    assert_eq!(
        read_all(&journal, Some(4096)),
        (vec![], Some(JournalEnd::NoHeader), None)
    );
}
