//! The per-page checksum cache of one database and the rolling checksum it adds up to.
//!
//! LiteFS keeps every page's checksum in memory so a commit costs one CRC per written page,
//! not a pass over the database (spec §1.7). XOR is its own inverse, so replacing a page is
//! `rolling ^= old ^ new`.

use crate::ltx::{crc64, page_checksum};
use crate::types::{CHECKSUM_FLAG, Checksum, Pos, TxId};

#[derive(Debug, Default)]
pub struct PageChecksums {
    /// Index `pgno - 1`; 0 means "no page" (the lock page, or beyond the end).
    by_page: Vec<u64>,
    rolling: u64,
}

impl PageChecksums {
    /// Records page `pgno`'s content.
    pub fn set(&mut self, pgno: u32, data: &[u8]) {
        self.set_checksum(pgno, page_checksum(pgno, data));
    }

    pub fn set_checksum(&mut self, pgno: u32, checksum: u64) {
        let index = pgno as usize - 1;
        if self.by_page.len() <= index {
            self.by_page.resize(index + 1, 0);
        }
        self.rolling ^= self.by_page[index] ^ checksum;
        self.by_page[index] = checksum;
    }

    /// Pages the table covers (the database's page count once it is settled).
    pub fn len(&self) -> usize {
        self.by_page.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_page.is_empty()
    }

    /// The cached checksum of `pgno`, if any.
    pub fn get(&self, pgno: u32) -> Option<u64> {
        match self.by_page.get(pgno as usize - 1) {
            Some(&c) if c != 0 => Some(c),
            _ => None,
        }
    }

    /// Drops every page after `page_count`.
    pub fn truncate(&mut self, page_count: u32) {
        for &c in self.by_page.iter().skip(page_count as usize) {
            self.rolling ^= c;
        }
        self.by_page.truncate(page_count as usize);
    }

    /// The database checksum as it would be after [`Self::truncate`] to `page_count`.
    pub fn value_truncated(&self, page_count: u32) -> u64 {
        let beyond = self
            .by_page
            .iter()
            .skip(page_count as usize)
            .fold(0, |acc, c| acc ^ c);
        CHECKSUM_FLAG | (self.rolling ^ beyond)
    }

    pub fn clear(&mut self) {
        *self = PageChecksums::default();
    }

    /// The database checksum: `FLAG | XOR of all page checksums`.
    pub fn value(&self) -> u64 {
        CHECKSUM_FLAG | self.rolling
    }
}

