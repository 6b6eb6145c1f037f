//! The LZ4 *frame* format around an LTX page block (spec §1.5).
//!
//! We parse frames ourselves (blocks are decoded by `lz4_flex::block`) because the LTX trailer
//! follows the frame directly: the reader must stop exactly at the frame's end and never read
//! ahead, and every length it meets is bounded by the frame descriptor before allocating.
//! The writer produces what Go's pierrec/lz4 v4 writes for LTX — independent 64 KB blocks, no
//! block checksums, incompressible blocks stored raw — except the content checksum: an LTX
//! file's CRC-64 already covers every byte of the frame's content, and xxh32 over it cost a
//! quarter of a 100 MB transaction's capture. Every LZ4 frame reader, Go's included, takes
//! the flag from the descriptor (spec §1.5: any valid frame interoperates).

use super::error::{Error, Result};
use std::io::{self, Read, Write};
use xxhash_rust::xxh32::{Xxh32, xxh32};

pub const FRAME_MAGIC: u32 = 0x184D_2204;
/// The block size we write (BD index 4).
pub const WRITE_BLOCK_SIZE: usize = 64 * 1024;
/// Linked blocks may refer back this far into earlier output.
const WINDOW_SIZE: usize = 64 * 1024;

const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION_01: u8 = 0b0100_0000;
const FLG_BLOCK_INDEPENDENT: u8 = 0b0010_0000;
const FLG_BLOCK_CHECKSUM: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_CONTENT_CHECKSUM: u8 = 0b0000_0100;
const FLG_RESERVED: u8 = 0b0000_0010;
const FLG_DICT_ID: u8 = 0b0000_0001;
const BLOCK_UNCOMPRESSED_BIT: u32 = 1 << 31;

fn lz4_err(message: impl Into<String>) -> Error {
    Error::Lz4(message.into())
}

/// The descriptor byte pair (FLG, BD) and header checksum for what we write.
fn write_descriptor() -> [u8; 3] {
    let flg = FLG_VERSION_01 | FLG_BLOCK_INDEPENDENT;
    let bd = 4 << 4; // 64 KB max block size
    let hc = (xxh32(&[flg, bd], 0) >> 8) as u8;
    [flg, bd, hc]
}

/// After this many blocks in a row stored raw (they did not compress), the writer stops
/// trying: random data (blobs, encrypted or already compressed pages) costs LZ4 ~35 µs per
/// 64 KiB block for nothing, ~55 ms of a 100 MB transaction's capture.
const RAW_BLOCKS_BEFORE_SKIPPING: u32 = 2;

/// While skipping, every this-many-th block is tried again, so data that turns compressible
/// is compressed again within this many blocks.
const RAW_BLOCKS_BETWEEN_PROBES: u32 = 8;

/// Whether a block is worth an LZ4 attempt after `raw_streak` raw blocks in a row.
fn worth_compressing(raw_streak: u32) -> bool {
    raw_streak < RAW_BLOCKS_BEFORE_SKIPPING || raw_streak.is_multiple_of(RAW_BLOCKS_BETWEEN_PROBES)
}

/// Streams bytes into one LZ4 frame written to `inner`.
pub struct FrameWriter<W: Write> {
    inner: W,
    block: Vec<u8>,
    compressed: Vec<u8>,
    /// Blocks stored raw in a row, tried or not ([`worth_compressing`]).
    raw_streak: u32,
    /// Content bytes still to come, when the caller declared the length
    /// ([`FrameWriter::with_content_len`]).
    content_left: Option<u64>,
    /// Bytes still to come of a raw block whose size header is already written: they go to
    /// `inner` as they arrive, without the copy into `block`.
    raw_block_left: usize,
}

