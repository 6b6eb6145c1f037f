//! `litefs ltx verify|dump|checksum` as a user runs them: real binary, real files.

use litefs::ltx::{Encoder, FLAG_COMPRESS_LZ4, Header, database_checksum};
use litefs::types::{CHECKSUM_FLAG, Checksum, TxId};
use std::path::Path;
use std::process::Command;

fn litefs(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_litefs"))
        .args(args)
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

/// An incremental file: TXID 7, pages 2, 3 and 5 of a 5-page database of 4 KiB pages.
fn write_ltx(path: &Path, flags: u32) -> Vec<u8> {
    let header = Header {
        flags,
        page_size: 4096,
        commit: 5,
        min_txid: TxId(7),
        max_txid: TxId(7),
        timestamp_ms: 1_700_000_000_000,
        pre_apply_checksum: Checksum(CHECKSUM_FLAG | 0x1234),
        ..Header::new()
    };
    let mut enc = Encoder::new(Vec::new(), &header).unwrap();
    for pgno in [2u32, 3, 5] {
        let page: Vec<u8> = (0..4096u32).map(|i| ((i * pgno) % 253) as u8).collect();
        enc.encode_page(pgno, &page).unwrap();
    }
    let (bytes, _) = enc.finish(Checksum(CHECKSUM_FLAG | 0x5678)).unwrap();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn verify_accepts_compressed_and_uncompressed() {
    let dir = tempfile::tempdir().unwrap();
    for (name, flags) in [("raw.ltx", 0), ("lz4.ltx", FLAG_COMPRESS_LZ4)] {
        let path = dir.path().join(name);
        write_ltx(&path, flags);
        let (code, stdout, stderr) = litefs(&["ltx", "verify", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert!(
            stdout.contains("ok: TXID 0000000000000007-0000000000000007, commit 5, 3 page(s)"),
            "{stdout}"
        );
        let (code, stdout, _) = litefs(&["ltx", "dump", path.to_str().unwrap()]);
        assert_eq!(code, 0);
        assert!(stdout.contains("Frame #2: pgno=5\n"), "{stdout}");
        assert!(
            stdout.contains(&format!("Flags:     0x{flags:08x}\n")),
            "{stdout}"
        );
    }
}

/// Writes `bytes` to a file, runs `verify`, and returns stderr (the command must fail).
fn verify_fails(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let (code, _, stderr) = litefs(&["ltx", "verify", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{name} must fail verification; stderr: {stderr}");
    assert!(
        stderr.contains("ERROR: 1 of 1 LTX file(s) failed verification"),
        "{stderr}"
    );
    stderr
}

#[test]
fn verify_rejects_each_corruption_with_its_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_ltx(&dir.path().join("good.ltx"), 0);
    let len = good.len();

    // A flipped data byte in page frame #1 (pgno 3), 10 bytes into the page.
    let mut page_flip = good.clone();
    page_flip[100 + 4100 + 4 + 10] ^= 0x20;
    let page_msg = verify_fails(dir.path(), "page.ltx", &page_flip);
    assert!(
        page_msg.contains("FAILED: close reader: file checksum mismatch"),
        "{page_msg}"
    );
    assert!(
        page_msg.contains("page frame #1 (pgno 3), data byte 10"),
        "{page_msg}"
    );

    // A flipped header byte in a field no validation rule covers (the timestamp).
    let mut header_flip = good.clone();
    header_flip[35] ^= 0x01;
    let header_msg = verify_fails(dir.path(), "header.ltx", &header_flip);
    assert!(
        header_msg.contains("header byte 35 (field timestamp, byte 3)"),
        "{header_msg}"
    );

    // A flipped header byte that breaks a rule (page size 4096 -> 4097).
    let mut rule_flip = good.clone();
    rule_flip[11] ^= 0x01;
    let rule_msg = verify_fails(dir.path(), "rule.ltx", &rule_flip);
    assert!(
        rule_msg.contains("FAILED: decode header: invalid page size: 4097"),
        "{rule_msg}"
    );

    // A truncated trailer.
    let trunc_msg = verify_fails(dir.path(), "trunc.ltx", &good[..len - 5]);
    assert!(
        trunc_msg.contains("ends inside the 16-byte trailer"),
        "{trunc_msg}"
    );

    // A wrong stored file checksum (one byte of the field changed).
    let mut wrong = good.clone();
    wrong[len - 3] ^= 0x44;
    let wrong_msg = verify_fails(dir.path(), "wrong.ltx", &wrong);
    assert!(
        wrong_msg.contains("file checksum field itself is damaged"),
        "{wrong_msg}"
    );

    // A flipped byte inside a compressed page block.
    let lz4 = write_ltx(&dir.path().join("good-lz4.ltx"), FLAG_COMPRESS_LZ4);
    let mut lz4_flip = lz4.clone();
    lz4_flip[100 + 20] ^= 0x08;
    let lz4_msg = verify_fails(dir.path(), "lz4.ltx", &lz4_flip);
    assert!(
        lz4_msg.contains("lz4") || lz4_msg.contains("compressed"),
        "{lz4_msg}"
    );

    let messages = [
        &page_msg,
        &header_msg,
        &rule_msg,
        &trunc_msg,
        &wrong_msg,
        &lz4_msg,
    ];
    for (i, a) in messages.iter().enumerate() {
        for b in &messages[i + 1..] {
            let strip = |m: &str| {
                m.split_once(": ")
                    .map(|(_, rest)| rest.to_string())
                    .unwrap()
            };
            assert_ne!(strip(a), strip(b), "two corruptions gave the same message");
        }
    }
}

#[test]
fn checksum_of_a_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA page_size=1024; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(3000));",
    )
    .unwrap();
    drop(conn);
    let image = std::fs::read(&path).unwrap();
    let (code, stdout, stderr) = litefs(&["ltx", "checksum", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!("{:016x}\n", database_checksum(&image, 1024))
    );
}

#[test]
fn top_level_usage_and_errors_match_go() {
    let (code, _, stderr) = litefs(&[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("Usage:"), "{stderr}");
    let (code, _, stderr) = litefs(&["frobnicate"]);
    assert_eq!(
        (code, stderr.as_str()),
        (1, "litefs frobnicate: unknown command\n")
    );
    let (code, stdout, _) = litefs(&["version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("LiteFS "), "{stdout}");
    let (code, _, stderr) = litefs(&["ltx", "verify", "/nonexistent/x.ltx"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("open /nonexistent/x.ltx"), "{stderr}");
}
