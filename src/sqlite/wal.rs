//! The SQLite write-ahead log (<https://www.sqlite.org/fileformat.html#the_write_ahead_log>).
//!
//! Layout: a 32-byte header, then frames of a 24-byte frame header plus one page. Every integer
//! in the headers is big-endian; only the *checksum words* are read in the byte order named by
//! the magic (SQLite writes the host's order, so little-endian on x86 and ARM).
//!
//! Validity follows SQLite's `walIndexRecover` / `walDecodeFrame`: a frame counts only while
//! its salts equal the header's, its page number is non-zero and the cumulative checksum (seeded
//! by the header checksum, carried from frame to frame) matches. Frames after the last commit
//! frame belong to an unfinished transaction and are never reported as committed.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use super::{Error, be_u32, read_full, validate_page_size};

/// Size in bytes of the WAL header.
pub const WAL_HEADER_SIZE_BYTES: u64 = 32;
/// Size in bytes of a frame header.
pub const WAL_FRAME_HEADER_SIZE_BYTES: u64 = 24;
/// Magic of a WAL whose checksum words are little-endian.
pub const WAL_MAGIC_LE: u32 = 0x377f_0682;
/// Magic of a WAL whose checksum words are big-endian.
pub const WAL_MAGIC_BE: u32 = 0x377f_0683;
/// The only WAL format version (`WAL_MAX_VERSION`).
pub const WAL_VERSION: u32 = 3_007_000;

const FRAME_HEADER_LEN: usize = WAL_FRAME_HEADER_SIZE_BYTES as usize;

/// Byte order of the 32-bit words fed to the WAL checksum (chosen by the magic's low bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumOrder {
    LittleEndian,
    BigEndian,
}

impl ChecksumOrder {
    /// The order named by a WAL magic, or `None` for any other value.
    pub fn from_magic(magic: u32) -> Option<ChecksumOrder> {
        match magic {
            WAL_MAGIC_LE => Some(ChecksumOrder::LittleEndian),
            WAL_MAGIC_BE => Some(ChecksumOrder::BigEndian),
            _ => None,
        }
    }

    /// The magic that names this order.
    pub fn magic(self) -> u32 {
        match self {
            ChecksumOrder::LittleEndian => WAL_MAGIC_LE,
            ChecksumOrder::BigEndian => WAL_MAGIC_BE,
        }
    }
}

/// The running WAL checksum: two u32 sums, stored big-endian in headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WalChecksum {
    pub s1: u32,
    pub s2: u32,
}

impl WalChecksum {
    /// Extends the checksum over `bytes` as SQLite's `walChecksumBytes`: for each pair of words
    /// `(x0, x1)` read in `order`, `s1 += x0 + s2; s2 += x1 + s1` (wrapping).
    ///
    /// SQLite only ever checksums multiples of 8 bytes (24-byte header prefix, 8-byte frame
    /// header prefix, pages); a trailing remainder of fewer than 8 bytes is ignored.
    pub fn update(self, order: ChecksumOrder, bytes: &[u8]) -> WalChecksum {
        // One loop per byte order, so the order is not decided again for every word: the
        // scan of a large transaction checksums every byte of it.
        match order {
            ChecksumOrder::LittleEndian => self.update_words(bytes, u32::from_le_bytes),
            ChecksumOrder::BigEndian => self.update_words(bytes, u32::from_be_bytes),
        }
    }

    #[inline(always)]
    fn update_words(self, bytes: &[u8], word: impl Fn([u8; 4]) -> u32) -> WalChecksum {
        let (mut s1, mut s2) = (self.s1, self.s2);
        for pair in bytes.chunks_exact(8) {
            let [a0, a1, a2, a3, b0, b1, b2, b3] = <[u8; 8]>::try_from(pair).unwrap_or([0; 8]);
            s1 = s1.wrapping_add(word([a0, a1, a2, a3])).wrapping_add(s2);
            s2 = s2.wrapping_add(word([b0, b1, b2, b3])).wrapping_add(s1);
        }
        WalChecksum { s1, s2 }
    }

