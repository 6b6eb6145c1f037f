use super::*;
use crate::ltx::{Decoder, database_checksum, decode_database_to, verify};
use std::io::Write;

/// A hand-made database header, one row per field (rollback mode, 512-byte pages).
fn header_bytes(page_count: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"SQLite format 3\0"); //         0: magic
    h.extend_from_slice(&[0x02, 0x00]); //                   16: page size 512
    h.extend_from_slice(&[1, 1]); //                         18: write / read version
    h.push(0); //                                            20: reserved bytes per page
    h.extend_from_slice(&[64, 32, 32]); //                   21: payload fractions
    h.extend_from_slice(&0x1122_3344u32.to_be_bytes()); //  24: file change counter
    h.extend_from_slice(&page_count.to_be_bytes()); //       28: page count
    h.extend_from_slice(&0u32.to_be_bytes()); //             32: first freelist trunk page
    h.extend_from_slice(&0u32.to_be_bytes()); //             36: freelist page count
    h.extend_from_slice(&0x5566_7788u32.to_be_bytes()); //  40: schema cookie
    h.extend_from_slice(&4u32.to_be_bytes()); //             44: schema format
    h.extend_from_slice(&[0; 44]); //                        48..92: cache size .. reserved
    h.extend_from_slice(&0x1122_3344u32.to_be_bytes()); //  92: version-valid-for
    h.extend_from_slice(&3_046_000u32.to_be_bytes()); //    96: SQLITE_VERSION_NUMBER
    assert_eq!(h.len(), 100);
    h
}

/// A 512-byte-page image of `page_count` pages: the header, then page `n` filled with `n`.
fn image(page_count: u32) -> Vec<u8> {
    let mut img = header_bytes(page_count);
    img.resize(512, 0xEE);
    for pgno in 2..=page_count {
        img.extend(std::iter::repeat_n(pgno as u8, 512));
    }
    img
}

const POS_5: Pos = Pos::new(5, 0x8000_0000_0000_1234);

#[test]
fn header_errors_name_what_is_wrong() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            vec![],
            "invalid SQLite database: database header too short: 0 bytes, need 100",
        ),
        (
            vec![b'S'; 50],
            "invalid SQLite database: database header too short: 50 bytes, need 100",
        ),
        (
            vec![b'x'; 4096],
            "invalid SQLite database: invalid database header magic (expected \"SQLite format 3\\0\")",
        ),
        (
            {
                let mut h = header_bytes(3);
                h[16..18].copy_from_slice(&[0x03, 0x00]); // page size 768
                h
            },
            "invalid SQLite database: invalid database header page size: 768 (must be a power of two in 512..=65536)",
        ),
        (
            header_bytes(0),
            "invalid SQLite database: the header's page count (offset 28) is 0; open the file with sqlite3 once so that it rewrites the header, then import again",
        ),
    ];
    for (bytes, want) in cases {
        let err = parse_image_header(&bytes).unwrap_err();
        assert_eq!(err.to_string(), want, "{} bytes", bytes.len());
        assert!(err.is_invalid_input());
        let mut out = Vec::new();
        let err = copy_image(bytes.as_slice(), &mut out).unwrap_err();
        assert_eq!(err.to_string(), want);
        assert!(
            out.is_empty(),
            "nothing is written before the header is checked"
        );
    }
}

#[test]
fn copy_takes_exactly_the_pages_the_header_announces() {
    let img = image(3);
    let mut input = img.clone();
    input.extend_from_slice(b"trailing bytes are left unread");
    let mut reader = input.as_slice();
    let mut out = Vec::new();
    let h = copy_image(&mut reader, &mut out).unwrap();
    assert_eq!((h.page_size_bytes, h.page_count), (512, 3));
    assert_eq!(image_len_bytes(&h), 1536);
    assert!(out == img, "copy is the image: {} bytes", out.len());
    assert_eq!(reader, b"trailing bytes are left unread");
}

