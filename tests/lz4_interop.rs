//! Our LZ4 frame reader and writer against the reference implementation, the `lz4` command
//! (liblz4, Debian package `lz4`, installed by scripts/test.sh). Go's pierrec/lz4 follows the
//! same frame specification; the golden tests cover its actual output.

use litefs::ltx::lz4::{FrameReader, FrameWriter};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn sample(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = 0x9e37_79b9u32;
    while v.len() < len {
        // SQLite-ish: runs of structure with some noise.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.extend_from_slice(b"\x0d\x00\x00\x00\x01\x0f\xd4\x00row-");
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.truncate(len);
    v
}

fn lz4_cli(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("lz4")
        .arg("-q")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the `lz4` command is required (apt-get install lz4; scripts/test.sh does it)");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "lz4 {args:?} failed");
    out.stdout
}

#[test]
fn we_read_reference_frames_with_every_option() {
    let data = sample(1_500_000);
    let variants: &[&[&str]] = &[
        &["-c", "-z"],
        &["-c", "-z", "-BD"],
        &["-c", "-z", "-BX"],
        &["-c", "-z", "-BD", "-BX", "--content-size"],
        &["-c", "-z", "-B4", "--no-frame-crc"],
        &["-c", "-z", "-B5", "-BD"],
        &["-c", "-z", "-B6", "-9"],
        &["-c", "-z", "-B7", "--content-size", "-BX"],
    ];
    for args in variants {
        let mut frame = lz4_cli(args, &data);
        frame.extend_from_slice(b"TRAILER!");
        let mut r = FrameReader::new(frame.as_slice()).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert!(
            out == data,
            "lz4 {args:?}: content differs ({} vs {} bytes)",
            out.len(),
            data.len()
        );
        let mut rest = Vec::new();
        r.finish().unwrap().read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"TRAILER!", "lz4 {args:?}: reader overran the frame");
    }
}

#[test]
fn reference_reads_our_frames() {
    for len in [0, 4, 65_536, 65_537, 1_000_000] {
        let data = sample(len);
        let mut w = FrameWriter::new(Vec::new()).unwrap();
        w.write_all(&data).unwrap();
        let frame = w.finish().unwrap();
        let out = lz4_cli(&["-c", "-d"], &frame);
        assert!(out == data, "len {len}: lz4 -d gave {} bytes", out.len());
    }
}
