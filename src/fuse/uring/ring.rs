//! One FUSE-over-io_uring worker: a thread pinned to one CPU, with its own SQE128 ring and
//! one ring entry registered on that CPU's kernel queue. A request is one completion; its
//! reply and the fetch of the next request are one `COMMIT_AND_FETCH` submission — a
//! single `io_uring_enter` per request instead of `/dev/fuse`'s read + write, served on the
//! CPU of the process that asked.
//!
//! Each worker holds exactly one entry: the file system is synchronous, and an entry held by
//! a thread that is busy (an fsync) would queue requests behind it while a sibling idles.

use super::abi::{self, HEADER_BYTES, IN_HEADER_BYTES, OP_IN_BYTES_MAX, OUT_HEADER_BYTES};
use super::abi::{OutHeader, RingRequest};
use crate::fuse::fs::LitefsFs;
use crate::fuse::stats::Hook;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseBuf, FuseDevWriter, Reader};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use std::alloc::Layout;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

/// `user_data` of the ring entry's command, and of the poll on the shutdown eventfd.
const ENTRY_TAG: u64 = 1;
const WAKE_TAG: u64 = 2;
/// Room before the registered payload buffer for the 16-byte `fuse_out_header`, so a reply's
/// arguments are encoded straight into the payload buffer; a page keeps the payload
/// page-aligned (its allocation is).
const OUT_PREFIX_BYTES: usize = 4096;
const PAGE_BYTES: usize = 4096;
/// Retries of a command the kernel answered with EAGAIN/EINTR, 1 ms apart.
const RETRIES_MAX: u32 = 1000;
/// Longest a worker waits for the mount to answer FUSE_INIT before it registers.
const GO_WAIT: Duration = Duration::from_secs(30);

/// A prepared ring: created before FUSE_INIT is answered, since once FUSE_OVER_IO_URING is
/// negotiated the kernel holds every request until each CPU's queue has an entry.
pub struct Ring {
    pub(super) qid: u16,
    /// Pin the worker to CPU `qid` (false for a possible but offline CPU).
    pub(super) pin: bool,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
}

impl Ring {
    pub fn new(qid: u16, pin: bool) -> io::Result<Ring> {
        // Entries: the ring entry's command and the shutdown poll; completions twice that.
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(8)
            .build(4)?;
        Ok(Ring { qid, pin, ring })
    }
}

/// Shared by every worker of a mount.
pub(crate) struct Shared {
    pub server: Arc<Server<LitefsFs>>,
    pub hook: Hook,
    /// `/dev/null`: fuse-backend-rs "commits" some replies (reads, errors) with a `writev` on
    /// the writer's fd after encoding them into our buffer; the bytes we need are already in
    /// the buffer, so that write goes nowhere.
    pub null: Arc<File>,
    /// Written on shutdown; every worker polls it.
    pub wake: Arc<OwnedFd>,
    /// Requests answered through rings.
    pub served: Arc<AtomicU64>,
    /// Called when a worker stops serving while the connection lives (its CPU's queue would
    /// otherwise hold requests forever): fails the connection loudly instead.
    pub lost: Box<dyn Fn(&str) + Send + Sync>,
}

/// Memory the kernel reads and writes behind Rust's back: a raw page-aligned allocation,
/// borrowed as a slice only while the entry belongs to user space (between a completion and
/// the next submission).
struct RawBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl RawBuf {
    fn new(len: usize) -> RawBuf {
        let layout = Layout::from_size_align(len.max(1), PAGE_BYTES).expect("buffer layout");
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        let buf = RawBuf { ptr, layout };
        // Touch every page now: the kernel copies requests in from this thread's context, and
        // a first-touch fault there should not have to wait on the process's memory map.
        for offset in (0..len).step_by(PAGE_BYTES) {
            // SAFETY: `offset` < `len`, inside the allocation.
            unsafe { std::ptr::write_volatile(buf.ptr.as_ptr().add(offset), 0) };
        }
        buf
    }

