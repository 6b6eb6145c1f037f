//! The SQLite rollback journal (<https://www.sqlite.org/fileformat.html#the_rollback_journal>),
//! read the way SQLite's `pager_playback` reads a *hot* journal.
//!
//! Layout: one or more segments. Each starts with a 28-byte header at a sector-aligned offset;
//! the header occupies a whole sector, then come `nRec` records of `pgno u32 | page | checksum
//! u32` (all big-endian). The next header starts at the first sector boundary after the last
//! record. SQLite starts a new segment each time it syncs the journal in the middle of a
//! transaction (a cache spill: `syncJournal(pPager, 1)`), so multi-segment journals are normal.
//!
//! Rules, from SQLite 3.46 `readJournalHdr`, `pager_playback`, `pager_playback_one_page`:
//! - a header needs the magic (an all-zero PERSIST header therefore ends the journal) and the
//!   whole header sector must lie inside the file;
//! - the first header's page size (0 = "the database's", pre-3.5.8) and sector size must be
//!   powers of two in 512..=65536 and 32..=65536, else the journal holds nothing (the writer
//!   crashed before syncing the header) — no records, and the database is not truncated;
//! - SQLite writes each header with magic and `nRec` zeroed and fills both in (bytes 0..12)
//!   only when it syncs the segment, which it does before overwriting any database page the
//!   segment protects. So the newest, unsynced segment of an open transaction has no magic
//!   and is never played back (seen in the real-SQLite fixtures);
//! - `nRec` = 0xFFFFFFFF (no-sync journal) → records run to the end of the file;
//!   `nRec` = 0 → no records (`pager_playback` with `isHot`: nothing was synced, so nothing
//!   in the database needs undoing). Go LiteFS instead derives the count from the file size;
//!   on SQLite-written journals both replay the same pages to the same bytes;
//! - a record whose page number is 0 or the lock page, whose checksum is wrong, or that is cut
//!   short ends the **whole journal**, not just the segment (SQLite sets `journalOff = szJ`);
//! - a record for a page beyond the original database size is skipped unchecked (truncation
//!   removes that page anyway).

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};

use super::{Error, be_u32, lock_pgno, read_full, validate_page_size};

/// The 8 bytes at the start of every journal header.
pub const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
/// Size in bytes of the meaningful part of a journal header (the rest of its sector is padding).
pub const JOURNAL_HEADER_SIZE_BYTES: u64 = 28;
/// Sector sizes SQLite accepts in a journal header (`readJournalHdr`).
pub const SECTOR_SIZE_MIN_BYTES: u32 = 32;
/// See [`SECTOR_SIZE_MIN_BYTES`] (`MAX_SECTOR_SIZE`).
pub const SECTOR_SIZE_MAX_BYTES: u32 = 65536;
/// `nRec` value meaning "records run to the end of the file".
pub const NREC_TO_END_OF_FILE: u32 = 0xFFFF_FFFF;

/// One journal header as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalHeader {
    /// File offset of the header (a multiple of the sector size).
    pub offset_bytes: u64,
    /// Offset 8: record count as stored (see the module doc for 0 and 0xFFFFFFFF).
    pub nrec: u32,
    /// Offset 12: random checksum seed of this segment (`cksumInit`).
    pub nonce: u32,
    /// Offset 16: database size in pages before the transaction. Only the first header's is used.
    pub db_size_pages: u32,
    /// Offset 20: sector size. Only the first header's is used.
    pub sector_size_bytes: u32,
    /// Offset 24: page size, 0 in journals older than SQLite 3.5.8. Only the first header's is
    /// used.
    pub page_size_bytes: u32,
}

impl JournalHeader {
    /// Decodes a header found at `offset_bytes`; `None` if shorter than 28 bytes or the magic is
    /// missing. No range checks: [`JournalReader`] applies SQLite's.
    pub fn parse(bytes: &[u8], offset_bytes: u64) -> Option<JournalHeader> {
        let header = bytes.get(..JOURNAL_HEADER_SIZE_BYTES as usize)?;
        if header.get(..8)? != JOURNAL_MAGIC.as_slice() {
            return None;
        }
        Some(JournalHeader {
            offset_bytes,
            nrec: be_u32(header, 8),
            nonce: be_u32(header, 12),
            db_size_pages: be_u32(header, 16),
            sector_size_bytes: be_u32(header, 20),
            page_size_bytes: be_u32(header, 24),
        })
    }

