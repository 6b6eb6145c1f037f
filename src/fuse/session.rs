//! Mounting and serving: the FUSE_INIT handshake, then either FUSE-over-io_uring workers
//! (`super::uring`, one pinned thread per ring entry and CPU) with one `/dev/fuse` reader
//! beside them for FORGET/INTERRUPT, or a pool of `/dev/fuse` readers. Both feed the same
//! fuse-backend-rs `Server` over [`LitefsFs`]. Unmounts on drop.

use super::fs::LitefsFs;
use super::notify::Notifier;
use super::stats::{Hook, RequestStats};
use super::uring;
use crate::config::FuseTransport;
use crate::store::Store;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseBuf, FuseChannel, FuseDevWriter, FuseSession, Reader};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How to mount and serve the file system.
#[derive(Clone, Copy, Debug)]
pub struct MountOptions {
    /// Worker threads reading requests from /dev/fuse (one when io_uring serves).
    pub threads: usize,
    /// Let users other than the mounting one use the mount (`fuse.allow-other`).
    pub allow_other: bool,
    /// Negotiate `FUSE_POSIX_LOCKS`, so SQLite's fcntl locks on the database and `-shm` files
    /// are decided by the daemon (spec §3.9), as LiteFS does. With `false` the kernel
    /// arbitrates them locally: the daemon never sees them, and a read transaction costs no
    /// lock round trips (ARCHITECTURE §7 measures both).
    pub posix_locks: bool,
    /// `fuse.transport`.
    pub transport: FuseTransport,
    /// io_uring workers per possible CPU, each with one ring entry: more than one, so a
    /// request that blocks (a commit's fsync) does not stall that CPU's queue.
    pub ring_threads_per_cpu: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            threads: 2,
            allow_other: false,
            posix_locks: true,
            transport: FuseTransport::Auto,
            ring_threads_per_cpu: 2,
        }
    }
}

/// Which transport a mount ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActiveTransport {
    Uring {
        queues: usize,
        threads_per_cpu: usize,
    },
    DevFuse,
}

impl fmt::Display for ActiveTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActiveTransport::Uring {
                queues,
                threads_per_cpu,
            } => write!(
                f,
                "FUSE-over-io_uring ({queues} CPU queues × {threads_per_cpu} workers)"
            ),
            ActiveTransport::DevFuse => f.write_str("/dev/fuse"),
        }
    }
}

/// A mounted LiteFS file system. Dropping it unmounts (lazily) and joins the workers.
pub struct Mount {
    store: Arc<Store>,
    session: Option<FuseSession>,
    stats: Arc<RequestStats>,
    workers: Vec<JoinHandle<()>>,
    rings: Option<uring::Workers>,
    transport: ActiveTransport,
    /// Requests answered through io_uring rings.
    ring_served: Arc<AtomicU64>,
    mountpoint: PathBuf,
    /// Set before unmounting, so workers do not report the channel closing as an error.
    stopping: Arc<AtomicBool>,
}

/// True if `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    // Field 5 is the mount point, with spaces escaped as \040.
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(&m.replace("\\040", " ")) == path)
}

