//! FUSE-over-io_uring (kernel ≥ 6.14, Documentation/filesystems/fuse-io-uring.rst): one
//! pinned worker thread per ring entry, `ring_threads_per_cpu` of them for every online CPU
//! (one for a possible CPU that is offline), each feeding the same fuse-backend-rs `Server`
//! as the `/dev/fuse` workers. The `/dev/fuse` reader stays: FORGET and INTERRUPT still
//! arrive there, and notifications are written there.
//!
//! `abi` is the pure byte layout; `ring` the worker loop; this file starts and stops them.
//! Order at mount: [`prepare`] rings, [`spawn`] workers, answer FUSE_INIT, [`Workers::go`].

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

fn read_cpu_list(path: &str) -> io::Result<Vec<usize>> {
    let list = std::fs::read_to_string(path)?;
    abi::cpu_list(&list).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse {path}: {list:?}"),
        )
    })
}

/// Ring queues the kernel makes for a connection: one per possible CPU (queue ids 0..n; a
/// request goes to the queue of the CPU its caller runs on).
pub fn queue_count() -> io::Result<usize> {
    Ok(read_cpu_list("/sys/devices/system/cpu/possible")?.len())
}

/// Bytes of each entry's payload buffer.
pub fn payload_bytes() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    (MAX_REQ_PAGES * page).max(1 << 20)
}

/// Rings for every queue, made before FUSE_INIT is answered (see [`Ring`]): `threads_per_cpu`
/// for each online CPU, one for a possible CPU that is offline (it must have an entry for the
/// ring to start, but nothing runs there). VMs often list far more possible than online CPUs.
pub fn prepare(threads_per_cpu: usize) -> io::Result<Vec<Ring>> {
    let queues = queue_count()?;
    let online = read_cpu_list("/sys/devices/system/cpu/online").unwrap_or_default();
    let mut rings = Vec::new();
    for qid in 0..queues {
        let is_online = online.contains(&qid);
        let count = if is_online { threads_per_cpu.max(1) } else { 1 };
        let qid = u16::try_from(qid).map_err(io::Error::other)?;
        for _ in 0..count {
            rings.push(Ring::new(qid, is_online)?);
        }
    }
    Ok(rings)
}

/// The workers of one mount.
pub struct Workers {
    threads: Vec<JoinHandle<ring::EntryBufs>>,
    wake: Arc<OwnedFd>,
    go: Vec<mpsc::Sender<bool>>,
    ready: mpsc::Receiver<io::Result<()>>,
    pub queues: usize,
    /// Workers per online CPU.
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

/// Starts one worker per ring, each on its own dup of the `/dev/fuse` fd, *before* FUSE_INIT
/// is answered: what can fail here (fds, threads, buffers) then fails while /dev/fuse can
/// still take over. The workers wait for [`Workers::go`].
pub(crate) fn spawn(
    rings: Vec<Ring>,
    mut dev: impl FnMut() -> io::Result<File>,
    shared: Arc<Shared>,
    payload_bytes: usize,
) -> io::Result<Workers> {
    let queues = rings.iter().map(|r| r.qid as usize + 1).max().unwrap_or(0);
    let threads_per_cpu = rings.iter().filter(|r| r.qid == 0).count();
    let (ready_tx, ready) = mpsc::sync_channel(rings.len());
    let mut workers = Workers {
        threads: Vec::new(),
        wake: shared.wake.clone(),
        go: Vec::new(),
        ready,
        queues,
        threads_per_cpu,
    };
    let payload = payload_bytes;
    for (i, r) in rings.into_iter().enumerate() {
        let file = dev()?;
        let (go_tx, go_rx) = mpsc::channel();
        let shared = shared.clone();
        let ready_tx = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fuse-ring-{}-{i}", r.qid))
            .spawn(move || ring::serve(r, file, payload, shared, go_rx, ready_tx))?;
        workers.threads.push(thread);
        workers.go.push(go_tx);
    }
    Ok(workers)
}

impl Workers {
    /// After FUSE_INIT accepted io_uring: every worker registers its entry; waits (at most
    /// [`REGISTER_WAIT`]) until each has. An error means a queue may lack its entry; the
    /// caller must then fail the connection, not fall back: the kernel holds requests until
    /// every queue has one.
    pub fn go(&mut self) -> io::Result<()> {
        for go in self.go.drain(..) {
            let _ = go.send(true);
        }
        let deadline = Instant::now() + REGISTER_WAIT;
        for n in 0..self.threads.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ready.recv_timeout(left) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{n} of {} io_uring workers registered within {REGISTER_WAIT:?}",
                            self.threads.len()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Workers {
    /// Wakes every worker (or tells a waiting one to leave) and joins it; entry memory is
    /// freed only after its thread ended.
    pub fn stop(mut self) {
        for go in self.go.drain(..) {
            let _ = go.send(false);
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live array to our own eventfd.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
