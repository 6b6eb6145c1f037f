//! CRC-64/GO-ISO checksums of pages, databases and files (spec §1.7).
//!
//! Go's `hash/crc64` with the ISO table is the catalogue algorithm CRC-64/GO-ISO. We use the
//! `crc` crate's slice-by-16 tables: the `checksum` bench compares it with slice-by-1 and
//! table-less variants; slice-by-16 is the fastest on this machine (numbers in the bench doc).

use crate::types::CHECKSUM_FLAG;
use crc::{CRC_64_GO_ISO, Crc, Digest, Table};

/// The CRC engine for every LTX checksum.
pub static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_GO_ISO);

/// An incremental CRC-64/GO-ISO hasher (the raw CRC, without the checksum flag).
pub type Hasher = Digest<'static, u64, Table<16>>;

/// Starts a new incremental hasher.
pub fn hasher() -> Hasher {
    CRC64.digest()
}

/// The lock page (holding SQLite's PENDING_BYTE) is never stored in LTX files and is left
/// out of every checksum (spec §0).
pub use crate::sqlite::lock_pgno;

/// `FLAG | crc64(u32_be(pgno) ‖ data)`: the checksum of one page.
pub fn page_checksum(pgno: u32, data: &[u8]) -> u64 {
    let mut digest = CRC64.digest();
    digest.update(&pgno.to_be_bytes());
    digest.update(data);
    CHECKSUM_FLAG | digest.finalize()
}

/// Accumulates the rolling database checksum: XOR of page checksums, flag set.
///
/// XOR is its own inverse, so a page can be removed by folding in its old checksum again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollingChecksum(u64);

impl Default for RollingChecksum {
    fn default() -> Self {
        RollingChecksum(CHECKSUM_FLAG)
    }
}

impl RollingChecksum {
    /// The checksum of an empty database: `0x8000000000000000`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds in (or out) one page checksum as computed by [`page_checksum`].
    pub fn fold(&mut self, page_checksum: u64) {
        self.0 = (self.0 ^ page_checksum) | CHECKSUM_FLAG;
    }

    /// Folds in a page by content.
    pub fn add_page(&mut self, pgno: u32, data: &[u8]) {
        self.fold(page_checksum(pgno, data));
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

/// The rolling checksum of a whole database image (`pages.len()` must be a multiple of
/// `page_size`); the lock page is excluded.
pub fn database_checksum(image: &[u8], page_size: u32) -> u64 {
    let lock = lock_pgno(page_size);
    let mut sum = RollingChecksum::new();
    for (index, page) in image.chunks_exact(page_size as usize).enumerate() {
        let pgno = index as u32 + 1;
        if pgno != lock {
            sum.add_page(pgno, page);
        }
    }
    sum.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_catalogue_check_value() {
        // CRC-64/GO-ISO check value over ASCII "123456789".
        assert_eq!(CRC64.checksum(b"123456789"), 0xb90956c775a41001);
    }

    #[test]
    fn lock_page_numbers() {
        assert_eq!(lock_pgno(512), 2_097_153);
        assert_eq!(lock_pgno(4096), 262_145);
        assert_eq!(lock_pgno(65536), 16_385);
    }

    #[test]
    fn vector_checksum_reader_three_pages() {
        // ltx TestChecksumReader: pages 1..3 of 512 bytes filled with 0x01, 0x02, 0x03.
        let mut image = vec![1u8; 512];
        image.extend_from_slice(&[2u8; 512]);
        image.extend_from_slice(&[3u8; 512]);
        assert_eq!(database_checksum(&image, 512), 0xefffffffecd99000);
    }

    #[test]
    fn vector_single_page_checksums() {
        // litefs TestFileBackupClient_PosMap: page checksum of pgno 1.
        assert_eq!(page_checksum(1, &[0x01; 512]), 0xe4e4aaa102377eee);
        assert_eq!(page_checksum(1, &[0x05; 512]), 0x99b1d11ab98cc555);
    }

    #[test]
    fn vector_decoder_two_pages() {
        // ltx TestDecoder: pgno 1 = 1024 × '2', pgno 2 = 1024 × '3'.
        let mut image = vec![b'2'; 1024];
        image.extend_from_slice(&[b'3'; 1024]);
        assert_eq!(database_checksum(&image, 1024), 0xe1899b6d587aaaaa);
    }

    #[test]
    fn empty_database_checksum_is_flag() {
        assert_eq!(database_checksum(&[], 4096), CHECKSUM_FLAG);
    }

    #[test]
    fn folding_twice_removes_a_page() {
        let mut sum = RollingChecksum::new();
        sum.add_page(1, &[7; 512]);
        sum.add_page(2, &[8; 512]);
        sum.add_page(2, &[8; 512]);
        let mut one = RollingChecksum::new();
        one.add_page(1, &[7; 512]);
        assert_eq!(sum, one);
    }
}
