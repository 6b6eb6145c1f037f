//! One FUSE-over-io_uring worker: a thread pinned to one CPU, with its own SQE128 ring and
//! one ring entry registered on that CPU's kernel queue. A request is one completion; its
//! reply and the fetch of the next request are one `COMMIT_AND_FETCH` submission — a
//! single `io_uring_enter` per request instead of `/dev/fuse`'s read + write, served on the
//! CPU of the process that asked.
//!
//! Each worker holds exactly one entry: the file system is synchronous, and an entry held by
//! a thread that is busy (an fsync) would queue requests behind it while a sibling idles.

use super::abi::{self, HEADER_BYTES, OUT_HEADER_BYTES, OutHeader, RingRequest};
use crate::fuse::fs::LitefsFs;
use crate::fuse::stats::Hook;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseBuf, FuseDevWriter, Reader};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `user_data` of the ring entry's command, and of the poll on the shutdown eventfd.
const ENTRY_TAG: u64 = 1;
const WAKE_TAG: u64 = 2;
/// Room before the registered payload for the 16-byte `fuse_out_header`, so a reply's
/// arguments are encoded straight into the payload buffer (a page keeps it aligned).
const OUT_PREFIX_BYTES: usize = 4096;
/// Retries of a command the kernel answered with EAGAIN/EINTR (1 ms apart), and of
/// re-registering after a rejected commit, before the worker gives up.
const RETRIES_MAX: u32 = 1000;

/// A prepared ring: created before FUSE_INIT is answered, since once FUSE_OVER_IO_URING is
/// negotiated the kernel holds every request until each CPU's queue has an entry.
pub struct Ring {
    pub(super) qid: u16,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
}

impl Ring {
    pub fn new(qid: u16) -> io::Result<Ring> {
        // Entries: the ring entry's command and the shutdown poll; completions twice that.
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(8)
            .build(4)?;
        Ok(Ring { qid, ring })
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
}

/// The user memory of one ring entry. The kernel writes into it until the worker thread has
/// exited (request copies run in that thread's context), so it is handed back to the mount
/// and freed only after the thread is joined.
pub struct EntryBufs {
    /// `struct fuse_uring_req_header`.
    header: Box<[u8; HEADER_BYTES]>,
    /// `OUT_PREFIX_BYTES`, then the payload buffer registered with the kernel.
    payload: Box<[u8]>,
    /// The request re-assembled as `/dev/fuse` delivers it, for fuse-backend-rs's `Reader`.
    input: Box<[u8]>,
    /// `struct iovec[2]` (header, payload) as the kernel reads it at REGISTER: base, length.
    iov: Box<[u64; 4]>,
}

impl EntryBufs {
    fn new(payload_bytes: usize) -> EntryBufs {
        let header = Box::new([0u8; HEADER_BYTES]);
        let payload = vec![0u8; OUT_PREFIX_BYTES + payload_bytes].into_boxed_slice();
        let input = vec![0u8; OUT_PREFIX_BYTES + payload_bytes].into_boxed_slice();
        let mut bufs = EntryBufs {
            header,
            payload,
            input,
            iov: Box::new([0; 4]),
        };
        // Touch every page now: the kernel copies requests in from this thread's context,
        // and a first-touch fault there should not have to wait on the process's memory map.
        for buf in [&mut bufs.payload, &mut bufs.input] {
            for page in buf.chunks_mut(4096) {
                // SAFETY: `page` is a live, exclusively borrowed, non-empty slice.
                unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 0) };
            }
        }
        let header_addr = bufs.header.as_ptr() as u64;
        let payload_addr = bufs.payload[OUT_PREFIX_BYTES..].as_ptr() as u64;
        *bufs.iov = [
            header_addr,
            HEADER_BYTES as u64,
            payload_addr,
            payload_bytes as u64,
        ];
        bufs
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
    // SAFETY: `cpu_set_t` is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes bit `cpu` of `set`, which holds 1024 bits; `cpu` < the number of
    // possible CPUs, far below that.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid, initialised cpu_set_t of the size passed; pid 0 = this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        // An offline CPU: the worker still serves its queue, from wherever it runs.
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

struct Worker<'a> {
    ring: &'a mut IoUring<squeue::Entry128, cqueue::Entry>,
    qid: u16,
    dev: &'a File,
    bufs: &'a mut EntryBufs,
    shared: &'a Shared,
}

