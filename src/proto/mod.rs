//! The replication stream of `POST /stream` (spec §4.4): position map, frames and the chunked
//! encoding of LTX payloads. Pure code over `Read`/`Write`: no clock, threads, logging or HTTP.
//!
//! Wire shape, all integers big-endian:
//! - Request body: a [position map](read_pos_map), the replica's position for each database.
//! - Response body: an unbounded sequence of [`Frame`]s. An [`Frame::Ltx`] header is followed
//!   by the LTX file in the [chunked encoding](ChunkedWriter), terminated by `00 00`; the next
//!   frame starts right after the terminator.
//!
//! Reading a stream on the replica:
//!
//! ```
//! # use litefs::proto::{ChunkedReader, Frame};
//! # fn run(mut body: impl std::io::Read) -> Result<(), litefs::proto::Error> {
//! while let Some(frame) = Frame::read_from(&mut body)? {
//!     if let Frame::Ltx { name } = &frame {
//!         let mut payload = ChunkedReader::new(&mut body);
//!         // ... decode the LTX file for database `name` from `payload` ...
//! #       let _ = name;
//!         payload.drain()?; // consume through the terminator before the next frame
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Every length read from the wire is checked against a documented limit before anything is
//! allocated ([`DB_NAME_LEN_MAX`], [`LEASE_ID_LEN_MAX`], [`POS_MAP_COUNT_MAX`]); the same limits
//! are enforced when encoding, so we never send what we would refuse to read. Hostile input
//! yields an [`Error`], never a panic.
//!
//! Go LiteFS interoperability: Go reads names as arbitrary bytes and lengths without bounds; we
//! additionally require UTF-8 and the limits above, and reject duplicate names in a position map.

mod chunked;
mod frame;
mod pos_map;

use std::io::{self, Read};

pub use chunked::{CHUNK_LEN_MAX, ChunkedReader, ChunkedWriter, copy_chunked};
pub use frame::{Frame, FrameType};
pub use pos_map::{PosMap, read_pos_map, write_pos_map};

/// Longest database name accepted on the wire, in bytes. LiteFS names are single path
/// components (Linux `NAME_MAX` is 255), so 4096 (`PATH_MAX`) leaves ample room while keeping a
/// hostile `name_len` from allocating gigabytes.
pub const DB_NAME_LEN_MAX: u32 = 4096;

/// Longest lease id accepted in a Handoff frame, in bytes. Consul session ids are 36-byte UUIDs.
pub const LEASE_ID_LEN_MAX: u32 = 4096;

/// Most entries accepted in a position map. A node with a million databases is far beyond any
/// LiteFS deployment; the bound keeps a hostile `count` from driving an unbounded read loop.
pub const POS_MAP_COUNT_MAX: u32 = 1_000_000;

/// Why a position map or frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input ended inside a frame, a position map or a chunk. Text matches Go's
    /// `io.ErrUnexpectedEOF`, which LiteFS returns in the same places.
    #[error("unexpected EOF")]
    UnexpectedEof,

    /// An unknown frame type. Text matches Go LiteFS (`0x%02x`).
    #[error("invalid stream frame type: 0x{0:02x}")]
    InvalidFrameType(u32),

    #[error("database name too long: {len_bytes} bytes, maximum {DB_NAME_LEN_MAX}")]
    NameTooLong { len_bytes: u64 },

    #[error("database name is not valid UTF-8: {name_lossy:?}")]
    NameNotUtf8 { name_lossy: String },

    #[error("lease id too long: {len_bytes} bytes, maximum {LEASE_ID_LEN_MAX}")]
    LeaseIdTooLong { len_bytes: u64 },

    #[error("lease id is not valid UTF-8: {lease_id_lossy:?}")]
    LeaseIdNotUtf8 { lease_id_lossy: String },

    #[error("position map has too many entries: {count}, maximum {POS_MAP_COUNT_MAX}")]
    PosMapTooLarge { count: u64 },

    #[error("duplicate database name in position map: {0:?}")]
    DuplicateName(String),

    /// Any other I/O error from the underlying reader or writer.
    #[error(transparent)]
    Io(io::Error),
}

