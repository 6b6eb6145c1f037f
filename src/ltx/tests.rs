//! Byte-level tests of whole LTX files: the vectors of spec §1.7, the encoder rules of §1.4,
//! decoding (§1.10) and compaction (§1.11). Golden files from Go LiteFS are in `tests/golden.rs`.

use super::*;
use crate::types::{CHECKSUM_FLAG, Checksum, NodeId, TxId};

const NODE: NodeId = NodeId(0x1122334455667788);

fn encode(header: &Header, pages: &[(u32, Vec<u8>)], post_apply: u64) -> (Vec<u8>, Trailer) {
    let mut enc = Encoder::new(Vec::new(), header).unwrap();
    for (pgno, data) in pages {
        enc.encode_page(*pgno, data).unwrap();
    }
    enc.finish(Checksum(post_apply)).unwrap()
}

fn vector_b_header() -> Header {
    Header {
        page_size: 512,
        commit: 2,
        min_txid: TxId(1),
        max_txid: TxId(1),
        timestamp_ms: 1_700_000_000_000,
        node_id: NODE,
        ..Header::new()
    }
}

fn vector_b_pages() -> Vec<(u32, Vec<u8>)> {
    vec![(1, vec![0x01; 512]), (2, vec![0x02; 512])]
}

#[test]
fn vector_b_snapshot() {
    let (file, trailer) = encode(&vector_b_header(), &vector_b_pages(), 0xad2dffe333333333);
    assert_eq!(file.len(), 1152, "size = 100 + 2*(4+512) + 4 + 16");
    assert_eq!(trailer.file_checksum, Checksum(0xd968f412ff013321));
    // Page block layout, field by field.
    assert_eq!(&file[100..104], &[0, 0, 0, 1], "pgno 1");
    assert!(file[104..616].iter().all(|&b| b == 0x01), "page 1 data");
    assert_eq!(&file[616..620], &[0, 0, 0, 2], "pgno 2");
    assert!(file[620..1132].iter().all(|&b| b == 0x02), "page 2 data");
    assert_eq!(&file[1132..1136], &[0, 0, 0, 0], "end marker");
    assert_eq!(
        &file[1136..1144],
        &0xad2dffe333333333u64.to_be_bytes(),
        "post-apply checksum"
    );
    assert_eq!(
        &file[1144..1152],
        &0xd968f412ff013321u64.to_be_bytes(),
        "file checksum"
    );
    let summary = verify(file.as_slice()).unwrap();
    assert_eq!(summary.trailer, trailer);
    assert_eq!(summary.page_count, 2);
}

#[test]
fn vector_c_incremental() {
    let header = Header {
        page_size: 512,
        commit: 2,
        min_txid: TxId(2),
        max_txid: TxId(2),
        timestamp_ms: 1_700_000_001_000,
        pre_apply_checksum: Checksum(0xad2dffe333333333),
        wal_offset: 32,
        wal_size: 536,
        wal_salt1: 0xdeadbeef,
        wal_salt2: 0x01020304,
        node_id: NODE,
        ..Header::new()
    };
    let (file, trailer) = encode(&header, &[(2, vec![0x03; 512])], 0xa678a10ddddddddd);
    assert_eq!(file.len(), 636);
    assert_eq!(trailer.file_checksum, Checksum(0xaa45f75af17c85a9));
    assert_eq!(&file[48..56], &32i64.to_be_bytes(), "WAL offset");
    assert_eq!(&file[56..64], &536i64.to_be_bytes(), "WAL size");
    assert_eq!(&file[64..68], &[0xde, 0xad, 0xbe, 0xef], "WAL salt 1");
    assert_eq!(&file[68..72], &[0x01, 0x02, 0x03, 0x04], "WAL salt 2");
    // The post-apply checksum is the rolling checksum of pages {1: 01…, 2: 03…}.
    let mut image = vec![0x01; 512];
    image.extend_from_slice(&[0x03; 512]);
    assert_eq!(database_checksum(&image, 512), 0xa678a10ddddddddd);
    verify(file.as_slice()).unwrap();
}

