//! A raw SQLite database image recorded as one LTX file: what `POST /import` writes (spec
//! §4.3 `/import` steps 3–4). Pure: the image comes from a `Read`, the LTX file goes to a
//! `Write`; the caller supplies the current position, the node id and the time.
//!
//! The image's header is trusted for the page size and the page count (offset 28), as LiteFS
//! does; a page count of 0 is refused (it would record a deletion), and an image shorter than
//! its header says is refused instead of being padded. Page 1 is recorded with its file change
//! counter (offset 24) and schema cookie (offset 40) zeroed, so that every open connection sees
//! a changed database and reloads its schema. LiteFS does not check the image's integrity, and
//! neither do we.

use super::checksum::{RollingChecksum, lock_pgno};
use super::encoder::Encoder;
use super::error::Error as LtxError;
use super::header::{FLAG_COMPRESS_LZ4, Header, Trailer};
use crate::sqlite::db_header::DB_HEADER_SIZE_BYTES;
use crate::sqlite::{self, DbHeader};
use crate::types::{Checksum, NodeId, Pos, TxId};
use std::io::{self, Read, Write};
use std::ops::Range;

/// Page-1 bytes zeroed on import: the file change counter (offset 24) …
pub const FILE_CHANGE_COUNTER_BYTES: Range<usize> = 24..28;
/// … and the schema cookie (offset 40).
pub const SCHEMA_COOKIE_BYTES: Range<usize> = 40..44;

/// Bytes moved per read while copying an image.
const COPY_BLOCK_BYTES: usize = 256 * 1024;

/// Why an image cannot be imported. [`ImageError::is_invalid_input`] separates the image's
/// own faults (a client error) from I/O and encoding failures.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Fewer than 100 bytes, wrong magic, or an impossible page size.
    #[error("invalid SQLite database: {0}")]
    Header(sqlite::Error),
    #[error(
        "invalid SQLite database: the header's page count (offset 28) is 0; open the file with sqlite3 once so that it rewrites the header, then import again"
    )]
    PageCountZero,
    #[error(
        "invalid SQLite database: it ends in page {pgno} after {len_bytes} bytes, but its header says {page_count} pages of {page_size} bytes ({want_bytes} bytes)"
    )]
    Short {
        pgno: u32,
        page_count: u32,
        page_size: u32,
        len_bytes: u64,
        want_bytes: u64,
    },
    #[error("read database image: {0}")]
    Read(#[source] io::Error),
    #[error("write database image: {0}")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Ltx(#[from] LtxError),
}

impl ImageError {
    /// True when the image itself is at fault (bad header, too short), not the node.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            ImageError::Header(_) | ImageError::PageCountZero | ImageError::Short { .. }
        )
    }
}

/// Size in bytes of an image with this header: page count × page size.
pub fn image_len_bytes(header: &DbHeader) -> u64 {
    u64::from(header.page_count) * u64::from(header.page_size_bytes)
}

/// Checks the first bytes of an image (at most 100 are looked at; fewer means a short file).
pub fn parse_image_header(bytes: &[u8]) -> Result<DbHeader, ImageError> {
    let header = DbHeader::parse(bytes)
        .map_err(ImageError::Header)?
        .ok_or(ImageError::Header(sqlite::Error::DbHeaderShort {
            len_bytes: 0,
        }))?;
    if header.page_count == 0 {
        return Err(ImageError::PageCountZero);
    }
    Ok(header)
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The image of `page_count` pages of `page_size` bytes ended after `len_bytes`.
fn short(page_size: u32, page_count: u32, len_bytes: u64) -> ImageError {
    ImageError::Short {
        pgno: u32::try_from(len_bytes / u64::from(page_size) + 1).unwrap_or(u32::MAX),
        page_count,
        page_size,
        len_bytes,
        want_bytes: u64::from(page_count) * u64::from(page_size),
    }
}

/// Copies exactly one image from `r` to `w`: the header first (checked before anything is
/// written), then the page count × page size bytes it announces. Bytes after that are not
/// read. Returns the header.
pub fn copy_image<R: Read, W: Write>(mut r: R, mut w: W) -> Result<DbHeader, ImageError> {
    let mut head = [0u8; DB_HEADER_SIZE_BYTES];
    let head_len = read_full(&mut r, &mut head).map_err(ImageError::Read)?;
    let header = parse_image_header(&head[..head_len])?;
    let want_bytes = image_len_bytes(&header);
    w.write_all(&head).map_err(ImageError::Write)?;
    let mut copied_bytes = head.len() as u64;
    let mut buf = vec![0u8; COPY_BLOCK_BYTES];
    while copied_bytes < want_bytes {
        let block_bytes = (want_bytes - copied_bytes).min(buf.len() as u64) as usize;
        let n = read_full(&mut r, &mut buf[..block_bytes]).map_err(ImageError::Read)?;
        w.write_all(&buf[..n]).map_err(ImageError::Write)?;
        copied_bytes += n as u64;
        if n < block_bytes {
            return Err(short(
                header.page_size_bytes,
                header.page_count,
                copied_bytes,
            ));
        }
    }
    w.flush().map_err(ImageError::Write)?;
    Ok(header)
}

/// The LTX header recording `image` as the transaction after `pos` (spec §4.3 `/import` step
/// 3): TXID = pos + 1, PreApply = pos's checksum, or a snapshot (PreApply 0) when that TXID
/// is 1; Commit = the image's page count; WAL fields 0.
pub fn image_ltx_header(
    image: &DbHeader,
    pos: Pos,
    node_id: NodeId,
    timestamp_ms: i64,
    compress: bool,
) -> Header {
    let txid = TxId(pos.txid.0 + 1);
    Header {
        flags: if compress { FLAG_COMPRESS_LZ4 } else { 0 },
        page_size: image.page_size_bytes,
        commit: image.page_count,
        min_txid: txid,
        max_txid: txid,
        timestamp_ms,
        pre_apply_checksum: if txid.0 == 1 {
            Checksum(0)
        } else {
            pos.post_apply_checksum
        },
        node_id,
        ..Header::new()
    }
}

/// Encodes the image read from `r` (from its first byte) as the LTX file `header` describes
/// (see [`image_ltx_header`]): every page 1..Commit except the lock page, page 1 with its
/// change counter and schema cookie zeroed. The post-apply checksum is that of the pages
/// written. Returns the writer and the trailer.
pub fn encode_image<R: Read, W: Write>(
    mut r: R,
    header: &Header,
    w: W,
) -> Result<(W, Trailer), ImageError> {
    let page_size = header.page_size;
    let pages = crate::sqlite::pages_through(header.commit, page_size);
    let mut enc = Encoder::with_page_count(w, header, pages)?;
    let lock = lock_pgno(page_size);
    let mut page = vec![0u8; page_size as usize];
    let mut sum = RollingChecksum::new();
    for pgno in 1..=header.commit {
        let n = read_full(&mut r, &mut page).map_err(ImageError::Read)?;
        if n < page.len() {
            let len_bytes = u64::from(pgno - 1) * u64::from(page_size) + n as u64;
            return Err(short(page_size, header.commit, len_bytes));
        }
        if pgno == lock {
            continue;
        }
        if pgno == 1 {
            page[FILE_CHANGE_COUNTER_BYTES].fill(0);
            page[SCHEMA_COOKIE_BYTES].fill(0);
        }
        sum.add_page(pgno, &page);
        enc.encode_page(pgno, &page)?;
    }
    Ok(enc.finish(Checksum(sum.value()))?)
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;