    fn addr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// # Safety
    /// The kernel must not be using the buffer: no command naming it is in flight, or the
    /// entry has been handed to user space by a completion.
    unsafe fn slice(&mut self) -> &mut [u8] {
        // SAFETY: the allocation is `layout.size()` bytes and lives as long as `self`; the
        // caller guarantees nobody else accesses it meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// The memory of one ring entry. The kernel writes into it until the worker thread has
/// exited (request copies run in that thread's context), so it is handed back to the mount
/// and freed only after the thread is joined.
pub struct EntryBufs {
    /// `struct fuse_uring_req_header`.
    header: RawBuf,
    /// `OUT_PREFIX_BYTES`, then the payload buffer registered with the kernel.
    payload: RawBuf,
    /// The request re-assembled as `/dev/fuse` delivers it (ours alone, never registered).
    input: Vec<u8>,
    /// The two iovecs (header, payload) the kernel reads at REGISTER.
    iov: Box<[libc::iovec; 2]>,
}

// SAFETY: the raw pointers (buffers, iovecs) all point into allocations this struct owns;
// sending it to another thread moves that ownership with it.
unsafe impl Send for EntryBufs {}

impl EntryBufs {
    fn new(payload_bytes: usize) -> EntryBufs {
        let header = RawBuf::new(HEADER_BYTES);
        let payload = RawBuf::new(OUT_PREFIX_BYTES + payload_bytes);
        let iov = Box::new([
            libc::iovec {
                iov_base: header.addr().cast(),
                iov_len: HEADER_BYTES,
            },
            libc::iovec {
                // SAFETY: OUT_PREFIX_BYTES is inside the allocation.
                iov_base: unsafe { payload.addr().add(OUT_PREFIX_BYTES) }.cast(),
                iov_len: payload_bytes,
            },
        ]);
        EntryBufs {
            header,
            payload,
            input: vec![0u8; IN_HEADER_BYTES + OP_IN_BYTES_MAX + payload_bytes],
            iov,
        }
    }
}

/// Sets `sqe->len`, which `UringCmd80` does not expose; REGISTER requires 2 (iovecs).
fn set_sqe_len(sqe: &mut squeue::Entry128, len: u32) {
    // struct io_uring_sqe: opcode u8, flags u8, ioprio u16, fd i32, off u64, addr u64, len u32.
    const LEN_OFFSET: usize = 24;
    const _: () = assert!(std::mem::size_of::<squeue::Entry128>() == 128);
    // SAFETY: `Entry128` is `#[repr(C)]` over the kernel's 128-byte SQE (`io_uring_sqe`
    // followed by 64 bytes of command data); bytes 24..28 are the plain `u32` `len`, valid
    // for any value, and the pointer stays inside the 128-byte value we borrow mutably.
    unsafe {
        (sqe as *mut squeue::Entry128)
            .cast::<u8>()
            .add(LEN_OFFSET)
            .cast::<u32>()
            .write_unaligned(len)
    }
}

fn pin_to_cpu(cpu: usize) {
    // CPU_SET has room for CPU_SETSIZE (1024) CPUs; beyond that, run unpinned.
    if cpu >= 1024 {
        return;
    }
    // SAFETY: `cpu_set_t` is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes bit `cpu` (< 1024, checked above) of `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid, initialised cpu_set_t of the size passed; pid 0 = this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        eprintln!(
            "litefs: cannot pin the io_uring worker for CPU {cpu}: {}",
            io::Error::last_os_error()
        );
    }
}

/// The command this entry last sent, to repeat it when the kernel asks to.
#[derive(Clone, Copy)]
enum Cmd {
    Register,
    CommitAndFetch(u64),
}

/// Why a worker stopped.
enum Exit {
    /// Shutdown was asked for, or the kernel ended the connection (unmount, abort).
    Done,
    /// It could not go on while the connection lives.
    Lost(String),
}

struct Worker<'a> {
    ring: &'a mut IoUring<squeue::Entry128, cqueue::Entry>,
    qid: u16,
    dev: &'a File,
    bufs: &'a mut EntryBufs,
    shared: &'a Shared,
}