#[test]
fn copy_of_a_short_image_says_where_it_ended() {
    let img = image(3);
    let cut = 512 + 100;
    let err = copy_image(&img[..cut], Vec::new()).unwrap_err();
    assert!(err.is_invalid_input());
    match err {
        ImageError::Short {
            pgno,
            page_count,
            page_size,
            len_bytes,
            want_bytes,
        } => assert_eq!(
            (pgno, page_count, page_size, len_bytes, want_bytes),
            (2, 3, 512, 612, 1536)
        ),
        other => panic!("{other:?}"),
    }
    let err = copy_image(&img[..cut], Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid SQLite database: it ends in page 2 after 612 bytes, but its header says 3 pages of 512 bytes (1536 bytes)"
    );
}

#[test]
fn ltx_header_follows_the_position() {
    let h = parse_image_header(&image(3)).unwrap();
    let first = image_ltx_header(&h, Pos::default(), NodeId(7), 1_700_000_000_000, false);
    assert_eq!(
        (first.min_txid, first.max_txid, first.pre_apply_checksum),
        (TxId(1), TxId(1), Checksum(0))
    );
    assert!(first.is_snapshot());
    let next = image_ltx_header(&h, POS_5, NodeId(7), 1_700_000_000_000, true);
    assert_eq!(
        (next.min_txid, next.max_txid, next.pre_apply_checksum),
        (TxId(6), TxId(6), POS_5.post_apply_checksum)
    );
    assert!(!next.is_snapshot());
    assert!(next.is_compressed());
    assert_eq!((next.page_size, next.commit), (512, 3));
    assert_eq!((next.wal_offset, next.wal_size, next.wal_salt1), (0, 0, 0));
    assert_eq!(
        (next.node_id, next.timestamp_ms),
        (NodeId(7), 1_700_000_000_000)
    );
    next.validate().unwrap();
}

/// The image with page 1's change counter and schema cookie zeroed: what the LTX file holds.
fn expected_pages(img: &[u8]) -> Vec<u8> {
    let mut want = img.to_vec();
    want[24..28].fill(0);
    want[40..44].fill(0);
    want
}

#[test]
fn encodes_every_page_with_page_1_counters_zeroed() {
    let img = image(3);
    let h = parse_image_header(&img).unwrap();
    for compress in [false, true] {
        for pos in [Pos::default(), POS_5] {
            let header = image_ltx_header(&h, pos, NodeId(7), 1, compress);
            let (file, trailer) = encode_image(img.as_slice(), &header, Vec::new()).unwrap();
            let want = expected_pages(&img);
            let sum = database_checksum(&want, 512);
            assert_eq!(
                trailer.post_apply_checksum,
                Checksum(sum),
                "post-apply {} vs pages {sum:016x}",
                trailer.post_apply_checksum
            );
            let summary = verify(file.as_slice()).unwrap();
            assert_eq!(summary.header, header);
            assert_eq!(summary.trailer, trailer);
            let mut dec = Decoder::new(file.as_slice()).unwrap();
            let mut page = vec![0u8; 512];
            let mut got = Vec::new();
            while let Some(pgno) = dec.decode_page(&mut page).unwrap() {
                assert_eq!(pgno as usize, got.len() / 512 + 1);
                got.extend_from_slice(&page);
            }
            assert!(got == want, "pages differ (compress {compress}, pos {pos})");
            assert_eq!(&got[24..28], &[0; 4], "file change counter");
            assert_eq!(&got[40..44], &[0; 4], "schema cookie");
            assert_eq!(&got[92..96], &0x1122_3344u32.to_be_bytes(), "left alone");
        }
    }
}

#[test]
fn encode_of_a_short_image_fails() {
    let img = image(3);
    let h = parse_image_header(&img).unwrap();
    let header = image_ltx_header(&h, POS_5, NodeId(7), 1, false);
    let err = encode_image(&img[..1024 + 10], &header, Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid SQLite database: it ends in page 3 after 1034 bytes, but its header says 3 pages of 512 bytes (1536 bytes)"
    );
}

