//! The per-page checksum cache of one database and the rolling checksum it adds up to.
//!
//! LiteFS keeps every page's checksum in memory so a commit costs one CRC per written page,
//! not a pass over the database (spec §1.7). XOR is its own inverse, so replacing a page is
//! `rolling ^= old ^ new`.

use crate::ltx::page_checksum;
use crate::types::CHECKSUM_FLAG;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::database_checksum;

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
