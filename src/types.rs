//! Small value types shared by every layer: transaction ids, checksums, positions, node ids.
//!
//! Text forms follow LiteFS exactly (spec §0, §1.12): TXIDs and checksums are 16 lower-case hex
//! digits, node ids 16 upper-case hex digits, a position is `<txid>/<checksum>` (33 chars).

use std::fmt;

/// Bit 63, set on every database and file checksum (spec §1.7).
pub const CHECKSUM_FLAG: u64 = 1 << 63;

/// A transaction id. `TxId(0)` means "no transaction yet".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(pub u64);

/// A rolling database checksum or a file checksum (CRC-64/GO-ISO with bit 63 set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Checksum(pub u64);

/// The random per-process id of a LiteFS node (spec §2.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeId(pub u64);

/// Fills `buf` from the kernel's random pool (`getrandom(2)`), falling back to the clock if
/// the pool is not ready (ids must be unique, not secret).
pub fn random_bytes(buf: &mut [u8]) {
    // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos());
        for (b, x) in buf.iter_mut().zip(nanos.to_le_bytes().iter().cycle()) {
            *b ^= x;
        }
    }
}

impl NodeId {
    /// A random per-process node id (spec §2.2); never 0.
    pub fn random() -> NodeId {
        let mut bytes = [0u8; 8];
        random_bytes(&mut bytes);
        NodeId(u64::from_be_bytes(bytes).max(1))
    }
}

/// A replication position: the last applied transaction and the database checksum after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pos {
    pub txid: TxId,
    pub post_apply_checksum: Checksum,
}

/// Why a text TXID, checksum or position did not parse. Messages match Go LiteFS.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid formatted position length: {0:?}")]
    PosLength(String),
    #[error("invalid formatted transaction id length: {0:?}")]
    TxIdLength(String),
    #[error("invalid transaction id format: {0:?}")]
    TxIdFormat(String),
    #[error("invalid formatted checksum length: {0:?}")]
    ChecksumLength(String),
    #[error("invalid checksum format: {0:?}")]
    ChecksumFormat(String),
}

/// Parses exactly 16 hex digits (either case, as Go's `strconv.ParseUint(s, 16, 64)`
/// after a length check). Returns `None` for any other input.
fn parse_hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

impl TxId {
    /// Parses the 16-hex-digit form used in file names and JSON.
    pub fn parse(s: &str) -> Result<TxId, ParseError> {
        if s.len() != 16 {
            return Err(ParseError::TxIdLength(s.to_string()));
        }
        parse_hex16(s)
            .map(TxId)
            .ok_or_else(|| ParseError::TxIdFormat(s.to_string()))
    }
}

impl Checksum {
    /// Parses the 16-hex-digit form used in positions and JSON.
    pub fn parse(s: &str) -> Result<Checksum, ParseError> {
        if s.len() != 16 {
            return Err(ParseError::ChecksumLength(s.to_string()));
        }
        parse_hex16(s)
            .map(Checksum)
            .ok_or_else(|| ParseError::ChecksumFormat(s.to_string()))
    }
}

impl Pos {
    pub const fn new(txid: u64, post_apply_checksum: u64) -> Pos {
        Pos {
            txid: TxId(txid),
            post_apply_checksum: Checksum(post_apply_checksum),
        }
    }

    /// True for the zero position `(0, 0)`, which means "no data".
    pub fn is_zero(&self) -> bool {
        self.txid.0 == 0 && self.post_apply_checksum.0 == 0
    }

    /// Parses `<txid>/<checksum>`, exactly 33 characters.
    pub fn parse(s: &str) -> Result<Pos, ParseError> {
        if s.len() != 33 || s.as_bytes()[16] != b'/' {
            return Err(ParseError::PosLength(s.to_string()));
        }
        Ok(Pos {
            txid: TxId::parse(&s[..16])?,
            post_apply_checksum: Checksum::parse(&s[17..])?,
        })
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.txid, self.post_apply_checksum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pos_text_round_trip() {
        // ltx TestPos_String
        let pos = Pos::new(1000, 2000);
        assert_eq!(pos.to_string(), "00000000000003e8/00000000000007d0");
        assert_eq!(Pos::parse("00000000000003e8/00000000000007d0"), Ok(pos));
    }

    #[test]
    fn pos_parse_errors() {
        assert_eq!(
            Pos::parse("0000000000003e8/00000000000007d0"),
            Err(ParseError::PosLength(
                "0000000000003e8/00000000000007d0".into()
            ))
        );
        assert_eq!(
            Pos::parse("00000000000003eX/00000000000007d0"),
            Err(ParseError::TxIdFormat("00000000000003eX".into()))
        );
        assert_eq!(
            Pos::parse("00000000000003e8/0000000000000+d0"),
            Err(ParseError::ChecksumFormat("0000000000000+d0".into()))
        );
        assert_eq!(
            TxId::parse("123"),
            Err(ParseError::TxIdLength("123".into()))
        );
        assert_eq!(
            Checksum::parse("123"),
            Err(ParseError::ChecksumLength("123".into()))
        );
        // Multi-byte characters must not panic on slicing.
        assert!(Pos::parse("ééééééééééééééééé").is_err());
    }

    #[test]
    fn node_id_is_upper_case() {
        assert_eq!(NodeId(0xabc).to_string(), "0000000000000ABC");
    }
}
