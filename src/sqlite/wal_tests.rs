//! WAL reader tests: hand-made headers, fixtures written by real SQLite, corruptions.

use std::io::Cursor;

use super::*;
use crate::sqlite::test_util::{
    Rng, WalFixture, five_transactions, header_checksum, reencode_wal, wal_fixture,
};

fn fixture(page_size_bytes: u32) -> WalFixture {
    let statements = five_transactions(page_size_bytes);
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    wal_fixture(page_size_bytes, &refs)
}

fn txns_of(wal: &[u8]) -> (Vec<WalTxn>, WalScanEnd) {
    let header = WalHeader::parse(wal).unwrap().unwrap();
    committed_transactions(Cursor::new(wal), &header, header.start()).unwrap()
}

/// A hand-made header, one row per field; the checksum rows are filled in by the test.
fn hand_made_header() -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&[0x37, 0x7f, 0x06, 0x82]); //  0: magic (little-endian checksums)
    h.extend_from_slice(&[0x00, 0x2d, 0xe2, 0x18]); //  4: version 3007000
    h.extend_from_slice(&[0x00, 0x00, 0x10, 0x00]); //  8: page size 4096
    h.extend_from_slice(&[0x00, 0x00, 0x00, 0x05]); // 12: checkpoint sequence 5
    h.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]); // 16: salt-1
    h.extend_from_slice(&[0x55, 0x66, 0x77, 0x88]); // 20: salt-2
    let checksum = WalChecksum::default().update(ChecksumOrder::LittleEndian, &h);
    h.extend_from_slice(&checksum.s1.to_be_bytes()); // 24: checksum-1 (stored big-endian)
    h.extend_from_slice(&checksum.s2.to_be_bytes()); // 28: checksum-2
    h
}

#[test]
fn checksum_vectors_by_hand() {
    let bytes = [
        1, 0, 0, 0, 2, 0, 0, 0, // pair 1: LE words 1, 2
        3, 0, 0, 0, 4, 0, 0, 0, // pair 2: LE words 3, 4
    ];
    // s1 = 0+1+0 = 1, s2 = 0+2+1 = 3; then s1 = 1+3+3 = 7, s2 = 3+4+7 = 14.
    let le = WalChecksum::default().update(ChecksumOrder::LittleEndian, &bytes);
    assert_eq!(le, WalChecksum { s1: 7, s2: 14 });
    // Same bytes as BE words 0x01000000, 0x02000000, ...
    let be = WalChecksum::default().update(ChecksumOrder::BigEndian, &bytes[..8]);
    assert_eq!(
        be,
        WalChecksum {
            s1: 0x0100_0000,
            s2: 0x0300_0000
        }
    );
    // Sums wrap instead of overflowing.
    let wrapped = WalChecksum {
        s1: u32::MAX,
        s2: u32::MAX,
    }
    .update(ChecksumOrder::BigEndian, &[0xff; 8]);
    assert_eq!(
        wrapped,
        WalChecksum {
            s1: 0xffff_fffd,
            s2: 0xffff_fffb
        }
    );
    // A trailing partial word pair is ignored, not a panic.
    assert_eq!(
        WalChecksum::default().update(ChecksumOrder::BigEndian, &[9; 7]),
        WalChecksum::default()
    );
}

#[test]
fn parses_hand_made_header() {
    let bytes = hand_made_header();
    let h = WalHeader::parse(&bytes).unwrap().unwrap();
    assert_eq!(h.checksum_order, ChecksumOrder::LittleEndian);
    assert_eq!(h.page_size_bytes, 4096);
    assert_eq!(h.checkpoint_seq, 5);
    assert_eq!((h.salt1, h.salt2), (0x1122_3344, 0x5566_7788));
    assert_eq!(h.to_bytes().as_slice(), bytes.as_slice());
    assert_eq!(
        WalHeader::new(
            ChecksumOrder::LittleEndian,
            4096,
            5,
            0x1122_3344,
            0x5566_7788
        ),
        h
    );
    assert_eq!(h.start().offset_bytes, 32);
    assert_eq!(h.frame_size_bytes(), 4120);
}

