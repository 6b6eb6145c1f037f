//! The /dev/fuse transport: mount, a pool of worker threads, and unmount on drop.
//!
//! A second transport (FUSE-over-io_uring) arrives later behind the same `LitefsFs`.

use super::fs::LitefsFs;
use super::notify::Notifier;
use super::stats::{Hook, RequestStats};
use crate::store::Store;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::FuseSession;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// How to mount and serve the file system.
#[derive(Clone, Copy, Debug)]
pub struct MountOptions {
    /// Worker threads reading requests from /dev/fuse.
    pub threads: usize,
    /// Let users other than the mounting one use the mount (`fuse.allow-other`).
    pub allow_other: bool,
    /// Negotiate `FUSE_POSIX_LOCKS`, so SQLite's fcntl locks on the database and `-shm` files
    /// are decided by the daemon (spec §3.9), as LiteFS does. With `false` the kernel
    /// arbitrates them locally: the daemon never sees them, and a read transaction costs no
    /// lock round trips (ARCHITECTURE §7 measures both).
    pub posix_locks: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            threads: 2,
            allow_other: false,
            posix_locks: true,
        }
    }
}

/// A mounted LiteFS file system. Dropping it unmounts (lazily) and joins the workers.
pub struct Mount {
    store: Arc<Store>,
    session: Option<FuseSession>,
    stats: Arc<RequestStats>,
    workers: Vec<JoinHandle<()>>,
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

impl Mount {
    /// Mounts `store` at `mountpoint` and serves it with `options.threads` workers.
    pub fn new(store: Arc<Store>, mountpoint: &Path, options: MountOptions) -> io::Result<Mount> {
        std::fs::create_dir_all(mountpoint)?;
        unmount_stale(mountpoint)?;
        let mut session =
            FuseSession::new(mountpoint, "litefs", "litefs", false).map_err(io::Error::other)?;
        session.set_allow_other(options.allow_other);
        session.mount().map_err(io::Error::other)?;
        let fs = LitefsFs::new(store.clone(), &options);
        let stats = fs.stats();
        let dev = session.clone_fuse_file().map_err(io::Error::other)?;
        let notifier = Notifier::new(dev, fs.names());
        store
            .invalidate_hook()
            .set(Box::new(move |inv| notifier.send(inv)));
        // `GET /metrics` reports this mount's requests per opcode through the store.
        store.request_counts_hook().set(stats.clone());
        let server = Arc::new(Server::new(fs));
        let stopping = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for i in 0..options.threads.max(1) {
            let mut channel = session.new_channel().map_err(io::Error::other)?;
            let server = server.clone();
            let stopping = stopping.clone();
            let hook = Hook(stats.clone());
            let worker = std::thread::Builder::new()
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
                })?;
            workers.push(worker);
        }
        Ok(Mount {
            store,
            session: Some(session),
            stats,
            workers,
            mountpoint: mountpoint.to_path_buf(),
            stopping,
        })
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