    fn read(bytes: &[u8], at: usize) -> WalChecksum {
        WalChecksum {
            s1: be_u32(bytes, at),
            s2: be_u32(bytes, at.saturating_add(4)),
        }
    }

    fn to_bytes(self) -> [u8; 8] {
        let [a0, a1, a2, a3] = self.s1.to_be_bytes();
        let [b0, b1, b2, b3] = self.s2.to_be_bytes();
        [a0, a1, a2, a3, b0, b1, b2, b3]
    }
}

/// The 32-byte WAL header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalHeader {
    /// From the magic at offset 0.
    pub checksum_order: ChecksumOrder,
    /// Offset 8, BE u32. Unlike the database header, 65536 is stored as 65536 (`wal.c`
    /// `walWriteHeader` puts the page size as a full u32).
    pub page_size_bytes: u32,
    /// Offset 12: checkpoint sequence number.
    pub checkpoint_seq: u32,
    /// Offset 16: salt-1, changed on every WAL restart.
    pub salt1: u32,
    /// Offset 20: salt-2, random on every WAL restart.
    pub salt2: u32,
    /// Offsets 24, 28: checksum of bytes 0..24; seeds the first frame's checksum.
    pub checksum: WalChecksum,
}

impl WalHeader {
    /// Builds a header and computes its checksum (for writers and test fixtures).
    pub fn new(
        checksum_order: ChecksumOrder,
        page_size_bytes: u32,
        checkpoint_seq: u32,
        salt1: u32,
        salt2: u32,
    ) -> WalHeader {
        let mut header = WalHeader {
            checksum_order,
            page_size_bytes,
            checkpoint_seq,
            salt1,
            salt2,
            checksum: WalChecksum::default(),
        };
        let bytes = header.to_bytes();
        header.checksum =
            WalChecksum::default().update(checksum_order, bytes.get(..24).unwrap_or(&[]));
        header
    }

    /// Parses a WAL header. Bytes past the first 32 are ignored.
    ///
    /// - fewer than 32 bytes → `Ok(None)`: the WAL is empty (LiteFS and SQLite both skip it);
    /// - magic not `0x377f0682`/`0x377f0683` → [`Error::WalMagic`] (as LiteFS; SQLite ignores);
    /// - checksum over bytes 0..24 ≠ bytes 24..32 → `Ok(None)`: a torn header write during a
    ///   WAL restart, so the WAL is treated as empty (spec §2.4);
    /// - version ≠ 3007000 → [`Error::WalVersion`] (SQLite: `SQLITE_CANTOPEN`);
    /// - page size not a power of two in 512..=65536 → [`Error::PageSize`] (SQLite ignores
    ///   such a WAL; with a valid checksum it can only be a hostile or foreign file).
    pub fn parse(bytes: &[u8]) -> Result<Option<WalHeader>, Error> {
        let Some(header) = bytes.get(..WAL_HEADER_SIZE_BYTES as usize) else {
            return Ok(None);
        };
        let magic = be_u32(header, 0);
        let checksum_order = ChecksumOrder::from_magic(magic).ok_or(Error::WalMagic(magic))?;
        let checksum = WalChecksum::read(header, 24);
        let computed =
            WalChecksum::default().update(checksum_order, header.get(..24).unwrap_or(&[]));
        if computed != checksum {
            return Ok(None);
        }
        let version = be_u32(header, 4);
        if version != WAL_VERSION {
            return Err(Error::WalVersion(version));
        }
        Ok(Some(WalHeader {
            checksum_order,
            page_size_bytes: validate_page_size("wal header", be_u32(header, 8))?,
            checkpoint_seq: be_u32(header, 12),
            salt1: be_u32(header, 16),
            salt2: be_u32(header, 20),
            checksum,
        }))
    }