#[test]
fn header_rejections() {
    let good = hand_made_header();
    // Short header: empty WAL, for every length below 32.
    for len in 0..32 {
        assert!(
            WalHeader::parse(&good[..len]).unwrap().is_none(),
            "len {len}"
        );
    }
    // Bad checksum (torn header write): empty WAL.
    let mut torn = good.clone();
    torn[31] ^= 1;
    assert!(WalHeader::parse(&torn).unwrap().is_none());
    // Bad magic: error, named in hex as LiteFS does.
    let mut magic = good.clone();
    magic[3] = 0x84;
    assert_eq!(
        WalHeader::parse(&magic).unwrap_err().to_string(),
        "invalid wal header magic: 377f0684"
    );
    // Bad version (with a valid checksum): error.
    let mut version = good.clone();
    version[4..8].copy_from_slice(&3_007_001u32.to_be_bytes());
    let fixed = WalChecksum::default().update(ChecksumOrder::LittleEndian, &version[..24]);
    version[24..32].copy_from_slice(&fixed.to_bytes());
    assert_eq!(
        WalHeader::parse(&version).unwrap_err().to_string(),
        "unsupported wal version: 3007001"
    );
    // Bad page size (with a valid checksum): error.
    let bad = WalHeader::new(ChecksumOrder::BigEndian, 1000, 0, 1, 2).to_bytes();
    assert!(matches!(
        WalHeader::parse(&bad),
        Err(Error::PageSize {
            page_size_bytes: 1000,
            ..
        })
    ));
}

#[test]
fn frame_header_round_trip() {
    let bytes: [u8; 24] = [
        0x00, 0x00, 0x00, 0x07, //  0: pgno 7
        0x00, 0x00, 0x00, 0x0a, //  4: commit size 10 pages (a commit frame)
        0x11, 0x22, 0x33, 0x44, //  8: salt-1
        0x55, 0x66, 0x77, 0x88, // 12: salt-2
        0xde, 0xad, 0xbe, 0xef, // 16: checksum-1
        0x01, 0x02, 0x03, 0x04, // 20: checksum-2
    ];
    let f = WalFrameHeader::parse(&bytes);
    assert_eq!(f.pgno, 7);
    assert_eq!(f.commit_size_pages, 10);
    assert_eq!((f.salt1, f.salt2), (0x1122_3344, 0x5566_7788));
    assert_eq!(
        f.checksum,
        WalChecksum {
            s1: 0xdead_beef,
            s2: 0x0102_0304
        }
    );
    assert_eq!(f.to_bytes(), bytes);
}

/// Real SQLite WALs: one commit frame per transaction with `PRAGMA page_count` as its size,
/// contiguous transactions up to the end of the file, and the last committed frames reproduce
/// SQLite's own checkpoint.
#[test]
fn real_wal_commits_match_sqlite() {
    for page_size in [512u32, 4096, 65536] {
        let fx = fixture(page_size);
        let header = WalHeader::parse(&fx.wal).unwrap().unwrap();
        assert_eq!(header.page_size_bytes, page_size);
        assert_eq!(
            header.checksum_order,
            ChecksumOrder::LittleEndian,
            "x86/ARM host"
        );
        // 65536 is stored as a full u32, not as 1 like in the database header.
        assert_eq!(&fx.wal[8..12], &page_size.to_be_bytes());

        let (txns, end) = txns_of(&fx.wal);
        assert_eq!(end, WalScanEnd::ShortRead, "page size {page_size}");
        let sizes: Vec<u32> = txns.iter().map(|t| t.commit_size_pages).collect();
        assert_eq!(sizes, fx.page_counts, "page size {page_size}");
        let mut expected_offset = 32;
        for txn in &txns {
            assert_eq!(txn.offset_bytes, expected_offset);
            assert_eq!(txn.size_bytes % header.frame_size_bytes(), 0);
            assert_eq!(txn.end.offset_bytes, txn.offset_bytes + txn.size_bytes);
            for &offset in txn.frame_offsets.values() {
                assert!(offset >= txn.offset_bytes && offset < txn.end.offset_bytes);
            }
            expected_offset = txn.end.offset_bytes;
        }
        assert_eq!(expected_offset, fx.wal.len() as u64, "no trailing frames");
        // The blob transaction spans more than one page.
        assert!(txns[2].frame_offsets.len() > 2);

        // Checkpoint by hand and compare with SQLite's checkpoint.
        let (frames, commit) = checkpoint_plan(&txns);
        let mut db = fx.db_before_checkpoint.clone();
        let page = page_size as usize;
        for (&pgno, &offset) in &frames {
            let at = (pgno as usize - 1) * page;
            if db.len() < at + page {
                db.resize(at + page, 0);
            }
            let data = offset as usize + 24;
            db[at..at + page].copy_from_slice(&fx.wal[data..data + page]);
        }
        db.truncate(commit.unwrap() as usize * page);
        assert!(
            db == fx.db_after_checkpoint,
            "checkpoint differs, page size {page_size}"
        );
    }
}

