//! Stream frames: the body of a `POST /stream` response (spec §4.4).
//!
//! ```text
//! type u32 BE, then by type:
//!   1 LTX        size u64 (0 on write, ignored on read) · name_len u32 · name · chunked LTX file
//!   2 Ready      —
//!   3 End        —
//!   4 DropDB     name_len u32 · name
//!   5 Handoff    len u32 · lease id
//!   6 HWM        txid u64 · name_len u32 · name
//!   7 Heartbeat  timestamp i64 (ms since the Unix epoch, primary's clock)
//! ```

use std::io::{Read, Write};

use super::{
    Error, LEASE_ID_LEN_MAX, Result, put_name, read_exact_or_eof, read_len_prefixed, read_name,
    read_u64,
};
use crate::types::TxId;

/// The `type` field of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum FrameType {
    Ltx = 1,
    Ready = 2,
    End = 3,
    DropDb = 4,
    Handoff = 5,
    Hwm = 6,
    Heartbeat = 7,
}

impl FrameType {
    /// The type for a wire value, or `None` for an unknown one.
    pub fn from_u32(value: u32) -> Option<FrameType> {
        Some(match value {
            1 => FrameType::Ltx,
            2 => FrameType::Ready,
            3 => FrameType::End,
            4 => FrameType::DropDb,
            5 => FrameType::Handoff,
            6 => FrameType::Hwm,
            7 => FrameType::Heartbeat,
            _ => return None,
        })
    }
}

/// One frame of the replication stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// An LTX file for database `name` follows, in the chunked encoding: read it with a
    /// [`ChunkedReader`](super::ChunkedReader) over the same reader, through its terminator,
    /// before reading the next frame. The wire's `size` field is not represented: LiteFS
    /// always sends 0 and ignores it on read, and so do we.
    Ltx { name: String },
    /// The primary finished its initial catch-up pass over all databases.
    Ready,
    /// The primary is closing the stream cleanly.
    End,
    /// The replica named a database the primary does not have. Deprecated: replicas ignore it.
    DropDb { name: String },
    /// The primary hands its lease to this replica, then ends the stream.
    Handoff { lease_id: String },
    /// Backup high-water mark of database `name`.
    Hwm { txid: TxId, name: String },
    /// Liveness, carrying the primary's clock for lag measurement.
    Heartbeat { timestamp_ms: i64 },
}