    /// Reads and parses the header at offset 0 of `reader` (see [`WalHeader::parse`]).
    pub fn read_from(reader: &mut (impl Read + Seek)) -> Result<Option<WalHeader>, Error> {
        let mut buf = [0u8; WAL_HEADER_SIZE_BYTES as usize];
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| Error::Io {
                file: "wal",
                source,
            })?;
        let len = read_full(reader, &mut buf, "wal")?;
        WalHeader::parse(buf.get(..len).unwrap_or(&[]))
    }

    /// The header's bytes, with the stored checksum (not recomputed).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let fields = [
            self.checksum_order.magic(),
            WAL_VERSION,
            self.page_size_bytes,
            self.checkpoint_seq,
            self.salt1,
            self.salt2,
            self.checksum.s1,
            self.checksum.s2,
        ];
        for (chunk, field) in out.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&field.to_be_bytes());
        }
        out
    }

    /// Bytes per frame: 24-byte frame header plus one page.
    pub fn frame_size_bytes(&self) -> u64 {
        WAL_FRAME_HEADER_SIZE_BYTES.saturating_add(u64::from(self.page_size_bytes))
    }

    /// Where scanning starts in a WAL with this header: offset 32, seeded by the header checksum.
    pub fn start(&self) -> WalCursor {
        WalCursor {
            offset_bytes: WAL_HEADER_SIZE_BYTES,
            checksum: self.checksum,
        }
    }
}

/// The 24-byte header in front of each page in the WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalFrameHeader {
    /// Offset 0: the page this frame holds.
    pub pgno: u32,
    /// Offset 4: database size in pages after this commit; non-zero only on a commit frame.
    pub commit_size_pages: u32,
    /// Offsets 8, 12: must equal the WAL header's salts.
    pub salt1: u32,
    pub salt2: u32,
    /// Offsets 16, 20: running checksum through this frame's page.
    pub checksum: WalChecksum,
}

impl WalFrameHeader {
    /// Decodes a frame header (no validation: that needs the WAL header and running checksum).
    pub fn parse(bytes: &[u8; 24]) -> WalFrameHeader {
        WalFrameHeader {
            pgno: be_u32(bytes, 0),
            commit_size_pages: be_u32(bytes, 4),
            salt1: be_u32(bytes, 8),
            salt2: be_u32(bytes, 12),
            checksum: WalChecksum::read(bytes, 16),
        }
    }

    /// Encodes the frame header.
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        let words = [self.pgno, self.commit_size_pages, self.salt1, self.salt2];
        for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        if let Some(tail) = out.get_mut(16..24) {
            tail.copy_from_slice(&self.checksum.to_bytes());
        }
        out
    }
}

/// A resumable scan position: a frame-boundary offset and the running checksum there.
/// LiteFS keeps one as (`wal.offset`, `wal.chksum1/2`) and resumes `CommitWAL` from it (§3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalCursor {
    pub offset_bytes: u64,
    pub checksum: WalChecksum,
}

/// Why a scan stopped. Each is a clean end of the valid WAL, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalScanEnd {
    /// Fewer than a whole frame left (includes the normal end of file).
    ShortRead,
    /// A frame from an earlier generation of the WAL (or garbage).
    SaltMismatch,
    /// Page number 0: SQLite rejects such a frame (`walDecodeFrame`).
    ZeroPgno,
    /// Torn or damaged frame.
    ChecksumMismatch,
}

/// One valid frame, borrowed from the scanner's buffer.
#[derive(Debug)]
pub struct WalFrame<'a> {
    /// File offset of the frame header; the page starts 24 bytes later.
    pub offset_bytes: u64,
    pub pgno: u32,
    /// Non-zero on a commit frame: the database size in pages after the transaction.
    pub commit_size_pages: u32,
    /// The page, exactly `page_size_bytes` long.
    pub page: &'a [u8],
    /// Running checksum through this frame (equals the frame header's stored checksum).
    pub checksum: WalChecksum,
}

