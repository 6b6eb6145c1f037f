//! The position map: the body of a `POST /stream` request (spec §4.4), one entry per database
//! the replica holds, telling the primary where each one stands.
//!
//! ```text
//! count     u32 BE
//! count × { name_len u32 BE · name (UTF-8) · txid u64 BE · checksum u64 BE }   sorted by name
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};

use super::{
    Error, POS_MAP_COUNT_MAX, Result, check_name_len, put_name, read_name, read_u32, read_u64,
};
use crate::types::{Checksum, Pos, TxId};

/// Database name → replica position. A `BTreeMap` so encoding is always in name byte order,
/// as Go LiteFS writes it (`sort.Strings` compares bytes, and so does `str`'s `Ord`).
pub type PosMap = BTreeMap<String, Pos>;

/// Writes `map` as a position map. Refuses, before writing anything, a map that
/// [`read_pos_map`] would refuse (too many entries, a name too long), so a failed call leaves
/// no partial body behind. Writes one entry at a time: wrap an unbuffered `w` in a `BufWriter`.
pub fn write_pos_map<W: Write + ?Sized>(w: &mut W, map: &PosMap) -> Result<()> {
    let count = match u32::try_from(map.len()) {
        Ok(count) if count <= POS_MAP_COUNT_MAX => count,
        _ => {
            return Err(Error::PosMapTooLarge {
                count: map.len() as u64,
            });
        }
    };
    for name in map.keys() {
        check_name_len(name)?;
    }

    w.write_all(&count.to_be_bytes())?;
    let mut entry = Vec::new();
    for (name, pos) in map {
        entry.clear();
        put_name(&mut entry, name)?;
        entry.extend_from_slice(&pos.txid.0.to_be_bytes());
        entry.extend_from_slice(&pos.post_apply_checksum.0.to_be_bytes());
        w.write_all(&entry)?;
    }
    Ok(())
}

