//! The LTX v1 file format (spec §1), byte-compatible with superfly/ltx v0.3.14.
//!
//! An LTX file is a 100-byte header, a page block (page frames and a zero end marker,
//! optionally wrapped in one LZ4 frame) and a 16-byte trailer. Everything here is pure:
//! it reads from `Read` and writes to `Write`, and never touches the file system itself.

pub mod checksum;
pub mod compactor;
pub mod decoder;
pub mod diagnose;
pub mod encoder;
pub mod error;
pub mod header;
pub mod image;
pub mod lz4;

#[cfg(test)]
mod tests;

pub use checksum::{RollingChecksum, crc64, database_checksum, lock_pgno, page_checksum};
pub use compactor::{Compactor, compact};
pub use decoder::{
    Decoder, PageSlices, Summary, decode_database_to, verify, verify_in_memory, verify_pages,
};
pub use encoder::Encoder;
pub use error::{Error, Result};
pub use header::{
    FLAG_COMPRESS_LZ4, HEADER_SIZE, Header, TRAILER_SIZE, Trailer, format_filename,
    format_timestamp, format_timestamp_trimmed, is_valid_page_size, parse_filename,
};
pub use image::{ImageError, copy_image, encode_image, image_ltx_header};
