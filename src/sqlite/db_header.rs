//! The 100-byte header at the start of every SQLite database file
//! (<https://www.sqlite.org/fileformat.html#the_database_header>). All integers big-endian.

use super::{Error, be_u32, validate_page_size};

/// Size in bytes of the database header.
pub const DB_HEADER_SIZE_BYTES: usize = 100;
/// The first 16 bytes of every database file.
pub const DB_HEADER_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Offset of the in-header database size in pages (LiteFS reads it as the commit size).
pub const DB_PAGE_COUNT_OFFSET: usize = 28;

/// The fields of the database header that LiteFS uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbHeader {
    /// Offset 16, BE u16; the stored value 1 means 65536. Validated.
    pub page_size_bytes: u32,
    /// Offset 18: 1 = rollback journal, 2 = WAL.
    pub write_version: u8,
    /// Offset 19: 1 = rollback journal, 2 = WAL.
    pub read_version: u8,
    /// Offset 20: bytes reserved at the end of each page.
    pub reserved_bytes: u8,
    /// Offset 24: incremented by every rollback-journal commit; replicas detect changes by it.
    pub file_change_counter: u32,
    /// Offset 28: database size in pages. SQLite trusts it only when `version_valid_for` equals
    /// `file_change_counter`; LiteFS (and this struct) report it as stored.
    pub page_count: u32,
    /// Offset 40: schema cookie (LiteFS import resets it to 0 so connections reload).
    pub schema_cookie: u32,
    /// Offset 92: the change counter value at which `sqlite_version_number` was written.
    pub version_valid_for: u32,
    /// Offset 96: `SQLITE_VERSION_NUMBER` of the library that last wrote the file.
    pub sqlite_version_number: u32,
}

