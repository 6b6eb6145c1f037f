//! Writes LTX files (spec §1.1–§1.7), enforcing every page-order rule of §1.4.

use super::checksum::{self, Hasher, RollingChecksum, lock_pgno};
use super::error::{Error, Result};
use super::header::{Header, Trailer};
use super::lz4::FrameWriter;
use crate::types::{CHECKSUM_FLAG, Checksum};
use std::io::Write;

enum Sink<W: Write> {
    Raw(W),
    Lz4(FrameWriter<W>),
}

impl<W: Write> Sink<W> {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Raw(w) => w.write_all(buf),
            Sink::Lz4(w) => w.write_all(buf),
        }
    }

    fn finish(self) -> std::io::Result<W> {
        match self {
            Sink::Raw(w) => Ok(w),
            Sink::Lz4(w) => w.finish(),
        }
    }
}

/// Streams one LTX file into `W`: `new` writes the header, `encode_page` each page in order,
/// `finish` the end marker and trailer. Memory use is one LZ4 block, whatever the file size.
///
/// For snapshots the encoder computes the database checksum itself and `finish` requires the
/// caller's post-apply checksum to equal it: the checksum is asserted where the pages are seen.
pub struct Encoder<W: Write> {
    sink: Option<Sink<W>>,
    header: Header,
    hasher: Hasher,
    lock_pgno: u32,
    prev_pgno: u32,
    page_count: u32,
    snapshot_checksum: RollingChecksum,
}

impl<W: Write> Encoder<W> {
    /// Validates `header` and writes it.
    pub fn new(w: W, header: &Header) -> Result<Self> {
        Encoder::start(w, header, None)
    }

    /// [`Encoder::new`] for a file of exactly `page_count` pages, which lets the LZ4 frame
    /// pass pages it does not compress straight to `w` ([`FrameWriter::with_content_len`]);
    /// another count is an error.
    pub fn with_page_count(w: W, header: &Header, page_count: u32) -> Result<Self> {
        Encoder::start(w, header, Some(page_count))
    }

    fn start(mut w: W, header: &Header, page_count: Option<u32>) -> Result<Self> {
        header.validate()?;
        let bytes = header.to_bytes();
        w.write_all(&bytes)?;
        let mut hasher = checksum::hasher();
        hasher.update(&bytes);
        let sink = match (header.is_compressed(), page_count) {
            (false, _) => Sink::Raw(w),
            (true, None) => Sink::Lz4(FrameWriter::new(w)?),
            (true, Some(pages)) => {
                // Each page is its 4-byte number and its bytes; the pages end with a zero
                // number (`finish`), inside the frame.
                let content_len = u64::from(pages) * (4 + u64::from(header.page_size)) + 4;
                Sink::Lz4(FrameWriter::with_content_len(w, content_len)?)
            }
        };
        Ok(Encoder {
            sink: Some(sink),
            header: *header,
            hasher,
            lock_pgno: lock_pgno(header.page_size),
            prev_pgno: 0,
            page_count: 0,
            snapshot_checksum: RollingChecksum::new(),
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Pages encoded so far.
    pub fn page_count(&self) -> u32 {
        self.page_count
    }

    fn check_page(&self, pgno: u32, data: &[u8]) -> Result<()> {
        let h = &self.header;
        if pgno == 0 {
            return Err(Error::PageNumberRequired);
        }
        if pgno > h.commit {
            return Err(Error::PageOutOfBounds {
                pgno,
                commit: h.commit,
            });
        }
        if data.len() != h.page_size as usize {
            return Err(Error::InvalidPageBufferSize {
                got: data.len(),
                want: h.page_size,
            });
        }
        if pgno == self.lock_pgno {
            return Err(Error::LockPage(pgno));
        }
        let prev = self.prev_pgno;
        if h.is_snapshot() {
            if prev == 0 {
                if pgno != 1 {
                    return Err(Error::SnapshotStart);
                }
            } else if prev == self.lock_pgno - 1 {
                if pgno != prev + 2 {
                    return Err(Error::SnapshotNonsequentialLockPage(prev, pgno));
                }
            } else if pgno != prev + 1 {
                return Err(Error::SnapshotNonsequential(prev, pgno));
            }
        } else if pgno <= prev {
            return Err(Error::OutOfOrder(prev, pgno));
        }
        Ok(())
    }

    /// Encodes one page; `data` must be exactly one page. Returns the page's checksum
    /// ([`checksum::page_checksum`]), computed in the same pass as the file checksum.
    pub fn encode_page(&mut self, pgno: u32, data: &[u8]) -> Result<u64> {
        if self.sink.is_none() {
            return Err(Error::EncoderClosed);
        }
        self.check_page(pgno, data)?;
        let pgno_bytes = pgno.to_be_bytes();
        let sink = self.sink.as_mut().ok_or(Error::EncoderClosed)?;
        sink.write_all(&pgno_bytes)?;
        sink.write_all(data)?;
        let crc = checksum::page_crc(pgno, data);
        self.hasher.absorb(&crc);
        if self.header.is_snapshot() {
            self.snapshot_checksum.fold(crc.checksum());
        }
        self.prev_pgno = pgno;
        self.page_count += 1;
        Ok(crc.checksum())
    }

    /// Writes the end marker and trailer and returns the writer and the trailer.
    pub fn finish(mut self, post_apply_checksum: Checksum) -> Result<(W, Trailer)> {
        let mut sink = self.sink.take().ok_or(Error::EncoderClosed)?;
        let h = self.header;
        if h.is_snapshot() {
            let last_pgno = self.prev_pgno;
            let expected_last = if h.commit == self.lock_pgno {
                h.commit - 1
            } else {
                h.commit
            };
            if last_pgno != expected_last {
                return Err(Error::SnapshotIncomplete {
                    last_pgno,
                    commit: h.commit,
                });
            }
            let calculated = Checksum(self.snapshot_checksum.value());
            if h.commit > 0 && calculated != post_apply_checksum {
                return Err(Error::PostApplyMismatch {
                    trailer: post_apply_checksum,
                    calculated,
                });
            }
        }
        sink.write_all(&[0; 4])?;
        self.hasher.update(&[0; 4]);
        self.hasher.update(&post_apply_checksum.0.to_be_bytes());
        let trailer = Trailer {
            post_apply_checksum,
            file_checksum: Checksum(CHECKSUM_FLAG | self.hasher.finalize()),
        };
        trailer.validate(h.commit)?;
        let mut w = sink.finish()?;
        w.write_all(&trailer.to_bytes())?;
        Ok((w, trailer))
    }
}