/// One committed transaction: a run of valid frames ending in a commit frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalTxn {
    /// File offset of the transaction's first frame (LTX `WALOffset`).
    pub offset_bytes: u64,
    /// Bytes from the first frame to the end of the commit frame (LTX `WALSize`).
    pub size_bytes: u64,
    /// Database size in pages after the transaction (LTX `Commit`).
    pub commit_size_pages: u32,
    /// For every page written: the offset of its last frame in this transaction.
    pub frame_offsets: BTreeMap<u32, u64>,
    /// Offset and running checksum just past the commit frame: where the next scan resumes.
    pub end: WalCursor,
}

/// Where a scan's frames come from: a reader (each frame copied into a buffer) or WAL bytes
/// already in memory (each frame borrowed in place).
pub trait WalFrames {
    /// The next `len` bytes of the WAL (one frame), or fewer where the WAL ends.
    fn next_frame_bytes(&mut self, len: usize) -> Result<&[u8], Error>;
}

/// Frames read from a file (or any reader), one copy each.
#[derive(Debug)]
pub struct ReadFrames<R> {
    reader: R,
    /// One frame: 24-byte header + page. Sized from the validated page size only.
    frame: Vec<u8>,
}

impl<R: Read> WalFrames for ReadFrames<R> {
    fn next_frame_bytes(&mut self, len: usize) -> Result<&[u8], Error> {
        self.frame.resize(len, 0);
        let n = read_full(&mut self.reader, &mut self.frame, "wal")?;
        Ok(self.frame.get(..n).unwrap_or(&[]))
    }
}

/// Frames borrowed from WAL bytes in memory (held, or a mapped file).
#[derive(Debug)]
pub struct SliceFrames<'a> {
    rest: &'a [u8],
}

impl WalFrames for SliceFrames<'_> {
    fn next_frame_bytes(&mut self, len: usize) -> Result<&[u8], Error> {
        let (frame, rest) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = rest;
        Ok(frame)
    }
}

/// The valid frames of a transaction read before its commit frame was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialTxn {
    /// File offset of the transaction's first frame.
    pub offset_bytes: u64,
    /// pgno → offset of its last frame, for the frames before `at`.
    pub frame_offsets: BTreeMap<u32, u64>,
    /// Just past the last valid frame, with the running checksum there: where to go on.
    pub at: WalCursor,
}

impl PartialTxn {
    /// Nothing read yet of the transaction that starts at `cursor`.
    pub fn at_start(cursor: WalCursor) -> PartialTxn {
        PartialTxn {
            offset_bytes: cursor.offset_bytes,
            frame_offsets: BTreeMap::new(),
            at: cursor,
        }
    }
}

/// How a scan for a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnScan {
    Committed(WalTxn),
    /// The valid frames ended before a commit frame.
    Unfinished(PartialTxn),
}

/// Reads valid frames one by one from a WAL, starting at a frame boundary.
///
/// Single use: once a frame fails (short read, salt, page number, checksum) the scanner stays
/// ended; rescan from a stored [`WalCursor`] to pick up frames appended later.
#[derive(Debug)]
pub struct WalScanner<F> {
    frames: F,
    order: ChecksumOrder,
    salts: (u32, u32),
    /// 24-byte header + page.
    frame_size_bytes: usize,
    cursor: WalCursor,
    end: Option<WalScanEnd>,
}

/// Checks that `start` can begin a scan of a WAL with `header`'s frames; returns the frame size.
fn scan_frame_size(header: &WalHeader, start: WalCursor) -> Result<usize, Error> {
    let page_size_bytes = validate_page_size("wal header", header.page_size_bytes)?;
    let frame_size_bytes = header.frame_size_bytes();
    let aligned = start
        .offset_bytes
        .checked_sub(WAL_HEADER_SIZE_BYTES)
        .is_some_and(|past_header| past_header % frame_size_bytes == 0);
    if !aligned {
        return Err(Error::WalOffset {
            offset_bytes: start.offset_bytes,
            frame_size_bytes,
        });
    }
    Ok(FRAME_HEADER_LEN.saturating_add(page_size_bytes as usize))
}