    /// Encodes the 28 header bytes (for tests and writers).
    pub fn to_bytes(&self) -> [u8; 28] {
        let mut out = [0u8; 28];
        let words = [
            self.nrec,
            self.nonce,
            self.db_size_pages,
            self.sector_size_bytes,
            self.page_size_bytes,
        ];
        if let Some(magic) = out.get_mut(..8) {
            magic.copy_from_slice(&JOURNAL_MAGIC);
        }
        for (chunk, word) in out
            .get_mut(8..)
            .unwrap_or(&mut [])
            .chunks_exact_mut(4)
            .zip(words)
        {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// SQLite's `pager_cksum`: `nonce` plus every 200th byte of the page, counting down from
/// `len − 200` while the index is positive.
pub fn journal_checksum(nonce: u32, page: &[u8]) -> u32 {
    let mut sum = nonce;
    let mut i = page.len().checked_sub(200);
    while let Some(at) = i.filter(|&at| at > 0) {
        sum = sum.wrapping_add(u32::from(page.get(at).copied().unwrap_or(0)));
        i = at.checked_sub(200);
    }
    sum
}

/// Why reading the journal stopped. All are clean ends, as in SQLite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalEnd {
    /// No further header: end of file, a missing magic (e.g. the zeroed PERSIST header) or a
    /// header sector extending past the end of the file.
    NoHeader,
    /// The first header's page size or sector size is out of range.
    InvalidHeader,
    /// A record is cut short by the end of the file.
    ShortRead,
    /// A record names page 0 or the lock page.
    BadPgno,
    /// A record's checksum does not match its page.
    ChecksumMismatch,
}

/// One record to play back, borrowed from the reader's buffer.
#[derive(Debug)]
pub struct JournalRecord<'a> {
    /// 0 for the first segment.
    pub segment_index: u32,
    /// File offset of the record (its page number field).
    pub offset_bytes: u64,
    pub pgno: u32,
    /// The page as it was before the transaction, exactly `page_size_bytes` long.
    pub page: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    header: JournalHeader,
    index: u32,
    records_left: u64,
    next_record_offset_bytes: u64,
}

/// Reads a rollback journal segment by segment: call [`Self::next_segment`], then
/// [`Self::next_record`] until `None`, and repeat. [`rollback`] does the loop.
#[derive(Debug)]
pub struct JournalReader<R> {
    reader: R,
    file_len_bytes: u64,
    first: Option<JournalHeader>,
    page_size_bytes: u32,
    sector_size_bytes: u32,
    /// The first header, not yet handed out by `next_segment`.
    pending_first: bool,
    segment: Option<Segment>,
    segment_count: u32,
    /// One record: pgno + page + checksum. Sized from the validated page size only.
    record: Vec<u8>,
    end: Option<JournalEnd>,
}

impl<R: Read + Seek> JournalReader<R> {
    /// Opens a journal and reads its first header. `db_page_size_bytes` is the database's page
    /// size if known (from its header): a journal with a different page size is an error
    /// ([`Error::JournalPageSizeMismatch`], as LiteFS; SQLite would adopt the journal's).
    /// A journal without a valid first header is not an error: [`Self::first_header`] is then
    /// `None` and there is nothing to roll back.
    pub fn new(mut reader: R, db_page_size_bytes: Option<u32>) -> Result<Self, Error> {
        let file_len_bytes = reader.seek(SeekFrom::End(0)).map_err(|source| Error::Io {
            file: "journal",
            source,
        })?;
        let mut journal = JournalReader {
            reader,
            file_len_bytes,
            first: None,
            page_size_bytes: 0,
            sector_size_bytes: 0,
            pending_first: false,
            segment: None,
            segment_count: 0,
            record: Vec::new(),
            end: None,
        };
        let Some(first) = journal.read_header_at(0)? else {
            journal.end = Some(JournalEnd::NoHeader);
            return Ok(journal);
        };
        let page_size_bytes = match (first.page_size_bytes, db_page_size_bytes) {
            (0, Some(db)) => db,
            (0, None) => return Err(Error::JournalPageSizeUnknown),
            (journal, _) => journal,
        };
        let sector_ok = (SECTOR_SIZE_MIN_BYTES..=SECTOR_SIZE_MAX_BYTES)
            .contains(&first.sector_size_bytes)
            && first.sector_size_bytes.is_power_of_two();
        if validate_page_size("journal header", page_size_bytes).is_err() || !sector_ok {
            journal.end = Some(JournalEnd::InvalidHeader);
            return Ok(journal);
        }
        if let Some(db) = db_page_size_bytes.filter(|&db| db != page_size_bytes) {
            return Err(Error::JournalPageSizeMismatch {
                journal: page_size_bytes,
                db,
            });
        }
        if u64::from(first.sector_size_bytes) > file_len_bytes {
            // SQLite: the header sector itself is incomplete, so nothing was synced.
            journal.end = Some(JournalEnd::NoHeader);
            return Ok(journal);
        }
        journal.first = Some(first);
        journal.page_size_bytes = page_size_bytes;
        journal.sector_size_bytes = first.sector_size_bytes;
        journal.pending_first = true;
        journal.record = vec![0; (page_size_bytes as usize).saturating_add(8)];
        Ok(journal)
    }