#[test]
fn vector_d_delete() {
    let header = Header {
        page_size: 512,
        commit: 0,
        min_txid: TxId(3),
        max_txid: TxId(3),
        timestamp_ms: 1_700_000_002_000,
        pre_apply_checksum: Checksum(0xa678a10ddddddddd),
        node_id: NODE,
        ..Header::new()
    };
    let (file, trailer) = encode(&header, &[], CHECKSUM_FLAG);
    assert_eq!(trailer.file_checksum, Checksum(0xd733fc661793c942));
    #[rustfmt::skip]
    let want: Vec<u8> = [
        &[0x4c, 0x54, 0x58, 0x31][..],                          // magic "LTX1"
        &[0x00, 0x00, 0x00, 0x00],                               // flags
        &[0x00, 0x00, 0x02, 0x00],                               // page size 512
        &[0x00, 0x00, 0x00, 0x00],                               // commit 0: deleted
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03],       // min TXID 3
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03],       // max TXID 3
        &[0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x6f, 0xd0],       // timestamp 1700000002000 ms
        &[0xa6, 0x78, 0xa1, 0x0d, 0xdd, 0xdd, 0xdd, 0xdd],       // pre-apply checksum
        &[0x00; 8],                                              // WAL offset
        &[0x00; 8],                                              // WAL size
        &[0x00; 4],                                              // WAL salt 1
        &[0x00; 4],                                              // WAL salt 2
        &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],       // node ID
        &[0x00; 20],                                             // reserved
        &[0x00, 0x00, 0x00, 0x00],                               // end of pages (no pages)
        &[0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],       // post-apply: empty database
        &[0xd7, 0x33, 0xfc, 0x66, 0x17, 0x93, 0xc9, 0x42],       // file checksum
    ]
    .concat();
    assert_eq!(file, want);
    assert_eq!(file.len(), 120);
    let summary = verify(file.as_slice()).unwrap();
    assert_eq!(summary.header.commit, 0);
    assert_eq!(summary.trailer.post_apply_checksum, Checksum(CHECKSUM_FLAG));
}

#[test]
fn vector_compactor_shrinking_file_checksum() {
    // ltx TestCompactor_Compact/Shrinking output, encoded directly.
    let header = Header {
        page_size: 1024,
        commit: 2,
        min_txid: TxId(2),
        max_txid: TxId(5),
        timestamp_ms: 2000,
        pre_apply_checksum: Checksum(CHECKSUM_FLAG | 2),
        ..Header::new()
    };
    let (_, trailer) = encode(&header, &[(1, vec![0x91; 1024])], CHECKSUM_FLAG | 5);
    assert_eq!(trailer.file_checksum, Checksum(0xf688132c3904f118));
}

#[test]
fn vector_lfsc_synthetic_snapshot() {
    // The lfsc integration vector: a "snapshot" whose post-apply checksum is synthetic. The
    // file checksum matches; our encoder (like a strict decoder) rejects the wrong checksum.
    let header = Header {
        page_size: 512,
        commit: 2,
        min_txid: TxId(1),
        max_txid: TxId(4),
        ..Header::new()
    };
    let pages = [(1, vec![0x03; 512]), (2, vec![0x02; 512])];
    let mut enc = Encoder::new(Vec::new(), &header).unwrap();
    for (pgno, data) in &pages {
        enc.encode_page(*pgno, data).unwrap();
    }
    let err = enc.finish(Checksum(0x8000000000000bb8)).unwrap_err();
    assert!(matches!(err, Error::PostApplyMismatch { .. }), "{err}");
    // Build the same bytes by hand and check the file checksum and the decoder's verdict.
    let mut file = header.to_bytes().to_vec();
    for (pgno, data) in &pages {
        file.extend_from_slice(&pgno.to_be_bytes());
        file.extend_from_slice(data);
    }
    file.extend_from_slice(&[0; 4]);
    file.extend_from_slice(&0x8000000000000bb8u64.to_be_bytes());
    let mut hasher = checksum::hasher();
    hasher.update(&file);
    let file_checksum = CHECKSUM_FLAG | hasher.finalize();
    assert_eq!(file_checksum, 0xc8d8c55bde12fe8d);
    file.extend_from_slice(&file_checksum.to_be_bytes());
    let err = verify(file.as_slice()).unwrap_err();
    assert!(
        matches!(err.root(), Error::PostApplyMismatch { .. }),
        "{err}"
    );
}

