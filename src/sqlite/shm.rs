//! The WAL-index header LiteFS writes into `-shm` after applying a transaction (spec §3.10).
//! Pure: bytes in, bytes out.
//!
//! SQLite keeps two copies of a 48-byte header at the start of the shared-memory file, in the
//! machine's byte order, followed by the 40-byte checkpoint info. A reader opening a read
//! transaction compares the header with its cached copy; a changed `iChange` makes it drop its
//! page cache, and `mxFrame = 0` tells it the WAL holds nothing, so every page is read from
//! the database file — which is where a replica's applied pages are.

use super::wal::{ChecksumOrder, WalChecksum};

/// Bytes of the block LiteFS rewrites (the first WAL-index page).
pub const SHM_BLOCK_SIZE_BYTES: usize = 32 * 1024;
/// One copy of the WAL-index header (`WalIndexHdr`).
pub const WAL_INDEX_HEADER_SIZE_BYTES: usize = 48;
/// Both header copies and the checkpoint info (`WalCkptInfo`, 40 bytes).
pub const WAL_INDEX_PREFIX_SIZE_BYTES: usize = 2 * WAL_INDEX_HEADER_SIZE_BYTES + 40;
/// `iVersion` (`WALINDEX_MAX_VERSION`).
pub const WAL_INDEX_VERSION: u32 = 3_007_000;
/// Read mark for "no reader may use this slot" (`READMARK_NOT_USED`).
const READ_MARK_NOT_USED: u32 = 0xFFFF_FFFF;

/// What LiteFS knows about the WAL when it rewrites the index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalIndexState {
    pub page_size_bytes: u32,
    pub page_count: u32,
    /// The running WAL checksum after the last frame (0 when the WAL is empty).
    pub frame_checksum: WalChecksum,
    pub salt1: u32,
    pub salt2: u32,
}

/// Rewrites the first [`WAL_INDEX_PREFIX_SIZE_BYTES`] of `block` (the current start of `-shm`,
/// zero-filled where the file was shorter) for an empty WAL over a database of
/// `state.page_count` pages: `iChange` advances, `bigEndCksum` is kept, and every reader slot
/// but slot 0 is marked unused. Bytes after the prefix are left alone.
pub fn rewrite_wal_index(block: &mut [u8], state: &WalIndexState) {
    if block.len() < WAL_INDEX_PREFIX_SIZE_BYTES {
        // Callers pass SHM_BLOCK_SIZE_BYTES; a shorter slice has no room for the index.
        return;
    }
    let word =
        |at: usize| u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
    let change = word(8).wrapping_add(1);
    let big_endian_checksum = block[13];
    let mut header = [0u8; WAL_INDEX_HEADER_SIZE_BYTES];
    put(&mut header, 0, WAL_INDEX_VERSION);
    put(&mut header, 8, change);
    header[12] = 1; // isInit
    header[13] = big_endian_checksum;
    // szPage is a u16: 65536 is stored as 1 (as in the database header).
    let page_size_code = if state.page_size_bytes == 65536 {
        1
    } else {
        state.page_size_bytes as u16
    };
    header[14..16].copy_from_slice(&page_size_code.to_le_bytes());
    put(&mut header, 16, 0); // mxFrame: the WAL is empty
    put(&mut header, 20, state.page_count);
    put(&mut header, 24, state.frame_checksum.s1);
    put(&mut header, 28, state.frame_checksum.s2);
    put(&mut header, 32, state.salt1);
    put(&mut header, 36, state.salt2);
    // The header's own checksum, over bytes 0..40 read as native (little-endian) words.
    let sum = WalChecksum::default().update(ChecksumOrder::LittleEndian, &header[..40]);
    put(&mut header, 40, sum.s1);
    put(&mut header, 44, sum.s2);
    block[..WAL_INDEX_HEADER_SIZE_BYTES].copy_from_slice(&header);
    block[WAL_INDEX_HEADER_SIZE_BYTES..2 * WAL_INDEX_HEADER_SIZE_BYTES].copy_from_slice(&header);
    // Checkpoint info: nBackfill 0, aReadMark {0, unused ×4}, aLock 0, nBackfillAttempted 0.
    let ckpt = &mut block[2 * WAL_INDEX_HEADER_SIZE_BYTES..WAL_INDEX_PREFIX_SIZE_BYTES];
    ckpt.fill(0);
    for slot in 1..5 {
        put(ckpt, 4 + 4 * slot, READ_MARK_NOT_USED);
    }
}

fn put(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(block: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(block[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn rewrite_lays_out_the_header_as_sqlite_reads_it() {
        let mut block = vec![0xAAu8; SHM_BLOCK_SIZE_BYTES];
        block[8..12].copy_from_slice(&41u32.to_le_bytes());
        block[13] = 0;
        let state = WalIndexState {
            page_size_bytes: 4096,
            page_count: 7,
            frame_checksum: WalChecksum { s1: 5, s2: 6 },
            salt1: 0x1122_3344,
            salt2: 0x5566_7788,
        };
        rewrite_wal_index(&mut block, &state);
        assert_eq!(le(&block, 0), WAL_INDEX_VERSION);
        assert_eq!(le(&block, 4), 0);
        assert_eq!(le(&block, 8), 42, "iChange advances by one");
        assert_eq!((block[12], block[13]), (1, 0));
        assert_eq!(u16::from_le_bytes([block[14], block[15]]), 4096);
        assert_eq!((le(&block, 16), le(&block, 20)), (0, 7));
        assert_eq!((le(&block, 24), le(&block, 28)), (5, 6));
        assert_eq!((le(&block, 32), le(&block, 36)), (0x1122_3344, 0x5566_7788));
        let sum = WalChecksum::default().update(ChecksumOrder::LittleEndian, &block[..40]);
        assert_eq!((le(&block, 40), le(&block, 44)), (sum.s1, sum.s2));
        assert_eq!(block[..48], block[48..96], "both copies equal");
        let marks: Vec<u32> = (0..5).map(|i| le(&block, 100 + 4 * i)).collect();
        assert_eq!(le(&block, 96), 0, "nBackfill");
        assert_eq!(marks, [0, u32::MAX, u32::MAX, u32::MAX, u32::MAX]);
        assert!(
            block[120..136].iter().all(|&b| b == 0),
            "locks and nBackfillAttempted"
        );
        assert!(block[136..].iter().all(|&b| b == 0xAA), "the rest is kept");
    }

    #[test]
    fn page_size_65536_is_stored_as_1_and_big_endian_flag_is_kept() {
        let mut block = vec![0u8; SHM_BLOCK_SIZE_BYTES];
        block[13] = 1;
        let state = WalIndexState {
            page_size_bytes: 65536,
            ..WalIndexState::default()
        };
        rewrite_wal_index(&mut block, &state);
        assert_eq!(u16::from_le_bytes([block[14], block[15]]), 1);
        assert_eq!(block[13], 1);
        assert_eq!(le(&block, 8), 1, "iChange from a zeroed file");
    }

    #[test]
    fn short_block_is_left_alone() {
        let mut block = vec![7u8; 100];
        rewrite_wal_index(&mut block, &WalIndexState::default());
        assert!(block.iter().all(|&b| b == 7));
    }
}