impl<W: Write> FrameWriter<W> {
    /// Writes the frame header and returns a writer for the frame's content.
    pub fn new(mut inner: W) -> io::Result<Self> {
        let mut header = [0u8; 7];
        header[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        header[4..7].copy_from_slice(&write_descriptor());
        inner.write_all(&header)?;
        Ok(FrameWriter {
            inner,
            block: Vec::with_capacity(WRITE_BLOCK_SIZE),
            // Sized per block in `flush_block`: a one-page commit's file should not zero the
            // room a full 64 KiB block could need.
            compressed: Vec::new(),
            raw_streak: 0,
            content_left: None,
            raw_block_left: 0,
        })
    }

    /// [`FrameWriter::new`] for exactly `content_len` bytes of content (an error otherwise).
    /// Every block's size is then known when it starts, so a block not worth an LZ4 attempt
    /// streams through to `inner` behind its size header instead of being gathered first
    /// (~16 ms of a 100 MB transaction's capture). The bytes are the same either way.
    pub fn with_content_len(inner: W, content_len: u64) -> io::Result<Self> {
        let mut w = FrameWriter::new(inner)?;
        w.content_left = Some(content_len);
        Ok(w)
    }

    /// Starts a raw block streamed through, if the length is known, no block is being
    /// gathered, and the block is not worth an LZ4 attempt.
    fn start_raw_block(&mut self) -> io::Result<()> {
        let Some(left) = self.content_left else {
            return Ok(());
        };
        if !self.block.is_empty() || left == 0 || worth_compressing(self.raw_streak) {
            return Ok(());
        }
        let size = left.min(WRITE_BLOCK_SIZE as u64) as usize;
        self.inner
            .write_all(&(size as u32 | BLOCK_UNCOMPRESSED_BIT).to_le_bytes())?;
        self.raw_block_left = size;
        Ok(())
    }

    /// Counts `n` content bytes against the declared length.
    fn take_content(&mut self, n: usize) -> io::Result<()> {
        if let Some(left) = self.content_left.as_mut() {
            *left = left.checked_sub(n as u64).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "LZ4 frame content longer than declared",
                )
            })?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let compressed_len = if worth_compressing(self.raw_streak) {
            let room = lz4_flex::block::get_maximum_output_size(self.block.len());
            if self.compressed.len() < room {
                self.compressed.resize(room, 0);
            }
            let n = lz4_flex::block::compress_into(&self.block, &mut self.compressed)
                .map_err(|e| io::Error::other(format!("lz4 compress: {e}")))?;
            (n < self.block.len()).then_some(n)
        } else {
            None
        };
        if let Some(n) = compressed_len {
            self.raw_streak = 0;
            self.inner.write_all(&(n as u32).to_le_bytes())?;
            self.inner.write_all(&self.compressed[..n])?;
        } else {
            // Incompressible (or not tried): store raw, as the frame format allows.
            self.raw_streak = self.raw_streak.saturating_add(1);
            let size = self.block.len() as u32 | BLOCK_UNCOMPRESSED_BIT;
            self.inner.write_all(&size.to_le_bytes())?;
            self.inner.write_all(&self.block)?;
        }
        self.block.clear();
        Ok(())
    }

    /// Writes the last block and the end mark; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.raw_block_left > 0 || self.content_left.is_some_and(|left| left > 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "LZ4 frame content shorter than declared",
            ));
        }
        self.flush_block()?;
        self.inner.write_all(&0u32.to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.raw_block_left == 0 {
            self.start_raw_block()?;
        }
        if self.raw_block_left > 0 {
            let n = self.raw_block_left.min(buf.len());
            self.take_content(n)?;
            self.inner.write_all(&buf[..n])?;
            self.raw_block_left -= n;
            if self.raw_block_left == 0 {
                self.raw_streak = self.raw_streak.saturating_add(1);
            }
            return Ok(n);
        }
        let room = WRITE_BLOCK_SIZE - self.block.len();
        let n = room.min(buf.len());
        self.take_content(n)?;
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == WRITE_BLOCK_SIZE {
            self.flush_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the content of one LZ4 frame from `inner`, consuming exactly the frame's bytes.
pub struct FrameReader<R: Read> {
    inner: R,
    block_size_max: usize,
    independent: bool,
    block_checksum: bool,
    content_checksum: bool,
    /// Whether the content checksum is computed and compared (see
    /// [`FrameReader::skip_content_checksum`]).
    verify_content: bool,
    content_size: Option<u64>,
    /// Decoded bytes of the current block, served from `pos`.
    out: Vec<u8>,
    pos: usize,
    /// Compressed bytes of the current block.
    input: Vec<u8>,
    /// The last `WINDOW_SIZE` bytes of output, for linked blocks.
    window: Vec<u8>,
    content_hash: Xxh32,
    content_len: u64,
    ended: bool,
}

/// What a frame's header declares.
struct Descriptor {
    block_size_max: usize,
    independent: bool,
    block_checksum: bool,
    content_checksum: bool,
    content_size: Option<u64>,
}

/// Reads and checks a frame header (magic, FLG, BD, optional content size, header checksum).
fn read_descriptor(inner: &mut impl Read) -> Result<Descriptor> {
    let mut head = [0u8; 6];
    inner.read_exact(&mut head)?;
    let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if magic != FRAME_MAGIC {
        return Err(lz4_err(format!("invalid frame magic 0x{magic:08x}")));
    }
    let (flg, bd) = (head[4], head[5]);
    if flg & FLG_VERSION_MASK != FLG_VERSION_01 {
        return Err(lz4_err(format!(
            "unsupported frame version in FLG 0x{flg:02x}"
        )));
    }
    if flg & (FLG_RESERVED | FLG_DICT_ID) != 0 {
        return Err(lz4_err(format!(
            "unsupported frame flags 0x{flg:02x} (reserved bit or dictionary id)"
        )));
    }
    if bd & 0b1000_1111 != 0 {
        return Err(lz4_err(format!("invalid block descriptor 0x{bd:02x}")));
    }
    let block_size_max = match (bd >> 4) & 0x7 {
        4 => 64 * 1024,
        5 => 256 * 1024,
        6 => 1024 * 1024,
        7 => 4 * 1024 * 1024,
        other => return Err(lz4_err(format!("invalid block max size index {other}"))),
    };
    let mut descriptor = vec![flg, bd];
    let content_size = if flg & FLG_CONTENT_SIZE != 0 {
        let mut size = [0u8; 8];
        inner.read_exact(&mut size)?;
        descriptor.extend_from_slice(&size);
        Some(u64::from_le_bytes(size))
    } else {
        None
    };
    let mut hc = [0u8; 1];
    inner.read_exact(&mut hc)?;
    let want = (xxh32(&descriptor, 0) >> 8) as u8;
    if hc[0] != want {
        return Err(lz4_err(format!(
            "frame header checksum 0x{:02x}, expected 0x{want:02x}",
            hc[0]
        )));
    }
    Ok(Descriptor {
        block_size_max,
        independent: flg & FLG_BLOCK_INDEPENDENT != 0,
        block_checksum: flg & FLG_BLOCK_CHECKSUM != 0,
        content_checksum: flg & FLG_CONTENT_CHECKSUM != 0,
        content_size,
    })
}

/// Reads a block's size field: `None` at the end mark, else the payload length and whether
/// it is stored raw (not compressed), checked against the frame's maximum.
fn read_block_size(inner: &mut impl Read, block_size_max: usize) -> Result<Option<(usize, bool)>> {
    let mut size = [0u8; 4];
    inner.read_exact(&mut size)?;
    let size = u32::from_le_bytes(size);
    if size == 0 {
        return Ok(None);
    }
    let len = (size & !BLOCK_UNCOMPRESSED_BIT) as usize;
    if len > block_size_max {
        return Err(lz4_err(format!(
            "block of {len} bytes exceeds the frame's maximum of {block_size_max}"
        )));
    }
    Ok(Some((len, size & BLOCK_UNCOMPRESSED_BIT != 0)))
}

/// The blocks of one frame held whole in memory, borrowed from it (see [`frame_blocks`]).
pub struct FrameBlocks<'a> {
    /// Each block's payload and whether it is stored raw (else LZ4-compressed), in order.
    pub blocks: Vec<(&'a [u8], bool)>,
    /// Whether blocks decode on their own (else they may refer back into earlier output).
    pub independent: bool,
    pub block_size_max: usize,
    /// The content's length, if the frame header declares it.
    pub content_size: Option<u64>,
    /// Bytes the frame takes, end mark and content checksum included.
    pub len_bytes: usize,
}

/// Locates the blocks of the frame at the start of `bytes` without decoding any; `None` if
/// there are more than `blocks_max` (each costs a slot in memory, and a frame of tiny blocks
/// is better read as a stream). Neither block nor content checksums are compared: for an LTX
/// file, whose checksum covers every byte of the content.
pub fn frame_blocks(mut bytes: &[u8], blocks_max: usize) -> Result<Option<FrameBlocks<'_>>> {
    let total = bytes.len();
    let frame = read_descriptor(&mut bytes)?;
    // Room for the blocks `bytes` holds if they are full (more if some are short).
    let mut blocks = Vec::with_capacity((total / frame.block_size_max + 1).min(blocks_max));
    while let Some((len, stored_raw)) = read_block_size(&mut bytes, frame.block_size_max)? {
        let checksum_len = if frame.block_checksum { 4 } else { 0 };
        if bytes.len() < len + checksum_len {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        if blocks.len() == blocks_max {
            return Ok(None);
        }
        blocks.push((&bytes[..len], stored_raw));
        bytes = &bytes[len + checksum_len..];
    }
    if frame.content_checksum {
        let mut sum = [0u8; 4];
        bytes.read_exact(&mut sum)?;
    }
    Ok(Some(FrameBlocks {
        blocks,
        independent: frame.independent,
        block_size_max: frame.block_size_max,
        content_size: frame.content_size,
        len_bytes: total - bytes.len(),
    }))
}

/// Decodes one independent compressed block of at most `block_size_max` bytes.
pub fn decompress_block(input: &[u8], block_size_max: usize) -> Result<Vec<u8>> {
    let mut out = vec![0u8; block_size_max];
    let n = lz4_flex::block::decompress_into(input, &mut out)
        .map_err(|e| lz4_err(format!("corrupt block: {e}")))?;
    out.truncate(n);
    Ok(out)
}

impl<R: Read> FrameReader<R> {
    /// Reads and checks the frame header.
    pub fn new(mut inner: R) -> Result<Self> {
        let frame = read_descriptor(&mut inner)?;
        Ok(FrameReader {
            inner,
            block_size_max: frame.block_size_max,
            independent: frame.independent,
            block_checksum: frame.block_checksum,
            content_checksum: frame.content_checksum,
            verify_content: true,
            content_size: frame.content_size,
            out: Vec::new(),
            pos: 0,
            input: Vec::new(),
            window: Vec::new(),
            content_hash: Xxh32::new(0),
            content_len: 0,
            ended: false,
        })
    }

    /// Reads the content checksum without computing or comparing it: for a reader whose
    /// content is covered by a stronger check of its own (the LTX file checksum covers every
    /// decoded byte), xxh32 over the content is a second pass for nothing.
    pub fn skip_content_checksum(&mut self) {
        self.verify_content = false;
    }

    /// Reads the next block into `out`; at the end mark checks the content checksum and sets
    /// `ended`.
    fn next_block(&mut self) -> Result<()> {
        let Some((len, stored_raw)) = read_block_size(&mut self.inner, self.block_size_max)? else {
            return self.end();
        };
        self.input.resize(len, 0);
        self.inner.read_exact(&mut self.input)?;
        if self.block_checksum {
            let mut sum = [0u8; 4];
            self.inner.read_exact(&mut sum)?;
            if u32::from_le_bytes(sum) != xxh32(&self.input, 0) {
                return Err(lz4_err("block checksum mismatch"));
            }
        }
        if stored_raw {
            std::mem::swap(&mut self.out, &mut self.input);
        } else {
            self.out.resize(self.block_size_max, 0);
            let dict: &[u8] = if self.independent { &[] } else { &self.window };
            let n = lz4_flex::block::decompress_into_with_dict(&self.input, &mut self.out, dict)
                .map_err(|e| lz4_err(format!("corrupt block: {e}")))?;
            self.out.truncate(n);
        }
        self.pos = 0;
        if self.verify_content {
            self.content_hash.update(&self.out);
        }
        self.content_len += self.out.len() as u64;
        if !self.independent {
            self.window.extend_from_slice(&self.out);
            let excess = self.window.len().saturating_sub(WINDOW_SIZE);
            self.window.drain(..excess);
        }
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        self.ended = true;
        self.out.clear();
        self.pos = 0;
        if self.content_checksum {
            let mut sum = [0u8; 4];
            self.inner.read_exact(&mut sum)?;
            let want = self.content_hash.digest();
            if self.verify_content && u32::from_le_bytes(sum) != want {
                return Err(lz4_err("content checksum mismatch"));
            }
        }
        if let Some(size) = self.content_size
            && size != self.content_len
        {
            return Err(lz4_err(format!(
                "content size {} does not match the declared {size}",
                self.content_len
            )));
        }
        Ok(())
    }

    /// Requires that the frame ends here (no more content), consuming the end mark and
    /// checksum, and returns the inner reader positioned just after the frame.
    pub fn finish(mut self) -> Result<R> {
        loop {
            if self.pos < self.out.len() {
                return Err(Error::ExpectedLz4EndFrame);
            }
            if self.ended {
                return Ok(self.inner);
            }
            self.next_block()?;
        }
    }

    /// Fills `buf` from the frame's content; running out is an unexpected EOF.
    pub fn read_exact_content(&mut self, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            let n = self.read_inner(buf)?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            buf = &mut buf[n..];
        }
        Ok(())
    }

    fn read_inner(&mut self, buf: &mut [u8]) -> Result<usize> {
        while self.pos == self.out.len() {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            self.next_block()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf).map_err(|e| match e {
            Error::Io(io) => io,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: repeated text with a counter.
        let mut v = Vec::with_capacity(len);
        let mut i = 0u32;
        while v.len() < len {
            v.extend_from_slice(format!("page {i} of sample data; ").as_bytes());
            i += 1;
        }
        v.truncate(len);
        v
    }

    fn ours(data: &[u8]) -> Vec<u8> {
        let mut w = FrameWriter::new(Vec::new()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn read_all_then_trailer(frame_and_trailer: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut r = FrameReader::new(frame_and_trailer).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let mut rest = r.finish().unwrap();
        let mut trailer = Vec::new();
        rest.read_to_end(&mut trailer).unwrap();
        (out, trailer)
    }

    #[test]
    fn our_frame_header_is_gos_without_the_content_checksum() {
        // Go-written golden files start the frame with: magic 04 22 4d 18, FLG 0x64
        // (version 01, independent blocks, content checksum), BD 0x40 (64 KB), HC 0xa7, and
        // end it with the end mark and xxh32 of the content. Ours: FLG 0x60 (no content
        // checksum), its header checksum, and the end mark alone.
        let frame = ours(b"");
        // 0x82 = (xxh32(60 40) >> 8) & 0xff, checked by liblz4 in tests/lz4_interop.rs.
        assert_eq!(&frame[..7], &[0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82]);
        assert_eq!(&frame[7..], &[0, 0, 0, 0]);
        // A Go frame of the same (empty) content reads the same, checksum and all.
        let go = [
            0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7, 0, 0, 0, 0, 0x05, 0x5d, 0xcc, 0x02,
        ];
        let (content, rest) = read_all_then_trailer(&go);
        assert!(
            content.is_empty() && rest.is_empty(),
            "{content:?} {rest:?}"
        );
    }

    #[test]
    fn round_trip_stops_exactly_at_frame_end() {
        for len in [0, 1, 100, WRITE_BLOCK_SIZE, WRITE_BLOCK_SIZE + 1, 300_000] {
            let data = sample(len);
            let mut file = ours(&data);
            file.extend_from_slice(b"TRAILER-16-BYTES");
            let (out, trailer) = read_all_then_trailer(&file);
            assert_eq!(out.len(), data.len());
            assert!(out == data, "content differs for len {len}");
            assert_eq!(trailer, b"TRAILER-16-BYTES", "len {len}");
        }
    }

    #[test]
    fn incompressible_blocks_are_stored_raw() {
        let mut x = 0x1234_5678u32;
        let data: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let frame = ours(&data);
        let first_block = u32::from_le_bytes(frame[7..11].try_into().unwrap());
        assert_ne!(first_block & BLOCK_UNCOMPRESSED_BIT, 0, "raw bit not set");
        let (out, _) = read_all_then_trailer(&frame);
        assert!(out == data);
    }

    /// Whether each block of one of our frames is stored raw, in order.
    fn raw_blocks(frame: &[u8]) -> Vec<bool> {
        let mut at = 7;
        let mut raw = Vec::new();
        loop {
            let size = u32::from_le_bytes(frame[at..at + 4].try_into().unwrap());
            if size == 0 {
                return raw;
            }
            raw.push(size & BLOCK_UNCOMPRESSED_BIT != 0);
            at += 4 + (size & !BLOCK_UNCOMPRESSED_BIT) as usize;
        }
    }

    /// After two raw blocks in a row the writer stops trying LZ4 but for every eighth block,
    /// so incompressible data costs no compression, and data that turns compressible is
    /// compressed again within eight blocks; every byte comes back either way.
    #[test]
    fn the_writer_stops_trying_on_incompressible_data_and_probes() {
        let mut rng = crate::testkit::XorShift64(7);
        let mut data = rng.bytes(20 * WRITE_BLOCK_SIZE);
        data.extend_from_slice(&sample(20 * WRITE_BLOCK_SIZE));
        let frame = ours(&data);
        let raw = raw_blocks(&frame);
        assert_eq!(raw.len(), 40, "blocks");
        assert!(
            raw[..20].iter().all(|&r| r),
            "random blocks stored raw: {raw:?}"
        );
        let compressed_from = raw[20..].iter().position(|&r| !r).map(|i| i + 20);
        assert!(
            compressed_from.is_some_and(|i| i < 20 + RAW_BLOCKS_BETWEEN_PROBES as usize),
            "first compressed block after the switch at block 20: {compressed_from:?}"
        );
        assert!(
            raw[compressed_from.unwrap()..].iter().all(|&r| !r),
            "compressible blocks after the probe: {raw:?}"
        );
        let (out, _) = read_all_then_trailer(&frame);
        assert!(out == data, "content round trip");
        let tried: Vec<u32> = (0..20).filter(|&s| worth_compressing(s)).collect();
        assert_eq!(tried, vec![0, 1, 8, 16], "streaks that are tried");
    }

    /// A frame whose content length is declared streams the raw blocks it does not try to
    /// compress; its bytes are those of the undeclared writer, whatever the write sizes (an
    /// LTX page is a 4-byte header and then the page), and a length that is not kept is an
    /// error.
    #[test]
    fn a_declared_length_gives_the_same_frame() {
        let mut rng = crate::testkit::XorShift64(11);
        let mut data = rng.bytes(9 * WRITE_BLOCK_SIZE + 1234);
        data.extend_from_slice(&sample(3 * WRITE_BLOCK_SIZE + 17));
        data.extend_from_slice(&rng.bytes(12 * WRITE_BLOCK_SIZE + 5));
        for len in [0, 3, WRITE_BLOCK_SIZE, 5 * WRITE_BLOCK_SIZE + 9, data.len()] {
            let data = &data[..len];
            let mut w = FrameWriter::with_content_len(Vec::new(), len as u64).unwrap();
            for piece in data.chunks(4100) {
                let (head, page) = piece.split_at(piece.len().min(4));
                w.write_all(head).unwrap();
                w.write_all(page).unwrap();
            }
            assert!(
                w.finish().unwrap() == ours(data),
                "frames differ at len {len}"
            );
        }
        let mut short = FrameWriter::with_content_len(Vec::new(), 10).unwrap();
        short.write_all(&data[..9]).unwrap();
        assert!(short.finish().is_err(), "9 of 10 declared bytes");
        let mut long = FrameWriter::with_content_len(Vec::new(), 10).unwrap();
        assert!(
            long.write_all(&data[..11]).is_err(),
            "11 of 10 declared bytes"
        );
        // Streaming starts on the third block of random data: declared 3 blocks, given 2.
        let mut cut =
            FrameWriter::with_content_len(Vec::new(), 3 * WRITE_BLOCK_SIZE as u64).unwrap();
        cut.write_all(&data[..2 * WRITE_BLOCK_SIZE + 1]).unwrap();
        assert!(cut.finish().is_err(), "a raw block cut short");
    }

    #[test]
    fn reads_lz4_flex_frames_with_every_option() {
        let data = sample(700_000);
        let modes = [BlockMode::Independent, BlockMode::Linked];
        let sizes = [
            BlockSize::Max64KB,
            BlockSize::Max256KB,
            BlockSize::Max1MB,
            BlockSize::Max4MB,
        ];
        for mode in modes {
            for size in sizes {
                for (block_checksums, content_checksum, content_size) in [
                    (false, false, None),
                    (true, true, Some(data.len() as u64)),
                    (true, false, None),
                ] {
                    let info = FrameInfo::new()
                        .block_mode(mode)
                        .block_size(size)
                        .block_checksums(block_checksums)
                        .content_checksum(content_checksum)
                        .content_size(content_size);
                    let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
                    enc.write_all(&data).unwrap();
                    let mut file = enc.finish().unwrap();
                    file.extend_from_slice(b"tail");
                    let (out, trailer) = read_all_then_trailer(&file);
                    assert!(
                        out == data,
                        "{mode:?} {size:?} {block_checksums} {content_checksum}"
                    );
                    assert_eq!(trailer, b"tail");
                }
            }
        }
    }

    #[test]
    fn lz4_flex_reads_our_frames() {
        let data = sample(200_000);
        let frame = ours(&data);
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(frame.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == data);
    }

    #[test]
    fn corruption_is_reported_not_panicked() {
        let data = sample(20_000);
        // Go's frames carry a content checksum: a flip that changes the content is refused
        // by the frame alone. Ours do not (the LTX file checksum covers the content instead,
        // ltx::tests): a flip may decode to other bytes, but it never panics, and what it
        // decodes stays within one block of the content's length.
        let info = FrameInfo::new()
            .block_mode(BlockMode::Independent)
            .block_size(BlockSize::Max64KB)
            .content_checksum(true);
        let mut go = FrameEncoder::with_frame_info(info, Vec::new());
        go.write_all(&data).unwrap();
        for (frame, checked) in [(go.finish().unwrap(), true), (ours(&data), false)] {
            for i in 0..frame.len() {
                for flip in [0x01u8, 0x80] {
                    let mut bad = frame.clone();
                    bad[i] ^= flip;
                    let result = (|| -> Result<Vec<u8>> {
                        let mut r = FrameReader::new(bad.as_slice())?;
                        let mut out = Vec::new();
                        r.read_inner_to_end(&mut out)?;
                        r.finish()?;
                        Ok(out)
                    })();
                    if let Ok(out) = result {
                        assert!(
                            !checked || out == data,
                            "flip {flip:#x} at {i} accepted with wrong content"
                        );
                        assert!(
                            out.len() <= data.len() + WRITE_BLOCK_SIZE,
                            "flip {flip:#x} at {i}: {} bytes out of {}",
                            out.len(),
                            data.len()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn finish_rejects_content_after_end_of_pages() {
        let frame = ours(b"abcdef");
        let mut r = FrameReader::new(frame.as_slice()).unwrap();
        let mut buf = [0u8; 3];
        r.read_exact(&mut buf).unwrap();
        assert!(matches!(r.finish(), Err(Error::ExpectedLz4EndFrame)));
    }

    impl<R: Read> FrameReader<R> {
        fn read_inner_to_end(&mut self, out: &mut Vec<u8>) -> Result<()> {
            let mut buf = [0u8; 8192];
            loop {
                let n = self.read_inner(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
}