#[test]
fn compressed_and_raw_decode_to_same_pages() {
    let pages: Vec<(u32, Vec<u8>)> = (1..=300).map(|p| (p, vec![(p % 7) as u8; 4096])).collect();
    let header = Header {
        page_size: 4096,
        commit: 300,
        min_txid: TxId(1),
        max_txid: TxId(9),
        ..Header::new()
    };
    let image: Vec<u8> = pages.iter().flat_map(|(_, d)| d.clone()).collect();
    let post = database_checksum(&image, 4096);
    let (raw, raw_trailer) = encode(&header, &pages, post);
    let lz4_header = Header {
        flags: FLAG_COMPRESS_LZ4,
        ..header
    };
    let (lz4, lz4_trailer) = encode(&lz4_header, &pages, post);
    assert!(
        lz4.len() < raw.len() / 10,
        "compressed {} raw {}",
        lz4.len(),
        raw.len()
    );
    // The file checksum covers the header, whose flags differ; pages and post-apply agree.
    assert_ne!(raw_trailer.file_checksum, lz4_trailer.file_checksum);
    for file in [&raw, &lz4] {
        let mut out = Vec::new();
        let summary = decode_database_to(file.as_slice(), &mut out).unwrap();
        assert_eq!(summary.page_count, 300);
        assert!(out == image);
    }
}

/// A compressed snapshot of `count` pages and its page images.
fn lz4_snapshot(count: u32) -> (Vec<u8>, Vec<(u32, Vec<u8>)>) {
    let pages: Vec<(u32, Vec<u8>)> = (1..=count)
        .map(|p| (p, vec![(p % 7) as u8; 4096]))
        .collect();
    let header = Header {
        flags: FLAG_COMPRESS_LZ4,
        page_size: 4096,
        commit: count,
        min_txid: TxId(1),
        max_txid: TxId(9),
        ..Header::new()
    };
    let image: Vec<u8> = pages.iter().flat_map(|(_, d)| d.clone()).collect();
    (
        encode(&header, &pages, database_checksum(&image, 4096)).0,
        pages,
    )
}

#[test]
fn verify_pages_hands_out_every_page_in_order() {
    let (file, pages) = lz4_snapshot(300);
    let mut seen = Vec::new();
    let summary = verify_pages(file.as_slice(), |pgno, page, checksum| {
        assert!(page == pages[pgno as usize - 1].1.as_slice(), "page {pgno}");
        assert_eq!(checksum, page_checksum(pgno, page), "page {pgno}");
        seen.push(pgno);
    })
    .unwrap();
    assert_eq!(summary.page_count, 300);
    assert_eq!(seen, (1..=300).collect::<Vec<u32>>());
}

#[test]
fn a_verified_file_is_decoded_without_its_checksums() {
    let (mut file, pages) = lz4_snapshot(300);
    // Damage the file checksum: the checking decoder refuses it, the one for files verified
    // already reads the same pages and the trailer as written.
    let at = file.len() - 1;
    file[at] ^= 0x01;
    assert!(matches!(
        verify(file.as_slice()).unwrap_err().root(),
        Error::ChecksumMismatch { .. }
    ));
    let mut dec = Decoder::new_verified(file.as_slice()).unwrap();
    let mut page = vec![0u8; 4096];
    for (pgno, data) in &pages {
        assert_eq!(dec.decode_page(&mut page).unwrap(), Some(*pgno));
        assert!(page == *data, "page {pgno}");
    }
    assert_eq!(dec.decode_page(&mut page).unwrap(), None);
    let (trailer, rest) = dec.finish().unwrap();
    assert!(rest.is_empty());
    assert_eq!(trailer.file_checksum.0 & 0xff, u64::from(file[at]));
}

/// `file` (from [`lz4_snapshot`]) as Go writes it: the LZ4 frame with a content checksum
/// (FLG bit 2, the header checksum over the new FLG, xxh32 of the content after the end mark).
fn with_content_checksum(file: &[u8], pages: &[(u32, Vec<u8>)]) -> Vec<u8> {
    use xxhash_rust::xxh32::xxh32;
    let mut content = Vec::new();
    for (pgno, data) in pages {
        content.extend_from_slice(&pgno.to_be_bytes());
        content.extend_from_slice(data);
    }
    content.extend_from_slice(&[0; 4]);
    let mut go = file.to_vec();
    let flg = HEADER_SIZE + 4;
    go[flg] |= 0b100;
    go[flg + 2] = (xxh32(&go[flg..flg + 2], 0) >> 8) as u8;
    let trailer_at = go.len() - TRAILER_SIZE;
    go.splice(trailer_at..trailer_at, xxh32(&content, 0).to_le_bytes());
    go
}