/// Reads a position map. Entries may come in any order (Go's reader does not require sorting
/// either) but each name at most once. Reads exactly the encoded bytes and nothing after them.
///
/// Errors: [`Error::UnexpectedEof`] on truncation, including an empty input (a request body
/// must at least carry the count); [`Error::PosMapTooLarge`], [`Error::NameTooLong`],
/// [`Error::NameNotUtf8`], [`Error::DuplicateName`] on hostile or malformed input.
pub fn read_pos_map<R: Read + ?Sized>(r: &mut R) -> Result<PosMap> {
    let count = read_u32(r)?;
    if count > POS_MAP_COUNT_MAX {
        return Err(Error::PosMapTooLarge {
            count: u64::from(count),
        });
    }

    // The map grows with entries actually read, so a large but valid `count` followed by a
    // short body costs nothing beyond what was sent.
    let mut map = PosMap::new();
    for _ in 0..count {
        let name = read_name(r)?;
        let txid = TxId(read_u64(r)?);
        let post_apply_checksum = Checksum(read_u64(r)?);
        if map.contains_key(&name) {
            return Err(Error::DuplicateName(name));
        }
        map.insert(
            name,
            Pos {
                txid,
                post_apply_checksum,
            },
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::DB_NAME_LEN_MAX;
    use crate::proto::testutil::{OneByteReader, concat};

    fn encode(map: &PosMap) -> Vec<u8> {
        let mut buf = Vec::new();
        write_pos_map(&mut buf, map).unwrap();
        buf
    }

    #[test]
    fn spec_example_bytes() {
        // §4.4: one entry `db` at TXID 3, checksum 0x9d81a60d39fb4760.
        let expected = concat(&[
            &[0x00, 0x00, 0x00, 0x01],                         // count = 1
            &[0x00, 0x00, 0x00, 0x02],                         // name_len = 2
            b"db",                                             // name
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03], // txid = 3
            &[0x9d, 0x81, 0xa6, 0x0d, 0x39, 0xfb, 0x47, 0x60], // checksum
        ]);
        let map = PosMap::from([("db".to_string(), Pos::new(3, 0x9d81_a60d_39fb_4760))]);
        assert_eq!(encode(&map), expected);
        assert_eq!(read_pos_map(&mut &expected[..]).unwrap(), map);
    }

    #[test]
    fn empty_map_is_just_a_zero_count() {
        let expected: &[u8] = &[0x00, 0x00, 0x00, 0x00]; // count = 0
        assert_eq!(encode(&PosMap::new()), expected);
        assert_eq!(read_pos_map(&mut &expected[..]).unwrap(), PosMap::new());
    }

    #[test]
    fn entries_are_written_in_name_byte_order() {
        // Inserted out of order; "B" (0x42) sorts before "a" (0x61) by bytes.
        let map = PosMap::from([
            ("a".to_string(), Pos::new(1, 0x8000_0000_0000_0001)),
            ("B".to_string(), Pos::new(2, 0x8000_0000_0000_0002)),
            ("ä".to_string(), Pos::new(0, 0)),
        ]);
        let expected = concat(&[
            &[0x00, 0x00, 0x00, 0x03],                         // count = 3
            &[0x00, 0x00, 0x00, 0x01],                         // name_len = 1
            b"B",                                              // name
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02], // txid = 2
            &[0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02], // checksum
            &[0x00, 0x00, 0x00, 0x01],                         // name_len = 1
            b"a",                                              // name
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01], // txid = 1
            &[0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01], // checksum
            &[0x00, 0x00, 0x00, 0x02],                         // name_len = 2 (bytes)
            &[0xc3, 0xa4],                                     // name "ä"
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // txid = 0
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // checksum = 0
        ]);
        assert_eq!(encode(&map), expected);
        assert_eq!(read_pos_map(&mut OneByteReader(&expected)).unwrap(), map);
    }

    #[test]
    fn unsorted_input_is_accepted() {
        let input = concat(&[
            &[0x00, 0x00, 0x00, 0x02], // count = 2
            &[0x00, 0x00, 0x00, 0x01], // name_len = 1
            b"z",                      // name
            &[0; 8],                   // txid = 0
            &[0; 8],                   // checksum = 0
            &[0x00, 0x00, 0x00, 0x01], // name_len = 1
            b"a",                      // name
            &[0; 7],
            &[0x07], // txid = 7
            &[0; 8], // checksum = 0
        ]);
        let map = read_pos_map(&mut &input[..]).unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "z"]);
        assert_eq!(map["a"], Pos::new(7, 0));
    }

    #[test]
    fn reads_exactly_its_own_bytes() {
        let map = PosMap::from([("db".to_string(), Pos::new(3, 4))]);
        let mut buf = encode(&map);
        buf.extend_from_slice(&[0xAA, 0xBB, 0xCC, 0xDD]); // whatever follows
        let mut r = &buf[..];
        read_pos_map(&mut r).unwrap();
        assert_eq!(r, [0xAA, 0xBB, 0xCC, 0xDD]);
    }

    #[test]
    fn truncation_at_every_offset_is_unexpected_eof() {
        let map = PosMap::from([
            ("db".to_string(), Pos::new(3, 0x9d81_a60d_39fb_4760)),
            ("other.db".to_string(), Pos::new(u64::MAX, u64::MAX)),
        ]);
        let full = encode(&map);
        for len in 0..full.len() {
            let prefix = &full[..len];
            for result in [
                read_pos_map(&mut &prefix[..]),
                read_pos_map(&mut OneByteReader(prefix)),
            ] {
                assert!(
                    matches!(result, Err(Error::UnexpectedEof)),
                    "prefix of {len} bytes: {result:?}"
                );
            }
        }
        assert_eq!(read_pos_map(&mut &full[..]).unwrap(), map);
    }

    #[test]
    fn hostile_count_is_refused_before_reading_entries() {
        let input = concat(&[
            &[0xFF, 0xFF, 0xFF, 0xFF], // count = 4294967295
            &[0x00, 0x00, 0x00, 0x01], // name_len: must not be read
        ]);
        let mut r = &input[..];
        let err = read_pos_map(&mut r).unwrap_err();
        assert!(matches!(err, Error::PosMapTooLarge { count: 0xFFFF_FFFF }));
        assert_eq!(r.len(), 4, "stopped right after the count");
        assert_eq!(
            err.to_string(),
            "position map has too many entries: 4294967295, maximum 1000000"
        );

        // The limit itself is accepted (then the body runs out).
        let at_limit = POS_MAP_COUNT_MAX.to_be_bytes();
        assert!(matches!(
            read_pos_map(&mut &at_limit[..]),
            Err(Error::UnexpectedEof)
        ));
    }

    #[test]
    fn hostile_name_len_is_refused_before_allocating() {
        let input = concat(&[
            &[0x00, 0x00, 0x00, 0x01], // count = 1
            &[0xFF, 0xFF, 0xFF, 0xFF], // name_len = 4294967295
            b"db",                     // not read
        ]);
        let mut r = &input[..];
        let err = read_pos_map(&mut r).unwrap_err();
        assert!(matches!(
            err,
            Error::NameTooLong {
                len_bytes: 0xFFFF_FFFF
            }
        ));
        assert_eq!(r, b"db", "stopped right after name_len");
    }

    #[test]
    fn name_len_limit_is_inclusive() {
        let name = "n".repeat(DB_NAME_LEN_MAX as usize);
        let map = PosMap::from([(name.clone(), Pos::new(1, 2))]);
        assert_eq!(read_pos_map(&mut &encode(&map)[..]).unwrap(), map);

        let too_long = PosMap::from([(name + "n", Pos::new(1, 2))]);
        let mut out = Vec::new();
        assert!(matches!(
            write_pos_map(&mut out, &too_long),
            Err(Error::NameTooLong { len_bytes: 4097 })
        ));
        assert!(out.is_empty(), "nothing written on refusal");
    }

    #[test]
    fn non_utf8_name_is_refused() {
        let input = concat(&[
            &[0x00, 0x00, 0x00, 0x01], // count = 1
            &[0x00, 0x00, 0x00, 0x02], // name_len = 2
            &[0xff, 0xfe],             // name: not UTF-8
            &[0; 8],                   // txid
            &[0; 8],                   // checksum
        ]);
        let err = read_pos_map(&mut &input[..]).unwrap_err();
        assert!(matches!(err, Error::NameNotUtf8 { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "database name is not valid UTF-8: \"\u{fffd}\u{fffd}\""
        );
    }

    #[test]
    fn duplicate_name_is_refused() {
        let entry = concat(&[
            &[0x00, 0x00, 0x00, 0x02], // name_len = 2
            b"db",                     // name
            &[0; 8],                   // txid
            &[0; 8],                   // checksum
        ]);
        let input = concat(&[&[0x00, 0x00, 0x00, 0x02], &entry, &entry]); // count = 2
        let err = read_pos_map(&mut &input[..]).unwrap_err();
        assert!(matches!(&err, Error::DuplicateName(name) if name == "db"));
        assert_eq!(
            err.to_string(),
            "duplicate database name in position map: \"db\""
        );
    }
}
