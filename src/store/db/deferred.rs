//! Deferred WAL captures: a small WAL commit's LTX file is written after SQLite's write is
//! answered (docs/ARCHITECTURE.md §7.4.4).
//!
//! Writing the LTX file was ~75 % of the daemon's time per single-row WAL commit (creating
//! the file alone ~40 %), all of it while SQLite waited for the reply to its commit-frame
//! write. Nothing in that wait is needed for SQLite's durability: the WAL already holds the
//! transaction (a WAL commit's LTX file is not synced before the reply either,
//! `durability.rs`), and a crash before the file exists is what startup recovery derives it
//! from the WAL for. So the write that completes a commit frame only scans the transaction,
//! copies its frames (they are in the held tail, `wal_tail.rs`) into a queue and moves the
//! cursor; the store's capture thread (`store/capture.rs`) writes and publishes the file
//! while SQLite goes on with its next transaction, on the other core.
//!
//! The rule that keeps this invisible: **every** use of the database's state except WAL
//! frame writes, `-shm` writes, reads and fsyncs first finishes the queue (`Db::lock` drains
//! it), so whatever reads the position, the page checksums, the LTX files or the database
//! file — a `-pos` read, a checkpoint, a journal commit, an export, a snapshot, a WAL
//! restart — sees every committed transaction published, in order. Only `Db::pos`, which
//! streams, retention and `/info` read without the state lock, may trail by the queued
//! transactions (at most [`DEFERRED_TXNS_MAX`]); streams are woken again as each is
//! published, and retention only ever removes files at or below it.
//!
//! With `fuse.posix-locks: true` SQLite's WAL_WRITE unlock captures first
//! (`Db::capture_wal`), which drains: the commit is then answered early but the unlock waits,
//! and little is gained. A full queue is drained by the commit that found it full, before its
//! reply (up to 64 small files: a latency spike rather than unbounded memory).
//!
//! The capture thread holds the state lock only to take a transaction off the queue and to
//! publish it; the file is created, encoded and written between, with the transaction
//! marked in flight. A thread that must drain while one is in flight waits for its result
//! (it needs no lock the encoding takes) and publishes it itself. One transaction at a time
//! is in flight and the queue is first in, first out, so TXIDs stay in commit order.
//! A failure is fatal, as for any capture (`capture_or_die`): SQLite was told the commit
//! succeeded, and only a restart brings the LTX files back in line with the WAL. After a
//! fatal error nothing more is published or written (`Db::refuse_after_fatal`): the
//! transactions after a dropped one would otherwise take its TXID.