impl Frame {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Ltx { .. } => FrameType::Ltx,
            Frame::Ready => FrameType::Ready,
            Frame::End => FrameType::End,
            Frame::DropDb { .. } => FrameType::DropDb,
            Frame::Handoff { .. } => FrameType::Handoff,
            Frame::Hwm { .. } => FrameType::Hwm,
            Frame::Heartbeat { .. } => FrameType::Heartbeat,
        }
    }

    /// Writes the frame (for [`Frame::Ltx`], only the header: the caller then writes the payload
    /// with a [`ChunkedWriter`](super::ChunkedWriter) or [`copy_chunked`](super::copy_chunked)).
    ///
    /// The frame is encoded into a buffer first and handed to `w` in one `write_all`, so an
    /// unbuffered socket sees one write per frame, and a refused frame (a name or lease id over
    /// its limit) writes nothing.
    pub fn write_to<W: Write + ?Sized>(&self, w: &mut W) -> Result<()> {
        let mut buf = Vec::with_capacity(32);
        buf.extend_from_slice(&(self.frame_type() as u32).to_be_bytes());
        match self {
            Frame::Ltx { name } => {
                buf.extend_from_slice(&0u64.to_be_bytes()); // size: always 0, as LiteFS sends
                put_name(&mut buf, name)?;
            }
            Frame::Ready | Frame::End => {}
            Frame::DropDb { name } => put_name(&mut buf, name)?,
            Frame::Handoff { lease_id } => {
                let len = match u32::try_from(lease_id.len()) {
                    Ok(len) if len <= LEASE_ID_LEN_MAX => len,
                    _ => {
                        return Err(Error::LeaseIdTooLong {
                            len_bytes: lease_id.len() as u64,
                        });
                    }
                };
                buf.extend_from_slice(&len.to_be_bytes());
                buf.extend_from_slice(lease_id.as_bytes());
            }
            Frame::Hwm { txid, name } => {
                buf.extend_from_slice(&txid.0.to_be_bytes());
                put_name(&mut buf, name)?;
            }
            Frame::Heartbeat { timestamp_ms } => {
                buf.extend_from_slice(&timestamp_ms.to_be_bytes());
            }
        }
        w.write_all(&buf)?;
        Ok(())
    }

    /// Reads the next frame. `Ok(None)` means the reader was at EOF exactly at a frame boundary
    /// (a clean disconnect); EOF anywhere inside a frame is [`Error::UnexpectedEof`]. Reads
    /// exactly the frame's bytes (for [`Frame::Ltx`], up to the end of the name), never more.
    pub fn read_from<R: Read + ?Sized>(r: &mut R) -> Result<Option<Frame>> {
        let mut type_bytes = [0u8; 4];
        if !read_exact_or_eof(r, &mut type_bytes)? {
            return Ok(None);
        }
        let type_value = u32::from_be_bytes(type_bytes);
        let frame_type =
            FrameType::from_u32(type_value).ok_or(Error::InvalidFrameType(type_value))?;

        let frame = match frame_type {
            FrameType::Ltx => {
                let _size = read_u64(r)?; // LiteFS sends 0 and never reads it
                Frame::Ltx {
                    name: read_name(r)?,
                }
            }
            FrameType::Ready => Frame::Ready,
            FrameType::End => Frame::End,
            FrameType::DropDb => Frame::DropDb {
                name: read_name(r)?,
            },
            FrameType::Handoff => {
                let bytes = read_len_prefixed(r, LEASE_ID_LEN_MAX, |len_bytes| {
                    Error::LeaseIdTooLong { len_bytes }
                })?;
                let lease_id = String::from_utf8(bytes).map_err(|e| Error::LeaseIdNotUtf8 {
                    lease_id_lossy: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                })?;
                Frame::Handoff { lease_id }
            }
            FrameType::Hwm => {
                let txid = TxId(read_u64(r)?);
                Frame::Hwm {
                    txid,
                    name: read_name(r)?,
                }
            }
            FrameType::Heartbeat => {
                let mut b = [0u8; 8];
                r.read_exact(&mut b)?;
                Frame::Heartbeat {
                    timestamp_ms: i64::from_be_bytes(b),
                }
            }
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::{OneByteReader, concat};
    use crate::proto::{DB_NAME_LEN_MAX, LEASE_ID_LEN_MAX};

    fn encode(frame: &Frame) -> Vec<u8> {
        let mut buf = Vec::new();
        frame.write_to(&mut buf).unwrap();
        buf
    }

    /// Every frame type with its exact encoding. The §4.4 examples are copied byte for byte.
    fn examples() -> Vec<(Frame, Vec<u8>)> {
        vec![
            (
                // §4.4: LTX header for `test.db`.
                Frame::Ltx {
                    name: "test.db".into(),
                },
                concat(&[
                    &[0x00, 0x00, 0x00, 0x01],                         // type = LTX
                    &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // size = 0
                    &[0x00, 0x00, 0x00, 0x07],                         // name_len = 7
                    b"test.db",                                        // name
                ]),
            ),
            (
                // §4.4: Ready.
                Frame::Ready,
                concat(&[
                    &[0x00, 0x00, 0x00, 0x02], // type = Ready
                ]),
            ),
            (
                Frame::End,
                concat(&[
                    &[0x00, 0x00, 0x00, 0x03], // type = End
                ]),
            ),
            (
                Frame::DropDb { name: "db".into() },
                concat(&[
                    &[0x00, 0x00, 0x00, 0x04], // type = DropDB
                    &[0x00, 0x00, 0x00, 0x02], // name_len = 2
                    b"db",                     // name
                ]),
            ),
            (
                Frame::Handoff {
                    lease_id: "lease-1".into(),
                },
                concat(&[
                    &[0x00, 0x00, 0x00, 0x05], // type = Handoff
                    &[0x00, 0x00, 0x00, 0x07], // len = 7
                    b"lease-1",                // lease id
                ]),
            ),
            (
                // §4.4: HWM txid 5 for `db`.
                Frame::Hwm {
                    txid: TxId(5),
                    name: "db".into(),
                },
                concat(&[
                    &[0x00, 0x00, 0x00, 0x06],                         // type = HWM
                    &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05], // txid = 5
                    &[0x00, 0x00, 0x00, 0x02],                         // name_len = 2
                    b"db",                                             // name
                ]),
            ),
            (
                // §4.4: Heartbeat at 1700000000000 ms.
                Frame::Heartbeat {
                    timestamp_ms: 1_700_000_000_000,
                },
                concat(&[
                    &[0x00, 0x00, 0x00, 0x07],                         // type = Heartbeat
                    &[0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00], // timestamp_ms
                ]),
            ),
        ]
    }

    #[test]
    fn examples_encode_byte_for_byte() {
        for (frame, expected) in examples() {
            assert_eq!(encode(&frame), expected, "{frame:?}");
        }
    }

    #[test]
    fn examples_decode_and_consume_exactly_their_bytes() {
        for (frame, bytes) in examples() {
            let mut input = bytes.clone();
            input.extend_from_slice(&[0xEE, 0xEE]); // whatever follows
            let mut r = &input[..];
            assert_eq!(Frame::read_from(&mut r).unwrap(), Some(frame.clone()));
            assert_eq!(r, [0xEE, 0xEE], "{frame:?} read past its end");

            let mut one = OneByteReader(&bytes);
            assert_eq!(Frame::read_from(&mut one).unwrap(), Some(frame));
        }
    }

    #[test]
    fn round_trip_edge_values() {
        let frames = [
            Frame::Ltx {
                name: String::new(),
            },
            Frame::Ltx {
                name: "ünïcødé.db".into(),
            },
            Frame::DropDb {
                name: "n".repeat(DB_NAME_LEN_MAX as usize),
            },
            Frame::Handoff {
                lease_id: String::new(),
            },
            Frame::Handoff {
                lease_id: "l".repeat(LEASE_ID_LEN_MAX as usize),
            },
            Frame::Hwm {
                txid: TxId(u64::MAX),
                name: "x".into(),
            },
            Frame::Hwm {
                txid: TxId(0),
                name: "x".into(),
            },
            Frame::Heartbeat {
                timestamp_ms: i64::MIN,
            },
            Frame::Heartbeat { timestamp_ms: -1 },
            Frame::Heartbeat {
                timestamp_ms: i64::MAX,
            },
        ];
        for frame in frames {
            let bytes = encode(&frame);
            assert_eq!(Frame::read_from(&mut &bytes[..]).unwrap(), Some(frame));
        }
    }

    #[test]
    fn ltx_size_field_is_ignored_on_read() {
        let input = concat(&[
            &[0x00, 0x00, 0x00, 0x01],                         // type = LTX
            &[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0], // size: nonzero, ignored
            &[0x00, 0x00, 0x00, 0x02],                         // name_len = 2
            b"db",                                             // name
        ]);
        assert_eq!(
            Frame::read_from(&mut &input[..]).unwrap(),
            Some(Frame::Ltx { name: "db".into() })
        );
    }

    #[test]
    fn empty_input_is_clean_eof() {
        assert_eq!(Frame::read_from(&mut &[][..]).unwrap(), None);
        assert_eq!(Frame::read_from(&mut OneByteReader(&[])).unwrap(), None);
    }

    #[test]
    fn truncation_at_every_offset_is_unexpected_eof() {
        for (frame, bytes) in examples() {
            for len in 1..bytes.len() {
                let prefix = &bytes[..len];
                for result in [
                    Frame::read_from(&mut &prefix[..]),
                    Frame::read_from(&mut OneByteReader(prefix)),
                ] {
                    assert!(
                        matches!(result, Err(Error::UnexpectedEof)),
                        "{frame:?} cut to {len} bytes: {result:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_type_is_an_error_with_go_text() {
        for (type_bytes, text) in [
            ([0x00, 0x00, 0x00, 0x00], "invalid stream frame type: 0x00"),
            ([0x00, 0x00, 0x00, 0x08], "invalid stream frame type: 0x08"),
            ([0x00, 0x00, 0x00, 0x09], "invalid stream frame type: 0x09"),
            (
                [0x00, 0x00, 0x12, 0x34],
                "invalid stream frame type: 0x1234",
            ),
            (
                [0xFF, 0xFF, 0xFF, 0xFF],
                "invalid stream frame type: 0xffffffff",
            ),
        ] {
            let err = Frame::read_from(&mut &type_bytes[..]).unwrap_err();
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocating() {
        let too_long = [0xFF, 0xFF, 0xFF, 0xFF]; // len = 4294967295
        let cases: [(&[u8], &[u8]); 4] = [
            (&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], &too_long), // LTX · size · name_len
            (&[0, 0, 0, 4], &too_long),                         // DropDB · name_len
            (&[0, 0, 0, 5], &too_long),                         // Handoff · len
            (&[0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 5], &too_long), // HWM · txid · name_len
        ];
        for (head, len) in cases {
            let input = concat(&[head, len, b"rest"]);
            let mut r = &input[..];
            let err = Frame::read_from(&mut r).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::NameTooLong {
                        len_bytes: 0xFFFF_FFFF
                    } | Error::LeaseIdTooLong {
                        len_bytes: 0xFFFF_FFFF
                    }
                ),
                "{err:?}"
            );
            assert_eq!(r, b"rest", "stopped right after the length field");
        }
        let err = Frame::read_from(&mut &concat(&[&[0, 0, 0, 5], &too_long])[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "lease id too long: 4294967295 bytes, maximum 4096"
        );
    }

    #[test]
    fn just_over_the_limit_is_refused_both_ways() {
        let over = DB_NAME_LEN_MAX + 1;
        let input = concat(&[
            &[0x00, 0x00, 0x00, 0x04], // type = DropDB
            &over.to_be_bytes(),       // name_len = 4097
        ]);
        assert!(matches!(
            Frame::read_from(&mut &input[..]),
            Err(Error::NameTooLong { len_bytes: 4097 })
        ));

        let mut out = Vec::new();
        let long_name = "n".repeat(over as usize);
        for frame in [
            Frame::Ltx {
                name: long_name.clone(),
            },
            Frame::DropDb {
                name: long_name.clone(),
            },
            Frame::Hwm {
                txid: TxId(1),
                name: long_name.clone(),
            },
        ] {
            assert!(matches!(
                frame.write_to(&mut out),
                Err(Error::NameTooLong { len_bytes: 4097 })
            ));
        }
        let frame = Frame::Handoff {
            lease_id: "l".repeat(LEASE_ID_LEN_MAX as usize + 1),
        };
        assert!(matches!(
            frame.write_to(&mut out),
            Err(Error::LeaseIdTooLong { len_bytes: 4097 })
        ));
        assert!(out.is_empty(), "refused frames write nothing");
    }

    #[test]
    fn non_utf8_names_are_refused() {
        let ltx = concat(&[
            &[0x00, 0x00, 0x00, 0x01], // type = LTX
            &[0; 8],                   // size
            &[0x00, 0x00, 0x00, 0x01], // name_len = 1
            &[0x80],                   // name: lone continuation byte
        ]);
        assert!(matches!(
            Frame::read_from(&mut &ltx[..]),
            Err(Error::NameNotUtf8 { .. })
        ));
        let handoff = concat(&[
            &[0x00, 0x00, 0x00, 0x05], // type = Handoff
            &[0x00, 0x00, 0x00, 0x01], // len = 1
            &[0xC0],                   // lease id: truncated sequence
        ]);
        assert!(matches!(
            Frame::read_from(&mut &handoff[..]),
            Err(Error::LeaseIdNotUtf8 { .. })
        ));
    }

    #[test]
    fn frame_type_values() {
        for value in 1..=7 {
            let frame_type = FrameType::from_u32(value).unwrap();
            assert_eq!(frame_type as u32, value);
        }
        assert_eq!(FrameType::from_u32(0), None);
        assert_eq!(FrameType::from_u32(8), None);
        for (frame, bytes) in examples() {
            assert_eq!((frame.frame_type() as u32).to_be_bytes(), bytes[..4]);
        }
    }
}