impl<R: Read + Seek> WalScanner<ReadFrames<R>> {
    /// Starts a scan at `start` (use [`WalHeader::start`] for the first frame). `start` must be
    /// a frame boundary, else [`Error::WalOffset`]. The header's page size must be valid (it is
    /// if it came from [`WalHeader::parse`]).
    pub fn new(mut reader: R, header: &WalHeader, start: WalCursor) -> Result<Self, Error> {
        let frame_size_bytes = scan_frame_size(header, start)?;
        reader
            .seek(SeekFrom::Start(start.offset_bytes))
            .map_err(|source| Error::Io {
                file: "wal",
                source,
            })?;
        let frames = ReadFrames {
            reader,
            frame: Vec::with_capacity(frame_size_bytes),
        };
        Ok(WalScanner::with_frames(
            frames,
            header,
            start,
            frame_size_bytes,
        ))
    }
}

impl<'a> WalScanner<SliceFrames<'a>> {
    /// As [`WalScanner::new`], over WAL bytes in memory: `bytes` are the WAL's from offset
    /// `bytes_start` on, and their end is the end of the WAL. `start` must lie within them.
    pub fn over_bytes(
        bytes: &'a [u8],
        bytes_start: u64,
        header: &WalHeader,
        start: WalCursor,
    ) -> Result<Self, Error> {
        let frame_size_bytes = scan_frame_size(header, start)?;
        let rest = start
            .offset_bytes
            .checked_sub(bytes_start)
            .and_then(|skip| usize::try_from(skip).ok())
            .and_then(|skip| bytes.get(skip..))
            .ok_or(Error::WalOffset {
                offset_bytes: start.offset_bytes,
                frame_size_bytes: frame_size_bytes as u64,
            })?;
        let frames = SliceFrames { rest };
        Ok(WalScanner::with_frames(
            frames,
            header,
            start,
            frame_size_bytes,
        ))
    }
}

impl<F: WalFrames> WalScanner<F> {
    fn with_frames(
        frames: F,
        header: &WalHeader,
        start: WalCursor,
        frame_size_bytes: usize,
    ) -> Self {
        WalScanner {
            frames,
            order: header.checksum_order,
            salts: (header.salt1, header.salt2),
            frame_size_bytes,
            cursor: start,
            end: None,
        }
    }

