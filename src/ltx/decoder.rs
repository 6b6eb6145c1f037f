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
