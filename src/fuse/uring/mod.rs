//! FUSE-over-io_uring (kernel ≥ 6.14, Documentation/filesystems/fuse-io-uring.rst): one
//! pinned worker thread per ring entry, `ring_threads_per_cpu` of them for every possible
//! CPU, each feeding the same fuse-backend-rs `Server` as the `/dev/fuse` workers. The
//! `/dev/fuse` reader stays: FORGET and INTERRUPT still arrive there, and notifications are
//! written there.
//!
//! `abi` is the pure byte layout; `ring` the worker loop; this file starts and stops them.

pub mod abi;
mod ring;

pub use ring::Ring;
pub(crate) use ring::Shared;

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `/sys/module/fuse/parameters/enable_uring`.
pub const ENABLE_PARAM: &str = "/sys/module/fuse/parameters/enable_uring";
/// Longest wait for the workers to register their entries at mount.
const REGISTER_WAIT: Duration = Duration::from_secs(5);
/// fuse-backend-rs negotiates `max_pages` = 256; the kernel rejects entries whose payload
/// buffer is smaller than `max(max_write, max_pages × page size)`.
const MAX_REQ_PAGES: usize = 256;

/// The kernel's `enable_uring` switch: `None` when this kernel has no FUSE-over-io_uring.
pub fn enabled_in_kernel() -> Option<bool> {
    let v = std::fs::read_to_string(ENABLE_PARAM).ok()?;
    Some(v.trim() == "Y")
}

/// Ring queues the kernel makes for a connection: one per possible CPU.
pub fn queue_count() -> io::Result<usize> {
    let path = "/sys/devices/system/cpu/possible";
    let list = std::fs::read_to_string(path)?;
    abi::cpu_list_count(&list).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse {path}: {list:?}"),
        )
    })
}

/// Bytes of each entry's payload buffer.
pub fn payload_bytes() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    (MAX_REQ_PAGES * page).max(1 << 20)
}

/// Rings for every queue, made before FUSE_INIT is answered (see [`Ring`]).
pub fn prepare(threads_per_cpu: usize) -> io::Result<Vec<Ring>> {
    let queues = queue_count()?;
    let mut rings = Vec::with_capacity(queues * threads_per_cpu);
    for qid in 0..queues {
        let qid = u16::try_from(qid).map_err(io::Error::other)?;
        for _ in 0..threads_per_cpu.max(1) {
            rings.push(Ring::new(qid)?);
        }
    }
    Ok(rings)
}

/// The running workers of one mount.
pub struct Workers {
    threads: Vec<JoinHandle<ring::EntryBufs>>,
    wake: Arc<OwnedFd>,
    pub queues: usize,
    pub threads_per_cpu: usize,
}

/// An eventfd the workers poll to learn of shutdown.
pub fn wake_fd() -> io::Result<Arc<OwnedFd>> {
    // SAFETY: eventfd has no memory preconditions; a negative result is checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// A counter shared with [`Shared::served`].
pub fn served_counter() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(0))
}

/// Starts one worker per ring, each on its own dup of the `/dev/fuse` fd, and waits (at most
/// [`REGISTER_WAIT`]) until each has registered its entry. An error means at least one queue
/// has no entry: the kernel then disables io_uring for the connection (a failed REGISTER
/// does so) and requests keep coming through `/dev/fuse`; the caller stops the others.
pub(crate) fn start(
    rings: Vec<Ring>,
    mut dev: impl FnMut() -> io::Result<File>,
    shared: Arc<Shared>,
) -> (Workers, io::Result<()>) {
    let queues = rings.iter().map(|r| r.qid as usize + 1).max().unwrap_or(0);
    let threads_per_cpu = rings.len() / queues.max(1);
    let mut workers = Workers {
        threads: Vec::new(),
        wake: shared.wake.clone(),
        queues,
        threads_per_cpu,
    };
    let (tx, rx) = mpsc::sync_channel(rings.len());
    let payload = payload_bytes();
    for (i, r) in rings.into_iter().enumerate() {
        let spawned = dev().and_then(|file| {
            let shared = shared.clone();
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("fuse-ring-{}-{i}", r.qid))
                .spawn(move || ring::serve(r, file, payload, shared, tx))
        });
        match spawned {
            Ok(t) => workers.threads.push(t),
            Err(e) => return (workers, Err(e)),
        }
    }
    drop(tx);
    let deadline = Instant::now() + REGISTER_WAIT;
    for n in 0..workers.threads.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return (workers, Err(e)),
            Err(_) => {
                let e = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{n} of {} io_uring workers registered within {REGISTER_WAIT:?}",
                        workers.threads.len()
                    ),
                );
                return (workers, Err(e));
            }
        }
    }
    (workers, Ok(()))
}

impl Workers {
    /// Wakes every worker and joins it; entry memory is freed only after its thread ended.
    pub fn stop(mut self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live array to our own eventfd.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
