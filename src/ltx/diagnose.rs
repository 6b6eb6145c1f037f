//! Explains a file checksum mismatch: which byte of the logical LTX stream is damaged.
//!
//! A CRC is linear: for two streams of equal length, `crc(a) ^ crc(b)` depends only on
//! `a ^ b`. If exactly one byte differs, the difference of the checksums (the *syndrome*) is
//! that byte's error value carried through the rest of the stream, and walking the CRC
//! backwards one zero byte at a time finds where it entered. CRC-64 makes a false match
//! astronomically unlikely. Used by `litefs ltx verify` to say *where* a file is corrupt.

use super::header::{HEADER_SIZE, Header};
use crate::types::CHECKSUM_FLAG;

/// The reflected CRC-64/GO-ISO polynomial.
const POLY_REFLECTED: u64 = 0xD800_0000_0000_0000;

struct Tables {
    /// `forward[b]`: the zero-initialised CRC of the single byte `b`.
    forward: [u64; 256],
    /// `by_top_byte[t]`: the index `b` whose `forward[b]` has top byte `t` (a bijection).
    by_top_byte: [u8; 256],
}

fn tables() -> Tables {
    let mut forward = [0u64; 256];
    let mut by_top_byte = [0u8; 256];
    for (b, entry) in forward.iter_mut().enumerate() {
        let mut c = b as u64;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ POLY_REFLECTED
            } else {
                c >> 1
            };
        }
        *entry = c;
        by_top_byte[(c >> 56) as usize] = b as u8;
    }
    Tables {
        forward,
        by_top_byte,
    }
}

/// Undoes the processing of one zero byte: the inverse of `c -> forward[c & 0xff] ^ (c >> 8)`.
fn unshift_zero_byte(t: &Tables, c: u64) -> u64 {
    let low = t.by_top_byte[(c >> 56) as usize];
    ((c ^ t.forward[low as usize]) << 8) | u64::from(low)
}

/// A single damaged byte that explains a checksum mismatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteError {
    /// Offset in the logical (uncompressed) stream that the file checksum covers.
    pub offset_bytes: u64,
    /// The XOR between the byte that was hashed when the checksum was made and the byte now.
    pub xor: u8,
}

/// Explanations returned at most (see [`locate_byte_errors`]).
pub const EXPLANATIONS_MAX: usize = 4;

/// Finds every single-byte error in a logical stream of `len_bytes` bytes that turns
/// `stored` into `calculated` (both file checksums, flag bit included), nearest the start
/// first. Bit 63 of the raw CRC is hidden by the flag, so both possibilities are tried.
///
/// Usually there is one answer. The ISO polynomial (x^64 + x^4 + x^3 + x + 1) is itself two
/// bytes' worth of bits eight bytes apart, so some errors have a twin explanation eight bytes
/// away; both are returned and the caller must say "one of".
pub fn locate_byte_errors(stored: u64, calculated: u64, len_bytes: u64) -> Vec<ByteError> {
    let t = tables();
    let syndrome = (stored ^ calculated) & !CHECKSUM_FLAG;
    let mut candidates = [syndrome, syndrome | CHECKSUM_FLAG];
    let mut found = Vec::new();
    for k in 0..len_bytes {
        for s in &mut candidates {
            // An error byte `e` leaves `forward[e]`, whose top byte identifies `e`.
            let e = t.by_top_byte[(*s >> 56) as usize];
            if e != 0 && t.forward[e as usize] == *s && found.len() < EXPLANATIONS_MAX {
                found.push(ByteError {
                    offset_bytes: len_bytes - 1 - k,
                    xor: e,
                });
            }
            *s = unshift_zero_byte(&t, *s);
        }
    }
    found.reverse();
    found
}