/// Yields an image of `page_count` 64 KiB pages lazily: page 1 a header, other pages their
/// number in every byte, the lock page 0xFF (as if something had been stored there).
struct LazyImage {
    page_count: u32,
    at: u64,
}

impl Read for LazyImage {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        const PAGE: u64 = 65536;
        let end = u64::from(self.page_count) * PAGE;
        if self.at >= end {
            return Ok(0);
        }
        let pgno = (self.at / PAGE + 1) as u32;
        let in_page = (self.at % PAGE) as usize;
        let n = buf.len().min(PAGE as usize - in_page);
        if pgno == 1 {
            let mut page = header_bytes(self.page_count);
            page[16..18].copy_from_slice(&[0x00, 0x01]); // 65536
            page.resize(PAGE as usize, 0);
            buf[..n].copy_from_slice(&page[in_page..in_page + n]);
        } else if pgno == lock_pgno(65536) {
            buf[..n].fill(0xFF);
        } else {
            buf[..n].fill(pgno as u8);
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// Records the page numbers of an uncompressed LTX body: the encoder writes each page frame
/// as a 4-byte page number and then the page, so 4-byte writes after the header are numbers
/// (the last one is the zero end marker).
#[derive(Default)]
struct PageNumbers {
    header_seen: bool,
    pgnos: Vec<u32>,
}

impl Write for PageNumbers {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match (self.header_seen, buf.len()) {
            (false, 100) => self.header_seen = true,
            (true, 4) => self.pgnos.push(u32::from_be_bytes(buf.try_into().unwrap())),
            _ => {}
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn lock_page_is_read_past_but_not_recorded() {
    let lock = lock_pgno(65536);
    assert_eq!(lock, 16385);
    let page_count = lock + 2;
    let mut head = [0u8; 100];
    LazyImage { page_count, at: 0 }
        .read_exact(&mut head)
        .unwrap();
    let h = parse_image_header(&head).unwrap();
    let header = image_ltx_header(&h, Pos::default(), NodeId(7), 1, false);
    let started = std::time::Instant::now();
    let (w, _) = encode_image(
        LazyImage { page_count, at: 0 },
        &header,
        PageNumbers::default(),
    )
    .unwrap();
    println!("1 GiB encoded in {:?}", started.elapsed());
    // Debug-build CRC over 1 GiB twice (file and page checksums) dominates the ~15 s.
    // The encoder itself refuses the lock page and any gap in a snapshot; check the ends.
    let mut pgnos = w.pgnos;
    assert_eq!(pgnos.pop(), Some(0), "the end marker");
    assert_eq!(
        pgnos.len() as u32,
        page_count - 1,
        "pages 1..={page_count} but {lock}"
    );
    assert_eq!(pgnos[..2], [1, 2]);
    let at = (lock - 2) as usize;
    assert_eq!(
        pgnos[at..],
        [lock - 1, lock + 1, lock + 2],
        "around the lock page"
    );
}

#[test]
fn real_sqlite_image_round_trips() {
    let _serial = crate::sqlite::test_util::sqlite_lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA page_size=4096; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(20000));
         CREATE INDEX i ON t(x);",
    )
    .unwrap();
    drop(conn);
    let img = std::fs::read(&path).unwrap();
    let mut copy = Vec::new();
    let h = copy_image(img.as_slice(), &mut copy).unwrap();
    assert!(copy == img, "{} of {} bytes", copy.len(), img.len());
    let header = image_ltx_header(&h, Pos::default(), NodeId(1), 1, true);
    let (file, _) = encode_image(img.as_slice(), &header, Vec::new()).unwrap();
    let mut decoded = Vec::new();
    decode_database_to(file.as_slice(), &mut decoded).unwrap();
    assert!(decoded == expected_pages(&img));
    let out = dir.path().join("out.db");
    std::fs::write(&out, &decoded).unwrap();
    let conn = rusqlite::Connection::open(&out).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let n: i64 = conn
        .query_row("SELECT length(x) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 20000);
}