/// Lazily unmounts whatever is mounted at `path` (a stale mount left by a crash).
pub fn unmount_stale(path: &Path) -> io::Result<()> {
    if !is_mounted(path) {
        return Ok(());
    }
    let c =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path; umount2 has no other preconditions.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Longest wait for the kernel's FUSE_INIT after mounting.
const INIT_WAIT: Duration = Duration::from_secs(10);
/// Receive buffer for FUSE_INIT (the kernel refuses reads into less than 8 KiB).
const INIT_BUF_BYTES: usize = 64 << 10;

/// What the FUSE_INIT exchange settled.
struct InitOutcome {
    /// The kernel offered FUSE_OVER_IO_URING (its `enable_uring` is on).
    uring_offered: bool,
    /// We accepted it: from now on the kernel holds requests until every queue has an entry.
    uring_enabled: bool,
}

/// Reads FUSE_INIT from `/dev/fuse` and answers it through `server`, accepting
/// FUSE_OVER_IO_URING when `accept_uring` and the kernel offers it (fuse-backend-rs 0.14
/// does not know the flag, so its encoded reply is amended).
fn answer_init(
    dev: &File,
    null: &File,
    server: &Server<LitefsFs>,
    hook: &Hook,
    accept_uring: bool,
) -> io::Result<InitOutcome> {
    let mut request = vec![0u8; INIT_BUF_BYTES];
    let n = read_dev_fuse(dev, &mut request, INIT_WAIT)?;
    let opcode = u32::from_le_bytes(request[4..8].try_into().expect("4 bytes"));
    if n < uring::abi::IN_HEADER_BYTES || opcode != uring::abi::OPCODE_INIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected FUSE_INIT as the first request, got opcode {opcode} ({n} bytes)"),
        ));
    }
    let uring_offered = uring::abi::init_offers_uring(&request[..n]);
    let mut reply = vec![0u8; 4096];
    let reply_cap = reply.len();
    {
        let err = |e: fuse_backend_rs::transport::Error| io::Error::other(e.to_string());
        let reader = Reader::from_fuse_buffer(FuseBuf::new(&mut request[..n])).map_err(err)?;
        let mut writer = FuseDevWriter::<()>::new(null.as_raw_fd(), &mut reply).map_err(err)?;
        // Buffered: the reply is encoded into `reply` for us to amend and send.
        let _empty_tail = writer.split_at(reply_cap).map_err(err)?;
        server
            .handle_message(reader, writer.into(), None, Some(hook))
            .map_err(|e| io::Error::other(format!("FUSE_INIT: {e}")))?;
    }
    let len = u32::from_le_bytes(reply[0..4].try_into().expect("4 bytes")) as usize;
    if !(uring::abi::OUT_HEADER_BYTES..=reply_cap).contains(&len) {
        return Err(io::Error::other(format!(
            "FUSE_INIT reply of {len} bytes was not encoded"
        )));
    }
    let uring_enabled =
        accept_uring && uring_offered && uring::abi::enable_uring_in_init_reply(&mut reply[..len]);
    // SAFETY: writes `len` initialised bytes of `reply` to the /dev/fuse fd we own.
    let written = unsafe { libc::write(dev.as_raw_fd(), reply.as_ptr().cast(), len) };
    if written != len as isize {
        return Err(io::Error::other(format!(
            "FUSE_INIT reply not written: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(InitOutcome {
        uring_offered,
        uring_enabled,
    })
}

/// One read from the (non-blocking) `/dev/fuse` fd, waiting at most `wait` for a request.
fn read_dev_fuse(dev: &File, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        // SAFETY: reads into `buf`, which is valid for `buf.len()` bytes.
        let n = unsafe { libc::read(dev.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // ENOENT: the request was interrupted; read the next one.
            Some(libc::EINTR | libc::ENOENT) => continue,
            Some(libc::EAGAIN) => {}
            _ => return Err(e),
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no FUSE_INIT from the kernel within {wait:?}"),
            ));
        }
        let mut pfd = libc::pollfd {
            fd: dev.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, count 1.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }
}

/// A `/dev/fuse` reader thread: leaves only when the session is gone (ENODEV) or stopping.
fn spawn_dev_worker(
    i: usize,
    mut channel: FuseChannel,
    server: Arc<Server<LitefsFs>>,
    stopping: Arc<AtomicBool>,
    hook: Hook,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("fuse-{i}"))
        .spawn(move || {
            loop {
                match channel.get_request() {
                    Ok(Some((reader, writer))) => {
                        if let Err(e) =
                            server.handle_message(reader, writer.into(), None, Some(&hook))
                        {
                            if let fuse_backend_rs::Error::EncodeMessage(io) = &e {
                                // ENODEV: the kernel closed the session; stop. Anything
                                // else (ENOENT: the request was interrupted and is gone)
                                // concerns one reply: a worker that left for it would
                                // leave the mount with fewer workers, and with none the
                                // next request hangs its caller for good.
                                if io.raw_os_error() == Some(libc::ENODEV)
                                    || stopping.load(Ordering::Acquire)
                                {
                                    break;
                                }
                            }
                            eprintln!("litefs: fuse request failed: {e}");
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        if !stopping.load(Ordering::Acquire) {
                            eprintln!("litefs: fuse channel: {e}");
                        }
                        break;
                    }
                }
            }
        })
}