/// The database file a saved table describes, as `stat` reports it. Any write changes the
/// change time (which no tool can set back), so an equal identity means unchanged content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileIdentity {
    pub len_bytes: u64,
    pub ino: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileIdentity {
    pub fn of(meta: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        let ns = |sec: i64, nsec: i64| i128::from(sec) * 1_000_000_000 + i128::from(nsec);
        FileIdentity {
            len_bytes: meta.len(),
            ino: meta.ino(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A page checksum table saved at a clean close (`dbs/<name>/page-checksums`), so the next
/// start need not read the whole database to rebuild it (ARCHITECTURE §4.2). Ours, not
/// LiteFS's: Go LiteFS ignores the file, and a missing or unusable one only costs a scan.
#[derive(Debug)]
pub struct SavedTable {
    pub page_size: u32,
    /// The position the table adds up to.
    pub pos: Pos,
    pub file: FileIdentity,
    pub checksums: PageChecksums,
}

/// `LFRS-PCK`, then version 1: the layout below, all little-endian.
const SAVED_MAGIC: &[u8; 8] = b"LFRS-PCK";
const SAVED_VERSION: u32 = 1;
/// magic, version, page size, page count, TXID, checksum, length, inode, mtime, ctime.
const SAVED_HEADER_LEN: usize = 8 + 4 + 4 + 4 + 8 + 8 + 8 + 8 + 16 + 16;

impl SavedTable {
    /// Header, one `u64` per page (0 for none), then the CRC-64 of all of it.
    pub fn encode(&self) -> Vec<u8> {
        let pages = &self.checksums.by_page;
        let mut out = Vec::with_capacity(SAVED_HEADER_LEN + pages.len() * 8 + 8);
        out.extend_from_slice(SAVED_MAGIC);
        out.extend_from_slice(&SAVED_VERSION.to_le_bytes());
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.extend_from_slice(&(pages.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.pos.txid.0.to_le_bytes());
        out.extend_from_slice(&self.pos.post_apply_checksum.0.to_le_bytes());
        out.extend_from_slice(&self.file.len_bytes.to_le_bytes());
        out.extend_from_slice(&self.file.ino.to_le_bytes());
        out.extend_from_slice(&self.file.mtime_ns.to_le_bytes());
        out.extend_from_slice(&self.file.ctime_ns.to_le_bytes());
        for c in pages {
            out.extend_from_slice(&c.to_le_bytes());
        }
        let crc = crc64(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// `None` for anything but an intact table of this version whose pages add up to its
    /// position's checksum: a torn or foreign file is only a reason to scan.
    pub fn decode(bytes: &[u8]) -> Option<SavedTable> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
        if crc64(body) != u64::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut at = 0usize;
        let mut take = |n: usize| {
            let field = body.get(at..at + n);
            at += n;
            field
        };
        if take(8)? != SAVED_MAGIC {
            return None;
        }
        let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let i128_at = |b: &[u8]| i128::from_le_bytes(b.try_into().expect("16 bytes"));
        if u32_at(take(4)?) != SAVED_VERSION {
            return None;
        }
        let page_size = u32_at(take(4)?);
        let page_count = u32_at(take(4)?) as usize;
        let pos = Pos {
            txid: TxId(u64_at(take(8)?)),
            post_apply_checksum: Checksum(u64_at(take(8)?)),
        };
        let file = FileIdentity {
            len_bytes: u64_at(take(8)?),
            ino: u64_at(take(8)?),
            mtime_ns: i128_at(take(16)?),
            ctime_ns: i128_at(take(16)?),
        };
        let pages = take(page_count.checked_mul(8)?)?;
        if at != body.len() {
            return None;
        }
        let by_page: Vec<u64> = pages.chunks_exact(8).map(u64_at).collect();
        let rolling = by_page.iter().fold(0, |acc, c| acc ^ c);
        let checksums = PageChecksums { by_page, rolling };
        (checksums.value() == pos.post_apply_checksum.0).then_some(SavedTable {
            page_size,
            pos,
            file,
            checksums,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::database_checksum;

    fn saved_table() -> SavedTable {
        let mut checksums = PageChecksums::default();
        for pgno in [1, 2, 4] {
            checksums.set(pgno, &[pgno as u8; 512]);
        }
        SavedTable {
            page_size: 512,
            pos: Pos {
                txid: TxId(7),
                post_apply_checksum: Checksum(checksums.value()),
            },
            file: FileIdentity {
                len_bytes: 2048,
                ino: 12,
                mtime_ns: 1_764_000_000_123_456_789,
                ctime_ns: 1_764_000_000_123_456_790,
            },
            checksums,
        }
    }

    #[test]
    fn a_saved_table_round_trips() {
        let saved = saved_table();
        let back = SavedTable::decode(&saved.encode()).expect("decodes");
        assert_eq!(
            (back.page_size, back.pos, back.file),
            (saved.page_size, saved.pos, saved.file)
        );
        assert_eq!(back.checksums.by_page, saved.checksums.by_page);
        assert_eq!(back.checksums.value(), saved.checksums.value());
        assert_eq!(back.checksums.get(3), None);
    }

    #[test]
    fn a_torn_changed_or_inconsistent_table_is_refused() {
        let bytes = saved_table().encode();
        for len in [0, 7, 8, 60, bytes.len() - 1] {
            assert!(SavedTable::decode(&bytes[..len]).is_none(), "{len} bytes");
        }
        for at in [0, 9, 30, bytes.len() - 20, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1;
            assert!(
                SavedTable::decode(&flipped).is_none(),
                "bit flipped at {at}"
            );
        }
        // Intact, but its pages do not add up to its position: never trusted.
        let mut wrong = saved_table();
        wrong.pos.post_apply_checksum.0 ^= 1;
        assert!(SavedTable::decode(&wrong.encode()).is_none());
    }

    #[test]
    fn matches_full_recompute_through_updates_and_truncation() {
        let mut image: Vec<u8> = (0..5 * 512).map(|i| (i % 251) as u8).collect();
        let mut cache = PageChecksums::default();
        for (i, page) in image.chunks(512).enumerate() {
            cache.set(i as u32 + 1, page);
        }
        assert_eq!(cache.value(), database_checksum(&image, 512));
        image[600] ^= 0xff;
        cache.set(2, &image[512..1024]);
        assert_eq!(cache.value(), database_checksum(&image, 512));
        cache.truncate(3);
        image.truncate(3 * 512);
        assert_eq!(cache.value(), database_checksum(&image, 512));
        assert_eq!(cache.get(4), None);
        cache.truncate(0);
        assert_eq!(cache.value(), CHECKSUM_FLAG);
    }
}
