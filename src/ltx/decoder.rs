//! Reads LTX files with the exact leniency of ltx v0.3.14 (spec §1.10).
//!
//! The decoder does not re-check page order, duplicates or bounds (the encoder did); it checks
//! the file checksum at `finish` and, for snapshots, the database checksum of the pages read.

use super::checksum::{self, Hasher, RollingChecksum, lock_pgno};
use super::error::{Error, Result};
use super::header::{HEADER_SIZE, Header, TRAILER_SIZE, Trailer};
use super::lz4::FrameReader;
use crate::types::{CHECKSUM_FLAG, Checksum};
use std::io::{Read, Write};

enum Source<R: Read> {
    Raw(R),
    Lz4(FrameReader<R>),
}

impl<R: Read> Source<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        match self {
            Source::Raw(r) => Ok(r.read_exact(buf)?),
            Source::Lz4(r) => r.read_exact_content(buf),
        }
    }
}

/// Summary of a fully read file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub header: Header,
    pub trailer: Trailer,
    pub page_count: u32,
}

/// The checks of a whole file as it is read: the file checksum over every byte, and for a
/// snapshot the database checksum of its pages (spec §1.10). One for both ways of reading.
struct FileCheck {
    hasher: Hasher,
    snapshot: bool,
    lock_pgno: u32,
    snapshot_checksum: RollingChecksum,
}

impl FileCheck {
    /// Starts with the header's bytes.
    fn new(header: &Header, header_bytes: &[u8]) -> FileCheck {
        let mut hasher = checksum::hasher();
        hasher.update(header_bytes);
        FileCheck {
            hasher,
            snapshot: header.is_snapshot(),
            lock_pgno: lock_pgno(header.page_size),
            snapshot_checksum: RollingChecksum::new(),
        }
    }

    /// Takes one page's record; returns its page checksum.
    fn page(&mut self, pgno: u32, crc: &checksum::PageCrc) -> u64 {
        self.hasher.absorb(crc);
        let page_checksum = crc.checksum();
        if self.snapshot && pgno != self.lock_pgno {
            self.snapshot_checksum.fold(page_checksum);
        }
        page_checksum
    }

    /// Takes the end marker.
    fn end(&mut self) {
        self.hasher.update(&0u32.to_be_bytes());
    }

    /// Checks the trailer against everything taken.
    fn finish(&mut self, trailer_bytes: &[u8; TRAILER_SIZE]) -> Result<()> {
        let trailer = Trailer::from_bytes(trailer_bytes);
        self.hasher.update(&trailer_bytes[..8]);
        let calculated = Checksum(CHECKSUM_FLAG | self.hasher.finalize());
        if calculated != trailer.file_checksum {
            return Err(Error::ChecksumMismatch {
                trailer: trailer.file_checksum,
                calculated,
            });
        }
        if self.snapshot {
            let calculated = Checksum(self.snapshot_checksum.value());
            if calculated != trailer.post_apply_checksum {
                return Err(Error::PostApplyMismatch {
                    trailer: trailer.post_apply_checksum,
                    calculated,
                });
            }
        }
        Ok(())
    }
}

/// Streams one LTX file out of `R`.
pub struct Decoder<R: Read> {
    source: Option<Source<R>>,
    header: Header,
    check: FileCheck,
    pages_read: u32,
    pages_done: bool,
    /// False for a file this process has verified already ([`Decoder::new_verified`]).
    checking: bool,
    /// The checksum of the page last decoded (checking decoders only).
    page_checksum: u64,
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header.
    pub fn new(r: R) -> Result<Self> {
        Self::with_checks(r, true)
    }

    /// A decoder for a file this process has just verified whole (received, checked, kept):
    /// the header is validated, but neither the file checksum nor a snapshot's checksum is
    /// computed again — a second CRC pass over every byte for nothing.
    pub fn new_verified(r: R) -> Result<Self> {
        Self::with_checks(r, false)
    }