    /// The first header, if valid. Its `db_size_pages` is the size to truncate the database to.
    pub fn first_header(&self) -> Option<&JournalHeader> {
        self.first.as_ref()
    }

    /// Database size in pages before the transaction; `None` without a valid first header
    /// (then the database must not be truncated).
    pub fn original_db_size_pages(&self) -> Option<u32> {
        self.first.map(|h| h.db_size_pages)
    }

    /// Page size in effect (first header's, or the database's if the header says 0); 0 without
    /// a valid first header.
    pub fn page_size_bytes(&self) -> u32 {
        self.page_size_bytes
    }

    /// Why reading stopped, once it has.
    pub fn end_reason(&self) -> Option<JournalEnd> {
        self.end
    }

    /// Number of segments handed out so far.
    pub fn segment_count(&self) -> u32 {
        self.segment_count
    }

    /// Moves to the next segment and returns its header; `None` at the end of the journal.
    /// Unread records of the current segment are read (and checked) first, because a damaged
    /// record there ends the whole journal.
    pub fn next_segment(&mut self) -> Result<Option<JournalHeader>, Error> {
        if self.pending_first {
            self.pending_first = false;
            let first = self.first;
            return Ok(first.map(|header| self.begin_segment(header)));
        }
        while self.next_record()?.is_some() {}
        if self.end.is_some() {
            return Ok(None);
        }
        let Some(current) = self.segment else {
            return Ok(None);
        };
        let next_offset_bytes = current
            .next_record_offset_bytes
            .checked_next_multiple_of(u64::from(self.sector_size_bytes));
        let header = match next_offset_bytes {
            Some(offset) => self.read_header_at(offset)?,
            None => None,
        };
        // A later header counts only if its whole sector is inside the file (`readJournalHdr`).
        let sector_end = header.and_then(|h| {
            h.offset_bytes
                .checked_add(u64::from(self.sector_size_bytes))
        });
        match (header, sector_end) {
            (Some(header), Some(end)) if end <= self.file_len_bytes => {
                Ok(Some(self.begin_segment(header)))
            }
            _ => {
                self.end = Some(JournalEnd::NoHeader);
                self.segment = None;
                Ok(None)
            }
        }
    }

