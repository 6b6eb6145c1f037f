//! Readers for SQLite's own files: the database header, the WAL and the rollback journal.
//!
//! Pure code: no clock, no threads, no logging, no file system. The database header is parsed
//! from a byte slice (it is 100 bytes). The WAL and journal readers take `impl Read + Seek`
//! because both files can be as large as the database (a `VACUUM` journals every page, a WAL
//! with checkpoints held off grows without bound): they read one frame at a time into a buffer
//! bounded by the validated page size, and seek to explicit offsets so that the offsets they
//! report are file offsets the caller can store (LiteFS keeps `wal.offset`, spec §3.7). Tests
//! and small inputs use `std::io::Cursor<&[u8]>`.
//!
//! Every reader follows SQLite (3.46, `pager.c` / `wal.c`) on what counts as valid and where a
//! file ends; where LiteFS (spec §2.4) differs, the item's doc says which rule is used and why.
//! Damage never panics: a short read, a salt or checksum mismatch ends a scan cleanly (`None`
//! plus an end reason); only structurally impossible input (bad magic, unsupported version,
//! page size mismatch) or an I/O error is an [`Error`].
//!
//! Fixtures in the tests are written by real SQLite (rusqlite with the bundled library).

pub mod db_header;
pub mod journal;
pub mod shm;
pub mod wal;

#[cfg(test)]
pub(crate) mod test_util;

use std::io::{self, Read};

pub use db_header::DbHeader;
pub use journal::{
    JournalEnd, JournalHeader, JournalReader, JournalRecord, journal_checksum, rollback,
};
pub use wal::{
    ChecksumOrder, PartialTxn, ReadFrames, SliceFrames, TxnScan, WalChecksum, WalCursor, WalFrame,
    WalFrameHeader, WalFrames, WalHeader, WalScanEnd, WalScanner, WalTxn, checkpoint_plan,
    committed_transactions,
};

/// Database-file lock byte taken first by every reader and writer (`PENDING_BYTE`).
pub const PENDING_BYTE: u64 = 0x4000_0000;
/// Database-file lock byte held by the one writer with a pending transaction.
pub const RESERVED_BYTE: u64 = PENDING_BYTE + 1;
/// First byte of the database-file SHARED lock range.
pub const SHARED_FIRST: u64 = PENDING_BYTE + 2;
/// Length in bytes of the SHARED lock range (`SHARED_SIZE`).
pub const SHARED_SIZE: u64 = 510;

/// `-shm` lock byte held exclusively by the one WAL writer (`WAL_WRITE_LOCK`).
pub const WAL_WRITE_LOCK: u64 = 120;
/// `-shm` lock byte held by a checkpointer.
pub const WAL_CKPT_LOCK: u64 = 121;
/// `-shm` lock byte held while rebuilding the WAL index.
pub const WAL_RECOVER_LOCK: u64 = 122;
/// `-shm` lock bytes of the five read marks, `WAL_READ_LOCK(i)` = 123 + i.
pub const WAL_READ_LOCK0: u64 = 123;
/// Number of WAL read-mark lock bytes (123..=127).
pub const WAL_READ_LOCK_COUNT: u64 = 5;
/// `-shm` "dead man switch" byte: tells the first connection to reset the index.
pub const WAL_DMS_LOCK: u64 = 128;

/// Smallest and largest page size SQLite accepts.
pub const PAGE_SIZE_MIN_BYTES: u32 = 512;
/// See [`PAGE_SIZE_MIN_BYTES`].
pub const PAGE_SIZE_MAX_BYTES: u32 = 65536;

