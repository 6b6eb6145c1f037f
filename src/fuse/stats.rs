//! Per-opcode request counters, and the opcode of the request a worker thread is serving.
//!
//! fuse-backend-rs 0.14 calls `MetricsHook::collect` with the request header on the worker
//! thread just before dispatching. We use it for two things:
//! - counting requests per opcode, so tests and benchmarks can measure what an SQLite
//!   operation costs in FUSE round trips (ARCHITECTURE §7);
//! - remembering the opcode in a thread-local, because fuse-backend-rs dispatches `SETLKW`
//!   to `FileSystem::setlk` (its `setlkw` handler calls `setlk`), so the file system could not
//!   otherwise tell a blocking request from a non-blocking one.

use crate::store::RequestCountSource;
use fuse_backend_rs::abi::fuse_abi::{InHeader, Opcode, OutHeader};
use fuse_backend_rs::api::server::MetricsHook;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Opcodes below this are counted individually; larger ones (CUSE_INIT) share the last slot.
const OPCODE_SLOTS: usize = 64;

/// The kernel's names of the opcodes (`FUSE_WRITE` → `write`, include/uapi/linux/fuse.h), by
/// number; "" for numbers the kernel does not use. Kept here rather than derived from
/// fuse-backend-rs's `Opcode`, whose `From<u32>` transmutes unused numbers (7, 19) into it.
const OPCODE_NAMES: [&str; 54] = [
    "",
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "symlink",
    "",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "statfs",
    "release",
    "",
    "fsync",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "flush",
    "init",
    "opendir",
    "readdir",
    "releasedir",
    "fsyncdir",
    "getlk",
    "setlk",
    "setlkw",
    "access",
    "create",
    "interrupt",
    "bmap",
    "destroy",
    "ioctl",
    "poll",
    "notify_reply",
    "batch_forget",
    "fallocate",
    "readdirplus",
    "rename2",
    "lseek",
    "copy_file_range",
    "setupmapping",
    "removemapping",
    "syncfs",
    "tmpfile",
    "statx",
    "copy_file_range_64",
];

/// The name a counter slot is reported under: the kernel's name, `other` for the shared last
/// slot, `opcode_N` for a number the kernel does not define.
fn slot_name(slot: usize) -> &'static str {
    const UNNAMED: [&str; OPCODE_SLOTS] = {
        // Numbers without a kernel name; only reachable with a kernel newer than this table.
        let mut names = [""; OPCODE_SLOTS];
        names[7] = "opcode_7";
        names[19] = "opcode_19";
        let mut i = OPCODE_NAMES.len();
        while i < OPCODE_SLOTS - 1 {
            names[i] = "opcode_unknown";
            i += 1;
        }
        names[OPCODE_SLOTS - 1] = "other";
        names
    };
    match OPCODE_NAMES.get(slot) {
        Some(name) if !name.is_empty() => name,
        _ => UNNAMED[slot.min(OPCODE_SLOTS - 1)],
    }
}

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

/// What `GET /metrics` reports as `litefs_fuse_request_count{op}` (registered with the store
/// by the mount).
impl RequestCountSource for RequestStats {
    fn request_counts(&self) -> Vec<(&'static str, u64)> {
        let mut counts: Vec<(&'static str, u64)> = Vec::new();
        for (slot, count) in self.counts.iter().enumerate() {
            let n = count.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            // Unnamed numbers share a name; add them up so each name appears once.
            match counts.iter_mut().find(|(name, _)| *name == slot_name(slot)) {
                Some((_, total)) => *total += n,
                None => counts.push((slot_name(slot), n)),
            }
        }
        counts
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
pub(crate) struct Hook(pub(crate) Arc<RequestStats>);

impl MetricsHook for Hook {
    fn collect(&self, ih: &InHeader) {
        self.0.record(ih.opcode);
        CURRENT_OPCODE.with(|c| c.set(ih.opcode));
    }

    fn release(&self, _oh: Option<&OutHeader>) {
        CURRENT_OPCODE.with(|c| c.set(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_are_reported_by_their_kernel_names() {
        assert_eq!(slot_name(Opcode::Write as usize), "write");
        assert_eq!(slot_name(Opcode::Setlk as usize), "setlk");
        assert_eq!(slot_name(Opcode::BatchForget as usize), "batch_forget");
        assert_eq!(slot_name(Opcode::RemoveMapping as usize), "removemapping");
        assert_eq!(slot_name(52), "statx");
        assert_eq!(slot_name(7), "opcode_7");
        assert_eq!(slot_name(60), "opcode_unknown");
        assert_eq!(slot_name(OPCODE_SLOTS - 1), "other");
        let stats = RequestStats::default();
        for op in [16, 16, 32, 60, 61, 4096] {
            stats.record(op);
        }
        assert_eq!(
            stats.request_counts(),
            [
                ("write", 2),
                ("setlk", 1),
                ("opcode_unknown", 2),
                ("other", 1)
            ]
        );
    }
}