/// Names the part of the logical LTX stream at `offset_bytes`, e.g. `header field Commit`
/// or `page frame #3 (pgno 7), data byte 100`. `pgnos` are the page numbers in file order.
pub fn describe_offset(header: &Header, pgnos: &[u32], offset_bytes: u64) -> String {
    const FIELDS: [(u64, &str); 14] = [
        (0, "magic"),
        (4, "flags"),
        (8, "page size"),
        (12, "commit"),
        (16, "min TXID"),
        (24, "max TXID"),
        (32, "timestamp"),
        (40, "pre-apply checksum"),
        (48, "WAL offset"),
        (56, "WAL size"),
        (64, "WAL salt 1"),
        (68, "WAL salt 2"),
        (72, "node ID"),
        (80, "reserved"),
    ];
    let header_len = HEADER_SIZE as u64;
    if offset_bytes < header_len {
        let (start, name) = FIELDS
            .iter()
            .rev()
            .find(|(start, _)| *start <= offset_bytes)
            .copied()
            .unwrap_or((0, "magic"));
        return format!(
            "header byte {offset_bytes} (field {name}, byte {})",
            offset_bytes - start
        );
    }
    let frame_len = 4 + u64::from(header.page_size);
    let pages_len = frame_len * pgnos.len() as u64;
    let rel = offset_bytes - header_len;
    if rel < pages_len {
        let index = rel / frame_len;
        let within = rel % frame_len;
        let pgno = pgnos[index as usize];
        return if within < 4 {
            format!("page frame #{index} (pgno {pgno}), page number field")
        } else {
            format!(
                "page frame #{index} (pgno {pgno}), data byte {}",
                within - 4
            )
        };
    }
    let rel = rel - pages_len;
    if rel < 4 {
        "the end-of-pages marker".to_string()
    } else {
        format!("trailer post-apply checksum, byte {}", rel - 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::checksum::CRC64;

    #[test]
    fn finds_every_single_byte_flip() {
        let data: Vec<u8> = (0..2000u32).map(|i| (i * 31 % 251) as u8).collect();
        let good = CHECKSUM_FLAG | CRC64.checksum(&data);
        for offset in [0usize, 1, 99, 100, 1000, 1998, 1999] {
            for xor in [0x01u8, 0x80, 0xff, 0x5a] {
                let mut bad = data.clone();
                bad[offset] ^= xor;
                let now = CHECKSUM_FLAG | CRC64.checksum(&bad);
                let found = locate_byte_errors(good, now, data.len() as u64);
                let truth = ByteError {
                    offset_bytes: offset as u64,
                    xor,
                };
                assert!(
                    found.contains(&truth),
                    "offset {offset} xor {xor:#x}: {found:?}"
                );
                assert!(found.len() <= 2, "offset {offset} xor {xor:#x}: {found:?}");
                if xor == 0x80 && offset == 0 {
                    // The polynomial's own shape: 0x80 at 0 looks like 0xd8 eight bytes on.
                    assert_eq!(
                        found[1],
                        ByteError {
                            offset_bytes: 8,
                            xor: 0xd8
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn two_flips_or_a_wrong_checksum_are_not_explained() {
        let data = vec![7u8; 500];
        let good = CHECKSUM_FLAG | CRC64.checksum(&data);
        let mut bad = data.clone();
        bad[10] ^= 1;
        bad[400] ^= 1;
        let now = CHECKSUM_FLAG | CRC64.checksum(&bad);
        assert_eq!(locate_byte_errors(good, now, 500), vec![]);
        assert_eq!(
            locate_byte_errors(good ^ 0x0102_0304_0506, good, 500),
            vec![]
        );
    }

    #[test]
    fn describes_offsets() {
        let h = Header {
            page_size: 512,
            ..Header::new()
        };
        let pgnos = [3, 9];
        assert_eq!(
            describe_offset(&h, &pgnos, 13),
            "header byte 13 (field commit, byte 1)"
        );
        assert_eq!(
            describe_offset(&h, &pgnos, 100),
            "page frame #0 (pgno 3), page number field"
        );
        assert_eq!(
            describe_offset(&h, &pgnos, 100 + 516 + 4 + 10),
            "page frame #1 (pgno 9), data byte 10"
        );
        assert_eq!(
            describe_offset(&h, &pgnos, 100 + 2 * 516),
            "the end-of-pages marker"
        );
        assert_eq!(
            describe_offset(&h, &pgnos, 100 + 2 * 516 + 4 + 7),
            "trailer post-apply checksum, byte 7"
        );
    }
}
