//! WAL transactions (spec §3.7, §3.8): capture each committed transaction as an LTX file.
//!
//! When is a WAL transaction committed? SQLite's recovery treats every frame up to the last
//! valid commit frame (salts and cumulative checksum intact) as committed, and it never
//! retracts a commit frame it wrote. So we capture at the write that completes a commit frame,
//! before replying to it: SQLite has not yet put the frames in the wal-index, so no reader or
//! checkpointer can see a frame we have not recorded. This needs no lock round trip. A write
//! may complete a commit frame whose earlier frames still carry stale checksums (SQLite
//! rewrites them after an in-place overwrite, `walRewriteChecksums`); the scan then finds no
//! transaction, and the last checksum rewrite (the commit frame's header) triggers it again.
//! (Even when the overwrite left the page as it was, SQLite writes the frames it appends
//! after it with zero salts and checksums, so no capture can run ahead of the rewrites.)

use super::commit::{PageSource, WalFields};
use super::durability::Durability;
use super::wal_tail::WalBytes;
use super::{Db, FileKind, State};
use crate::sqlite::{PartialTxn, TxnScan, WalHeader, WalScanner, WalTxn};
use crate::store::error::{Error, IoContext, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

const WAL_HEADER_SIZE: u64 = 32;
const FRAME_HEADER_SIZE: u64 = 24;

impl Db {
    pub(super) fn write_wal(&self, state: &mut State, offset: u64, data: &[u8]) -> Result<()> {
        if offset == 0 {
            // A new WAL generation (first write, or a restart after a full checkpoint): first
            // make sure nothing of the old one is left uncaptured, or unsynced — the new
            // frames overwrite the old ones.
            self.capture_or_die(state)?;
            self.sync_unsynced(state)?;
            if data.len() as u64 != WAL_HEADER_SIZE {
                return Err(self.invalid_write(format!(
                    "wal header write must be 32 bytes, got {}",
                    data.len()
                )));
            }
            let header = WalHeader::parse(data)
                .map_err(|e| self.invalid_write(format!("wal header: {e}")))?
                .ok_or_else(|| self.invalid_write("wal header has a bad checksum".into()))?;
            self.write_at(state, FileKind::Wal, offset, data)?;
            if state.page_size == 0 {
                state.page_size = header.page_size_bytes;
            }
            state.wal_header = Some(header);
            state.wal_cursor = Some(header.start());
            state.wal_frames.clear();
            state.wal_tail.restart(header.start().offset_bytes);
            state.wal_partial = None;
            state.wal_frame_header = None;
            return Ok(());
        }
        if let Some(cursor) = state.wal_cursor
            && offset < cursor.offset_bytes
        {
            return Err(self.invalid_write(format!(
                "cannot write wal frame at offset {offset} before current WAL position {}",
                cursor.offset_bytes
            )));
        }
        // A frame a previous scan checked may change (an in-place overwrite, a failed write):
        // the next scan checks it again.
        if state
            .wal_partial
            .as_ref()
            .is_some_and(|p| offset < p.at.offset_bytes)
        {
            state.wal_partial = None;
        }
        if let Err(e) = self.write_at(state, FileKind::Wal, offset, data) {
            // The file may hold part of the write: stop trusting the held copy.
            state.wal_tail.forget();
            state.wal_frame_header = None;
            return Err(e);
        }
        state.wal_tail.record(offset, data);
        if self.ends_in_commit_frame(state, offset + data.len() as u64)? {
            self.commit_wal(state, true)
                .inspect_err(|e| self.capture_failed(e))?;
        } else {
            scan_ahead(state, offset, data);
        }
        Ok(())
    }

    /// True if the frame holding byte `end - 1` of the WAL is a commit frame.
    fn ends_in_commit_frame(&self, state: &mut State, end: u64) -> Result<bool> {
        let Some(header) = state.wal_header else {
            return Ok(false);
        };
        let frame_size = header.frame_size_bytes();
        let Some(rel) = (end - 1).checked_sub(WAL_HEADER_SIZE) else {
            return Ok(false);
        };
        let frame_offset = WAL_HEADER_SIZE + rel / frame_size * frame_size;
        if let Some(frame_header) = state.wal_tail.get(frame_offset, FRAME_HEADER_SIZE as usize) {
            return Ok(frame_header[4..8] != [0, 0, 0, 0]);
        }
        let wal = self.file(state, FileKind::Wal)?;
        let mut frame_header = [0u8; FRAME_HEADER_SIZE as usize];
        match wal.read_exact_at(&mut frame_header, frame_offset) {
            Ok(()) => Ok(frame_header[4..8] != [0, 0, 0, 0]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e).io_context("read", self.path(FileKind::Wal)),
        }
    }

    /// A committed WAL transaction we cannot record must stop the process: SQLite already
    /// considers it committed, and only a restart (whose recovery derives the LTX file from the
    /// WAL) brings the two back in line. LiteFS exits with code 99 here too.
    pub(super) fn capture_or_die(&self, state: &mut State) -> Result<()> {
        self.commit_wal(state, false)
            .inspect_err(|e| self.capture_failed(e))
    }

    fn capture_failed(&self, e: &Error) {
        self.shared.fatal.raise(&format!(
            "database {:?}: cannot record a committed WAL transaction: {e}",
            self.name
        ));
    }

    /// Captures every committed transaction after the cursor (spec §3.7 `CommitWAL`). With
    /// `defer`, one whose frames are held may be queued for the capture thread instead
    /// (`deferred.rs`): only the write that completes a commit frame asks for that.
    pub(super) fn commit_wal(&self, state: &mut State, defer: bool) -> Result<()> {
        let (Some(header), Some(cursor)) = (state.wal_header, state.wal_cursor) else {
            return Ok(());
        };
        let wal = self.file(state, FileKind::Wal)?;
        let db = self.file(state, FileKind::Database).ok();
        // Lent to the scan and the page reads while `state` changes; moved with the cursor.
        let mut tail = std::mem::take(&mut state.wal_tail);
        let mut mapped: Option<WalMap> = None;
        let result = (|| loop {
            let cursor = state.wal_cursor.unwrap_or(cursor);
            // Go on from an earlier scan of this transaction, or start at the cursor.
            let partial = match state.wal_partial.take() {
                Some(p) if p.offset_bytes == cursor.offset_bytes => p,
                _ => PartialTxn::at_start(cursor),
            };
            let held = tail.held_from(cursor.offset_bytes);
            let is_held = held.is_some();
            let bytes = match held {
                Some(held) => held,
                None => match &mapped {
                    Some(map) => map.bytes(),
                    None => {
                        // From the transaction's first frame, not where the scan goes on:
                        // the LTX file's pages are read from the mapping too.
                        let wal_path = self.path(FileKind::Wal);
                        let map = WalMap::new(&wal, cursor.offset_bytes, &wal_path)?;
                        mapped.insert(map).bytes()
                    }
                },
            };
            // The bytes reach the furthest write, so they hold any earlier scan's end; checked
            // all the same, since a scan from outside them is refused (and would be fatal).
            let partial = if bytes.covers(partial.at.offset_bytes) {
                partial
            } else {
                PartialTxn::at_start(cursor)
            };
            let txn = match continue_transaction(bytes, &header, partial)? {
                TxnScan::Committed(txn) => txn,
                TxnScan::Unfinished(partial) => {
                    state.wal_partial = Some(partial);
                    return Ok(());
                }
            };
            let deferred = defer
                && is_held
                && self.defer_capture(state, &txn, wal_fields(&header, &txn), bytes);
            if deferred {
                state
                    .wal_frames
                    .extend(txn.frame_offsets.iter().map(|(&p, &o)| (p, o)));
                state.wal_frames.retain(|&p, _| p <= txn.commit_size_pages);
            } else {
                self.record_wal_txn(state, &wal, &header, &txn, db.as_deref(), bytes)?;
            }
            state.wal_cursor = Some(txn.end);
            state.wal_mode = true;
            tail.advance(txn.end.offset_bytes);
        })();
        state.wal_tail = tail;
        result
    }

    /// Records one committed WAL transaction as LTX file TXID+1 (TXID 1 is a snapshot of every
    /// page) and remembers where its pages live in the WAL. Shared by live capture and by
    /// startup recovery.
    pub(super) fn record_wal_txn(
        &self,
        state: &mut State,
        wal: &File,
        header: &WalHeader,
        txn: &WalTxn,
        db: Option<&File>,
        bytes: WalBytes<'_>,
    ) -> Result<()> {
        let commit = txn.commit_size_pages;
        let pgnos: Vec<u32> = if state.pos.txid.0 == 0 {
            (1..=commit).collect()
        } else {
            txn.frame_offsets
                .keys()
                .copied()
                .filter(|&p| p <= commit)
                .collect()
        };
        let fields = wal_fields(header, txn);
        let source = PageSource::Wal {
            wal,
            bytes,
            frames: &txn.frame_offsets,
            db,
        };
        // The WAL holds this transaction until the file is synced with its batch. An error
        // can come after the position moved (the sync of a full batch, which follows the
        // publish): it is fatal, so the WAL bookkeeping below, skipped, is never used again.
        self.write_ltx(state, source, commit, &pgnos, fields, Durability::Deferred)?;
        state
            .wal_frames
            .extend(txn.frame_offsets.iter().map(|(&p, &o)| (p, o)));
        state.wal_frames.retain(|&p, _| p <= commit);
        self.verify_if_strict(state)
    }

    /// Forgets the WAL before SQLite (or an import) truncates or deletes it (all frames were
    /// checkpointed). Fails, and the WAL must then stay, if its transactions' LTX files could
    /// not be made durable.
    pub(super) fn reset_wal(&self, state: &mut State) -> Result<()> {
        // Anything committed but not yet captured must be captured before it disappears.
        if let Err(e) = self.commit_wal(state, false) {
            eprintln!(
                "litefs: database {:?}: capture before WAL reset: {e}",
                self.name
            );
        }
        self.sync_unsynced(state)?;
        state.wal_header = None;
        state.wal_cursor = None;
        state.wal_frames.clear();
        state.wal_tail.forget();
        state.wal_partial = None;
        state.wal_frame_header = None;
        Ok(())
    }
}

/// The WAL fields of the LTX header of `txn` (spec §1.2).
fn wal_fields(header: &WalHeader, txn: &WalTxn) -> WalFields {
    WalFields {
        offset: txn.offset_bytes as i64,
        size: txn.size_bytes as i64,
        salt1: header.salt1,
        salt2: header.salt2,
    }
}

/// Checks the frame a write that is not a commit frame's completed, while SQLite writes the
/// rest of the transaction, so that the capture at its commit frame scans only what follows
/// (a 100 MB transaction's scan took ~20 ms of its commit). Only the next frame after those
/// checked, appended in order: its bytes come from the held tail, or from this write and the
/// header written just before it. Anything else — a frame out of order, one with stale
/// checksums (SQLite rewrites them at the commit), an overwrite of a checked frame (which
/// drops the check, `write_wal`) — is left to the capture, which goes on from the last frame
/// checked (`State::wal_partial`) as after an unfinished capture. One frame per write: never
/// a rescan (review helper-21: overwrites at descending offsets made those quadratic).
fn scan_ahead(state: &mut State, offset: u64, data: &[u8]) {
    let (Some(header), Some(cursor)) = (state.wal_header, state.wal_cursor) else {
        return;
    };
    if data.len() as u64 == FRAME_HEADER_SIZE {
        state.wal_frame_header = data.try_into().ok().map(|h| (offset, h));
        return;
    }
    let frame_size = header.frame_size_bytes();
    let end = offset + data.len() as u64;
    let Some(rel) = end.checked_sub(WAL_HEADER_SIZE) else {
        return;
    };
    if rel == 0 || rel % frame_size != 0 {
        return;
    }
    let frame_offset = end - frame_size;
    let partial = match state.wal_partial.take() {
        Some(p) if p.offset_bytes == cursor.offset_bytes => p,
        _ => PartialTxn::at_start(cursor),
    };
    if partial.at.offset_bytes != frame_offset {
        state.wal_partial = Some(partial);
        return;
    }
    // Borrowed where the frame's bytes are whole already; joined only past the held tail.
    let joined: Vec<u8>;
    let frame: Option<&[u8]> = match state.wal_tail.get(frame_offset, frame_size as usize) {
        Some(held) => Some(held),
        None if data.len() as u64 == frame_size => Some(data),
        None => match state.wal_frame_header {
            Some((at, h)) if at == frame_offset && (h.len() + data.len()) as u64 == frame_size => {
                joined = [&h[..], data].concat();
                Some(&joined)
            }
            _ => None,
        },
    };
    let Some(frame) = frame else {
        state.wal_partial = Some(partial);
        return;
    };
    state.wal_partial =
        match continue_transaction(WalBytes::new(frame_offset, frame), &header, partial) {
            Ok(TxnScan::Unfinished(partial)) => Some(partial),
            // Not a commit frame (checked by the caller), so only a scan error: the capture at
            // the commit frame scans from the cursor, as it would have.
            Ok(TxnScan::Committed(_)) | Err(_) => None,
        };
}

/// Scans `bytes` (held or mapped; their end is taken for the end of the WAL) on from
/// `partial` to the transaction's commit frame.
fn continue_transaction(
    bytes: WalBytes<'_>,
    header: &WalHeader,
    partial: PartialTxn,
) -> Result<TxnScan> {
    let mut scanner = WalScanner::over_bytes(bytes.as_slice(), bytes.start(), header, partial.at)
        .map_err(Error::Sqlite)?;
    scanner.continue_transaction(partial).map_err(Error::Sqlite)
}

/// The WAL file mapped read-only from offset `from` to its end, for one capture
/// whose bytes are not held (a transaction larger than the held tail, a WAL written before
/// this process started): the scan and the LTX file's pages read the page cache in place.
/// Copying a 100 MB transaction out with `read` and then `pread` cost ~2 of its ~4 passes
/// over the bytes (ARCHITECTURE §7.4.1).
struct WalMap {
    start: u64,
    /// `None` when the file ends before `from` (nothing to scan; `mmap` refuses length 0).
    map: Option<memmap2::Mmap>,
}

impl WalMap {
    fn new(wal: &File, from: u64, path: &std::path::Path) -> Result<WalMap> {
        // memmap2 aligns the offset to a page itself.
        let start = from;
        let len_bytes = wal.metadata().io_context("stat", path)?.len();
        let Some(map_len) = len_bytes
            .checked_sub(start)
            .filter(|&n| n > 0)
            .and_then(|n| usize::try_from(n).ok())
        else {
            return Ok(WalMap { start, map: None });
        };
        // SAFETY: the mapping is read-only and lives only inside one `commit_wal`, which holds
        // the database's state lock. Every write to the WAL through the mount takes that lock
        // too, so no byte changes under the scan. What could fault is a truncation below the
        // mapped length (SIGBUS), and the WAL is only ever truncated by this process, under
        // that lock (`Db::truncate`, import, startup recovery); a process writing the data
        // directory from outside is not supported. A disk error reading a mapped page also
        // arrives as SIGBUS: the daemon dies where a `read` error would have stopped it with
        // a message (`capture_or_die`); either way restart recovery derives the LTX file.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(start)
                .len(map_len)
                .map(wal)
        }
        .io_context("mmap", path)?;
        Ok(WalMap {
            start,
            map: Some(map),
        })
    }

    fn bytes(&self) -> WalBytes<'_> {
        WalBytes::new(self.start, self.map.as_deref().unwrap_or(&[]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::durability::{Unsynced, take_off_synced};
    use super::*;
    use crate::sqlite::test_util::{reencode_wal, wal_fixture};
    use crate::sqlite::{ChecksumOrder, committed_transactions};
    use crate::store::{DbOptions, Store};
    use crate::types::{NodeId, TxId};
    use std::io::Cursor;

    const PAGE: u32 = 4096;

    fn txns(wal: &[u8]) -> Vec<WalTxn> {
        let header = WalHeader::parse(wal).unwrap().unwrap();
        committed_transactions(Cursor::new(wal), &header, header.start())
            .unwrap()
            .0
    }

    /// A store in `dir` (strict-verify on) with database "db" whose WAL has `header` written.
    fn store_with_wal(
        dir: &std::path::Path,
        compress: bool,
        header: &[u8],
    ) -> (Store, std::sync::Arc<Db>) {
        let options = DbOptions {
            node_id: NodeId(1),
            compress,
            strict_verify: true,
            replica: false,
        };
        let store = Store::open(dir, options).unwrap();
        let (db, _) = store.create_db("db").unwrap();
        db.create(FileKind::Wal).unwrap();
        db.write(FileKind::Wal, 0, header).unwrap();
        (store, db)
    }

    /// Writes `bytes` (whole frames at their offsets) as SQLite does: header, then page.
    fn write_frames(db: &Db, offset: usize, bytes: &[u8]) {
        let frame = 24 + PAGE as usize;
        for (i, f) in bytes.chunks(frame).enumerate() {
            let at = (offset + i * frame) as u64;
            db.write(FileKind::Wal, at, &f[..24]).unwrap();
            db.write(FileKind::Wal, at + 24, &f[24..]).unwrap();
        }
    }

    /// With the store's capture thread, small commits are queued at their commit frame and
    /// published in order; anything that locks the state (here `-pos`) sees all of them.
    /// After a fatal error nothing more is written or captured.
    #[test]
    fn queued_captures_publish_in_order_and_stop_at_a_fatal_error() {
        let create = "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)";
        let insert = "INSERT INTO t(x) VALUES (randomblob(100))";
        let wal = wal_fixture(PAGE, &[create, insert, insert, insert, insert, insert]).wal;
        let all = txns(&wal);
        assert_eq!(all.len(), 6);
        let dir = tempfile::tempdir().unwrap();
        let (store, db) = store_with_wal(dir.path(), true, &wal[..32]);
        let mut capture = store.start_capture_thread().unwrap();
        let mut at = 32;
        for txn in &all {
            let end = txn.end.offset_bytes as usize;
            write_frames(&db, at, &wal[at..end]);
            at = end;
        }
        let pos = db.pos_text();
        assert!(
            pos.starts_with(&format!("{}/", TxId(6))),
            "-pos drains: {pos}"
        );
        assert_eq!(db.pos().txid, TxId(6), "published once drained");
        // TXID 1 snapshots every page before the reply; the other five are queued.
        assert_eq!(db.deferred_capture_count(), 5);
        for txid in 1..=6 {
            let name = crate::ltx::format_filename(TxId(txid), TxId(txid));
            assert!(db.ltx_dir().join(&name).exists(), "{name}");
        }
        store.fatal_hook().raise("test");
        let refused = db.write(FileKind::Wal, at as u64, &wal[32..56]);
        assert!(
            matches!(refused, Err(Error::Stopping(_))),
            "a write after a fatal error: {refused:?}"
        );
        assert!(matches!(db.capture_wal(), Err(Error::Stopping(_))));
        capture.stop();
    }

    /// The frames of a transaction are checked as SQLite writes them, before its commit
    /// frame — from the held tail, and past it (over 4 MiB) from each write and the header
    /// written before it — so the capture at the commit frame scans that frame alone; the
    /// file it writes is the same.
    #[test]
    fn frames_are_checked_ahead_of_the_commit_frame() {
        let create = "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)";
        let big = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1600) \
                   INSERT INTO t(x) SELECT randomblob(3000) FROM n";
        let wal = wal_fixture(PAGE, &[create, big]).wal;
        let all = txns(&wal);
        assert_eq!(all.len(), 2);
        let frame = 24 + PAGE as usize;
        let txn = &all[1];
        let (start, end) = (txn.offset_bytes as usize, txn.end.offset_bytes as usize);
        assert!(
            end - start > super::super::wal_tail::WAL_TAIL_BYTES_MAX,
            "the transaction outgrows the held tail: {} bytes",
            end - start
        );
        let dir = tempfile::tempdir().unwrap();
        let (_store, db) = store_with_wal(dir.path(), true, &wal[..32]);
        write_frames(&db, 32, &wal[32..start]);
        assert_eq!(db.pos().txid, TxId(1));
        let commit_frame = end - frame;
        write_frames(&db, start, &wal[start..commit_frame]);
        let checked = db.lock().wal_partial.as_ref().map(|p| p.at.offset_bytes);
        assert_eq!(
            checked,
            Some(commit_frame as u64),
            "every frame before the commit frame ({} frames) checked",
            (commit_frame - start) / frame
        );
        write_frames(&db, commit_frame, &wal[commit_frame..end]);
        assert_eq!(db.pos().txid, TxId(2), "captured at its commit frame");
        let name = crate::ltx::format_filename(TxId(2), TxId(2));
        let summary =
            crate::ltx::verify(std::fs::File::open(db.ltx_dir().join(name)).unwrap()).unwrap();
        assert_eq!(
            summary.page_count as usize,
            txn.frame_offsets.len(),
            "one page per page the transaction wrote"
        );
    }

    /// WAL commits' LTX files wait for a batch sync; `presync` makes the ones counted durable
    /// without the state lock (before a checkpoint would sync them under it) and takes them
    /// off the count; fewer than its minimum are left for the sync under the lock.
    #[test]
    fn presync_takes_synced_files_off_the_count() {
        let create = "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)";
        let insert = "INSERT INTO t(x) VALUES (randomblob(100))";
        let wal = wal_fixture(PAGE, &[create, insert, insert, insert]).wal;
        let dir = tempfile::tempdir().unwrap();
        let (_store, db) = store_with_wal(dir.path(), false, &wal[..32]);
        write_frames(&db, 32, &wal[32..]);
        assert_eq!(db.pos().txid, TxId(4));
        assert_eq!(db.unsynced_ltx_files(), 4, "WAL commits defer their sync");
        db.presync(5, false).unwrap();
        assert_eq!(
            db.unsynced_ltx_files(),
            4,
            "below the minimum: left for later"
        );
        db.presync(4, false).unwrap();
        assert_eq!(db.unsynced_ltx_files(), 0, "synced and taken off the count");
        assert_eq!(db.lock().unsynced, Default::default());
        // Two presyncs that counted the same files (concurrent FUSE requests): the second
        // finds the epoch moved and leaves the count alone — never taking files off twice.
        let mut state = db.lock();
        state.unsynced = Unsynced {
            files: 3,
            bytes: 300,
            unlogged: 3,
        };
        let (counted, epoch) = (state.unsynced, state.unsynced_epoch);
        take_off_synced(&mut state, counted, epoch);
        assert_eq!(state.unsynced.files, 0);
        state.unsynced.files = 2;
        state.unsynced.bytes = 200;
        take_off_synced(&mut state, counted, epoch);
        assert_eq!(
            (state.unsynced.files, state.unsynced.bytes),
            (2, 200),
            "files counted after the first presync stay counted"
        );
    }

    /// A capture that stopped short of a commit frame keeps what it checked — until SQLite
    /// writes before that point. Here SQLite gave up a transaction after writing its commit
    /// frame's header (a failed page write) and wrote the next one over the same frames: the
    /// kept scan must not be continued, or the recorded transaction would mix the given-up
    /// frames' pages into the new one's.
    #[test]
    fn a_write_before_a_kept_scan_restarts_it() {
        let create = "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)";
        let big = format!("INSERT INTO t(x) VALUES (randomblob({}))", 3 * PAGE);
        let given_up = wal_fixture(PAGE, &[create, &big]).wal;
        let kept = wal_fixture(PAGE, &[create, "INSERT INTO t(x) VALUES (x'0102')"]).wal;
        let (g, k) = (txns(&given_up), txns(&kept));
        assert_eq!((g.len(), k.len()), (2, 2));
        let frame = 24 + PAGE as usize;
        assert!(
            g[1].size_bytes as usize >= 3 * frame,
            "a transaction of several frames"
        );
        // One WAL generation: `given_up`'s header and first transaction, then the second
        // transaction of `kept` (same first transaction) re-salted and re-checksummed after it.
        let first_end = g[0].end.offset_bytes as usize;
        assert_eq!(k[0].end.offset_bytes as usize, first_end);
        let mut next = given_up[..first_end].to_vec();
        next.extend_from_slice(&kept[first_end..k[1].end.offset_bytes as usize]);
        for f in next[first_end..].chunks_mut(frame) {
            f[8..16].copy_from_slice(&given_up[16..24]);
        }
        let next = reencode_wal(&next, ChecksumOrder::LittleEndian);
        assert_eq!(
            txns(&next).len(),
            2,
            "the spliced WAL holds both transactions"
        );

        let dir = tempfile::tempdir().unwrap();
        let (_store, db) = store_with_wal(dir.path(), false, &given_up[..32]);
        write_frames(&db, 32, &given_up[32..first_end]);
        assert_eq!(db.pos().txid.0, 1, "the first transaction is captured");
        // The given-up transaction: every frame, then only its commit frame's header. The
        // capture that header triggers finds the page missing and keeps its scan.
        let g_end = g[1].end.offset_bytes as usize;
        write_frames(&db, first_end, &given_up[first_end..g_end - frame]);
        db.write(
            FileKind::Wal,
            (g_end - frame) as u64,
            &given_up[g_end - frame..g_end - PAGE as usize],
        )
        .unwrap();
        assert_eq!(db.pos().txid.0, 1);
        assert!(db.lock().wal_partial.is_some(), "the scan is kept");
        // SQLite starts over at the same offset with another transaction.
        write_frames(&db, first_end, &next[first_end..]);
        assert_eq!(db.pos().txid.0, 2, "the new transaction is captured");
        let state = db.lock();
        let pages: Vec<u32> = state
            .wal_frames
            .keys()
            .copied()
            .filter(|&p| p <= state.page_count)
            .collect();
        drop(state);
        let want: Vec<u32> = k[1].frame_offsets.keys().copied().collect();
        let mut all: Vec<u32> = g[0].frame_offsets.keys().copied().collect();
        all.extend(&want);
        all.sort_unstable();
        all.dedup();
        assert_eq!(pages, all, "only the two committed transactions' pages");
    }
}