#[test]
fn resume_from_cursor() {
    let fx = fixture(4096);
    let (all, _) = txns_of(&fx.wal);
    let header = WalHeader::parse(&fx.wal).unwrap().unwrap();
    for (k, txn) in all.iter().enumerate() {
        let (rest, _) = committed_transactions(Cursor::new(&fx.wal), &header, txn.end).unwrap();
        assert_eq!(rest.as_slice(), &all[k + 1..]);
    }
    // One transaction at a time, as CommitWAL does.
    let mut scanner = WalScanner::new(Cursor::new(&fx.wal), &header, all[1].end).unwrap();
    assert_eq!(scanner.next_transaction().unwrap().as_ref(), Some(&all[2]));
    assert_eq!(scanner.cursor(), all[2].end);
    // Offsets that are not frame boundaries are refused.
    for offset in [0, 31, 33, 32 + 4120 - 1] {
        let start = WalCursor {
            offset_bytes: offset,
            checksum: header.checksum,
        };
        let err = WalScanner::new(Cursor::new(&fx.wal), &header, start).unwrap_err();
        assert!(matches!(err, Error::WalOffset { .. }), "{offset}: {err}");
    }
}

/// A scan over bytes in memory that stops short of a commit frame goes on from where it
/// stopped once more frames are there, and ends as a scan of the whole WAL does; the bytes may
/// begin anywhere before the scan's start.
#[test]
fn unfinished_scans_continue_where_they_stopped() {
    let fx = fixture(1024);
    let (all, _) = txns_of(&fx.wal);
    let header = WalHeader::parse(&fx.wal).unwrap().unwrap();
    let frame = header.frame_size_bytes() as usize;
    let multi = all
        .iter()
        .find(|t| t.size_bytes as usize >= 3 * frame)
        .expect("a transaction of three frames or more");
    let start = multi.offset_bytes as usize;
    let end = (multi.offset_bytes + multi.size_bytes) as usize;
    let before = all
        .iter()
        .rev()
        .find(|t| t.end.offset_bytes <= multi.offset_bytes);
    let cursor = before.map_or(header.start(), |t| t.end);
    // Bytes held from the cursor; the WAL grows by one frame, then by a torn half frame.
    let mut partial = PartialTxn::at_start(cursor);
    let mut visible = start;
    let txn = loop {
        let mut scanner =
            WalScanner::over_bytes(&fx.wal[start..visible], start as u64, &header, partial.at)
                .unwrap();
        match scanner.continue_transaction(partial).unwrap() {
            TxnScan::Committed(txn) => break txn,
            TxnScan::Unfinished(p) => {
                assert_eq!(
                    p.at.offset_bytes as usize,
                    start + (visible - start) / frame * frame,
                    "stops after the last whole frame ({visible} bytes visible)"
                );
                partial = p;
            }
        }
        assert!(visible < end, "no commit found by {end}");
        visible = (visible + frame / 2).min(end);
    };
    assert_eq!(&txn, multi);
    // A start outside the bytes is refused, not read past.
    let from = WalCursor {
        offset_bytes: start as u64,
        checksum: cursor.checksum,
    };
    let past = WalCursor {
        offset_bytes: end as u64 + frame as u64,
        checksum: header.checksum,
    };
    for (first, at) in [(start + frame, from), (start, past)] {
        let err =
            WalScanner::over_bytes(&fx.wal[first..end], first as u64, &header, at).unwrap_err();
        assert!(matches!(err, Error::WalOffset { .. }), "{err}");
    }
}