impl Mount {
    /// Mounts `store` at `mountpoint` and serves it with the transport `options` ask for.
    pub fn new(store: Arc<Store>, mountpoint: &Path, options: MountOptions) -> io::Result<Mount> {
        std::fs::create_dir_all(mountpoint)?;
        unmount_stale(mountpoint)?;
        let kernel_uring = uring::enabled_in_kernel();
        if options.transport == FuseTransport::Uring && kernel_uring != Some(true) {
            return Err(io::Error::other(match kernel_uring {
                None => "fuse.transport is uring, but this kernel has no FUSE-over-io_uring \
                         (needs Linux ≥ 6.14 with CONFIG_FUSE_IO_URING); use auto or devfuse"
                    .to_string(),
                Some(_) => format!(
                    "fuse.transport is uring, but {} is N; enable it with \
                     `echo Y > {}` (as root) or use auto/devfuse",
                    uring::ENABLE_PARAM,
                    uring::ENABLE_PARAM
                ),
            }));
        }
        // Rings exist before INIT is answered: accepting FUSE_OVER_IO_URING without them
        // would leave every request waiting for queues that never fill.
        let mut rings = None;
        if options.transport != FuseTransport::DevFuse && kernel_uring == Some(true) {
            match uring::prepare(options.ring_threads_per_cpu) {
                Ok(r) => rings = Some(r),
                Err(e) if options.transport == FuseTransport::Uring => {
                    return Err(io::Error::other(format!(
                        "cannot create io_uring rings: {e}"
                    )));
                }
                Err(e) => eprintln!("litefs: cannot create io_uring rings ({e}); using /dev/fuse"),
            }
        }

        let mut session =
            FuseSession::new(mountpoint, "litefs", "litefs", false).map_err(io::Error::other)?;
        session.set_allow_other(options.allow_other);
        session.mount().map_err(io::Error::other)?;
        let fs = LitefsFs::new(store.clone(), &options);
        let stats = fs.stats();
        let names = fs.names();
        let server = Arc::new(Server::new(fs));
        let null = Arc::new(std::fs::OpenOptions::new().write(true).open("/dev/null")?);
        let init_dev = session.clone_fuse_file().map_err(io::Error::other)?;
        let init = answer_init(
            &init_dev,
            &null,
            &server,
            &Hook(stats.clone()),
            rings.is_some(),
        );
        let init = match init {
            Ok(i) => i,
            Err(e) => {
                let _ = session.umount();
                return Err(e);
            }
        };

        let dev = session.clone_fuse_file().map_err(io::Error::other)?;
        let notifier = Notifier::new(dev, names);
        store
            .invalidate_hook()
            .set(Box::new(move |inv| notifier.send(inv)));
        // `GET /metrics` reports this mount's requests per opcode through the store.
        store.request_counts_hook().set(stats.clone());
        let stopping = Arc::new(AtomicBool::new(false));
        let ring_served = uring::served_counter();
        let mut mount = Mount {
            store,
            session: Some(session),
            stats: stats.clone(),
            workers: Vec::new(),
            rings: None,
            transport: ActiveTransport::DevFuse,
            ring_served: ring_served.clone(),
            mountpoint: mountpoint.to_path_buf(),
            stopping: stopping.clone(),
        };
        let mut dev_threads = options.threads.max(1);
        match rings {
            Some(rings) if init.uring_enabled => {
                let shared = Arc::new(uring::Shared {
                    server: server.clone(),
                    hook: Hook(stats.clone()),
                    null: null.clone(),
                    wake: uring::wake_fd()?,
                    served: ring_served,
                });
                let session = mount.session.as_ref().expect("mounted");
                let (workers, started) = uring::start(
                    rings,
                    || session.clone_fuse_file().map_err(io::Error::other),
                    shared,
                );
                match started {
                    Ok(()) => {
                        mount.transport = ActiveTransport::Uring {
                            queues: workers.queues,
                            threads_per_cpu: workers.threads_per_cpu,
                        };
                        // FORGET and INTERRUPT still come through /dev/fuse.
                        dev_threads = 1;
                        mount.rings = Some(workers);
                    }
                    Err(e) => {
                        // A queue without an entry: the kernel turned io_uring off for this
                        // connection when REGISTER failed, so /dev/fuse serves everything.
                        workers.stop();
                        if options.transport == FuseTransport::Uring {
                            return Err(io::Error::other(format!(
                                "FUSE-over-io_uring registration failed: {e}"
                            )));
                        }
                        eprintln!("litefs: FUSE-over-io_uring registration failed ({e})");
                    }
                }
            }
            _ => {}
        }
        if options.transport == FuseTransport::Uring && mount.rings.is_none() {
            return Err(io::Error::other(format!(
                "fuse.transport is uring, but the kernel {} FUSE_OVER_IO_URING at FUSE_INIT",
                if init.uring_offered {
                    "offered and then refused"
                } else {
                    "did not offer"
                }
            )));
        }
        for i in 0..dev_threads {
            let session = mount.session.as_ref().expect("mounted");
            let channel = session.new_channel().map_err(io::Error::other)?;
            let worker = spawn_dev_worker(
                i,
                channel,
                server.clone(),
                stopping.clone(),
                Hook(stats.clone()),
            )?;
            mount.workers.push(worker);
        }
        Ok(mount)
    }

    /// The transport serving this mount.
    pub fn transport(&self) -> ActiveTransport {
        self.transport
    }

    /// Requests answered through io_uring rings so far.
    pub fn ring_requests(&self) -> u64 {
        self.ring_served.load(Ordering::Relaxed)
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Requests served so far, per opcode.
    pub fn request_stats(&self) -> &RequestStats {
        &self.stats
    }

    /// Unmounts and waits for the workers to stop.
    pub fn unmount(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        let Some(mut session) = self.session.take() else {
            return Ok(());
        };
        self.stopping.store(true, Ordering::Release);
        self.store.invalidate_hook().clear();
        self.store.request_counts_hook().clear();
        let result = session.umount().map_err(io::Error::other);
        let _ = session.wake();
        if let Some(rings) = self.rings.take() {
            rings.stop();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        // Last resort: never leave a stale mount behind.
        let _ = unmount_stale(&self.mountpoint);
        result
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
