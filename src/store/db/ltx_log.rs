//! The LTX log (`dbs/<db>/ltx-log`): a rollback-journal commit's LTX file made durable by one
//! `fdatasync` of a preallocated file, instead of the file's own fsync.
//!
//! Why: when SQLite invalidates its journal, nothing but the LTX file can re-derive the new
//! pages, so the file must be durable before the reply (docs/ARCHITECTURE.md §4.1). An fsync
//! of a freshly created (or renamed-in) file writes its data, its inode and its directory
//! block; an overwrite of blocks already written needs only the data. Measured on this VM's
//! ext4 (2.5 KB files, a loop of 1,000): create + fsync 289 µs, a spare renamed in + fsync
//! 318–328 µs, an unsynced create plus this log's append + `fdatasync` 172–178 µs.
//!
//! So a journal commit writes its LTX file under its final name without syncing it, as a WAL
//! commit does (it joins the batch that the next `syncfs` makes durable, `durability.rs`),
//! and appends the same bytes to the log, which it `fdatasync`s — or, on ext4 and XFS, writes
//! them out unflushed at SQLite's fsync of the database, whose device flush then makes them
//! durable too (`journal.rs`, [`super::durability::LogSync`]). The log covers every file
//! of the batch: it is used only while no pending file is missing from it (a WAL commit's
//! file is not logged — the WAL holds that transaction), and it starts over at offset 0 with
//! the first file after a sync left nothing pending.
//!
//! Layout: entries from offset 0, each `ENTRY_MAGIC`, the LTX file's length (u64 big-endian)
//! and the file's bytes, followed by [`TERMINATOR_BYTES`] zeros that the next entry
//! overwrites. The file is grown with zeros (written and synced: [`grown_len_bytes`], up to
//! [`LTX_LOG_BYTES_MAX`]) before an entry that would not fit, so an append never changes its
//! size or allocates blocks (a process empties the log before its first append, so the blocks
//! are its own); a file that cannot fit is synced as before. A clean close zeroes
//! the first entry's magic, so the next start reads 16 bytes of it, not the whole log. Entries are taken in order while each verifies as an LTX file and starts at the
//! TXID after the one before; older entries left beyond the end by an earlier round start
//! lower (TXIDs only grow) or belong to another history. A round whose files were all synced
//! stays readable until the next round overwrites it or its head is zeroed (a clean close,
//! and retention before it removes files); restoring (`recover.rs`) takes an entry only where
//! it continues the chain on disk — so an old round, whose files retention may since have
//! removed, or another history's, restores nothing.

use crate::ltx;
use crate::types::TxId;

/// The log's name in `dbs/<db>/` (outside `ltx/`, so no LTX scan sees it).
pub(super) const LTX_LOG_NAME: &str = "ltx-log";

/// The log's first size: what a database with a few journal commits (every new database's
/// first transactions, before a switch to WAL) keeps on disk.
pub(super) const LTX_LOG_BYTES_MIN: u64 = 64 << 10;

/// The log's largest size (~400 single-row commits per round; a file that does not fit is
/// synced with its batch, which starts a new round). Bounded so that a store of many
/// databases keeps little: 1 MiB each at most.
pub(super) const LTX_LOG_BYTES_MAX: u64 = 1 << 20;

/// The size to grow a log of `len_bytes` to so that it holds `needed_bytes`: doubling from
/// [`LTX_LOG_BYTES_MIN`] (so it grows a few times in its life), never past
/// [`LTX_LOG_BYTES_MAX`]; `None` if that is not enough.
pub(super) fn grown_len_bytes(len_bytes: u64, needed_bytes: u64) -> Option<u64> {
    if needed_bytes > LTX_LOG_BYTES_MAX {
        return None;
    }
    let mut len = len_bytes.max(LTX_LOG_BYTES_MIN);
    while len < needed_bytes {
        len *= 2;
    }
    Some(len.min(LTX_LOG_BYTES_MAX))
}

/// Whether `head` (the log's first bytes) starts an entry: if not, the log holds none.
pub(super) fn starts_an_entry(head: &[u8]) -> bool {
    head.get(..8) == Some(&ENTRY_MAGIC[..])
}

const ENTRY_MAGIC: [u8; 8] = *b"LTXLOG\x00\x01";

/// Bytes before an entry's LTX file: the magic and the file's length.
pub(super) const ENTRY_HEADER_BYTES: usize = 16;

/// Zeros written after each entry, so that the entries of an earlier round beyond it are not
/// read as a continuation.
pub(super) const TERMINATOR_BYTES: usize = 16;

