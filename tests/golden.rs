//! LTX files written by Go LiteFS v0.5.14 (`../shared/golden`, see its README): each decodes
//! and verifies, `litefs ltx dump` prints exactly what Go's `ltx dump` printed, re-encoding
//! the same header and pages gives the same checksums, and applying each database's chain of
//! files page by page reproduces every post-apply checksum and the late replica's snapshot.

use litefs::cli::ltx::dump;
use litefs::ltx::{self, Decoder, Encoder, Header, database_checksum, decode_database_to};
use litefs::types::{CHECKSUM_FLAG, Checksum, TxId};
use std::fs;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden")
}

fn golden_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("../shared/golden must exist beside the project")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ltx"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        24,
        "expected 24 golden LTX files, found {}",
        files.len()
    );
    files
}

struct Decoded {
    header: Header,
    pages: Vec<(u32, Vec<u8>)>,
    post_apply: Checksum,
    file_checksum: Checksum,
}

fn decode(bytes: &[u8]) -> Decoded {
    let mut dec = Decoder::new(bytes).unwrap();
    let header = *dec.header();
    let mut pages = Vec::new();
    let mut page = vec![0u8; header.page_size as usize];
    while let Some(pgno) = dec.decode_page(&mut page).unwrap() {
        pages.push((pgno, page.clone()));
    }
    let (trailer, rest) = dec.finish().unwrap();
    assert!(rest.is_empty(), "{} bytes after the trailer", rest.len());
    Decoded {
        header,
        pages,
        post_apply: trailer.post_apply_checksum,
        file_checksum: trailer.file_checksum,
    }
}

#[test]
fn every_golden_file_verifies_and_dumps_like_go() {
    for path in golden_files() {
        let bytes = fs::read(&path).unwrap();
        let summary =
            ltx::verify(bytes.as_slice()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut text = String::new();
        dump(bytes.as_slice(), &mut text).unwrap();
        let want = fs::read_to_string(path.with_extension("ltx.dump.txt")).unwrap();
        assert_eq!(text, want, "dump of {} differs from Go's", path.display());
        // The name carries the TXID range; the flag says how the file was written.
        let name = path.file_name().unwrap().to_str().unwrap();
        let (min, max) = ltx::parse_filename(&name[name.len() - 37..]).unwrap();
        assert_eq!(
            (summary.header.min_txid, summary.header.max_txid),
            (min, max),
            "{name}"
        );
        assert_eq!(
            summary.header.is_compressed(),
            name.starts_with("lz4-"),
            "{name}"
        );
        assert_ne!(
            summary.header.node_id.0, 0,
            "{name}: Go LiteFS stamps its node id"
        );
    }
}

#[test]
fn re_encoding_gives_identical_checksums() {
    for path in golden_files() {
        let bytes = fs::read(&path).unwrap();
        let d = decode(&bytes);
        let mut enc = Encoder::new(Vec::new(), &d.header).unwrap();
        for (pgno, data) in &d.pages {
            enc.encode_page(*pgno, data).unwrap();
        }
        let (ours, trailer) = enc.finish(d.post_apply).unwrap();
        assert_eq!(trailer.file_checksum, d.file_checksum, "{}", path.display());
        if !d.header.is_compressed() {
            assert!(
                ours == bytes,
                "{}: uncompressed re-encoding must be byte-identical",
                path.display()
            );
        }
        let again = decode(&ours);
        assert_eq!(again.header, d.header);
        assert!(again.pages == d.pages);
    }
}

/// Applies LTX files in TXID order to a database image, checking each step's positions.
fn apply_chain(prefix: &str) -> (Vec<u8>, u32, Checksum) {
    let mut files: Vec<PathBuf> = golden_files()
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    files.sort();
    let mut image: Vec<u8> = Vec::new();
    let mut pos = (TxId(0), Checksum(0));
    let mut page_size = 0;
    for path in &files {
        let d = decode(&fs::read(path).unwrap());
        let h = d.header;
        page_size = h.page_size;
        assert_eq!(
            h.min_txid.0,
            pos.0.0 + 1,
            "{}: chain not contiguous",
            path.display()
        );
        if !h.is_snapshot() {
            assert_eq!(
                h.pre_apply_checksum,
                pos.1,
                "{}: pre-apply mismatch",
                path.display()
            );
        }
        let page_size = h.page_size as usize;
        image.resize(h.commit as usize * page_size, 0);
        for (pgno, data) in &d.pages {
            let at = (*pgno as usize - 1) * page_size;
            image[at..at + page_size].copy_from_slice(data);
        }
        let calculated = Checksum(database_checksum(&image, h.page_size));
        assert_eq!(
            calculated,
            d.post_apply,
            "{}: post-apply checksum",
            path.display()
        );
        pos = (h.max_txid, d.post_apply);
    }
    (image, page_size, pos.1)
}

#[test]
fn primary_chains_rebuild_the_late_replicas_snapshot() {
    for (codec, db) in [
        ("raw", "delete4k"),
        ("raw", "wal4k"),
        ("lz4", "delete4k"),
        ("lz4", "wal4k"),
    ] {
        let (image, page_size, post_apply) = apply_chain(&format!("{codec}-p-{db}-"));
        let snapshot = golden_files()
            .into_iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{codec}-l-{db}-"))
            })
            .unwrap();
        let mut out = Vec::new();
        let summary =
            decode_database_to(fs::read(&snapshot).unwrap().as_slice(), &mut out).unwrap();
        assert_eq!(
            summary.trailer.post_apply_checksum, post_apply,
            "{codec} {db}"
        );
        assert!(
            out == image,
            "{codec} {db}: snapshot differs from the applied chain"
        );
        assert_eq!(
            database_checksum(&out, page_size) | CHECKSUM_FLAG,
            post_apply.0
        );
        // The image is a real SQLite database.
        assert_eq!(&out[..16], b"SQLite format 3\0", "{codec} {db}");
    }
}

#[test]
fn compacting_a_primary_chain_equals_the_snapshot() {
    for (codec, db) in [("raw", "wal4k"), ("lz4", "delete4k")] {
        let mut files: Vec<PathBuf> = golden_files()
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{codec}-p-{db}-"))
            })
            .collect();
        files.sort();
        let contents: Vec<Vec<u8>> = files.iter().map(|p| fs::read(p).unwrap()).collect();
        let inputs: Vec<&[u8]> = contents.iter().map(Vec::as_slice).collect();
        let (out, summary) = ltx::compact(inputs, Vec::new(), ltx::FLAG_COMPRESS_LZ4).unwrap();
        assert!(
            summary.header.is_snapshot(),
            "{codec} {db}: first input is a snapshot"
        );
        let (image, _, post_apply) = apply_chain(&format!("{codec}-p-{db}-"));
        let mut db_out = Vec::new();
        let s = decode_database_to(out.as_slice(), &mut db_out).unwrap();
        assert_eq!(s.trailer.post_apply_checksum, post_apply);
        assert!(db_out == image);
    }
}