#[test]
fn the_lz4_content_checksum_is_left_to_the_file_checksum() {
    // 20 pages: every byte of the file is flipped once below.
    let (ours, pages) = lz4_snapshot(20);
    let mut file = with_content_checksum(&ours, &pages);
    assert_eq!(verify(file.as_slice()).unwrap().page_count, 20);
    // The frame's xxh32 sits right before the 16-byte trailer. Damaged alone, the content is
    // intact and the file checksum (over every decoded byte) still holds.
    let at = file.len() - TRAILER_SIZE - 1;
    file[at] ^= 0x01;
    let summary = verify(file.as_slice()).unwrap();
    assert_eq!(summary.page_count, 20);
    // A flip anywhere else is refused unless the pages still decode identically (an LZ4
    // sequence can encode the same bytes two ways): the file checksum covers the content.
    let (mut refused, mut same) = (0, 0);
    for at in HEADER_SIZE..at {
        let mut bad = file.clone();
        bad[at] ^= 0x01;
        let mut decoded = Vec::new();
        match verify_pages(bad.as_slice(), |pgno, page, _| {
            decoded.push((pgno, page.to_vec()))
        }) {
            Err(_) => refused += 1,
            Ok(_) => {
                assert!(decoded == pages, "flip at {at} accepted with other pages");
                same += 1;
            }
        }
    }
    assert!(
        refused > 10 * same,
        "{refused} flips refused, {same} decoded the same"
    );
}

#[test]
fn snapshot_skips_lock_page() {
    // 512-byte pages: the lock page is 2097153. A snapshot with commit = lock page + 1.
    let lock = lock_pgno(512);
    let header = Header {
        page_size: 512,
        commit: lock + 1,
        min_txid: TxId(1),
        max_txid: TxId(1),
        ..Header::new()
    };
    let mut enc = Encoder::new(Vec::new(), &header).unwrap();
    let mut sum = RollingChecksum::new();
    let page = vec![0u8; 512];
    for pgno in 1..=lock + 1 {
        if pgno == lock {
            let err = enc.encode_page(pgno, &page).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("cannot encode lock page: pgno={lock}")
            );
            continue;
        }
        enc.encode_page(pgno, &page).unwrap();
        sum.add_page(pgno, &page);
    }
    let (file, _) = enc.finish(Checksum(sum.value())).unwrap();
    let mut out = Vec::new();
    let summary = decode_database_to(file.as_slice(), &mut out).unwrap();
    assert_eq!(
        out.len(),
        (lock as usize + 1) * 512,
        "lock page written as zeros"
    );
    assert_eq!(summary.page_count, lock);
}

#[test]
fn encoder_page_rules_exact_text() {
    let snap = Header {
        page_size: 512,
        commit: 5,
        min_txid: TxId(1),
        max_txid: TxId(1),
        ..Header::new()
    };
    let inc = Header {
        min_txid: TxId(2),
        max_txid: TxId(2),
        pre_apply_checksum: Checksum(CHECKSUM_FLAG | 1),
        ..snap
    };
    let page = vec![0u8; 512];
    let cases: Vec<(Header, Vec<u32>, &str)> = vec![
        (snap, vec![0], "page number required"),
        (
            snap,
            vec![6],
            "page number 6 out-of-bounds for commit size 5",
        ),
        (
            snap,
            vec![2],
            "snapshot transaction file must start with page number 1",
        ),
        (
            snap,
            vec![1, 3],
            "nonsequential page numbers in snapshot transaction: 1,3",
        ),
        (inc, vec![3, 2], "out-of-order page numbers: 3,2"),
        (inc, vec![3, 3], "out-of-order page numbers: 3,3"),
    ];
    for (header, pgnos, want) in cases {
        let mut enc = Encoder::new(Vec::new(), &header).unwrap();
        let (last, init) = pgnos.split_last().unwrap();
        for pgno in init {
            enc.encode_page(*pgno, &page).unwrap();
        }
        assert_eq!(enc.encode_page(*last, &page).unwrap_err().to_string(), want);
    }
    let mut enc = Encoder::new(Vec::new(), &inc).unwrap();
    assert_eq!(
        enc.encode_page(1, &[0u8; 100]).unwrap_err().to_string(),
        "invalid page buffer size: 100, expecting 512"
    );
    // The lock page at 4 KiB, and a snapshot that would skip it wrongly.
    let big = Header {
        page_size: 4096,
        commit: 300_000,
        ..inc
    };
    let mut enc = Encoder::new(Vec::new(), &big).unwrap();
    assert_eq!(
        enc.encode_page(262_145, &[0u8; 4096])
            .unwrap_err()
            .to_string(),
        "cannot encode lock page: pgno=262145"
    );
    // A snapshot that stops short of Commit is refused (stricter than Go).
    let mut enc = Encoder::new(Vec::new(), &snap).unwrap();
    enc.encode_page(1, &page).unwrap();
    let err = enc.finish(Checksum(CHECKSUM_FLAG)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "snapshot transaction file ends at page 1, expecting commit 5"
    );
    // A deletion must carry the empty checksum.
    let del = Header { commit: 0, ..inc };
    let enc = Encoder::new(Vec::new(), &del).unwrap();
    assert_eq!(
        enc.finish(Checksum(CHECKSUM_FLAG | 1))
            .unwrap_err()
            .to_string(),
        "post-apply checksum must be empty for zero-length database"
    );
    // Invalid headers never reach the writer.
    let mut sink = Vec::new();
    let bad = Header {
        page_size: 1000,
        ..snap
    };
    assert!(Encoder::new(&mut sink, &bad).is_err());
    assert!(sink.is_empty(), "nothing written for an invalid header");
}

