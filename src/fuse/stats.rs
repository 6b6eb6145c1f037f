//! Per-opcode request counters, and the opcode of the request a worker thread is serving.
//!
//! fuse-backend-rs 0.14 calls `MetricsHook::collect` with the request header on the worker
//! thread just before dispatching. We use it for two things:
//! - counting requests per opcode, so tests and benchmarks can measure what an SQLite
//!   operation costs in FUSE round trips (ARCHITECTURE §7);
//! - remembering the opcode in a thread-local, because fuse-backend-rs dispatches `SETLKW`
//!   to `FileSystem::setlk` (its `setlkw` handler calls `setlk`), so the file system could not
//!   otherwise tell a blocking request from a non-blocking one.

use fuse_backend_rs::abi::fuse_abi::{InHeader, Opcode, OutHeader};
use fuse_backend_rs::api::server::MetricsHook;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Opcodes below this are counted individually; larger ones (CUSE_INIT) share the last slot.
const OPCODE_SLOTS: usize = 64;

thread_local! {
    /// The opcode of the request this worker thread is serving (0 outside a request).
    static CURRENT_OPCODE: Cell<u32> = const { Cell::new(0) };
}

/// True while serving a `FUSE_SETLKW` request on this thread.
pub(super) fn serving_setlkw() -> bool {
    CURRENT_OPCODE.with(Cell::get) == Opcode::Setlkw as u32
}

/// How many requests of each opcode a mount has served.
pub struct RequestStats {
    counts: [AtomicU64; OPCODE_SLOTS],
    releases_with_owner: AtomicU64,
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            releases_with_owner: AtomicU64::new(0),
        }
    }
}

impl RequestStats {
    pub(super) fn record_release_with_owner(&self) {
        self.releases_with_owner.fetch_add(1, Ordering::Relaxed);
    }

    /// `RELEASE` requests that carried a lock owner (whose locks were then dropped).
    pub fn releases_with_owner(&self) -> u64 {
        self.releases_with_owner.load(Ordering::Relaxed)
    }

    fn record(&self, opcode: u32) {
        let slot = (opcode as usize).min(OPCODE_SLOTS - 1);
        // Relaxed: counters are read for reporting only, never to order other memory.
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> RequestCounts {
        RequestCounts(
            self.counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        )
    }
}

/// A snapshot of [`RequestStats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestCounts(Vec<u64>);

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Requests of `opcode`.
    pub fn get(&self, opcode: Opcode) -> u64 {
        self.0.get(opcode as usize).copied().unwrap_or_default()
    }

    /// Requests served since `earlier`, per opcode name (only the non-zero ones).
    pub fn since(&self, earlier: &RequestCounts) -> Vec<(String, u64)> {
        self.0
            .iter()
            .zip(earlier.0.iter())
            .enumerate()
            .filter(|(_, (now, then))| now > then)
            .map(|(op, (now, then))| (format!("{:?}", Opcode::from(op as u32)), now - then))
            .collect()
    }
}

/// The hook handed to `Server::handle_message`.
pub(super) struct Hook(pub(super) Arc<RequestStats>);

impl MetricsHook for Hook {
    fn collect(&self, ih: &InHeader) {
        self.0.record(ih.opcode);
        CURRENT_OPCODE.with(|c| c.set(ih.opcode));
    }

    fn release(&self, _oh: Option<&OutHeader>) {
        CURRENT_OPCODE.with(|c| c.set(0));
    }
}