    fn with_checks(mut r: R, checking: bool) -> Result<Self> {
        let mut bytes = [0u8; HEADER_SIZE];
        r.read_exact(&mut bytes)?;
        let header = Header::from_bytes(&bytes)?;
        let file_check = FileCheck::new(&header, &bytes);
        header.validate()?;
        let source = if header.is_compressed() {
            let mut frame = FrameReader::new(r)?;
            // The file checksum covers every decoded byte, so LZ4's xxh32 of the same content
            // adds nothing (its 4 bytes are still read). The one thing this accepts that
            // LiteFS's reader rejects is a file damaged only inside that checksum field.
            frame.skip_content_checksum();
            Source::Lz4(frame)
        } else {
            Source::Raw(r)
        };
        Ok(Decoder {
            source: Some(source),
            header,
            check: file_check,
            pages_read: 0,
            pages_done: false,
            checking,
            page_checksum: 0,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn pages_read(&self) -> u32 {
        self.pages_read
    }

    /// Reads the next page into `buf` (exactly one page long) and returns its number, or
    /// `None` after the end marker.
    pub fn decode_page(&mut self, buf: &mut [u8]) -> Result<Option<u32>> {
        if buf.len() != self.header.page_size as usize {
            return Err(Error::InvalidPageBufferSize {
                got: buf.len(),
                want: self.header.page_size,
            });
        }
        if self.pages_done {
            return Ok(None);
        }
        let source = self.source.as_mut().ok_or(Error::EncoderClosed)?;
        let mut pgno_bytes = [0u8; 4];
        source.read_exact(&mut pgno_bytes)?;
        let pgno = u32::from_be_bytes(pgno_bytes);
        if pgno == 0 {
            if self.checking {
                self.check.end();
            }
            self.pages_done = true;
            return Ok(None);
        }
        source.read_exact(buf)?;
        self.pages_read += 1;
        if self.checking {
            // One pass over the page for the file checksum and the page's own checksum.
            self.page_checksum = self.check.page(pgno, &checksum::page_crc(pgno, buf));
        }
        Ok(Some(pgno))
    }

    /// Reads the trailer and checks the file checksum (and the snapshot checksum). Pages not
    /// yet read are read and checked first. Returns the trailer and the reader, positioned just
    /// after the trailer.
    pub fn finish(mut self) -> Result<(Trailer, R)> {
        let mut page = vec![0u8; self.header.page_size as usize];
        while self.decode_page(&mut page)?.is_some() {}
        let mut inner = match self.source.take().ok_or(Error::EncoderClosed)? {
            Source::Raw(r) => r,
            Source::Lz4(r) => r.finish()?,
        };
        let mut bytes = [0u8; TRAILER_SIZE];
        inner.read_exact(&mut bytes)?;
        let trailer = Trailer::from_bytes(&bytes);
        if self.checking {
            self.check.finish(&bytes)?;
        }
        Ok((trailer, inner))
    }
}

/// The pages of a whole LTX file in memory that this process has verified, located without
/// copying them: each page is one or more slices (a page inside an LZ4 frame may straddle two
/// blocks) of the file itself where its block is stored raw, or of the block decoded into
/// memory the caller owns. For applying large transactions, whose pages are mostly
/// incompressible (stored raw), where copying pages out is what the apply costs. Like
/// [`Decoder::new_verified`], it checksums nothing again.
pub struct PageSlices<'a> {
    header: Header,
    trailer_bytes: [u8; TRAILER_SIZE],
    /// The page block's content, in pieces (one for an uncompressed file, one per LZ4 block).
    pieces: Vec<&'a [u8]>,
    /// The piece being read, and the offset in it.
    piece: usize,
    at: usize,
    pages_done: bool,
}

impl<'a> PageSlices<'a> {
    /// The file's pages, its compressed blocks decoded into `decoded` — or `None` if they
    /// would take more than `decoded_max_bytes` there, or if compressed blocks refer to
    /// earlier ones (linked blocks, which Go's writer and ours never produce): read such a
    /// file with [`Decoder::new_verified`]. The trailer must end the file.
    pub fn new(
        file: &'a [u8],
        decoded: &'a mut Vec<Vec<u8>>,
        decoded_max_bytes: usize,
    ) -> Result<Option<Self>> {
        let eof = || Error::Io(std::io::ErrorKind::UnexpectedEof.into());
        let (head, body) = file.split_first_chunk::<HEADER_SIZE>().ok_or_else(eof)?;
        let header = Header::from_bytes(head)?;
        header.validate()?;
        let body_len = body.len().checked_sub(TRAILER_SIZE).ok_or_else(eof)?;
        let (pieces, used) = if header.is_compressed() {
            // A writer's blocks are 64 KiB but the last (Go's and ours): far fewer than this.
            let blocks_max = body.len() / 1024 + 16;
            let Some(frame) = super::lz4::frame_blocks(body, blocks_max)? else {
                return Ok(None);
            };
            let compressed = frame.blocks.iter().filter(|(_, raw)| !raw).count();
            if compressed > 0
                && (!frame.independent
                    || compressed.saturating_mul(frame.block_size_max) > decoded_max_bytes)
            {
                return Ok(None);
            }
            decoded.clear();
            for &(bytes, _) in frame.blocks.iter().filter(|(_, raw)| !raw) {
                decoded.push(super::lz4::decompress_block(bytes, frame.block_size_max)?);
            }
            let decoded: &'a Vec<Vec<u8>> = decoded;
            let mut next_decoded = decoded.iter();
            let pieces: Vec<&[u8]> = frame
                .blocks
                .iter()
                .map(|&(bytes, raw)| match raw {
                    true => bytes,
                    false => next_decoded.next().map_or(&[][..], |d| d.as_slice()),
                })
                .collect();
            let content_len: usize = pieces.iter().map(|p| p.len()).sum();
            if frame
                .content_size
                .is_some_and(|size| size != content_len as u64)
            {
                return Err(Error::Lz4(format!(
                    "frame content of {content_len} bytes, its header says {}",
                    frame.content_size.unwrap_or_default()
                )));
            }
            (pieces, frame.len_bytes)
        } else {
            (vec![&body[..body_len]], body_len)
        };
        if used != body_len {
            return Err(Error::InvalidFile);
        }
        let trailer_bytes = *body[used..].first_chunk::<TRAILER_SIZE>().ok_or_else(eof)?;
        Ok(Some(PageSlices {
            header,
            trailer_bytes,
            pieces,
            piece: 0,
            at: 0,
            pages_done: false,
        }))
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn trailer(&self) -> Trailer {
        Trailer::from_bytes(&self.trailer_bytes)
    }

    /// Appends the next page's slices to `out` (they add up to one page) and returns its
    /// number, or `None` after the end marker — which must end the page block.
    pub fn next_page(&mut self, out: &mut Vec<&'a [u8]>) -> Result<Option<u32>> {
        if self.pages_done {
            return Ok(None);
        }
        let mut pgno = [0u8; 4];
        let mut filled = 0;
        self.take(pgno.len(), |piece| {
            pgno[filled..filled + piece.len()].copy_from_slice(piece);
            filled += piece.len();
        })?;
        let pgno = u32::from_be_bytes(pgno);
        if pgno == 0 {
            self.pages_done = true;
            let rest = self.pieces[self.piece..]
                .iter()
                .map(|p| p.len())
                .sum::<usize>();
            if rest != self.at {
                // Content after the end marker (the streaming decoder refuses it too).
                return Err(Error::InvalidFile);
            }
            return Ok(None);
        }
        self.take(self.header.page_size as usize, |piece| out.push(piece))?;
        Ok(Some(pgno))
    }

    /// Hands the next `len` bytes of content to `each`, a piece at a time.
    fn take(&mut self, mut len: usize, mut each: impl FnMut(&'a [u8])) -> Result<()> {
        while len > 0 {
            let Some(&piece) = self.pieces.get(self.piece) else {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            };
            let rest = &piece[self.at..];
            if rest.is_empty() {
                self.piece += 1;
                self.at = 0;
                continue;
            }
            let n = rest.len().min(len);
            each(&rest[..n]);
            self.at += n;
            len -= n;
        }
        Ok(())
    }
}

/// Reads a whole file and checks it, with Go's error prefixes
/// (`decode header:`, `decode page N:`, `close reader:`).
pub fn verify<R: Read>(r: R) -> Result<Summary> {
    verify_pages(r, |_, _, _| {})
}

/// [`verify`], handing each page to `on_page` as it is decoded, with its page checksum
/// (computed in the same pass as the file checksum) — before the file is known to be intact,
/// so whatever `on_page` derives must be dropped if this fails.
pub fn verify_pages<R: Read>(r: R, mut on_page: impl FnMut(u32, &[u8], u64)) -> Result<Summary> {
    let mut dec = Decoder::new(r).map_err(|e| e.context("decode header"))?;
    let mut page = vec![0u8; dec.header().page_size as usize];
    loop {
        let index = dec.pages_read();
        match dec.decode_page(&mut page) {
            Ok(Some(pgno)) => on_page(pgno, &page, dec.page_checksum),
            Ok(None) => break,
            Err(e) => return Err(e.context(format!("decode page {index}"))),
        }
    }
    let header = *dec.header();
    let page_count = dec.pages_read();
    let (trailer, _) = dec.finish().map_err(|e| e.context("close reader"))?;
    Ok(Summary {
        header,
        trailer,
        page_count,
    })
}

/// [`verify_pages`] of a whole file in memory (a mapping of a received file), handing each
/// page's number and checksum to `on_page`: pages stored raw are checksummed where they lie,
/// never copied out; compressed blocks are decoded into memory first, up to
/// `decoded_max_bytes` of them — a file with more is decoded as a stream. The file checksum,
/// a snapshot's checksum and the page checksums are those [`verify_pages`] checks and hands
/// out, and the trailer must end `file`. Two differences in what is accepted, neither of
/// consequence since the file checksum covers every byte of the content: LZ4 block checksums
/// (which neither Go's writer nor ours sets) are not compared, like the content checksum the
/// stream decoder skips too; and error texts may differ in their prefix.
pub fn verify_in_memory(
    file: &[u8],
    decoded_max_bytes: usize,
    mut on_page: impl FnMut(u32, u64),
) -> Result<Summary> {
    let mut decoded = Vec::new();
    let slices = PageSlices::new(file, &mut decoded, decoded_max_bytes)
        .map_err(|e| e.context("decode header"))?;
    let Some(mut pages) = slices else {
        let mut rest = file;
        let summary = verify_pages(&mut rest, |pgno, _, checksum| on_page(pgno, checksum))?;
        if !rest.is_empty() {
            // The trailer must end the file, as `PageSlices` requires.
            return Err(Error::InvalidFile.context("close reader"));
        }
        return Ok(summary);
    };
    let header = *pages.header();
    // (`PageSlices::new` found the header there.)
    let mut check = FileCheck::new(&header, &file[..HEADER_SIZE]);
    let mut parts = Vec::new();
    let mut page_count = 0u32;
    loop {
        parts.clear();
        let next = pages
            .next_page(&mut parts)
            .map_err(|e| e.context(format!("decode page {page_count}")))?;
        let Some(pgno) = next else {
            break;
        };
        on_page(
            pgno,
            check.page(pgno, &checksum::page_crc_parts(pgno, &parts)),
        );
        page_count += 1;
    }
    check.end();
    check
        .finish(&pages.trailer_bytes)
        .map_err(|e| e.context("close reader"))?;
    Ok(Summary {
        header,
        trailer: pages.trailer(),
        page_count,
    })
}

/// Writes the database image held in a snapshot: every page 1..Commit, the lock page as zeros.
pub fn decode_database_to<R: Read, W: Write>(r: R, mut w: W) -> Result<Summary> {
    let mut dec = Decoder::new(r)?;
    let header = *dec.header();
    if !header.is_snapshot() {
        return Err(Error::NonSnapshot);
    }
    let mut page = vec![0u8; header.page_size as usize];
    let lock = lock_pgno(header.page_size);
    for expected in 1..=header.commit {
        if expected == lock {
            page.fill(0);
            w.write_all(&page)?;
            continue;
        }
        match dec.decode_page(&mut page)? {
            Some(read) if read == expected => w.write_all(&page)?,
            Some(read) => return Err(Error::UnexpectedPgno { read, expected }),
            None => return Err(Error::UnexpectedPgno { read: 0, expected }),
        }
    }
    if let Some(pgno) = dec.decode_page(&mut page)? {
        return Err(Error::PageAfterCommit {
            pgno,
            commit: header.commit,
        });
    }
    let page_count = dec.pages_read();
    let (trailer, _) = dec.finish()?;
    Ok(Summary {
        header,
        trailer,
        page_count,
    })
}