#[test]
fn decoder_errors_are_wrapped_like_go() {
    let (file, _) = encode(&vector_b_header(), &vector_b_pages(), 0xad2dffe333333333);
    // Truncated inside the header.
    let err = verify(&file[..50]).unwrap_err();
    assert!(err.to_string().starts_with("decode header: "), "{err}");
    // Truncated inside page 1's data.
    let err = verify(&file[..300]).unwrap_err();
    assert!(err.to_string().starts_with("decode page 0: "), "{err}");
    // Truncated trailer.
    let err = verify(&file[..1148]).unwrap_err();
    assert!(err.to_string().starts_with("close reader: "), "{err}");
    // A flipped byte in the stored file checksum.
    let mut bad = file.clone();
    bad[1151] ^= 1;
    assert_eq!(
        verify(bad.as_slice()).unwrap_err().to_string(),
        "close reader: file checksum mismatch"
    );
    // A flipped page byte: the file checksum catches it before the snapshot checksum.
    let mut bad = file.clone();
    bad[200] ^= 1;
    assert_eq!(
        verify(bad.as_slice()).unwrap_err().to_string(),
        "close reader: file checksum mismatch"
    );
    // Bad magic.
    let mut bad = file.clone();
    bad[0] = b'X';
    assert_eq!(
        verify(bad.as_slice()).unwrap_err().to_string(),
        "decode header: invalid LTX file"
    );
}

#[test]
fn decode_database_rejects_non_snapshot() {
    let header = Header {
        page_size: 512,
        commit: 2,
        min_txid: TxId(2),
        max_txid: TxId(2),
        pre_apply_checksum: Checksum(CHECKSUM_FLAG | 1),
        ..Header::new()
    };
    let (file, _) = encode(&header, &[(2, vec![3; 512])], CHECKSUM_FLAG | 2);
    let err = decode_database_to(file.as_slice(), Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot decode non-snapshot LTX file to SQLite database"
    );
}

#[test]
fn decode_commit_zero_post_apply_pos() {
    // ltx TestDecoder_Decode_CommitZero: a deletion file's post-apply position is (1, FLAG).
    let header = Header {
        page_size: 1024,
        commit: 0,
        min_txid: TxId(1),
        max_txid: TxId(1),
        ..Header::new()
    };
    let (file, _) = encode(&header, &[], CHECKSUM_FLAG);
    let s = verify(file.as_slice()).unwrap();
    assert_eq!(
        (s.header.max_txid, s.trailer.post_apply_checksum),
        (TxId(1), Checksum(CHECKSUM_FLAG))
    );
}

fn inc_header(min: u64, max: u64, commit: u32, pre: u64, ts: i64) -> Header {
    Header {
        page_size: 1024,
        commit,
        min_txid: TxId(min),
        max_txid: TxId(max),
        timestamp_ms: ts,
        pre_apply_checksum: Checksum(pre),
        ..Header::new()
    }
}