impl Worker<'_> {
    fn push(&mut self, cmd: Cmd) -> io::Result<()> {
        let sqe = match cmd {
            Cmd::Register => {
                let mut sqe =
                    opcode::UringCmd80::new(types::Fd(self.dev.as_raw_fd()), abi::CMD_REGISTER)
                        .cmd(abi::cmd_req(self.qid, 0))
                        .addr(Some(self.bufs.iov.as_ptr() as u64))
                        .build();
                set_sqe_len(&mut sqe, 2);
                sqe
            }
            Cmd::CommitAndFetch(id) => {
                opcode::UringCmd80::new(types::Fd(self.dev.as_raw_fd()), abi::CMD_COMMIT_AND_FETCH)
                    .cmd(abi::cmd_req(self.qid, id))
                    .build()
            }
        };
        // SAFETY: the SQE refers to `self.bufs` (iovecs, header and payload buffers), which
        // outlive the ring: `serve` drops the ring first, and the mount frees the buffers only
        // after this thread is joined.
        unsafe { self.ring.submission().push(&sqe.user_data(ENTRY_TAG)) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    fn push_wake_poll(&mut self) -> io::Result<()> {
        let sqe: squeue::Entry128 =
            opcode::PollAdd::new(types::Fd(self.shared.wake.as_raw_fd()), libc::POLLIN as u32)
                .build()
                .user_data(WAKE_TAG)
                .into();
        // SAFETY: a poll refers to no user memory; the eventfd outlives the ring (shared Arc).
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Decodes the request in the entry, runs it through the file system and leaves the reply
    /// in the entry; returns the commit id to answer with. Always leaves *a* reply: an entry
    /// without one would hang its caller.
    fn serve(&mut self) -> u64 {
        let bufs = &mut *self.bufs;
        // SAFETY: called after a completion with result 0, which hands the entry to user
        // space: the kernel does not touch these buffers until our next COMMIT_AND_FETCH.
        let (header, payload) = unsafe { (bufs.header.slice(), bufs.payload.slice()) };
        let header: &mut [u8; HEADER_BYTES] = (&mut header[..HEADER_BYTES])
            .try_into()
            .expect("header size");
        let req = RingRequest::parse(header);
        let in_len =
            match abi::assemble_request(header, &payload[OUT_PREFIX_BYTES..], &mut bufs.input) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("litefs: {e}; answering EIO");
                    abi::put_reply(header, &OutHeader::error(req.unique, libc::EIO));
                    return req.commit_id;
                }
            };
        // The reply is encoded as for /dev/fuse, [out header | arguments], into an area that
        // starts 16 bytes before the registered payload buffer: the arguments land in place.
        let area = &mut payload[OUT_PREFIX_BYTES - OUT_HEADER_BYTES..];
        area[..OUT_HEADER_BYTES].fill(0);
        let area_len = area.len();
        let shared = self.shared;
        let input = &mut bufs.input[..in_len];
        // A panic in the file system must still answer the request.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dispatch(shared, input, area)
        }))
        .unwrap_or_else(|_| Err(io::Error::other("the file system panicked")));
        let out_bytes: &[u8; OUT_HEADER_BYTES] = payload
            [OUT_PREFIX_BYTES - OUT_HEADER_BYTES..OUT_PREFIX_BYTES]
            .try_into()
            .expect("16 bytes");
        let out = OutHeader::parse(out_bytes);
        let valid = out.unique == req.unique
            && out.len_bytes as usize >= OUT_HEADER_BYTES
            && out.len_bytes as usize <= area_len;
        if valid {
            abi::put_reply(header, &out);
        } else {
            if let Err(e) = result {
                eprintln!("litefs: fuse request {} failed: {e}", req.unique);
            }
            abi::put_reply(header, &OutHeader::error(req.unique, libc::EIO));
        }
        self.shared.served.fetch_add(1, Ordering::Relaxed);
        req.commit_id
    }

    /// Registers the entry, reports on `ready`, then serves until shutdown or until the
    /// kernel ends the connection.
    fn run(&mut self, ready: &SyncSender<io::Result<()>>) -> Exit {
        let registered = self
            .push(Cmd::Register)
            .and_then(|_| self.push_wake_poll())
            .and_then(|_| self.ring.submit().map(|_| ()));
        if let Err(e) = registered {
            let _ = ready.send(Err(io::Error::new(e.kind(), format!("REGISTER: {e}"))));
            return Exit::Done;
        }
        // A rejected REGISTER completes at once; a good one stays pending until a request.
        let first = self.ring.completion().next();
        if let Some(cqe) = &first
            && cqe.user_data() == ENTRY_TAG
            && cqe.result() < 0
            && cqe.result() != -libc::EAGAIN
        {
            let e = io::Error::from_raw_os_error(-cqe.result());
            let _ = ready.send(Err(io::Error::new(e.kind(), format!("REGISTER: {e}"))));
            return Exit::Done;
        }
        let _ = ready.send(Ok(()));
        let mut last = Cmd::Register;
        let mut retries = 0u32;
        let mut stopping = false;
        let mut pending: Vec<cqueue::Entry> = first.into_iter().collect();
        loop {
            for cqe in pending.drain(..) {
                if cqe.user_data() == WAKE_TAG {
                    // Finish what was handed to us first: a request taken and not answered
                    // would hang its caller.
                    stopping = true;
                    continue;
                }
                let res = cqe.result();
                let next = if res == 0 {
                    retries = 0;
                    Cmd::CommitAndFetch(self.serve())
                } else if res == -libc::EAGAIN || res == -libc::EINTR {
                    retries += 1;
                    if retries > RETRIES_MAX {
                        return Exit::Lost(format!("{RETRIES_MAX} retries of {res}"));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    last
                } else if [
                    libc::ENOTCONN,
                    libc::ECONNABORTED,
                    libc::ECANCELED,
                    libc::ENODEV,
                ]
                .contains(&-res)
                {
                    return Exit::Done; // unmounted or aborted
                } else {
                    // The kernel refused our answer (e.g. the entry in an unexpected state):
                    // the entry is gone and re-registering would not serve the requests
                    // already queued on it.
                    return Exit::Lost(format!(
                        "command failed: {}",
                        io::Error::from_raw_os_error(-res)
                    ));
                };
                last = next;
                if let Err(e) = self.push(next) {
                    return Exit::Lost(e.to_string());
                }
            }
            if stopping {
                let _ = self.ring.submit();
                return Exit::Done;
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Exit::Lost(e.to_string()),
            }
            pending.extend(self.ring.completion());
        }
    }
}

