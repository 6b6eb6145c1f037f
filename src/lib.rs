//! litefs-rs: LiteFS rebuilt in Rust.
//!
//! Data flow (see `docs/ARCHITECTURE.md`): SQLite applications write to a FUSE mount; the
//! daemon detects each write transaction, records it as an LTX file and streams it to replicas.
//!
//! Layers, lowest first. The pure layers take bytes and return values; they never touch the
//! file system, the clock, threads or logging:
//! - [`types`]: TXIDs, checksums, positions, node ids and their text forms.
//! - [`ltx`]: the LTX v1 file format: header, checksums, LZ4 framing, encoder, decoder, compactor.
//! - [`sqlite`]: readers for SQLite's database header, WAL and rollback journal.
//! - [`proto`]: the replication stream frames of `POST /stream`.
//! - [`config`]: the `litefs.yml` file: keys, defaults, env expansion, validation (pure but
//!   for `Config::load`).
//!
//! Above them: [`store`] (databases on disk, commit capture,
//! recovery, locks), [`fuse`] (the mount), [`http`] (the node API and the primary side of
//! `/stream`) and [`cli`] (the `litefs` command).

/// mimalloc for every binary linking the library — the daemon, and the tests and benchmarks
/// that serve a mount in their own process. Besides speed, that matters there: a client
/// thread unmapping a `-shm` mapping holds the process's `mmap_lock` while it waits for the
/// FUSE write-back of its dirty pages, so a FUSE worker of the same process that then grows
/// a glibc arena (`mprotect`, a writer of that lock) deadlocks with it. mimalloc takes its
/// memory in large reserved arenas and rarely makes such calls after start-up.
#[global_allocator]
pub static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What `PR_GET_THP_DISABLE` said before [`keep_heap_in_small_pages`] (0: huge pages
/// allowed; else disabled by whoever started us, bit 1 on 6.18+ meaning "except where
/// advised"), so [`restore_huge_page_policy`] gives children that, not more.
static HUGE_PAGES_BEFORE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Keeps the daemon's heap in 4 KiB pages: with transparent huge pages on (`always`, as on
/// these VMs), each thread's first mimalloc region faulted in a zeroed 2 MiB page, and an
/// idle mount was 28 MiB resident, 22 of them huge pages; without them, 14 MiB (docs/
/// ARCHITECTURE.md §8). The daemon's heap is small; the large buffers of a replica's receive
/// are short-lived. `PR_SET_THP_DISABLE` is per process and inherited across fork and exec:
/// the application `litefs mount` runs (`exec:`) gets the policy the daemon started with
/// ([`restore_huge_page_policy`]); its helpers (`dd` for priming, the watchdog) keep small
/// pages, which suits them. Called first thing by `litefs mount` and the perf harness; only
/// memory faulted in afterwards is affected. Best effort: an old kernel's refusal is ignored.
pub fn keep_heap_in_small_pages() {
    // SAFETY: prctl with PR_GET_/PR_SET_THP_DISABLE takes integer arguments and reads or sets
    // nothing but this process's huge-page flag (which children inherit).
    let before = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    // -1 (an old kernel) counts as allowed: the set below then fails too.
    HUGE_PAGES_BEFORE.store(before.max(0), std::sync::atomic::Ordering::Relaxed);
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// In a child between fork and exec: the huge-page policy the process had before
/// [`keep_heap_in_small_pages`]. Async-signal-safe (an atomic load and a system call).
pub fn restore_huge_page_policy() {
    let before = HUGE_PAGES_BEFORE.load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: as above; prctl is a plain system call, safe between fork and exec. Disabled
    // before: the same flags again (the bits beyond bit 0 are the set call's third argument).
    unsafe {
        match before {
            0 => libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0),
            _ => libc::prctl(
                libc::PR_SET_THP_DISABLE,
                1,
                (before & !1) as libc::c_ulong,
                0,
                0,
            ),
        }
    };
}

pub mod cli;
pub mod config;
pub mod fuse;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod ltx;
pub mod proto;
pub mod replica;
pub mod sqlite;
pub mod stop;
pub mod store;
#[doc(hidden)]
pub mod testkit;
pub mod types;
