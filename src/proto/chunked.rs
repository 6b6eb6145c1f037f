//! The chunked encoding of LTX payloads inside the stream (spec §4.4), which lets the primary
//! send a file without knowing its length up front:
//!
//! ```text
//! repeated { len u16 BE (1..=65535) · len bytes }   then   00 00 (terminator)
//! ```
//!
//! A zero length is reserved for the terminator, so writers never emit an empty data chunk.

use std::io::{self, Read, Write};

/// The largest data chunk, in bytes: the most a `u16` length can say.
pub const CHUNK_LEN_MAX: usize = u16::MAX as usize;

const TERMINATOR: [u8; 2] = [0x00, 0x00];

/// Wraps a writer so that everything written becomes chunks; [`finish`](Self::finish) writes
/// the terminator. Each `write` emits one chunk of at most [`CHUNK_LEN_MAX`] bytes (as Go
/// LiteFS does, there is no coalescing of small writes: use [`copy_chunked`] or write in large
/// blocks for full-size chunks). A chunk is handed to the inner writer as two `write_all`s
/// (length, data), so wrap an unbuffered socket in a `BufWriter`.
///
/// Dropping the writer without `finish` leaves the payload unterminated, which the reader will
/// see as a truncated stream. After an I/O error the stream is in an unknown state; discard it.
pub struct ChunkedWriter<W: Write> {
    inner: W,
}

impl<W: Write> ChunkedWriter<W> {
    pub fn new(inner: W) -> ChunkedWriter<W> {
        ChunkedWriter { inner }
    }

    /// Writes the `00 00` terminator and returns the inner writer (not flushed), positioned
    /// where the next frame goes.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(&TERMINATOR)?;
        Ok(self.inner)
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: Write> Write for ChunkedWriter<W> {
    /// Writes the first `min(buf.len(), CHUNK_LEN_MAX)` bytes of `buf` as one chunk and returns
    /// that count (`write_all` loops over the rest). An empty `buf` writes nothing: a zero
    /// length on the wire would end the payload.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let chunk = &buf[..buf.len().min(CHUNK_LEN_MAX)];
        if chunk.is_empty() {
            return Ok(0);
        }
        // Cannot fail: the slice above is at most u16::MAX long.
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        self.inner.write_all(&len.to_be_bytes())?;
        self.inner.write_all(chunk)?;
        Ok(chunk.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a chunked payload as a plain byte stream. `read` returns 0 only once the terminator
/// has been consumed (and every time after); a stream that ends before the terminator is an
/// `UnexpectedEof` error. It keeps no buffer and never asks the inner reader for more than the
/// rest of the current chunk or the next length, so it never reads past the terminator and the
/// next frame can be read from the same inner reader.
///
/// After an error other than `Interrupted` the position in the stream is unknown; discard it.
pub struct ChunkedReader<R: Read> {
    inner: R,
    /// Bytes of the current chunk not yet returned; 0 means a length comes next.
    chunk_left_bytes: usize,
    /// The terminator has been consumed.
    finished: bool,
}

impl<R: Read> ChunkedReader<R> {
    pub fn new(inner: R) -> ChunkedReader<R> {
        ChunkedReader {
            inner,
            chunk_left_bytes: 0,
            finished: false,
        }
    }

    /// True once the terminator has been consumed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Reads and discards the rest of the payload through the terminator; returns how many
    /// payload bytes were discarded. For a consumer (such as an LTX decoder) that stops at the
    /// end of the data it wanted, before the terminator.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }

    /// Drains the rest of the payload and returns the inner reader, positioned at the next
    /// frame.
    pub fn finish(mut self) -> io::Result<R> {
        self.drain()?;
        Ok(self.inner)
    }
}

impl<R: Read> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.finished {
            return Ok(0);
        }
        if self.chunk_left_bytes == 0 {
            let mut len = [0u8; 2];
            self.inner
                .read_exact(&mut len)
                .map_err(|e| truncated_if_eof(e, "chunked payload ended before its terminator"))?;
            match u16::from_be_bytes(len) {
                0 => {
                    self.finished = true;
                    return Ok(0);
                }
                len => self.chunk_left_bytes = usize::from(len),
            }
        }
        let want = buf.len().min(self.chunk_left_bytes);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunked payload ended inside a chunk",
            ));
        }
        self.chunk_left_bytes -= n;
        Ok(n)
    }
}

/// Replaces the standard library's "failed to fill whole buffer" with a message that says
/// where the stream was cut.
fn truncated_if_eof(err: io::Error, what: &'static str) -> io::Error {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(io::ErrorKind::UnexpectedEof, what)
    } else {
        err
    }
}