impl Worker<'_> {
    fn push(&mut self, cmd: Cmd) -> io::Result<()> {
        let (op, commit_id) = match cmd {
            Cmd::Register => (abi::CMD_REGISTER, 0),
            Cmd::CommitAndFetch(id) => (abi::CMD_COMMIT_AND_FETCH, id),
        };
        let mut sqe = opcode::UringCmd80::new(types::Fd(self.dev.as_raw_fd()), op)
            .cmd(abi::cmd_req(self.qid, commit_id))
            .addr(Some(self.bufs.iov.as_ptr() as u64))
            .build()
            .user_data(ENTRY_TAG);
        if matches!(cmd, Cmd::Register) {
            set_sqe_len(&mut sqe, 2);
        }
        // SAFETY: the SQE refers to `self.bufs` (iovecs, header and payload buffers), which
        // outlive the ring: they are returned to the mount and dropped after this thread is
        // joined, and the ring is dropped in this thread before it returns.
        unsafe { self.ring.submission().push(&sqe) }
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
    /// in the entry. Always leaves *a* reply: an entry without one would hang its caller.
    fn serve(&mut self) {
        let bufs = &mut *self.bufs;
        let req = RingRequest::parse(&bufs.header);
        let payload = &bufs.payload[OUT_PREFIX_BYTES..];
        let in_len = match abi::assemble_request(&bufs.header, payload, &mut bufs.input) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("litefs: {e}; answering EIO");
                abi::put_reply(&mut bufs.header, &OutHeader::error(req.unique, libc::EIO));
                return;
            }
        };
        // The reply is encoded as for /dev/fuse, [out header | arguments], into an area that
        // starts 16 bytes before the registered payload buffer: the arguments land in place.
        let area = &mut bufs.payload[OUT_PREFIX_BYTES - OUT_HEADER_BYTES..];
        area[..OUT_HEADER_BYTES].fill(0);
        let area_len = area.len();
        let result = dispatch(self.shared, &mut bufs.input[..in_len], area);
        let out_bytes: &[u8; OUT_HEADER_BYTES] = bufs.payload
            [OUT_PREFIX_BYTES - OUT_HEADER_BYTES..OUT_PREFIX_BYTES]
            .try_into()
            .expect("16 bytes");
        let out = OutHeader::parse(out_bytes);
        let valid = out.unique == req.unique
            && out.len_bytes as usize >= OUT_HEADER_BYTES
            && out.len_bytes as usize <= area_len;
        if valid {
            abi::put_reply(&mut bufs.header, &out);
        } else {
            if let Err(e) = result {
                eprintln!("litefs: fuse request {} failed: {e}", req.unique);
            }
            abi::put_reply(&mut bufs.header, &OutHeader::error(req.unique, libc::EIO));
        }
        self.shared.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Serves until shutdown or until the kernel ends the connection.
    fn run(&mut self, ready: &std::sync::mpsc::SyncSender<io::Result<()>>) {
        let registered = self
            .push(Cmd::Register)
            .and_then(|_| self.push_wake_poll())
            .and_then(|_| self.ring.submit().map(|_| ()));
        if let Err(e) = registered {
            let _ = ready.send(Err(e));
            return;
        }
        // A rejected REGISTER completes at once; a good one stays pending until a request.
        let first = self.ring.completion().next();
        if let Some(cqe) = &first
            && cqe.user_data() == ENTRY_TAG
            && cqe.result() < 0
            && cqe.result() != -libc::EAGAIN
        {
            let _ = ready.send(Err(io::Error::from_raw_os_error(-cqe.result())));
            return;
        }
        let _ = ready.send(Ok(()));
        let mut last = Cmd::Register;
        let mut retries = 0u32;
        let mut pending: Vec<cqueue::Entry> = first.into_iter().collect();
        loop {
            for cqe in pending.drain(..) {
                if cqe.user_data() == WAKE_TAG {
                    return;
                }
                let res = cqe.result();
                let next = if res == 0 {
                    retries = 0;
                    self.serve();
                    Cmd::CommitAndFetch(RingRequest::parse(&self.bufs.header).commit_id)
                } else if res == -libc::EAGAIN || res == -libc::EINTR {
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
                    return; // unmounted or aborted
                } else {
                    // E.g. ENOENT: the kernel no longer knew the request we answered (it was
                    // aborted); the entry is gone with it, so register the buffers afresh.
                    eprintln!(
                        "litefs: io_uring queue {}: command failed: {}; re-registering",
                        self.qid,
                        io::Error::from_raw_os_error(-res)
                    );
                    Cmd::Register
                };
                if !matches!(next, Cmd::CommitAndFetch(_)) {
                    retries += 1;
                    if retries > RETRIES_MAX {
                        eprintln!("litefs: io_uring queue {}: giving up", self.qid);
                        return;
                    }
                }
                last = next;
                if let Err(e) = self.push(next) {
                    eprintln!("litefs: io_uring queue {}: {e}", self.qid);
                    return;
                }
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    eprintln!("litefs: io_uring queue {}: {e}", self.qid);
                    return;
                }
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

/// The body of a worker thread: pins itself to its CPU, registers an entry of `payload_bytes`
/// with the kernel, reports on `ready`, then serves. Returns the entry's memory, which the
/// caller frees only after this thread has ended.
pub(crate) fn serve(
    ring: Ring,
    dev: File,
    payload_bytes: usize,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::SyncSender<io::Result<()>>,
) -> EntryBufs {
    let Ring { qid, mut ring } = ring;
    pin_to_cpu(qid as usize);
    let mut bufs = EntryBufs::new(payload_bytes);
    let mut worker = Worker {
        ring: &mut ring,
        qid,
        dev: &dev,
        bufs: &mut bufs,
        shared: &shared,
    };
    worker.run(&ready);
    // The ring goes first: closing it cancels the entry's pending command.
    drop(ring);
    bufs
}