/// The bytes to write for one entry holding the LTX file `ltx_bytes`, appended to `out`.
pub(super) fn encode_entry(ltx_bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&ENTRY_MAGIC);
    out.extend_from_slice(&(ltx_bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(ltx_bytes);
    out.extend_from_slice(&[0; TERMINATOR_BYTES]);
}

/// Bytes an entry holding an LTX file of `ltx_len_bytes` occupies until the next entry.
pub(super) fn entry_len_bytes(ltx_len_bytes: u64) -> u64 {
    ENTRY_HEADER_BYTES as u64 + ltx_len_bytes
}

/// The log's current entries, in order: whole LTX files that verify, each starting at the
/// TXID after the one before it. Stops at the first entry that is not one (the end, a
/// torn append, or an earlier round's entries).
pub(super) fn entries(log: &[u8]) -> Vec<(ltx::Summary, &[u8])> {
    let mut found: Vec<(ltx::Summary, &[u8])> = Vec::new();
    let mut at = 0usize;
    while let Some(head) = log.get(at..at + ENTRY_HEADER_BYTES) {
        if head[..8] != ENTRY_MAGIC {
            break;
        }
        let len = u64::from_be_bytes(head[8..16].try_into().expect("8 bytes"));
        let start = at + ENTRY_HEADER_BYTES;
        let Some(file) = usize::try_from(len)
            .ok()
            .and_then(|len| log.get(start..start.checked_add(len)?))
        else {
            break;
        };
        let Ok(summary) = ltx::verify(file) else {
            break;
        };
        let follows = match found.last() {
            Some((before, _)) => summary.header.min_txid == TxId(before.header.max_txid.0 + 1),
            None => true,
        };
        if !follows {
            break;
        }
        found.push((summary, file));
        at = start + file.len();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{Encoder, Header};
    use crate::types::Checksum;

    /// An LTX file of TXID `txid` holding page 1 filled with `fill`.
    fn ltx_file(txid: u64, fill: u8) -> Vec<u8> {
        let header = Header {
            page_size: 4096,
            commit: 1,
            min_txid: TxId(txid),
            max_txid: TxId(txid),
            timestamp_ms: 1,
            pre_apply_checksum: if txid == 1 {
                Checksum(0)
            } else {
                Checksum(crate::types::CHECKSUM_FLAG | txid)
            },
            ..Header::new()
        };
        let mut enc = Encoder::new(Vec::new(), &header).unwrap();
        enc.encode_page(1, &[fill; 4096]).unwrap();
        let (bytes, _) = enc
            .finish(Checksum(crate::types::CHECKSUM_FLAG | (txid + 1)))
            .unwrap();
        bytes
    }

    fn log_of(files: &[Vec<u8>]) -> Vec<u8> {
        let mut log = Vec::new();
        for f in files {
            // Each append overwrites the terminator of the one before.
            log.truncate(log.len().saturating_sub(TERMINATOR_BYTES));
            encode_entry(f, &mut log);
        }
        log
    }

    fn txids(log: &[u8]) -> Vec<u64> {
        entries(log)
            .iter()
            .map(|(s, _)| s.header.max_txid.0)
            .collect()
    }

    #[test]
    fn entries_come_back_in_order_with_their_bytes() {
        let files = [ltx_file(5, 1), ltx_file(6, 2), ltx_file(7, 3)];
        let log = log_of(&files);
        let found = entries(&log);
        assert_eq!(found.len(), 3, "entries found: {}", found.len());
        for ((_, bytes), file) in found.iter().zip(&files) {
            assert_eq!(*bytes, &file[..]);
        }
        assert_eq!(
            entry_len_bytes(files[0].len() as u64) as usize + TERMINATOR_BYTES,
            log_of(&files[..1]).len()
        );
    }

    #[test]
    fn a_torn_entry_ends_the_log() {
        let files = [ltx_file(5, 1), ltx_file(6, 2), ltx_file(7, 3)];
        let mut log = log_of(&files);
        // A byte of the second file's pages lost: it and everything after are not taken.
        let second = entry_len_bytes(files[0].len() as u64) as usize + ENTRY_HEADER_BYTES + 200;
        log[second] ^= 0xff;
        assert_eq!(txids(&log), vec![5]);
        // Cut inside the third entry.
        let mut log = log_of(&files);
        log.truncate(log.len() - 40);
        assert_eq!(txids(&log), vec![5, 6]);
        // A length past the end.
        let mut log = log_of(&files[..1]);
        log[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(txids(&log), Vec::<u64>::new());
    }

    #[test]
    fn an_earlier_round_beyond_the_end_is_not_taken() {
        // Round one logged TXIDs 3..=6; round two (after a sync) starts over at 0 with 7 and
        // 8, shorter, so round one's tail lies beyond its terminator.
        let old = log_of(&[
            ltx_file(3, 1),
            ltx_file(4, 1),
            ltx_file(5, 1),
            ltx_file(6, 1),
        ]);
        let new = log_of(&[ltx_file(7, 9), ltx_file(8, 9)]);
        let mut log = old.clone();
        log[..new.len()].copy_from_slice(&new);
        assert_eq!(txids(&log), vec![7, 8]);
        // Even with the terminator lost (torn), round one's next entry starts lower.
        let mut log = old;
        log[..new.len() - TERMINATOR_BYTES].copy_from_slice(&new[..new.len() - TERMINATOR_BYTES]);
        assert_eq!(txids(&log), vec![7, 8]);
    }

    #[test]
    fn the_log_grows_by_doubling_up_to_its_limit() {
        assert_eq!(grown_len_bytes(0, 100), Some(LTX_LOG_BYTES_MIN));
        assert_eq!(
            grown_len_bytes(0, LTX_LOG_BYTES_MIN + 1),
            Some(LTX_LOG_BYTES_MIN * 2)
        );
        assert_eq!(
            grown_len_bytes(LTX_LOG_BYTES_MIN * 4, 10),
            Some(LTX_LOG_BYTES_MIN * 4)
        );
        assert_eq!(
            grown_len_bytes(LTX_LOG_BYTES_MIN, LTX_LOG_BYTES_MAX),
            Some(LTX_LOG_BYTES_MAX)
        );
        assert_eq!(grown_len_bytes(0, LTX_LOG_BYTES_MAX + 1), None);
        let log = log_of(&[ltx_file(5, 1)]);
        assert!(starts_an_entry(&log));
        assert!(!starts_an_entry(&[0; 16]));
        assert!(!starts_an_entry(&log[..4]));
    }

    #[test]
    fn garbage_and_zeros_are_an_empty_log() {
        assert!(entries(&[]).is_empty());
        assert!(entries(&[0u8; 4096]).is_empty());
        let mut log = vec![0u8; 64];
        log[..8].copy_from_slice(&ENTRY_MAGIC);
        assert!(
            entries(&log).is_empty(),
            "an entry of length 0 is no LTX file"
        );
    }
}