impl DbHeader {
    /// Parses the start of a database file.
    ///
    /// - empty input → `Ok(None)`: page size and count unknown (a missing or new database);
    /// - fewer than 100 bytes → [`Error::DbHeaderShort`]; wrong magic → [`Error::DbHeaderMagic`]
    ///   (both mean "invalid header" in spec §2.4 step 1: LiteFS clears the data files);
    /// - a page size field that is not a power of two in 512..=65536 → [`Error::PageSize`].
    ///   LiteFS does not check this; a file with a valid magic and a bad page size is corrupt,
    ///   and the caller decides (it must not be mistaken for the §2.4 "invalid header" case).
    ///
    /// Bytes past the first 100 are ignored, so a whole page 1 can be passed.
    pub fn parse(bytes: &[u8]) -> Result<Option<DbHeader>, Error> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let Some(header) = bytes.get(..DB_HEADER_SIZE_BYTES) else {
            return Err(Error::DbHeaderShort {
                len_bytes: bytes.len(),
            });
        };
        if header.get(..16) != Some(DB_HEADER_MAGIC.as_slice()) {
            return Err(Error::DbHeaderMagic);
        }
        let byte = |at: usize| header.get(at).copied().unwrap_or(0);
        let raw_page_size = u16::from_be_bytes([byte(16), byte(17)]);
        // SQLite stores 65536 as 1 because it does not fit in a u16.
        let page_size_bytes = match raw_page_size {
            1 => 65536,
            n => u32::from(n),
        };
        Ok(Some(DbHeader {
            page_size_bytes: validate_page_size("database header", page_size_bytes)?,
            write_version: byte(18),
            read_version: byte(19),
            reserved_bytes: byte(20),
            file_change_counter: be_u32(header, 24),
            page_count: be_u32(header, DB_PAGE_COUNT_OFFSET),
            schema_cookie: be_u32(header, 40),
            version_valid_for: be_u32(header, 92),
            sqlite_version_number: be_u32(header, 96),
        }))
    }

    /// True when the database is in WAL mode: bytes 18 and 19 are both 2 (spec §2.4 step 1).
    pub fn is_wal(&self) -> bool {
        self.write_version == 2 && self.read_version == 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made header, one row per field.
    fn header_bytes() -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"SQLite format 3\0"); //  0: magic
        h.extend_from_slice(&[0x10, 0x00]); //            16: page size 4096
        h.extend_from_slice(&[2, 2]); //                  18: write / read version (WAL)
        h.push(0); //                                     20: reserved bytes per page
        h.extend_from_slice(&[64, 32, 32]); //            21: payload fractions
        h.extend_from_slice(&7u32.to_be_bytes()); //      24: file change counter
        h.extend_from_slice(&3u32.to_be_bytes()); //      28: page count
        h.extend_from_slice(&0u32.to_be_bytes()); //      32: first freelist trunk page
        h.extend_from_slice(&0u32.to_be_bytes()); //      36: freelist page count
        h.extend_from_slice(&5u32.to_be_bytes()); //      40: schema cookie
        h.extend_from_slice(&4u32.to_be_bytes()); //      44: schema format
        h.extend_from_slice(&[0; 44]); //                 48..92: cache size .. reserved
        h.extend_from_slice(&7u32.to_be_bytes()); //      92: version-valid-for
        h.extend_from_slice(&3_046_000u32.to_be_bytes()); // 96: SQLITE_VERSION_NUMBER
        assert_eq!(h.len(), DB_HEADER_SIZE_BYTES);
        h
    }

    #[test]
    fn parses_hand_made_header() {
        let h = DbHeader::parse(&header_bytes()).unwrap().unwrap();
        assert_eq!(
            h,
            DbHeader {
                page_size_bytes: 4096,
                write_version: 2,
                read_version: 2,
                reserved_bytes: 0,
                file_change_counter: 7,
                page_count: 3,
                schema_cookie: 5,
                version_valid_for: 7,
                sqlite_version_number: 3_046_000,
            }
        );
        assert!(h.is_wal());
    }

    #[test]
    fn page_size_one_means_65536() {
        let mut b = header_bytes();
        b[16..18].copy_from_slice(&[0x00, 0x01]);
        assert_eq!(DbHeader::parse(&b).unwrap().unwrap().page_size_bytes, 65536);
    }

    #[test]
    fn rollback_mode_when_versions_not_both_2() {
        let mut b = header_bytes();
        b[18] = 1;
        assert!(!DbHeader::parse(&b).unwrap().unwrap().is_wal());
        b[18] = 2;
        b[19] = 1;
        assert!(!DbHeader::parse(&b).unwrap().unwrap().is_wal());
    }

    #[test]
    fn empty_short_bad_magic_bad_page_size() {
        assert!(DbHeader::parse(&[]).unwrap().is_none());
        let b = header_bytes();
        for len in 1..DB_HEADER_SIZE_BYTES {
            let err = DbHeader::parse(&b[..len]).unwrap_err();
            assert!(matches!(err, Error::DbHeaderShort { len_bytes } if len_bytes == len));
        }
        assert_eq!(
            DbHeader::parse(&b[..50]).unwrap_err().to_string(),
            "database header too short: 50 bytes, need 100"
        );
        let mut bad = b.clone();
        bad[0] = b's';
        assert!(matches!(DbHeader::parse(&bad), Err(Error::DbHeaderMagic)));
        for raw in [[0u8, 0], [0x03, 0x00], [0x00, 0x02], [0x01, 0x01]] {
            let mut bad = b.clone();
            bad[16..18].copy_from_slice(&raw);
            assert!(matches!(DbHeader::parse(&bad), Err(Error::PageSize { .. })));
        }
    }

    #[test]
    fn real_sqlite_headers() {
        let _serial = crate::sqlite::test_util::sqlite_lock();
        for (page_size, wal) in [(512u32, false), (4096, true), (65536, true), (65536, false)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(&format!("PRAGMA page_size={page_size};"))
                .unwrap();
            if wal {
                conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            }
            conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(3000));")
                .unwrap();
            let pages: u32 = conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            drop(conn);
            let bytes = std::fs::read(&path).unwrap();
            let h = DbHeader::parse(&bytes).unwrap().unwrap();
            assert_eq!(h.page_size_bytes, page_size);
            assert_eq!(h.is_wal(), wal);
            assert_eq!(h.page_count, pages);
            assert_eq!(h.version_valid_for, h.file_change_counter);
        }
    }
}