    /// The next valid frame, or `None` at the end of the valid WAL (see [`Self::end_reason`]).
    /// Errors only on I/O failure.
    pub fn next_frame(&mut self) -> Result<Option<WalFrame<'_>>, Error> {
        if self.end.is_some() {
            return Ok(None);
        }
        let frame = self.frames.next_frame_bytes(self.frame_size_bytes)?;
        let len = frame.len();
        let Some((head, page)) = frame.split_at_checked(FRAME_HEADER_LEN) else {
            self.end = Some(WalScanEnd::ShortRead);
            return Ok(None);
        };
        let Ok(head) = <&[u8; FRAME_HEADER_LEN]>::try_from(head) else {
            self.end = Some(WalScanEnd::ShortRead);
            return Ok(None);
        };
        let header = WalFrameHeader::parse(head);
        // Same order of checks as SQLite's walDecodeFrame.
        let end = if len < self.frame_size_bytes {
            Some(WalScanEnd::ShortRead)
        } else if (header.salt1, header.salt2) != self.salts {
            Some(WalScanEnd::SaltMismatch)
        } else if header.pgno == 0 {
            Some(WalScanEnd::ZeroPgno)
        } else {
            None
        };
        if end.is_some() {
            self.end = end;
            return Ok(None);
        }
        let checksum = self
            .cursor
            .checksum
            .update(self.order, head.get(..8).unwrap_or(&[]))
            .update(self.order, page);
        if checksum != header.checksum {
            self.end = Some(WalScanEnd::ChecksumMismatch);
            return Ok(None);
        }
        let offset_bytes = self.cursor.offset_bytes;
        self.cursor = WalCursor {
            offset_bytes: offset_bytes.saturating_add(self.frame_size_bytes as u64),
            checksum,
        };
        Ok(Some(WalFrame {
            offset_bytes,
            pgno: header.pgno,
            commit_size_pages: header.commit_size_pages,
            page,
            checksum,
        }))
    }

    /// The next committed transaction, or `None` when the valid WAL ends before a commit frame
    /// (frames read since the last commit are then dropped: they are uncommitted).
    pub fn next_transaction(&mut self) -> Result<Option<WalTxn>, Error> {
        Ok(
            match self.continue_transaction(PartialTxn::at_start(self.cursor))? {
                TxnScan::Committed(txn) => Some(txn),
                TxnScan::Unfinished(_) => None,
            },
        )
    }

    /// Scans on from `partial` (this scanner must start at `partial.at`) to the transaction's
    /// commit frame. When the valid frames end first, the frames read so far come back, to be
    /// continued from where they end once more are written — as long as nothing before that
    /// point is written meanwhile (a caller's duty: such a write may change a checked frame).
    pub fn continue_transaction(&mut self, partial: PartialTxn) -> Result<TxnScan, Error> {
        if self.cursor != partial.at {
            // Offsets and sizes would silently be wrong.
            return Err(Error::WalOffset {
                offset_bytes: partial.at.offset_bytes,
                frame_size_bytes: self.frame_size_bytes as u64,
            });
        }
        let PartialTxn {
            offset_bytes,
            mut frame_offsets,
            ..
        } = partial;
        while let Some(frame) = self.next_frame()? {
            frame_offsets.insert(frame.pgno, frame.offset_bytes);
            let commit_size_pages = frame.commit_size_pages;
            if commit_size_pages != 0 {
                let end = self.cursor;
                return Ok(TxnScan::Committed(WalTxn {
                    offset_bytes,
                    size_bytes: end.offset_bytes.saturating_sub(offset_bytes),
                    commit_size_pages,
                    frame_offsets,
                    end,
                }));
            }
        }
        Ok(TxnScan::Unfinished(PartialTxn {
            offset_bytes,
            frame_offsets,
            at: self.cursor,
        }))
    }

    /// Position just past the last valid frame read (committed or not).
    pub fn cursor(&self) -> WalCursor {
        self.cursor
    }

    /// Why the scan ended, once it has.
    pub fn end_reason(&self) -> Option<WalScanEnd> {
        self.end
    }
}

/// Every committed transaction from `start` to the end of the valid WAL, and why it ended.
/// Memory grows with the number of frames (one map entry each), never with page contents.
pub fn committed_transactions<R: Read + Seek>(
    reader: R,
    header: &WalHeader,
    start: WalCursor,
) -> Result<(Vec<WalTxn>, WalScanEnd), Error> {
    let mut scanner = WalScanner::new(reader, header, start)?;
    let mut txns = Vec::new();
    while let Some(txn) = scanner.next_transaction()? {
        txns.push(txn);
    }
    Ok((txns, scanner.end_reason().unwrap_or(WalScanEnd::ShortRead)))
}

/// What a checkpoint copies (spec §2.4 step 6b): the last committed frame of every page across
/// `txns`, and the database size after the last commit (`None` without transactions).
pub fn checkpoint_plan(txns: &[WalTxn]) -> (BTreeMap<u32, u64>, Option<u32>) {
    let mut frames = BTreeMap::new();
    for txn in txns {
        frames.extend(
            txn.frame_offsets
                .iter()
                .map(|(&pgno, &offset)| (pgno, offset)),
        );
    }
    (frames, txns.last().map(|txn| txn.commit_size_pages))
}

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