#[test]
fn compactor_shrinking_matches_go_vector() {
    // ltx TestCompactor_Compact/Shrinking: the second input shrinks the database to 2 pages,
    // so page 3 of the first input is dropped. Expected file checksum 0xf688132c3904f118.
    let f = CHECKSUM_FLAG;
    let (a, _) = encode(
        &inc_header(2, 3, 3, f | 2, 1000),
        &[(3, vec![0x83; 1024])],
        f | 3,
    );
    let (b, _) = encode(
        &inc_header(4, 5, 2, f | 4, 2000),
        &[(1, vec![0x91; 1024])],
        f | 5,
    );
    // Inputs out of order on purpose: the compactor sorts them by TXID.
    let (out, summary) = compact(vec![b.as_slice(), a.as_slice()], Vec::new(), 0).unwrap();
    assert_eq!(summary.trailer.file_checksum, Checksum(0xf688132c3904f118));
    assert_eq!(summary.header, inc_header(2, 5, 2, f | 2, 2000));
    let mut dec = Decoder::new(out.as_slice()).unwrap();
    let mut page = vec![0; 1024];
    assert_eq!(dec.decode_page(&mut page).unwrap(), Some(1));
    assert!(page.iter().all(|&b| b == 0x91));
    assert_eq!(
        dec.decode_page(&mut page).unwrap(),
        None,
        "page 3 is beyond commit 2"
    );
    dec.finish().unwrap();
}

#[test]
fn compactor_latest_version_wins() {
    let f = CHECKSUM_FLAG;
    let (a, _) = encode(
        &inc_header(2, 2, 3, f | 2, 1000),
        &[
            (1, vec![0x81; 1024]),
            (2, vec![0x82; 1024]),
            (3, vec![0x83; 1024]),
        ],
        f | 3,
    );
    let (b, _) = encode(
        &inc_header(3, 4, 3, f | 3, 1500),
        &[(1, vec![0x91; 1024]), (3, vec![0x93; 1024])],
        f | 4,
    );
    let (out, summary) = compact(
        vec![a.as_slice(), b.as_slice()],
        Vec::new(),
        FLAG_COMPRESS_LZ4,
    )
    .unwrap();
    assert_eq!(summary.page_count, 3);
    let mut dec = Decoder::new(out.as_slice()).unwrap();
    let mut page = vec![0; 1024];
    for (pgno, byte) in [(1, 0x91), (2, 0x82), (3, 0x93)] {
        assert_eq!(dec.decode_page(&mut page).unwrap(), Some(pgno));
        assert!(
            page.iter().all(|&b| b == byte),
            "page {pgno} should be {byte:#x}, is {:#x}",
            page[0]
        );
    }
    assert_eq!(dec.decode_page(&mut page).unwrap(), None);
    assert_eq!(dec.finish().unwrap().0.post_apply_checksum, Checksum(f | 4));
}

#[test]
fn compactor_errors() {
    let f = CHECKSUM_FLAG;
    let empty: Vec<&[u8]> = Vec::new();
    assert_eq!(
        compact(empty, Vec::new(), 0).unwrap_err().to_string(),
        "at least one input reader required"
    );
    let (a, _) = encode(&inc_header(2, 2, 1, f | 2, 0), &[(1, vec![1; 1024])], f | 3);
    let (gap, _) = encode(&inc_header(4, 4, 1, f | 3, 0), &[(1, vec![2; 1024])], f | 4);
    let err = compact(vec![a.as_slice(), gap.as_slice()], Vec::new(), 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "non-contiguous transaction ids in input files: (0000000000000002,0000000000000002) -> (0000000000000004,0000000000000004)"
    );
    let allow = Compactor {
        flags: FLAG_COMPRESS_LZ4,
        allow_non_contiguous_txids: true,
    };
    let (out, summary) = allow
        .compact(vec![a.as_slice(), gap.as_slice()], Vec::new())
        .unwrap();
    assert_eq!(
        (summary.header.min_txid, summary.header.max_txid),
        (TxId(2), TxId(4))
    );
    verify(out.as_slice()).unwrap();
    let other_size = Header {
        page_size: 512,
        ..inc_header(3, 3, 1, f | 3, 0)
    };
    let (b, _) = encode(&other_size, &[(1, vec![2; 512])], f | 4);
    let err = compact(vec![a.as_slice(), b.as_slice()], Vec::new(), 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input files have mismatched page sizes: 1024 != 512"
    );
}

#[test]
fn compactor_snapshot_input_gives_snapshot() {
    let (snap, _) = encode(&vector_b_header(), &vector_b_pages(), 0xad2dffe333333333);
    let header = Header {
        page_size: 512,
        commit: 3,
        min_txid: TxId(2),
        max_txid: TxId(2),
        pre_apply_checksum: Checksum(0xad2dffe333333333),
        ..Header::new()
    };
    let mut image = vec![0x01; 512];
    image.extend_from_slice(&[0x09; 512]);
    image.extend_from_slice(&[0x0a; 512]);
    let post = database_checksum(&image, 512);
    let (next, _) = encode(&header, &[(2, vec![0x09; 512]), (3, vec![0x0a; 512])], post);
    let (out, summary) = compact(
        vec![snap.as_slice(), next.as_slice()],
        Vec::new(),
        FLAG_COMPRESS_LZ4,
    )
    .unwrap();
    assert!(summary.header.is_snapshot());
    let mut db = Vec::new();
    decode_database_to(out.as_slice(), &mut db).unwrap();
    assert!(db == image);
}

