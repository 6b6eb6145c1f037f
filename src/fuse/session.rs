//! Mounting and serving: the FUSE_INIT handshake, then either FUSE-over-io_uring workers
//! (`super::uring`, one pinned thread per ring entry and CPU) with one `/dev/fuse` reader
//! beside them for FORGET/INTERRUPT, or a pool of `/dev/fuse` readers. Both feed the same
//! fuse-backend-rs `Server` over [`LitefsFs`]. Unmounts on drop.

use super::fs::LitefsFs;
use super::kernel_locks::MountLocks;
use super::notify::Notifier;
use super::prime::Primer;
use super::stats::{Hook, RequestStats};
use super::uring;
use crate::config::FuseTransport;
use crate::store::Store;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseBuf, FuseDevWriter, FuseSession, Reader};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How to mount and serve the file system.
#[derive(Clone, Copy, Debug)]
pub struct MountOptions {
    /// Worker threads reading requests from /dev/fuse (one when io_uring serves).
    pub threads: usize,
    /// Let users other than the mounting one use the mount (`fuse.allow-other`).
    pub allow_other: bool,
    /// Negotiate `FUSE_POSIX_LOCKS`, so SQLite's fcntl locks on the database and `-shm` files
    /// are decided by the daemon (spec §3.9), as LiteFS does. With `false` (the default) the
    /// kernel arbitrates them locally: the daemon never sees them, a read transaction costs
    /// no lock round trips, and the daemon's own locks go through the mount
    /// (`kernel_locks.rs`; ARCHITECTURE §7 measures both).
    pub posix_locks: bool,
    /// `fuse.transport`.
    pub transport: FuseTransport,
    /// io_uring workers per online CPU, each with one ring entry: more than one, so a
    /// request that blocks (a commit's fsync) does not stall that CPU's queue.
    pub ring_threads_per_cpu: usize,
    /// Size of each ring entry's payload buffer; `None`: what the kernel requires (1 MiB).
    /// Tests set a smaller one to make the kernel refuse REGISTER.
    #[doc(hidden)]
    pub ring_payload_bytes: Option<usize>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            threads: 2,
            allow_other: false,
            posix_locks: false,
            transport: FuseTransport::Auto,
            ring_threads_per_cpu: 2,
            ring_payload_bytes: None,
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
    /// The FUSE connection: its number (`/sys/fs/fuse/connections/<n>`) as mountinfo showed
    /// it after the mount, and a clone of its descriptor that only tells whether it still
    /// lives (POLLERR once it ended), so a shutdown never aborts a number reused since.
    connection: Option<(u32, File)>,
    /// Reads restarted WALs through the mount (`prime.rs`).
    primer: Primer,
    /// Writes WAL commits' LTX files after their writes are answered (`store/capture.rs`).
    capture: crate::store::capture::CaptureThread,
}

/// True if `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    connection_id(&info, &path).is_some()
}

/// Mounts a new FUSE connection at `mountpoint` and returns its `/dev/fuse` descriptor, with
/// LiteFS's mount options. Nothing reads that descriptor: INIT, the readers and the
/// notifications each use a clone of it. Not
/// `FuseSession::mount`: that always adds `default_permissions`, which LiteFS does not use,
/// and with which the kernel checks permissions itself — and so asks for the root's
/// attributes again at the first path walk after each create or unlink (2 GETATTRs per
/// rollback-journal transaction). Without it, access is as LiteFS's: only the mounting user
/// unless `allow_other`, and then every file is open to everyone, as its mode says nothing
/// (modes are not stored).
fn mount_fuse(mountpoint: &Path, allow_other: bool, max_read_bytes: usize) -> io::Result<File> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")?;
    let root_mode = std::fs::metadata(mountpoint)?.permissions().mode() & libc::S_IFMT;
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode={root_mode:o},user_id={uid},group_id={gid},max_read={max_read_bytes}",
        file.as_raw_fd()
    );
    if allow_other {
        data.push_str(",allow_other");
    }
    let c = |s: &[u8]| std::ffi::CString::new(s).map_err(io::Error::other);
    let source = c(b"litefs")?;
    let target = c(mountpoint.as_os_str().as_encoded_bytes())?;
    let fstype = c(b"fuse.litefs")?;
    let data = c(data.as_bytes())?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let mounted = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if mounted != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mount {}: {e}", mountpoint.display()),
        ));
    }
    Ok(file)
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

