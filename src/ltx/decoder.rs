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

/// Streams one LTX file out of `R`.
pub struct Decoder<R: Read> {
    source: Option<Source<R>>,
    header: Header,
    hasher: Hasher,
    lock_pgno: u32,
    snapshot_checksum: RollingChecksum,
    pages_read: u32,
    pages_done: bool,
    /// False for a file this process has verified already ([`Decoder::new_verified`]).
    check: bool,
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

    fn with_checks(mut r: R, check: bool) -> Result<Self> {
        let mut bytes = [0u8; HEADER_SIZE];
        r.read_exact(&mut bytes)?;
        let header = Header::from_bytes(&bytes)?;
        let mut hasher = checksum::hasher();
        hasher.update(&bytes);
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
            hasher,
            lock_pgno: lock_pgno(header.page_size),
            snapshot_checksum: RollingChecksum::new(),
            pages_read: 0,
            pages_done: false,
            check,
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
            if self.check {
                self.hasher.update(&pgno_bytes);
            }
            self.pages_done = true;
            return Ok(None);
        }
        source.read_exact(buf)?;
        self.pages_read += 1;
        if self.check {
            // One pass over the page for the file checksum and the page's own checksum.
            let crc = checksum::page_crc(pgno, buf);
            self.hasher.absorb(&crc);
            self.page_checksum = crc.checksum();
            if self.header.is_snapshot() && pgno != self.lock_pgno {
                self.snapshot_checksum.fold(self.page_checksum);
            }
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
        if !self.check {
            return Ok((trailer, inner));
        }
        self.hasher.update(&bytes[..8]);
        let calculated = Checksum(CHECKSUM_FLAG | self.hasher.finalize());
        if calculated != trailer.file_checksum {
            return Err(Error::ChecksumMismatch {
                trailer: trailer.file_checksum,
                calculated,
            });
        }
        if self.header.is_snapshot() {
            let calculated = Checksum(self.snapshot_checksum.value());
            if calculated != trailer.post_apply_checksum {
                return Err(Error::PostApplyMismatch {
                    trailer: trailer.post_apply_checksum,
                    calculated,
                });
            }
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
    trailer: Trailer,
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
            let frame = super::lz4::frame_blocks(body)?;
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
            let pieces = frame
                .blocks
                .iter()
                .map(|&(bytes, raw)| match raw {
                    true => bytes,
                    false => next_decoded.next().map_or(&[][..], |d| d.as_slice()),
                })
                .collect();
            (pieces, frame.len_bytes)
        } else {
            (vec![&body[..body_len]], body_len)
        };
        if used != body_len {
            return Err(Error::InvalidFile);
        }
        let trailer_bytes = body[used..].first_chunk::<TRAILER_SIZE>().ok_or_else(eof)?;
        Ok(Some(PageSlices {
            header,
            trailer: Trailer::from_bytes(trailer_bytes),
            pieces,
            piece: 0,
            at: 0,
            pages_done: false,
        }))
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn trailer(&self) -> &Trailer {
        &self.trailer
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
