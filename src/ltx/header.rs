//! The 100-byte LTX header and 16-byte trailer (spec §1.2, §1.3, §1.6).

use super::error::{Error, Result};
use crate::types::{CHECKSUM_FLAG, Checksum, NodeId, Pos, TxId};

pub const MAGIC: &[u8; 4] = b"LTX1";
pub const HEADER_SIZE: usize = 100;
pub const PAGE_HEADER_SIZE: usize = 4;
pub const TRAILER_SIZE: usize = 16;
/// Flag bit 0: the page block is one LZ4 frame.
pub const FLAG_COMPRESS_LZ4: u32 = 0x0000_0001;
/// Every flag bit LTX v1 defines.
pub const FLAG_MASK: u32 = FLAG_COMPRESS_LZ4;
pub const PAGE_SIZE_MIN: u32 = 512;
pub const PAGE_SIZE_MAX: u32 = 65536;

/// True for a power of two in 512..=65536.
pub fn is_valid_page_size(page_size: u32) -> bool {
    (PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&page_size) && page_size.is_power_of_two()
}

/// The LTX header. Field order and sizes as on disk; all integers big-endian.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Always 1 on disk (implied by the magic); kept so hand-built headers can be rejected.
    pub version: u32,
    pub flags: u32,
    pub page_size: u32,
    /// Database size in pages after applying this file; 0 means "database deleted".
    pub commit: u32,
    pub min_txid: TxId,
    pub max_txid: TxId,
    pub timestamp_ms: i64,
    pub pre_apply_checksum: Checksum,
    pub wal_offset: i64,
    pub wal_size: i64,
    pub wal_salt1: u32,
    pub wal_salt2: u32,
    pub node_id: NodeId,
}

/// The LTX trailer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trailer {
    pub post_apply_checksum: Checksum,
    pub file_checksum: Checksum,
}

impl Header {
    /// A header with version 1 and everything else zero.
    pub fn new() -> Header {
        Header {
            version: 1,
            ..Header::default()
        }
    }

    /// A file whose MinTXID is 1 holds the whole database (spec §1.8).
    pub fn is_snapshot(&self) -> bool {
        self.min_txid.0 == 1
    }

    pub fn is_compressed(&self) -> bool {
        self.flags & FLAG_COMPRESS_LZ4 != 0
    }

    /// More bytes than any file with this header can take: every page up to Commit once (a
    /// page record is its number and its bytes), doubled for LZ4 framing and any block layout,
    /// plus 1 MiB. A receiver told of a longer file knows the length is not this file's
    /// before it stores a byte of it.
    pub fn file_len_bound(&self) -> u64 {
        let records = (u64::from(self.commit) + 1) * (4 + u64::from(self.page_size));
        records.saturating_mul(2).saturating_add(1 << 20)
    }

    /// The position a database must be at before this file applies.
    pub fn pre_apply_pos(&self) -> Pos {
        Pos {
            txid: TxId(self.min_txid.0.saturating_sub(1)),
            post_apply_checksum: self.pre_apply_checksum,
        }
    }

    /// Checks the rules of §1.3 in their upstream order.
    pub fn validate(&self) -> Result<()> {
        if self.version != 1 {
            return Err(Error::InvalidVersion);
        }
        if self.flags & !FLAG_MASK != 0 {
            return Err(Error::InvalidFlags(self.flags));
        }
        if !is_valid_page_size(self.page_size) {
            return Err(Error::InvalidPageSize(self.page_size));
        }
        if self.min_txid.0 == 0 {
            return Err(Error::MinTxIdRequired);
        }
        if self.max_txid.0 == 0 {
            return Err(Error::MaxTxIdRequired);
        }
        if self.min_txid > self.max_txid {
            return Err(Error::TxIdsOutOfOrder(self.min_txid.0, self.max_txid.0));
        }
        if self.wal_offset < 0 {
            return Err(Error::WalOffsetNegative(self.wal_offset));
        }
        if self.wal_size < 0 {
            return Err(Error::WalSizeNegative(self.wal_size));
        }
        let has_salt = self.wal_salt1 != 0 || self.wal_salt2 != 0;
        if has_salt && self.wal_offset == 0 {
            return Err(Error::WalOffsetRequiredBySalt);
        }
        if has_salt && self.wal_size == 0 {
            return Err(Error::WalSizeRequiredBySalt);
        }
        if self.wal_offset != 0 && self.wal_size == 0 {
            return Err(Error::WalSizeRequiredByOffset);
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return Err(Error::WalOffsetRequiredBySize);
        }
        let pre = self.pre_apply_checksum.0;
        if self.is_snapshot() {
            if pre != 0 {
                return Err(Error::SnapshotPreApplyNotZero);
            }
        } else if pre == 0 {
            return Err(Error::PreApplyRequired);
        } else if pre & CHECKSUM_FLAG == 0 {
            return Err(Error::InvalidPreApplyFormat);
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.0.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.0.to_be_bytes());
        // 80..100 reserved, zero.
        b
    }