/// How long an unmount waits for the `/dev/fuse` readers to see the connection end before it
/// aborts the connection (a mount still in use is only detached).
const DEV_READERS_EXIT_WAIT_MS: u64 = 500;

/// How long an unmount then waits for them before it leaves them behind.
const DEV_READERS_ABORT_WAIT_MS: u64 = 2_000;

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

fn set_nonblocking(file: &File) -> io::Result<()> {
    // SAFETY: F_GETFL on a descriptor we own; no pointers.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL on a descriptor we own; no pointers.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One read from a non-blocking `/dev/fuse` fd, waiting at most `wait` for a request.
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

/// A `/dev/fuse` reader of its own: a descriptor cloned from the session's
/// (`FUSE_DEV_IOC_CLONE`), read blocking. Not fuse-backend-rs's `FuseChannel`, whose readers
/// share one non-blocking description and wait in level-triggered epoll: every reader woke
/// for every request and all but one found nothing (an `epoll_wait` and a failed `read` per
/// request on the other core). Blocked readers are woken one per request by the kernel, and
/// a request is one `read` and one `writev`. They leave when the connection ends (ENODEV):
/// the unmount, or [`abort_connection`].
struct DevReader {
    file: File,
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl DevReader {
    fn new(session: &FuseSession) -> io::Result<DevReader> {
        let file = session.clone_fuse_file().map_err(io::Error::other)?;
        Ok(DevReader {
            file,
            request: vec![0; session.bufsize()],
            reply: vec![0; session.bufsize()],
        })
    }

    /// The next request and the writer for its reply; `None` once the connection is gone.
    fn next(&mut self) -> io::Result<Option<(Reader<'_>, FuseDevWriter<'_>)>> {
        let fd = self.file.as_raw_fd();
        loop {
            // SAFETY: `request` is a valid buffer of its length for the call's duration.
            let n = unsafe { libc::read(fd, self.request.as_mut_ptr().cast(), self.request.len()) };
            if n >= 0 {
                let reader =
                    Reader::from_fuse_buffer(FuseBuf::new(&mut self.request[..n as usize]))
                        .map_err(io::Error::other)?;
                let writer = FuseDevWriter::new(fd, &mut self.reply).map_err(io::Error::other)?;
                return Ok(Some((reader, writer)));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // The request was interrupted and is gone, or a signal came: read again.
                Some(libc::ENOENT | libc::EINTR | libc::EAGAIN) => continue,
                // The connection ended (ECONNABORTED if the kernel was asked for it).
                Some(libc::ENODEV | libc::ECONNABORTED) => return Ok(None),
                _ => return Err(e),
            }
        }
    }
}

/// A `/dev/fuse` reader thread: leaves only when the session is gone (ENODEV) or stopping.
fn spawn_dev_worker(
    i: usize,
    mut channel: DevReader,
    server: Arc<Server<LitefsFs>>,
    stopping: Arc<AtomicBool>,
    hook: Hook,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("fuse-{i}"))
        .spawn(move || {
            loop {
                match channel.next() {
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

/// The minor device number of the mount at `mountpoint` — for FUSE, the connection number
/// (its directory under /sys/fs/fuse/connections) — from mountinfo text (field 3 is
/// `major:minor`, field 5 the mount point with spaces as `\040`); `None` if not mounted.
/// Reading mountinfo sends no request to the (maybe stuck) file system.
pub(super) fn connection_id(mountinfo: &str, mountpoint: &Path) -> Option<u32> {
    mountinfo
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() > 4 && Path::new(&f[4].replace("\\040", " ")) == mountpoint)
        .filter_map(|f| f[2].split_once(':')?.1.parse().ok())
        .next_back()
}

/// Aborts the FUSE connection of the mount at `mountpoint` (canonical path): every waiting
/// and future request fails with ENOTCONN instead of hanging. The last resort when requests
/// can no longer be served (fusectl is mounted if needed).
pub fn abort_connection(mountpoint: &Path) -> io::Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let id = connection_id(&info, mountpoint)
        .ok_or_else(|| io::Error::other(format!("{} is not mounted", mountpoint.display())))?;
    abort_connection_id(id)
}

/// Aborts connection `id` if `dev` (a descriptor of it) shows it still alive. The abort file
/// is opened first and the connection checked after: a number is reused by the next mount
/// once its connection is gone, and a write to the abort file of a connection that ended
/// since it was opened does nothing.
fn abort_if_alive(id: u32, dev: &File) -> io::Result<()> {
    mount_fusectl(id);
    let mut abort = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/sys/fs/fuse/connections/{id}/abort"))?;
    let mut pfd = libc::pollfd {
        fd: dev.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1, no wait.
    unsafe { libc::poll(&mut pfd, 1, 0) };
    if pfd.revents & libc::POLLERR != 0 {
        return Ok(()); // Ended: its readers are leaving.
    }
    io::Write::write_all(&mut abort, b"1")
}

/// [`abort_connection`] by connection number, for a connection found mounted just now.
fn abort_connection_id(id: u32) -> io::Result<()> {
    mount_fusectl(id);
    std::fs::write(format!("/sys/fs/fuse/connections/{id}/abort"), "1")
}

/// Mounts fusectl at `/sys/fs/fuse/connections` unless connection `id` is listed there.
fn mount_fusectl(id: u32) {
    let dir = Path::new("/sys/fs/fuse/connections");
    if !dir.join(id.to_string()).exists() {
        let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
        let (src, target, fstype) = (c("fusectl"), c("/sys/fs/fuse/connections"), c("fusectl"));
        // SAFETY: NUL-terminated strings that outlive the call; no data argument.
        unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
    }
}

/// Why a mount attempt failed.
struct MountFailure {
    error: io::Error,
    /// After FUSE_INIT accepted io_uring: `auto` may try again over /dev/fuse.
    uring: bool,
}

impl From<io::Error> for MountFailure {
    fn from(error: io::Error) -> Self {
        MountFailure {
            error,
            uring: false,
        }
    }
}

impl Mount {
    /// Mounts `store` at `mountpoint` and serves it with the transport `options` ask for.
    /// With `auto`, a FUSE-over-io_uring start that fails after the kernel accepted it
    /// (the connection is then aborted) is followed by a fresh mount over /dev/fuse.
    pub fn new(store: Arc<Store>, mountpoint: &Path, options: MountOptions) -> io::Result<Mount> {
        match Self::try_mount(store.clone(), mountpoint, options) {
            Err(f) if f.uring && options.transport == FuseTransport::Auto => {
                eprintln!(
                    "litefs: FUSE-over-io_uring failed to start ({}); mounting again over /dev/fuse",
                    f.error
                );
                let devfuse = MountOptions {
                    transport: FuseTransport::DevFuse,
                    ..options
                };
                Self::try_mount(store, mountpoint, devfuse).map_err(|f| f.error)
            }
            other => other.map_err(|f| f.error),
        }
    }

    fn try_mount(
        store: Arc<Store>,
        mountpoint: &Path,
        options: MountOptions,
    ) -> Result<Mount, MountFailure> {
        std::fs::create_dir_all(mountpoint)?;
        unmount_stale(mountpoint)?;
        let mountpoint = mountpoint.canonicalize()?;
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
            })
            .into());
        }
        // Rings exist before INIT is answered: accepting FUSE_OVER_IO_URING without them
        // would leave every request waiting for queues that never fill.
        let mut rings = None;
        if options.transport != FuseTransport::DevFuse && kernel_uring == Some(true) {
            match uring::prepare(options.ring_threads_per_cpu) {
                Ok(r) => rings = Some(r),
                Err(e) if options.transport == FuseTransport::Uring => {
                    return Err(
                        io::Error::other(format!("cannot create io_uring rings: {e}")).into(),
                    );
                }
                Err(e) => eprintln!("litefs: cannot create io_uring rings ({e}); using /dev/fuse"),
            }
        }

        let mut session =
            FuseSession::new(&mountpoint, "litefs", "litefs", false).map_err(io::Error::other)?;
        session.set_fuse_file(mount_fuse(
            &mountpoint,
            options.allow_other,
            session.bufsize(),
        )?);
        // From mountinfo: a stat of the mount would wait for FUSE_INIT.
        let connection = std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|info| connection_id(&info, &mountpoint))
            .zip(session.clone_fuse_file().ok());
        let primer = Primer::start(&mountpoint, store.clone())?;
        let capture = store.start_capture_thread()?;
        let mut fs = LitefsFs::new(store.clone(), &options);
        fs.set_primer(primer.requests());
        let stats = fs.stats();
        let names = fs.names();
        let server = Arc::new(Server::new(fs));
        let null = Arc::new(std::fs::OpenOptions::new().write(true).open("/dev/null")?);
        let ring_served = uring::served_counter();
        let stopping = Arc::new(AtomicBool::new(false));
        let mut mount = Mount {
            store: store.clone(),
            session: Some(session),
            stats: stats.clone(),
            workers: Vec::new(),
            rings: None,
            transport: ActiveTransport::DevFuse,
            ring_served: ring_served.clone(),
            mountpoint: mountpoint.clone(),
            stopping: stopping.clone(),
            connection,
            primer,
            capture,
        };
        let session = mount.session.as_ref().expect("mounted");

        // Ring workers start before INIT is answered, so that only the kernel can still
        // refuse io_uring once we accept it.
        if let Some(rings) = rings {
            let lost_mountpoint = mountpoint.clone();
            let shared = Arc::new(uring::Shared {
                server: server.clone(),
                hook: Hook(stats.clone()),
                null: null.clone(),
                wake: uring::wake_fd()?,
                served: ring_served,
                lost: Box::new(move |why| {
                    eprintln!(
                        "litefs: {why}; aborting the FUSE connection of {} (requests on that \
                         CPU would wait forever); restart litefs",
                        lost_mountpoint.display()
                    );
                    if let Err(e) = abort_connection(&lost_mountpoint) {
                        eprintln!("litefs: abort failed: {e}");
                    }
                }),
            });
            match uring::spawn(
                rings,
                || session.clone_fuse_file().map_err(io::Error::other),
                shared,
                options
                    .ring_payload_bytes
                    .unwrap_or_else(uring::payload_bytes),
            ) {
                Ok(workers) => mount.rings = Some(workers),
                Err(e) if options.transport == FuseTransport::Uring => {
                    return Err(
                        io::Error::other(format!("cannot start io_uring workers: {e}")).into(),
                    );
                }
                Err(e) => eprintln!("litefs: cannot start io_uring workers ({e}); using /dev/fuse"),
            }
        }
        let init_dev = session.clone_fuse_file().map_err(io::Error::other)?;
        set_nonblocking(&init_dev)?;
        let init = answer_init(
            &init_dev,
            &null,
            &server,
            &Hook(stats.clone()),
            mount.rings.is_some(),
        )?;
        if init.uring_enabled {
            let workers = mount.rings.as_mut().expect("ring workers");
            if let Err(e) = workers.go() {
                // Some queue may have no entry, and the kernel holds requests until each has
                // one: fail this connection rather than leave callers hanging.
                let _ = abort_connection(&mountpoint);
                return Err(MountFailure {
                    error: io::Error::other(format!("ring workers did not register: {e}")),
                    uring: true,
                });
            }
            let workers = mount.rings.as_ref().expect("ring workers");
            mount.transport = ActiveTransport::Uring {
                queues: workers.queues,
                threads_per_cpu: workers.threads_per_cpu,
            };
        } else if let Some(workers) = mount.rings.take() {
            workers.stop();
        }
        if options.transport == FuseTransport::Uring && !init.uring_enabled {
            return Err(io::Error::other(format!(
                "fuse.transport is uring, but the kernel {} FUSE_OVER_IO_URING at FUSE_INIT",
                if init.uring_offered {
                    "offered it and the workers did not start, so refused"
                } else {
                    "did not offer"
                }
            ))
            .into());
        }

        let session = mount.session.as_ref().expect("mounted");
        let dev = session.clone_fuse_file().map_err(io::Error::other)?;
        let notifier = Notifier::new(dev, names);
        store
            .invalidate_hook()
            .set(Box::new(move |inv| notifier.send(inv)));
        // `GET /metrics` reports this mount's requests per opcode through the store.
        store.request_counts_hook().set(stats.clone());

        // With io_uring, /dev/fuse carries only FORGET and INTERRUPT.
        let dev_threads = if mount.rings.is_some() {
            1
        } else {
            options.threads.max(1)
        };
        for i in 0..dev_threads {
            let channel = DevReader::new(session)?;
            let worker = spawn_dev_worker(
                i,
                channel,
                server.clone(),
                stopping.clone(),
                Hook(stats.clone()),
            )?;
            mount.workers.push(worker);
        }
        // Without FUSE_POSIX_LOCKS the kernel keeps SQLite's locks: LiteFS takes its own
        // beside them, through this mount (`kernel_locks.rs`), once it serves requests.
        if !options.posix_locks {
            store
                .kernel_locks_hook()
                .set(Arc::new(MountLocks::new(&mount.mountpoint)));
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

    /// Restarted WALs read into the kernel's cache so far (`prime.rs`).
    pub fn wals_primed(&self) -> u64 {
        self.primer.primed()
    }

    /// Growing WALs this mount's primer extended and read ahead (`prime.rs`), one per step.
    pub fn wals_grown(&self) -> u64 {
        self.primer.grown()
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
        // First: it may hold a file open on the mount.
        self.primer.stop();
        self.store.invalidate_hook().clear();
        self.store.request_counts_hook().clear();
        self.store.kernel_locks_hook().clear();
        let result = session.umount().map_err(io::Error::other);
        if let Some(rings) = self.rings.take() {
            rings.stop();
        }
        // The `/dev/fuse` readers leave when the connection ends, which the unmount does
        // unless the mount is still in use (then only detached): end it ourselves, as closing
        // every descriptor would.
        let readers_left = |workers: &[JoinHandle<()>], wait_ms: u64| {
            let deadline = Instant::now() + Duration::from_millis(wait_ms);
            while workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            workers.iter().filter(|w| !w.is_finished()).count()
        };
        if readers_left(&self.workers, DEV_READERS_EXIT_WAIT_MS) > 0
            && let Some((id, dev)) = &self.connection
            && let Err(e) = abort_if_alive(*id, dev)
        {
            eprintln!("litefs: abort FUSE connection {id} at unmount: {e}");
        }
        let stuck = readers_left(&self.workers, DEV_READERS_ABORT_WAIT_MS);
        if stuck > 0 {
            // Blocked in a read of a connection that did not end: the process's exit closes
            // their descriptors, which ends it.
            eprintln!(
                "litefs: {stuck} /dev/fuse readers still wait after the unmount; leaving them"
            );
        }
        for w in self.workers.drain(..) {
            if w.is_finished() {
                let _ = w.join();
            }
        }
        self.connection = None;
        // After the workers: no commit can queue a capture any more.
        self.capture.stop();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_id_is_the_minor_of_the_mount_device() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    88 30 0:63 / /tmp/a\\040b/mnt rw,nosuid - fuse.litefs litefs rw\n\
                    90 30 0:70 / /tmp/c rw - fuse.litefs litefs rw\n";
        assert_eq!(connection_id(info, Path::new("/tmp/a b/mnt")), Some(63));
        assert_eq!(connection_id(info, Path::new("/tmp/c")), Some(70));
        assert_eq!(connection_id(info, Path::new("/tmp/d")), None);
    }
}