/// Page numbers and images, in file order.
type Pages = Vec<(u32, Vec<u8>)>;

/// Joins what [`PageSlices`] hands out: each page's number and bytes, and the trailer.
fn page_slices_of(file: &[u8], decoded_max_bytes: usize) -> Option<(Pages, Trailer)> {
    let mut decoded = Vec::new();
    let mut pages = PageSlices::new(file, &mut decoded, decoded_max_bytes).unwrap()?;
    let mut out = Vec::new();
    let mut slices = Vec::new();
    while let Some(pgno) = pages.next_page(&mut slices).unwrap() {
        out.push((pgno, slices.concat()));
        slices.clear();
    }
    assert_eq!(
        pages.next_page(&mut slices).unwrap(),
        None,
        "the end stays the end"
    );
    Some((out, pages.trailer()))
}

#[test]
fn page_slices_are_the_decoded_pages_raw_blocks_or_not() {
    let mut rng = crate::testkit::XorShift64(11);
    for page_size in [512u32, 4096, 65536] {
        // Runs of random pages (LZ4 blocks stored raw) and of repeated bytes (compressed
        // blocks); 64 KiB blocks cut pages (4 + page size bytes each) at varying offsets.
        let count = (1 << 20) / page_size + 3;
        let pages: Vec<(u32, Vec<u8>)> = (1..=count)
            .map(|p| match (p * page_size / 40_000) % 3 {
                0 => (p, vec![p as u8; page_size as usize]),
                _ => (p, rng.bytes(page_size as usize)),
            })
            .collect();
        for flags in [0, FLAG_COMPRESS_LZ4] {
            let header = Header {
                flags,
                page_size,
                commit: count,
                min_txid: TxId(1),
                max_txid: TxId(1),
                ..Header::new()
            };
            let image: Vec<u8> = pages.iter().flat_map(|(_, d)| d.clone()).collect();
            let (file, trailer) = encode(&header, &pages, database_checksum(&image, page_size));
            let (raw, raw_trailer) = page_slices_of(&file, 16 << 20)
                .unwrap_or_else(|| panic!("page size {page_size}, flags {flags}: refused"));
            assert_eq!(raw_trailer, trailer, "page size {page_size}, flags {flags}");
            assert_eq!(
                raw.len(),
                pages.len(),
                "page size {page_size}, flags {flags}"
            );
            for ((pgno, got), (want_pgno, want)) in raw.iter().zip(&pages) {
                assert_eq!(pgno, want_pgno, "page size {page_size}, flags {flags}");
                assert!(
                    got == want,
                    "page {pgno} of size {page_size}, flags {flags}"
                );
            }
        }
    }
}

#[test]
fn page_slices_decode_compressed_blocks_within_a_limit_and_refuse_damage() {
    // Compressible pages: their LZ4 blocks are decoded into the caller's memory, if allowed.
    let (file, pages) = lz4_snapshot(40);
    assert!(
        PageSlices::new(&file, &mut Vec::new(), 64 * 1024)
            .unwrap()
            .is_none()
    );
    let (got, _) = page_slices_of(&file, 4 << 20).expect("within the limit");
    assert!(got == pages, "decoded pages differ");
    // A random (raw-stored) file, cut short or with bytes after its trailer: an error at
    // `new` or at a page, never a panic or a page from outside the file.
    let mut rng = crate::testkit::XorShift64(5);
    let pages: Vec<(u32, Vec<u8>)> = (1..=40).map(|p| (p, rng.bytes(4096))).collect();
    let header = Header {
        flags: FLAG_COMPRESS_LZ4,
        page_size: 4096,
        commit: 40,
        min_txid: TxId(1),
        max_txid: TxId(1),
        ..Header::new()
    };
    let image: Vec<u8> = pages.iter().flat_map(|(_, d)| d.clone()).collect();
    let (file, _) = encode(&header, &pages, database_checksum(&image, 4096));
    let mut longer = file.clone();
    longer.extend_from_slice(&[0; 7]);
    let damaged = [
        file[..file.len() - 1].to_vec(),
        file[..file.len() / 2].to_vec(),
        file[..HEADER_SIZE + 3].to_vec(),
        file[..50].to_vec(),
        longer,
    ];
    for (i, bytes) in damaged.iter().enumerate() {
        let mut decoded = Vec::new();
        let result = PageSlices::new(bytes, &mut decoded, 0).and_then(|pages| {
            let Some(mut pages) = pages else {
                return Ok(());
            };
            let mut slices = Vec::new();
            while pages.next_page(&mut slices)?.is_some() {}
            Ok(())
        });
        assert!(
            result.is_err(),
            "damaged file {i} ({} bytes) was accepted",
            bytes.len()
        );
    }
}