    /// Parses a header without validating it (reserved bytes are ignored, as upstream).
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Result<Header> {
        if &b[0..4] != MAGIC {
            return Err(Error::InvalidFile);
        }
        Ok(Header {
            version: 1,
            flags: be_u32(&b[4..8]),
            page_size: be_u32(&b[8..12]),
            commit: be_u32(&b[12..16]),
            min_txid: TxId(be_u64(&b[16..24])),
            max_txid: TxId(be_u64(&b[24..32])),
            timestamp_ms: be_u64(&b[32..40]) as i64,
            pre_apply_checksum: Checksum(be_u64(&b[40..48])),
            wal_offset: be_u64(&b[48..56]) as i64,
            wal_size: be_u64(&b[56..64]) as i64,
            wal_salt1: be_u32(&b[64..68]),
            wal_salt2: be_u32(&b[68..72]),
            node_id: NodeId(be_u64(&b[72..80])),
        })
    }
}

impl Trailer {
    /// Checks the trailer rules of §1.6 (the encoder runs this; the decoder does not).
    pub fn validate(&self, commit: u32) -> Result<()> {
        let post = self.post_apply_checksum.0;
        if commit == 0 && post != CHECKSUM_FLAG {
            return Err(Error::PostApplyNotEmptyForZeroCommit);
        }
        if post == 0 {
            return Err(Error::PostApplyRequired);
        }
        if post & CHECKSUM_FLAG == 0 {
            return Err(Error::InvalidPostApplyFormat);
        }
        let file = self.file_checksum.0;
        if file == 0 {
            return Err(Error::FileChecksumRequired);
        }
        if file & CHECKSUM_FLAG == 0 {
            return Err(Error::InvalidFileChecksumFormat);
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> [u8; TRAILER_SIZE] {
        let mut b = [0u8; TRAILER_SIZE];
        b[0..8].copy_from_slice(&self.post_apply_checksum.0.to_be_bytes());
        b[8..16].copy_from_slice(&self.file_checksum.0.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; TRAILER_SIZE]) -> Trailer {
        Trailer {
            post_apply_checksum: Checksum(be_u64(&b[0..8])),
            file_checksum: Checksum(be_u64(&b[8..16])),
        }
    }
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

/// The file name of an LTX file: `%016x-%016x.ltx`.
pub fn format_filename(min_txid: TxId, max_txid: TxId) -> String {
    format!("{min_txid}-{max_txid}.ltx")
}

/// Parses `^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$`; anything else (temp files included) is `None`.
pub fn parse_filename(name: &str) -> Option<(TxId, TxId)> {
    let b = name.as_bytes();
    let lower_hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if b.len() != 37 || b[16] != b'-' || &b[33..] != b".ltx" {
        return None;
    }
    if !lower_hex(&b[..16]) || !lower_hex(&b[17..33]) {
        return None;
    }
    let min = u64::from_str_radix(&name[..16], 16).ok()?;
    let max = u64::from_str_radix(&name[17..33], 16).ok()?;
    Some((TxId(min), TxId(max)))
}

/// Formats milliseconds since the epoch as Go's `2006-01-02T15:04:05.000Z07:00` in UTC.
pub fn format_timestamp(timestamp_ms: i64) -> String {
    let secs = timestamp_ms.div_euclid(1000);
    let millis = timestamp_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let secs_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

/// Formats like Go's `time.RFC3339Nano` in UTC, as `ltx dump` prints: trailing zeros of the
/// fraction are dropped, and a whole second has no fraction (`…:22.85Z`, `…:20Z`).
pub fn format_timestamp_trimmed(timestamp_ms: i64) -> String {
    let fixed = format_timestamp(timestamp_ms);
    let (seconds, fraction) = fixed.split_at(19);
    let digits = fraction
        .trim_start_matches('.')
        .trim_end_matches('Z')
        .trim_end_matches('0');
    if digits.is_empty() {
        format!("{seconds}Z")
    } else {
        format!("{seconds}.{digits}Z")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Header {
        Header {
            page_size: 4096,
            commit: 1,
            min_txid: TxId(1),
            max_txid: TxId(1),
            ..Header::new()
        }
    }

    fn message(h: Header) -> String {
        h.validate().unwrap_err().to_string()
    }

    #[test]
    fn validate_every_rule_with_exact_text() {
        // ltx TestHeader_Validate, one case per rule of §1.3.
        let cases: Vec<(Header, &str)> = vec![
            (
                Header {
                    version: 2,
                    ..valid()
                },
                "invalid version",
            ),
            (
                Header {
                    flags: 2,
                    ..valid()
                },
                "invalid flags: 0x00000002",
            ),
            (
                Header {
                    page_size: 1000,
                    ..valid()
                },
                "invalid page size: 1000",
            ),
            (
                Header {
                    page_size: 256,
                    ..valid()
                },
                "invalid page size: 256",
            ),
            (
                Header {
                    page_size: 131072,
                    ..valid()
                },
                "invalid page size: 131072",
            ),
            (
                Header {
                    min_txid: TxId(0),
                    ..valid()
                },
                "minimum transaction id required",
            ),
            (
                Header {
                    max_txid: TxId(0),
                    ..valid()
                },
                "maximum transaction id required",
            ),
            (
                Header {
                    min_txid: TxId(3),
                    max_txid: TxId(2),
                    ..valid()
                },
                "transaction ids out of order: (3,2)",
            ),
            (
                Header {
                    wal_offset: -1,
                    ..valid()
                },
                "wal offset cannot be negative: -1",
            ),
            (
                Header {
                    wal_size: -2,
                    ..valid()
                },
                "wal size cannot be negative: -2",
            ),
            (
                Header {
                    wal_salt1: 1,
                    wal_size: 10,
                    ..valid()
                },
                "wal offset required if salt exists",
            ),
            (
                Header {
                    wal_salt2: 1,
                    wal_offset: 32,
                    ..valid()
                },
                "wal size required if salt exists",
            ),
            (
                Header {
                    wal_offset: 32,
                    ..valid()
                },
                "wal size required if wal offset exists",
            ),
            (
                Header {
                    wal_size: 32,
                    ..valid()
                },
                "wal offset required if wal size exists",
            ),
            (
                Header {
                    pre_apply_checksum: Checksum(CHECKSUM_FLAG),
                    ..valid()
                },
                "pre-apply checksum must be zero on snapshots",
            ),
            (
                Header {
                    min_txid: TxId(2),
                    max_txid: TxId(2),
                    ..valid()
                },
                "pre-apply checksum required on non-snapshot files",
            ),
            (
                Header {
                    min_txid: TxId(2),
                    max_txid: TxId(2),
                    pre_apply_checksum: Checksum(1),
                    ..valid()
                },
                "invalid pre-apply checksum format",
            ),
        ];
        for (header, want) in cases {
            assert_eq!(message(header), want, "header {header:?}");
        }
        // Commit 0 is allowed (a deleted database).
        Header {
            commit: 0,
            ..valid()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn header_bytes_vector_b() {
        // Spec §1.7 vector B, header bytes 0..100.
        let h = Header {
            page_size: 512,
            commit: 2,
            min_txid: TxId(1),
            max_txid: TxId(1),
            timestamp_ms: 1_700_000_000_000,
            node_id: NodeId(0x1122334455667788),
            ..Header::new()
        };
        let mut want = Vec::new();
        want.extend_from_slice(&[0x4c, 0x54, 0x58, 0x31]); // magic "LTX1"
        want.extend_from_slice(&[0, 0, 0, 0]); // flags
        want.extend_from_slice(&[0, 0, 0x02, 0]); // page size 512
        want.extend_from_slice(&[0, 0, 0, 2]); // commit 2
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]); // min TXID 1
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]); // max TXID 1
        want.extend_from_slice(&[0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00]); // timestamp ms
        want.extend_from_slice(&[0; 8]); // pre-apply checksum
        want.extend_from_slice(&[0; 8]); // WAL offset
        want.extend_from_slice(&[0; 8]); // WAL size
        want.extend_from_slice(&[0; 4]); // WAL salt 1
        want.extend_from_slice(&[0; 4]); // WAL salt 2
        want.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]); // node ID
        want.extend_from_slice(&[0; 20]); // reserved
        assert_eq!(h.to_bytes().as_slice(), want.as_slice());
        assert_eq!(Header::from_bytes(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn bad_magic_is_invalid_file() {
        let mut b = valid().to_bytes();
        b[3] = b'2';
        assert!(matches!(Header::from_bytes(&b), Err(Error::InvalidFile)));
    }

    #[test]
    fn trailer_rules() {
        let ok = Trailer {
            post_apply_checksum: Checksum(CHECKSUM_FLAG | 5),
            file_checksum: Checksum(CHECKSUM_FLAG | 9),
        };
        ok.validate(1).unwrap();
        let texts = [
            (
                Trailer {
                    post_apply_checksum: Checksum(0),
                    ..ok
                },
                1,
                "post-apply checksum required",
            ),
            (
                Trailer {
                    post_apply_checksum: Checksum(5),
                    ..ok
                },
                1,
                "invalid post-apply checksum format",
            ),
            (
                Trailer {
                    file_checksum: Checksum(0),
                    ..ok
                },
                1,
                "file checksum required",
            ),
            (
                Trailer {
                    file_checksum: Checksum(9),
                    ..ok
                },
                1,
                "invalid file checksum format",
            ),
            (
                ok,
                0,
                "post-apply checksum must be empty for zero-length database",
            ),
        ];
        for (trailer, commit, want) in texts {
            assert_eq!(trailer.validate(commit).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn page_sizes() {
        for ok in [512, 1024, 4096, 65536] {
            assert!(is_valid_page_size(ok), "{ok}");
        }
        for bad in [0, 256, 1000, 131072, u32::MAX] {
            assert!(!is_valid_page_size(bad), "{bad}");
        }
    }

    #[test]
    fn filenames() {
        assert_eq!(
            format_filename(TxId(1), TxId(0x1f)),
            "0000000000000001-000000000000001f.ltx"
        );
        assert_eq!(
            parse_filename("0000000000000001-000000000000001f.ltx"),
            Some((TxId(1), TxId(0x1f)))
        );
        for bad in [
            "0000000000000001-000000000000001F.ltx",
            "0000000000000001-000000000000001f.ltx.tmp",
            "000000000000001-000000000000001f.ltx",
            "0000000000000001_000000000000001f.ltx",
            "é000000000000001-000000000000001f.ltx",
        ] {
            assert_eq!(parse_filename(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_format_like_go() {
        // Values from the golden dumps.
        assert_eq!(
            format_timestamp(1_795_595_786_005),
            "2026-11-25T08:36:26.005Z"
        );
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_700_000_000_000),
            "2023-11-14T22:13:20.000Z"
        );
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_timestamp_trimmed(1_795_595_782_850),
            "2026-11-25T08:36:22.85Z"
        );
        assert_eq!(
            format_timestamp_trimmed(1_795_595_786_005),
            "2026-11-25T08:36:26.005Z"
        );
        assert_eq!(
            format_timestamp_trimmed(1_700_000_000_000),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            format_timestamp_trimmed(1_700_000_000_100),
            "2023-11-14T22:13:20.1Z"
        );
    }
}