/// What went wrong reading a SQLite file. Messages name the field and the numbers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database header too short: {len_bytes} bytes, need 100")]
    DbHeaderShort { len_bytes: usize },
    #[error("invalid database header magic (expected \"SQLite format 3\\0\")")]
    DbHeaderMagic,
    #[error("invalid {what} page size: {page_size_bytes} (must be a power of two in 512..=65536)")]
    PageSize {
        what: &'static str,
        page_size_bytes: u32,
    },
    /// Text as Go LiteFS `WALReader.ReadHeader`.
    #[error("invalid wal header magic: {0:x}")]
    WalMagic(u32),
    /// Text as Go LiteFS `WALReader.ReadHeader`.
    #[error("unsupported wal version: {0}")]
    WalVersion(u32),
    #[error(
        "wal offset {offset_bytes} is not a frame boundary (header 32 bytes, frame {frame_size_bytes} bytes)"
    )]
    WalOffset {
        offset_bytes: u64,
        frame_size_bytes: u64,
    },
    /// Text as Go LiteFS (spec §2.4).
    #[error("journal header page size ({journal}) does not match database ({db})")]
    JournalPageSizeMismatch { journal: u32, db: u32 },
    #[error(
        "journal header page size is 0 (pre-3.5.8 journal) and the database page size is unknown"
    )]
    JournalPageSizeUnknown,
    #[error("read {file}: {source}")]
    Io {
        file: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Checks that `page_size_bytes` is a power of two in 512..=65536. `what` names the field in
/// the error ("database header", "wal header", "journal header").
pub fn validate_page_size(what: &'static str, page_size_bytes: u32) -> Result<u32, Error> {
    if (PAGE_SIZE_MIN_BYTES..=PAGE_SIZE_MAX_BYTES).contains(&page_size_bytes)
        && page_size_bytes.is_power_of_two()
    {
        Ok(page_size_bytes)
    } else {
        Err(Error::PageSize {
            what,
            page_size_bytes,
        })
    }
}

/// The page holding byte [`PENDING_BYTE`]: SQLite never stores data there, LTX skips it, and a
/// journal record naming it ends the journal (`PAGER_SJ_PGNO`).
/// E.g. 4096 → 262145, 512 → 2097153, 65536 → 16385.
///
/// `page_size_bytes` must be non-zero (validated page sizes are); 0 yields `u32::MAX`.
pub fn lock_pgno(page_size_bytes: u32) -> u32 {
    match (PENDING_BYTE as u32).checked_div(page_size_bytes) {
        Some(pages) => pages.saturating_add(1),
        None => u32::MAX,
    }
}

/// Pages 1..=`commit` but the lock page: the pages of a snapshot or a whole image.
pub fn pages_through(commit: u32, page_size_bytes: u32) -> u32 {
    commit - u32::from(commit >= lock_pgno(page_size_bytes))
}

/// Reads until `buf` is full or the reader reports end of file; returns the bytes read.
/// Unlike `read_exact`, a short file is not an error here: every caller treats a short read as
/// the clean end of a scan, as SQLite does.
fn read_full(reader: &mut impl Read, buf: &mut [u8], file: &'static str) -> Result<usize, Error> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled = filled.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(Error::Io { file, source }),
        }
    }
    Ok(filled.min(buf.len()))
}

/// Big-endian u32 at `at`; 0 if out of range (callers pass fixed-size headers, so it never is).
fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let field = at
        .checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .and_then(|s| <[u8; 4]>::try_from(s).ok());
    field.map_or(0, u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_pgno_matches_spec_examples() {
        assert_eq!(lock_pgno(4096), 262145);
        assert_eq!(lock_pgno(512), 2097153);
        assert_eq!(lock_pgno(65536), 16385);
        assert_eq!(lock_pgno(0), u32::MAX);
        assert_eq!(pages_through(0, 4096), 0);
        assert_eq!(pages_through(262_144, 4096), 262_144, "up to the lock page");
        assert_eq!(
            pages_through(262_145, 4096),
            262_144,
            "the lock page is not one"
        );
        assert_eq!(pages_through(262_146, 4096), 262_145);
    }

    #[test]
    fn page_size_validation() {
        for ok in [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536] {
            assert_eq!(validate_page_size("test", ok).unwrap(), ok);
        }
        for bad in [0, 1, 256, 511, 513, 3000, 131072, u32::MAX] {
            let err = validate_page_size("wal header", bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid wal header page size: {bad} (must be a power of two in 512..=65536)"
                )
            );
        }
    }

    #[test]
    fn lock_byte_constants() {
        assert_eq!(RESERVED_BYTE, 0x4000_0001);
        assert_eq!(SHARED_FIRST, 0x4000_0002);
        assert_eq!(WAL_READ_LOCK0 + WAL_READ_LOCK_COUNT - 1, 127);
        assert_eq!(WAL_DMS_LOCK, 128);
    }

    #[test]
    fn be_u32_out_of_range_is_zero() {
        assert_eq!(be_u32(&[1, 2, 3, 4], 0), 0x0102_0304);
        assert_eq!(be_u32(&[1, 2, 3], 0), 0);
        assert_eq!(be_u32(&[], usize::MAX), 0);
    }
}