use super::commit::{ChecksumBasis, Encoded, PageSource, WalFields};
use super::durability::Durability;
use super::wal_tail::WalBytes;
use super::{Db, FileKind, State};
use crate::sqlite::WalTxn;
use crate::store::error::{IoContext, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Transactions queued per database; a commit finding the queue full is captured before
/// its write is answered (after the queue), as without deferral.
pub(super) const DEFERRED_TXNS_MAX: usize = 64;
/// A transaction whose frames are larger than this is captured before its write is answered:
/// the queue copies the frames, and a large transaction's capture is mostly encoding anyway.
const DEFERRED_TXN_BYTES_MAX: u64 = 1 << 20;
/// Frame bytes queued per database at most (memory); past it, as for a full queue.
const DEFERRED_BYTES_MAX: usize = 4 << 20;
/// Longest wait for the capture thread's transaction in flight (one small file's create,
/// encode and write); past it the process stops as for a failed capture.
const IN_FLIGHT_WAIT_MAX: Duration = Duration::from_secs(60);

/// A committed WAL transaction waiting for its LTX file.
#[derive(Debug)]
pub(super) struct DeferredTxn {
    /// The transaction's frames as SQLite wrote them, from WAL offset `start`.
    start: u64,
    bytes: Vec<u8>,
    /// Page → offset of its frame (the last one of the transaction) in the WAL.
    frames: BTreeMap<u32, u64>,
    /// The pages of the LTX file, ascending.
    pgnos: Vec<u32>,
    commit: u32,
    fields: WalFields,
    /// When the commit frame's write arrived (`litefs_commit_duration` counts from here).
    committed: Instant,
    /// The same moment for the LTX header (and so `-pos`'s time and a replica's lag).
    committed_ms: i64,
}

/// A transaction taken off the queue, with what its encoding needs of the state.
struct Prepared {
    txn: DeferredTxn,
    header: crate::ltx::Header,
    rolling: u64,
    /// The cached checksum of each of `txn.pgnos`, before the transaction.
    cached: Vec<Option<u64>>,
    wal: Arc<File>,
    buf: Vec<u8>,
}

impl Db {
    /// Queues committed `txn`, whose frames `bytes` hold, for the capture thread; false if it
    /// must be captured now (no capture thread, the first transaction — TXID 1 is a snapshot
    /// of every page, read from the files —, a large one, or a full queue). A capture now
    /// publishes the queue first (`write_ltx`), so the order holds either way.
    pub(super) fn defer_capture(
        &self,
        state: &mut State,
        txn: &WalTxn,
        fields: WalFields,
        bytes: WalBytes<'_>,
    ) -> bool {
        if state.pos.txid.0 == 0
            || self.shared.fatal.is_raised()
            || txn.size_bytes > DEFERRED_TXN_BYTES_MAX
            || state.deferred.len() >= DEFERRED_TXNS_MAX
        {
            return false;
        }
        let Some(frames_bytes) = bytes.get(txn.offset_bytes, txn.size_bytes as usize) else {
            return false;
        };
        let queued_bytes: usize = state.deferred.iter().map(|t| t.bytes.len()).sum();
        if queued_bytes + frames_bytes.len() > DEFERRED_BYTES_MAX {
            return false;
        }
        let Some(this) = self.this.get() else {
            return false;
        };
        // The capture thread is woken only when it has nothing of this database in hand: it
        // empties the queue before it lets go of it (both checked under the state lock).
        let idle = state.deferred.is_empty() && !self.deferred_in_flight.load(Ordering::Acquire);
        if idle && !self.shared.capture.wake(this.clone()) {
            return false;
        }
        let commit = txn.commit_size_pages;
        state.deferred.push_back(DeferredTxn {
            start: txn.offset_bytes,
            bytes: frames_bytes.to_vec(),
            frames: txn.frame_offsets.clone(),
            pgnos: txn
                .frame_offsets
                .keys()
                .copied()
                .filter(|&p| p <= commit)
                .collect(),
            commit,
            fields,
            committed: Instant::now(),
            committed_ms: super::now_ms(),
        });
        true
    }

    /// The capture thread's turn at this database: writes and publishes queued transactions
    /// until none is left.
    pub(crate) fn run_deferred(&self) {
        loop {
            let mut state = self.lock_undrained();
            self.publish_finished(&mut state);
            if self.shared.fatal.is_raised() {
                state.deferred.clear();
                return;
            }
            let Some(txn) = state.deferred.pop_front() else {
                return;
            };
            let prepared = self.prepare_deferred(&mut state, txn);
            self.deferred_in_flight.store(true, Ordering::Release);
            drop(state);
            let result = prepared.and_then(|p| self.encode_deferred(p));
            *self.deferred_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            self.deferred_done.notify_all();
        }
    }

    /// Publishes every queued transaction (the caller holds the state lock): waits for the
    /// one in flight, then captures the rest on this thread.
    pub(super) fn drain_deferred(&self, state: &mut State) {
        if state.deferred.is_empty() && !self.deferred_in_flight.load(Ordering::Acquire) {
            return;
        }
        if self.deferred_in_flight.load(Ordering::Acquire) {
            let deadline = Instant::now() + IN_FLIGHT_WAIT_MAX;
            let mut slot = self.deferred_slot.lock().unwrap_or_else(|p| p.into_inner());
            while slot.is_none() {
                let now = Instant::now();
                if now >= deadline {
                    drop(slot);
                    state.deferred.clear();
                    self.deferred_in_flight.store(false, Ordering::Release);
                    self.shared.fatal.raise(&format!(
                        "database {:?}: the LTX file after TXID {} was not written within {} s; \
                         restart litefs (recovery derives it from the WAL)",
                        self.name,
                        state.pos.txid,
                        IN_FLIGHT_WAIT_MAX.as_secs()
                    ));
                    return;
                }
                slot = self
                    .deferred_done
                    .wait_timeout(slot, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            drop(slot);
            self.publish_finished(state);
        }
        while let Some(txn) = state.deferred.pop_front() {
            if self.shared.fatal.is_raised() {
                // Nothing after a dropped transaction may be published (`refuse_after_fatal`).
                state.deferred.clear();
                return;
            }
            let result = self
                .prepare_deferred(state, txn)
                .and_then(|p| self.encode_deferred(p));
            self.publish_deferred(state, result);
        }
    }

    /// Publishes the capture thread's finished transaction, if one waits.
    fn publish_finished(&self, state: &mut State) {
        let finished = self
            .deferred_slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(result) = finished {
            self.deferred_in_flight.store(false, Ordering::Release);
            // After a fatal error nothing more may change (the process is going down).
            if !self.shared.fatal.is_raised() {
                self.publish_deferred(state, result);
            }
        }
    }

    /// What the encoding of `txn` needs of the state: its header (TXID, pre-apply checksum)
    /// and the page checksums it replaces. Valid until the next publish, which is its own:
    /// nothing else publishes while it is in flight (everything else drains first).
    fn prepare_deferred(&self, state: &mut State, txn: DeferredTxn) -> Result<Prepared> {
        let wal = self.file(state, FileKind::Wal)?;
        let header = crate::ltx::Header {
            timestamp_ms: txn.committed_ms,
            ..self.ltx_header(state, txn.commit, txn.fields)
        };
        let cached = txn.pgnos.iter().map(|&p| state.checksums.get(p)).collect();
        Ok(Prepared {
            header,
            rolling: state.checksums.value_truncated(txn.commit),
            cached,
            wal,
            buf: std::mem::take(&mut state.ltx_write_buf),
            txn,
        })
    }

    /// Creates and writes the LTX file of a prepared transaction; needs no state.
    fn encode_deferred(&self, p: Prepared) -> Result<Encoded> {
        let Prepared {
            txn,
            header,
            rolling,
            cached,
            wal,
            buf,
        } = p;
        let source = PageSource::Wal {
            wal: &wal,
            bytes: WalBytes::new(txn.start, &txn.bytes),
            frames: &txn.frames,
            db: None,
        };
        let pgnos = &txn.pgnos;
        let cached_of = |pgno: u32| pgnos.binary_search(&pgno).ok().and_then(|i| cached[i]);
        let basis = ChecksumBasis {
            rolling,
            cached: &cached_of,
        };
        // Every page is one of the transaction's frames, which `bytes` hold; the file is only
        // a fallback that is never expected to be needed.
        let wal_path = self.path(FileKind::Wal);
        let mut read_page = |pgno: u32, page: &mut [u8]| -> Result<bool> {
            let Some(&frame) = txn.frames.get(&pgno) else {
                return Err(self.corrupt(format!(
                    "page {pgno} of TXID {} is not among its frames",
                    header.max_txid
                )));
            };
            wal.read_exact_at(page, frame + 24)
                .io_context("read frame", &wal_path)?;
            Ok(true)
        };
        self.encode_ltx(
            &header,
            &source,
            pgnos,
            &basis,
            &mut read_page,
            buf,
            txn.committed,
        )
    }

    /// Publishes a deferred transaction's file, or stops the process if it could not be
    /// written: SQLite already considers the transaction committed.
    fn publish_deferred(&self, state: &mut State, result: Result<Encoded>) {
        if self.shared.fatal.is_raised() {
            // A transaction before this one may have been dropped: publishing this one would
            // give it that one's TXID (`refuse_after_fatal`). The WAL still holds it.
            state.deferred.clear();
            return;
        }
        let published = result.and_then(|encoded| {
            let txid = encoded.txid();
            self.persist_and_publish(state, encoded, Durability::Deferred)?;
            // Relaxed: a counter for reporting and tests.
            self.deferred_count.fetch_add(1, Ordering::Relaxed);
            Ok(txid)
        });
        let verified = published.and_then(|txid| {
            // The WAL bookkeeping (`wal_frames`) already includes queued transactions, so the
            // files can only be checked against the position once none is left.
            if state.deferred.is_empty() && !self.deferred_in_flight.load(Ordering::Acquire) {
                self.verify_if_strict(state)?;
            }
            Ok(txid)
        });
        if let Err(e) = verified {
            state.deferred.clear();
            self.shared.fatal.raise(&format!(
                "database {:?}: cannot record a committed WAL transaction after TXID {}: {e}",
                self.name, state.pos.txid
            ));
        }
    }
}