/// Pages as `verify_pages` hands them out: number and checksum.
fn verified_pages(file: &[u8]) -> Result<(Summary, Vec<(u32, u64)>)> {
    let mut seen = Vec::new();
    let summary = verify_pages(file, |pgno, _, checksum| seen.push((pgno, checksum)))?;
    Ok((summary, seen))
}

/// The same from `verify_in_memory`.
fn verified_in_memory(file: &[u8], decoded_max_bytes: usize) -> Result<(Summary, Vec<(u32, u64)>)> {
    let mut seen = Vec::new();
    let summary = verify_in_memory(file, decoded_max_bytes, |pgno, checksum| {
        seen.push((pgno, checksum))
    })?;
    Ok((summary, seen))
}

#[test]
fn verifying_in_memory_agrees_with_the_stream_decoder_byte_for_byte() {
    let mut rng = crate::testkit::XorShift64(21);
    // A snapshot (its database checksum checked too) and an increment; raw and LZ4 with both
    // stored and compressed blocks.
    let pages: Vec<(u32, Vec<u8>)> = (1..=40)
        .map(|p| match p % 3 {
            0 => (p, vec![p as u8; 4096]),
            _ => (p, rng.bytes(4096)),
        })
        .collect();
    let image: Vec<u8> = pages.iter().flat_map(|(_, d)| d.clone()).collect();
    let post = database_checksum(&image, 4096);
    let snapshot = Header {
        page_size: 4096,
        commit: 40,
        min_txid: TxId(1),
        max_txid: TxId(3),
        ..Header::new()
    };
    let increment = Header {
        min_txid: TxId(4),
        max_txid: TxId(4),
        pre_apply_checksum: Checksum(post),
        ..snapshot
    };
    for header in [snapshot, increment] {
        for flags in [0, FLAG_COMPRESS_LZ4] {
            let header = Header { flags, ..header };
            let (ours, _) = encode(&header, &pages, post);
            // Ours has no LZ4 content checksum; Go's has one (read, never compared).
            let go = (flags == FLAG_COMPRESS_LZ4).then(|| with_content_checksum(&ours, &pages));
            for file in [Some(ours), go].into_iter().flatten() {
                let want = verified_pages(&file).unwrap();
                let mut longer = file.clone();
                longer.push(0);
                for decoded_max_bytes in [0, 1 << 20] {
                    let got = verified_in_memory(&file, decoded_max_bytes).unwrap();
                    assert_eq!(got, want, "flags {flags}, decode limit {decoded_max_bytes}");
                    // The trailer must end the file, decoded in place or as a stream.
                    assert!(
                        verified_in_memory(&longer, decoded_max_bytes).is_err(),
                        "a byte after the trailer was accepted (flags {flags}, limit {decoded_max_bytes})"
                    );
                }
                // Every byte flipped in turn (a sample of positions in the pages): both refuse the
                // file, or both accept it (the LZ4 content checksum, which neither compares).
                let step = (file.len() / 600).max(1);
                for at in (0..file.len())
                    .step_by(step)
                    .chain(file.len() - 40..file.len())
                {
                    let mut damaged = file.clone();
                    damaged[at] ^= 0x10;
                    let stream = verified_pages(&damaged);
                    let memory = verified_in_memory(&damaged, 1 << 20);
                    assert_eq!(
                        stream.is_ok(),
                        memory.is_ok(),
                        "byte {at} of {} flipped, flags {flags}: stream {:?}, in memory {:?}",
                        file.len(),
                        stream.as_ref().err(),
                        memory.as_ref().err()
                    );
                    if let (Ok(a), Ok(b)) = (&stream, &memory) {
                        assert_eq!(a, b, "byte {at} flipped, flags {flags}");
                    }
                }
            }
        }
    }
}