    /// The next record of the current segment; `None` at the end of the segment (or journal,
    /// see [`Self::end_reason`]). Records for pages past the original database size are skipped.
    pub fn next_record(&mut self) -> Result<Option<JournalRecord<'_>>, Error> {
        loop {
            if self.end.is_some() {
                return Ok(None);
            }
            let Some(segment) = self.segment.as_mut() else {
                return Ok(None);
            };
            if segment.records_left == 0 {
                return Ok(None);
            }
            let offset_bytes = segment.next_record_offset_bytes;
            segment.records_left = segment.records_left.saturating_sub(1);
            segment.next_record_offset_bytes =
                offset_bytes.saturating_add(self.record.len() as u64);
            let index = segment.index;
            let len = read_at(&mut self.reader, offset_bytes, &mut self.record)?;
            if len < self.record.len() {
                self.end = Some(JournalEnd::ShortRead);
                return Ok(None);
            }
            let pgno = be_u32(&self.record, 0);
            if pgno == 0 || pgno == lock_pgno(self.page_size_bytes) {
                self.end = Some(JournalEnd::BadPgno);
                return Ok(None);
            }
            if self.first.is_some_and(|h| pgno > h.db_size_pages) {
                continue; // SQLite skips these without checking the checksum.
            }
            let page_end = self.record.len().saturating_sub(4);
            let page = self.record.get(4..page_end).unwrap_or(&[]);
            let stored = be_u32(&self.record, page_end);
            let nonce = self.segment.map_or(0, |s| s.header.nonce);
            if journal_checksum(nonce, page) != stored {
                self.end = Some(JournalEnd::ChecksumMismatch);
                return Ok(None);
            }
            return Ok(Some(JournalRecord {
                segment_index: index,
                offset_bytes,
                pgno,
                page,
            }));
        }
    }

    /// Gives the reader back.
    pub fn into_inner(self) -> R {
        self.reader
    }

    fn begin_segment(&mut self, header: JournalHeader) -> JournalHeader {
        let records_start_bytes = header
            .offset_bytes
            .saturating_add(u64::from(self.sector_size_bytes));
        let record_size_bytes = self.record.len() as u64;
        let records_left = match header.nrec {
            NREC_TO_END_OF_FILE => self
                .file_len_bytes
                .saturating_sub(records_start_bytes)
                .checked_div(record_size_bytes)
                .unwrap_or(0),
            nrec => u64::from(nrec),
        };
        self.segment = Some(Segment {
            header,
            index: self.segment_count,
            records_left,
            next_record_offset_bytes: records_start_bytes,
        });
        self.segment_count = self.segment_count.saturating_add(1);
        header
    }

    /// The header at `offset_bytes`, or `None` if the file ends first or the magic is missing.
    fn read_header_at(&mut self, offset_bytes: u64) -> Result<Option<JournalHeader>, Error> {
        let fits = offset_bytes
            .checked_add(JOURNAL_HEADER_SIZE_BYTES)
            .is_some_and(|end| end <= self.file_len_bytes);
        if !fits {
            return Ok(None);
        }
        let mut buf = [0u8; JOURNAL_HEADER_SIZE_BYTES as usize];
        let len = read_at(&mut self.reader, offset_bytes, &mut buf)?;
        Ok(JournalHeader::parse(
            buf.get(..len).unwrap_or(&[]),
            offset_bytes,
        ))
    }
}

/// Reads as much of `buf` as the journal holds at `offset_bytes` (short at end of file).
fn read_at(
    reader: &mut (impl Read + Seek),
    offset_bytes: u64,
    buf: &mut [u8],
) -> Result<usize, Error> {
    reader
        .seek(SeekFrom::Start(offset_bytes))
        .map_err(|source| Error::Io {
            file: "journal",
            source,
        })?;
    read_full(reader, buf, "journal")
}

/// Plays a journal back through `write_page(pgno, page)` and returns the size in pages to
/// truncate the database to (`None`: no valid header, leave the database alone).
///
/// The first record of a page wins: it is the page as it was before the transaction. SQLite
/// never journals a page twice in one transaction (its `pInJournal` bit vector), so on
/// SQLite-written journals this agrees with SQLite's replay-in-order; on anything else it is
/// the safe choice. Memory: one entry per distinct page number, never page contents.
pub fn rollback<R, E>(
    journal: &mut JournalReader<R>,
    mut write_page: impl FnMut(u32, &[u8]) -> Result<(), E>,
) -> Result<Option<u32>, E>
where
    R: Read + Seek,
    E: From<Error>,
{
    let mut seen = BTreeSet::new();
    while journal.next_segment()?.is_some() {
        while let Some(record) = journal.next_record()? {
            if seen.insert(record.pgno) {
                write_page(record.pgno, record.page)?;
            }
        }
    }
    Ok(journal.original_db_size_pages())
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