/// Folds `UnexpectedEof` into [`Error::UnexpectedEof`] so callers match one variant no matter
/// whether the truncation was seen by this module or by a `read_exact` below it.
impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            Error::UnexpectedEof
        } else {
            Error::Io(err)
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Fills `buf` completely, or returns `Ok(false)` if the reader is at EOF before the first
/// byte. EOF after some but not all bytes is [`Error::UnexpectedEof`]. This is what tells a
/// clean disconnect (EOF at a frame boundary) from a truncated frame.
fn read_exact_or_eof<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(Error::UnexpectedEof),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

fn read_u32<R: Read + ?Sized>(r: &mut R) -> Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64<R: Read + ?Sized>(r: &mut R) -> Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

/// Reads a `len u32` followed by that many bytes, refusing lengths above `len_max` before
/// allocating. Returns the raw bytes; the caller checks UTF-8 to pick its own error.
fn read_len_prefixed<R: Read + ?Sized>(
    r: &mut R,
    len_max: u32,
    too_long: fn(u64) -> Error,
) -> Result<Vec<u8>> {
    let len = read_u32(r)?;
    if len > len_max {
        return Err(too_long(u64::from(len)));
    }
    // `len <= len_max`, a small constant, so this allocation is bounded.
    let mut bytes = vec![0u8; len as usize];
    r.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Reads a length-prefixed database name (at most [`DB_NAME_LEN_MAX`] bytes, UTF-8).
fn read_name<R: Read + ?Sized>(r: &mut R) -> Result<String> {
    let bytes = read_len_prefixed(r, DB_NAME_LEN_MAX, |len_bytes| Error::NameTooLong {
        len_bytes,
    })?;
    String::from_utf8(bytes).map_err(|e| Error::NameNotUtf8 {
        name_lossy: String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Appends `len u32` + `name` to `buf`, refusing names the reader would refuse.
fn put_name(buf: &mut Vec<u8>, name: &str) -> Result<()> {
    let len = check_name_len(name)?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(name.as_bytes());
    Ok(())
}

/// Returns the name's length as the `u32` that goes on the wire, if within [`DB_NAME_LEN_MAX`].
fn check_name_len(name: &str) -> Result<u32> {
    match u32::try_from(name.len()) {
        Ok(len) if len <= DB_NAME_LEN_MAX => Ok(len),
        _ => Err(Error::NameTooLong {
            len_bytes: name.len() as u64,
        }),
    }
}

#[cfg(test)]
mod testutil {
    use std::io::{self, Read};

    /// A reader that hands out at most one byte per `read`, as a slow socket might. Decoders
    /// must give the same answers through it as through a `&[u8]`.
    pub struct OneByteReader<'a>(pub &'a [u8]);

    impl Read for OneByteReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if buf.is_empty() || self.0.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    /// Joins byte-annotated rows into one buffer.
    pub fn concat(rows: &[&[u8]]) -> Vec<u8> {
        rows.concat()
    }

    /// Deterministic non-repeating-looking payload bytes, so misplaced chunks show up.
    pub fn payload(len: usize) -> Vec<u8> {
        let mut x: u32 = 0x9e37_79b9;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts() {
        assert_eq!(
            Error::InvalidFrameType(9).to_string(),
            "invalid stream frame type: 0x09"
        );
        assert_eq!(
            Error::InvalidFrameType(0x1234).to_string(),
            "invalid stream frame type: 0x1234"
        );
        assert_eq!(Error::UnexpectedEof.to_string(), "unexpected EOF");
        assert_eq!(
            Error::NameTooLong {
                len_bytes: 0xFFFF_FFFF
            }
            .to_string(),
            "database name too long: 4294967295 bytes, maximum 4096"
        );
        assert_eq!(
            Error::PosMapTooLarge { count: 0xFFFF_FFFF }.to_string(),
            "position map has too many entries: 4294967295, maximum 1000000"
        );
    }

    #[test]
    fn io_unexpected_eof_folds_into_variant() {
        let err = Error::from(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert!(matches!(err, Error::UnexpectedEof));
        let err = Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(matches!(err, Error::Io(e) if e.kind() == io::ErrorKind::BrokenPipe));
    }

    /// What a primary sends for one transaction and a quiet second, read back in order.
    #[test]
    fn stream_sequence_round_trip() {
        use crate::types::TxId;
        use std::io::Read;

        let ltx_file = testutil::payload(200_000);
        let mut stream = Vec::new();
        Frame::Ltx {
            name: "test.db".into(),
        }
        .write_to(&mut stream)
        .unwrap();
        copy_chunked(&mut &ltx_file[..], &mut stream).unwrap();
        let after_payload = [
            Frame::Hwm {
                txid: TxId(5),
                name: "test.db".into(),
            },
            Frame::Heartbeat {
                timestamp_ms: 1_700_000_000_000,
            },
            Frame::Ready,
            Frame::End,
        ];
        for frame in &after_payload {
            frame.write_to(&mut stream).unwrap();
        }

        let read_stream = |mut r: &mut dyn Read| {
            assert_eq!(
                Frame::read_from(&mut r).unwrap(),
                Some(Frame::Ltx {
                    name: "test.db".into()
                })
            );
            let mut file = Vec::new();
            let mut payload = ChunkedReader::new(&mut r);
            payload.read_to_end(&mut file).unwrap();
            assert!(payload.is_finished());
            assert_eq!(file, ltx_file);
            for frame in &after_payload {
                assert_eq!(Frame::read_from(&mut r).unwrap().as_ref(), Some(frame));
            }
            assert_eq!(
                Frame::read_from(&mut r).unwrap(),
                None,
                "clean EOF at the end"
            );
        };
        read_stream(&mut &stream[..]);
        read_stream(&mut testutil::OneByteReader(&stream));
    }

    #[test]
    fn read_exact_or_eof_tells_clean_eof_from_truncation() {
        let mut buf = [0u8; 4];
        assert!(!read_exact_or_eof(&mut &[][..], &mut buf).unwrap());
        assert!(matches!(
            read_exact_or_eof(&mut &[1u8, 2][..], &mut buf),
            Err(Error::UnexpectedEof)
        ));
        let mut one = testutil::OneByteReader(&[1, 2, 3, 4]);
        assert!(read_exact_or_eof(&mut one, &mut buf).unwrap());
        assert_eq!(buf, [1, 2, 3, 4]);
    }
}