/// Damage in frame `k` ends the scan before the transaction that holds it.
#[test]
fn corruption_stops_before_damaged_transaction() {
    let fx = fixture(512);
    let (txns, _) = txns_of(&fx.wal);
    let frame = 24 + 512;
    // A frame in the middle of transaction 3 (the multi-page insert + update).
    let damaged_txn = 3;
    let first = txns[damaged_txn].offset_bytes as usize;
    let k_offset = first + frame; // its second frame
    assert!((k_offset as u64) < txns[damaged_txn].end.offset_bytes);

    type Damage = (&'static str, fn(&mut Vec<u8>, usize), WalScanEnd);
    let damages: [Damage; 5] = [
        (
            "salt-1",
            |w, at| w[at + 8] ^= 0x01,
            WalScanEnd::SaltMismatch,
        ),
        (
            "salt-2",
            |w, at| w[at + 15] ^= 0x80,
            WalScanEnd::SaltMismatch,
        ),
        (
            "checksum byte",
            |w, at| w[at + 19] ^= 0x01,
            WalScanEnd::ChecksumMismatch,
        ),
        (
            "page byte",
            |w, at| w[at + 24 + 100] ^= 0x01,
            WalScanEnd::ChecksumMismatch,
        ),
        (
            "truncated mid-frame",
            |w, at| w.truncate(at + 24 + 7),
            WalScanEnd::ShortRead,
        ),
    ];
    for (name, damage, reason) in damages {
        let mut wal = fx.wal.clone();
        damage(&mut wal, k_offset);
        let (got, end) = txns_of(&wal);
        assert_eq!(got.as_slice(), &txns[..damaged_txn], "{name}");
        assert_eq!(end, reason, "{name}");
    }
    // Damage in the very first frame leaves nothing committed.
    let mut wal = fx.wal.clone();
    wal[32 + 24] ^= 0x01;
    assert!(txns_of(&wal).0.is_empty());
    // A page number of 0 ends the scan as SQLite's walDecodeFrame does (checked before the
    // checksum, so no need to fix it up).
    let mut wal = fx.wal.clone();
    wal[k_offset..k_offset + 4].copy_from_slice(&[0; 4]);
    assert_eq!(
        txns_of(&wal),
        (txns[..damaged_txn].to_vec(), WalScanEnd::ZeroPgno)
    );
    // Frames after the last commit (an unfinished transaction) are not reported: cut the last
    // commit frame off so only its non-commit frames remain.
    let last = txns.last().unwrap();
    let wal = &fx.wal[..(last.end.offset_bytes as usize - frame)];
    if last.size_bytes > frame as u64 {
        let mut scanner = WalScanner::new(
            Cursor::new(wal),
            &WalHeader::parse(wal).unwrap().unwrap(),
            txns[3].end,
        )
        .unwrap();
        assert_eq!(scanner.next_transaction().unwrap(), None);
        assert!(
            scanner.cursor().offset_bytes > txns[3].end.offset_bytes,
            "frames were read"
        );
    }
    assert_eq!(txns_of(wal).0.as_slice(), &txns[..txns.len() - 1]);
}

/// SQLite on a big-endian host writes magic 0x377f0683 and big-endian checksum words.
#[test]
fn big_endian_checksum_wal() {
    let fx = fixture(4096);
    let be = reencode_wal(&fx.wal, ChecksumOrder::BigEndian);
    assert_eq!(&be[..4], &[0x37, 0x7f, 0x06, 0x83]);
    assert_ne!(be[24..32], fx.wal[24..32], "checksums changed");
    let header = WalHeader::parse(&be).unwrap().unwrap();
    assert_eq!(header.checksum_order, ChecksumOrder::BigEndian);
    assert_eq!(
        header.checksum,
        header_checksum(&be, ChecksumOrder::BigEndian)
    );
    let (le_txns, _) = txns_of(&fx.wal);
    let (be_txns, end) = txns_of(&be);
    assert_eq!(end, WalScanEnd::ShortRead);
    assert_eq!(be_txns.len(), le_txns.len());
    for (b, l) in be_txns.iter().zip(&le_txns) {
        assert_eq!(
            (b.offset_bytes, b.size_bytes, b.commit_size_pages),
            (l.offset_bytes, l.size_bytes, l.commit_size_pages)
        );
        assert_eq!(b.frame_offsets, l.frame_offsets);
    }
    // Re-encoding back to little-endian reproduces SQLite's bytes exactly: our checksum is
    // SQLite's, word for word.
    assert!(reencode_wal(&be, ChecksumOrder::LittleEndian) == fx.wal);
    // The LE reader must not accept BE checksums under an LE magic.
    let mut mixed = be.clone();
    mixed[..32].copy_from_slice(&fx.wal[..32]);
    assert!(txns_of(&mixed).0.is_empty());
}

#[test]
fn truncated_prefixes_and_random_bytes_never_panic() {
    let fx = fixture(512);
    let (all, _) = txns_of(&fx.wal);
    for len in 0..=fx.wal.len() {
        let wal = &fx.wal[..len];
        let Some(header) = WalHeader::parse(wal).unwrap() else {
            assert!(len < 32);
            continue;
        };
        let (txns, _) = committed_transactions(Cursor::new(wal), &header, header.start()).unwrap();
        let complete = all
            .iter()
            .filter(|t| t.end.offset_bytes <= len as u64)
            .count();
        assert_eq!(txns.len(), complete, "len {len}");
    }
    let mut rng = Rng(0x5eed);
    for round in 0..2000 {
        let len = (rng.next_u64() % 3000) as usize;
        let mut bytes = rng.bytes(len);
        if round % 2 == 0 && len >= 32 {
            // A valid header over random frames exercises the frame checks.
            let order = if round % 4 == 0 {
                ChecksumOrder::LittleEndian
            } else {
                ChecksumOrder::BigEndian
            };
            bytes[..32].copy_from_slice(&WalHeader::new(order, 512, 0, 1, 2).to_bytes());
        }
        if let Ok(Some(header)) = WalHeader::parse(&bytes) {
            let (txns, _) =
                committed_transactions(Cursor::new(&bytes), &header, header.start()).unwrap();
            assert!(txns.is_empty());
        }
    }
}