/// Copies all of `r` to `w` in the chunked encoding, terminator included, and returns the
/// number of payload bytes. Reads into a [`CHUNK_LEN_MAX`]-byte buffer and fills it before
/// writing, so every chunk but the last is full-size whatever sizes `r` returns.
pub fn copy_chunked<R: Read + ?Sized, W: Write + ?Sized>(r: &mut R, w: &mut W) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK_LEN_MAX];
    let mut writer = ChunkedWriter::new(w);
    let mut total_bytes = 0u64;
    loop {
        let n = fill(r, &mut buf)?;
        // `n <= CHUNK_LEN_MAX`, so this is exactly one chunk.
        writer.write_all(&buf[..n])?;
        total_bytes += n as u64;
        if n < buf.len() {
            break; // `fill` stops short only at EOF
        }
    }
    writer.finish()?;
    Ok(total_bytes)
}

/// Reads until `buf` is full or `r` is at EOF; returns the bytes read.
fn fill<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Frame;
    use crate::proto::testutil::{OneByteReader, concat, payload};

    /// Parses an encoding independently of `ChunkedReader`: the data chunk lengths, and the
    /// bytes after the terminator.
    fn chunk_lens(mut encoded: &[u8]) -> (Vec<usize>, &[u8]) {
        let mut lens = Vec::new();
        loop {
            let len = usize::from(u16::from_be_bytes([encoded[0], encoded[1]]));
            encoded = &encoded[2..];
            if len == 0 {
                return (lens, encoded);
            }
            lens.push(len);
            encoded = &encoded[len..];
        }
    }

    fn write_big(data: &[u8]) -> Vec<u8> {
        let mut w = ChunkedWriter::new(Vec::new());
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn write_small(data: &[u8], piece_len: usize) -> Vec<u8> {
        let mut w = ChunkedWriter::new(Vec::new());
        for piece in data.chunks(piece_len) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn write_copy(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let copied = copy_chunked(&mut OneByteReader(data), &mut out).unwrap();
        assert_eq!(copied, data.len() as u64);
        out
    }

    /// Reads the payload back with reads of `read_len` bytes, then checks the reader stays at 0.
    fn read_all<R: Read>(inner: R, read_len: usize) -> io::Result<Vec<u8>> {
        let mut r = ChunkedReader::new(inner);
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_len];
        loop {
            match r.read(&mut buf)? {
                0 => break,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
        assert!(r.is_finished());
        assert_eq!(r.read(&mut buf)?, 0, "stays finished");
        Ok(out)
    }

    #[test]
    fn small_payload_bytes() {
        let expected = concat(&[
            &[0x00, 0x03], // chunk len = 3
            b"abc",        // chunk data
            &[0x00, 0x00], // terminator
        ]);
        assert_eq!(write_big(b"abc"), expected);
        assert_eq!(write_copy(b"abc"), expected);
        assert_eq!(read_all(&expected[..], 64).unwrap(), b"abc");
    }

    #[test]
    fn empty_payload_is_only_the_terminator() {
        let expected: &[u8] = &[0x00, 0x00]; // terminator
        assert_eq!(write_big(b""), expected);
        assert_eq!(write_copy(b""), expected);
        assert_eq!(read_all(expected, 64).unwrap(), b"");

        let mut w = ChunkedWriter::new(Vec::new());
        assert_eq!(w.write(&[]).unwrap(), 0);
        assert!(w.get_ref().is_empty(), "an empty write emits no chunk");
    }

    #[test]
    fn chunk_boundaries() {
        let full = CHUNK_LEN_MAX;
        for (len, expected_lens) in [
            (1, vec![1]),
            (full, vec![full]),
            (full + 1, vec![full, 1]),
            (200_000, vec![full, full, full, 200_000 - 3 * full]),
        ] {
            let data = payload(len);
            for encoded in [write_big(&data), write_copy(&data)] {
                let (lens, rest) = chunk_lens(&encoded);
                assert_eq!(lens, expected_lens, "payload of {len} bytes");
                assert!(rest.is_empty());
                assert_eq!(encoded.len(), len + 2 * lens.len() + 2);
            }
        }
        // Exactly one maximal chunk: the length field is ff ff.
        let encoded = write_big(&payload(full));
        assert_eq!(encoded[..2], [0xFF, 0xFF]); // chunk len = 65535
        assert_eq!(encoded[2 + full..], [0x00, 0x00]); // terminator
    }

    #[test]
    fn write_returns_at_most_one_chunk() {
        let data = payload(CHUNK_LEN_MAX + 10);
        let mut w = ChunkedWriter::new(Vec::new());
        assert_eq!(w.write(&data).unwrap(), CHUNK_LEN_MAX);
        assert_eq!(w.get_ref().len(), 2 + CHUNK_LEN_MAX);
    }

    #[test]
    fn round_trip_sizes_writers_and_readers() {
        for len in [0, 1, CHUNK_LEN_MAX, CHUNK_LEN_MAX + 1, 200_000] {
            let data = payload(len);
            let encodings = [
                write_big(&data),
                write_small(&data, 7),
                write_small(&data, 4096),
                write_copy(&data),
            ];
            for encoded in &encodings {
                let (lens, _) = chunk_lens(encoded);
                assert!(lens.iter().all(|&n| (1..=CHUNK_LEN_MAX).contains(&n)));
                assert_eq!(read_all(&encoded[..], 1).unwrap(), data, "1-byte reads");
                assert_eq!(
                    read_all(&encoded[..], 1 << 20).unwrap(),
                    data,
                    "1 MiB reads"
                );
                assert_eq!(
                    read_all(&encoded[..], 1000).unwrap(),
                    data,
                    "1000-byte reads"
                );
            }
            // A slow inner reader, with large reads on top: sizes not aligned to chunks.
            let encoded = &encodings[0];
            assert_eq!(
                read_all(OneByteReader(encoded), 100_000).unwrap(),
                data,
                "1-byte inner reads"
            );
        }
    }

    #[test]
    fn next_frame_after_terminator_is_intact() {
        let data = payload(CHUNK_LEN_MAX + 1);
        let mut stream = write_big(&data);
        Frame::End.write_to(&mut stream).unwrap();

        for read_len in [1, 1 << 20] {
            let mut inner = &stream[..];
            assert_eq!(read_all(&mut inner, read_len).unwrap(), data);
            assert_eq!(Frame::read_from(&mut inner).unwrap(), Some(Frame::End));
            assert_eq!(Frame::read_from(&mut inner).unwrap(), None);
        }
        // Same through a 1-byte inner reader: nothing read ahead.
        let mut inner = OneByteReader(&stream);
        assert_eq!(read_all(&mut inner, 1 << 20).unwrap(), data);
        assert_eq!(Frame::read_from(&mut inner).unwrap(), Some(Frame::End));
    }

    #[test]
    fn drain_skips_to_the_next_frame() {
        let mut stream = write_big(&payload(200_000));
        Frame::Ready.write_to(&mut stream).unwrap();

        let mut inner = &stream[..];
        let mut r = ChunkedReader::new(&mut inner);
        let mut head = [0u8; 100];
        r.read_exact(&mut head).unwrap(); // a consumer that stops early
        assert_eq!(r.drain().unwrap(), 200_000 - 100);
        assert!(r.is_finished());
        assert_eq!(r.drain().unwrap(), 0, "draining twice is harmless");
        assert_eq!(Frame::read_from(&mut inner).unwrap(), Some(Frame::Ready));

        let mut inner = &stream[..];
        let rest = ChunkedReader::new(&mut inner).finish().unwrap();
        assert_eq!(Frame::read_from(rest).unwrap(), Some(Frame::Ready));
    }

    #[test]
    fn truncation_at_every_offset_is_unexpected_eof() {
        let encoded = concat(&[
            &[0x00, 0x03],       // chunk len = 3
            b"abc",              // chunk data
            &[0x00, 0x02],       // chunk len = 2
            b"de",               // chunk data
            &[0x00, 0x00],       // terminator
            &[0x00, 0x00, 0x00], // next frame's first bytes (not part of the payload)
        ]);
        let payload_end = encoded.len() - 3;
        for len in 0..payload_end {
            let prefix = &encoded[..len];
            for read_len in [1, 64] {
                let err = read_all(prefix, read_len).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {len}");
            }
            let err = read_all(OneByteReader(prefix), 64).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {len}");
        }
        assert_eq!(read_all(&encoded[..payload_end], 64).unwrap(), b"abcde");

        // The error says where, and folds into proto::Error::UnexpectedEof.
        let err = read_all(&encoded[..1], 64).unwrap_err();
        assert_eq!(
            err.to_string(),
            "chunked payload ended before its terminator"
        );
        let err = read_all(&encoded[..4], 64).unwrap_err();
        assert_eq!(err.to_string(), "chunked payload ended inside a chunk");
        assert!(matches!(
            crate::proto::Error::from(err),
            crate::proto::Error::UnexpectedEof
        ));
    }

    #[test]
    fn hostile_chunk_length_allocates_nothing() {
        // The largest length a chunk can claim is 65535 and the reader has no buffer of its
        // own, so a lying length costs only the caller's buffer.
        let encoded = concat(&[
            &[0xFF, 0xFF], // chunk len = 65535
            b"short",      // only 5 bytes follow
        ]);
        let mut r = ChunkedReader::new(&encoded[..]);
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).unwrap(), 5);
        let err = r.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn empty_read_buffer_consumes_nothing() {
        let encoded: &[u8] = &[0x00, 0x01, b'x', 0x00, 0x00];
        let mut inner = encoded;
        let mut r = ChunkedReader::new(&mut inner);
        assert_eq!(r.read(&mut []).unwrap(), 0);
        assert!(!r.is_finished());
        assert_eq!(inner.len(), encoded.len());
    }
}