/// Runs one `/dev/fuse`-format request through fuse-backend-rs, encoding the reply into
/// `area` (out header first).
fn dispatch(shared: &Shared, input: &mut [u8], area: &mut [u8]) -> io::Result<()> {
    let err = |e: fuse_backend_rs::transport::Error| io::Error::other(e.to_string());
    let area_len = area.len();
    let reader = Reader::from_fuse_buffer(FuseBuf::new(input)).map_err(err)?;
    let mut writer = FuseDevWriter::<()>::new(shared.null.as_raw_fd(), area).map_err(err)?;
    // Splitting makes the writer buffered: fuse-backend-rs then encodes every reply into
    // `area` instead of writing it straight to the fd.
    let _empty_tail = writer.split_at(area_len).map_err(err)?;
    shared
        .server
        .handle_message(reader, writer.into(), None, Some(&shared.hook))
        .map(|_| ())
        .map_err(|e| io::Error::other(e.to_string()))
}

/// The body of a worker thread: pins itself to its CPU, waits for `go` (true once FUSE_INIT
/// accepted io_uring; false or nothing: leave), registers an entry of `payload_bytes`,
/// reports on `ready`, then serves. Returns the entry's memory, which the caller frees only
/// after this thread has ended.
pub(crate) fn serve(
    ring: Ring,
    dev: File,
    payload_bytes: usize,
    shared: Arc<Shared>,
    go: Receiver<bool>,
    ready: SyncSender<io::Result<()>>,
) -> EntryBufs {
    // Declared before the ring, so even an unwinding thread drops the ring (cancelling its
    // commands) before the buffers those commands name.
    let mut bufs = EntryBufs::new(payload_bytes);
    let Ring { qid, pin, mut ring } = ring;
    if pin {
        pin_to_cpu(qid as usize);
    }
    if go.recv_timeout(GO_WAIT) != Ok(true) {
        return bufs;
    }
    let mut worker = Worker {
        ring: &mut ring,
        qid,
        dev: &dev,
        bufs: &mut bufs,
        shared: &shared,
    };
    let exit = worker.run(&ready);
    // The ring goes first: closing it cancels the entry's pending command.
    drop(ring);
    if let Exit::Lost(why) = exit {
        (shared.lost)(&format!("io_uring worker for CPU {qid} stopped: {why}"));
    }
    bufs
}
