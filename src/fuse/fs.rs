//! The LiteFS file system behind FUSE: names, attributes and the per-file behaviour of spec
//! §3.2–§3.3, translated into calls on the store. No replication or checksum logic here.

use super::errno::{
    LOCK_BAD_TYPE, LOCK_NOT_IMPLEMENTED, LOCK_NOT_SUPPORTED, LOCK_WOULD_WAIT,
    NOT_NEEDED_STOP_ASKING, errno, lock_errno, open_errno, to_io_error,
};
use super::node::{
    DbNode, LAG_INODE, PRIMARY_INODE, ROOT_INODE, db_inode, parse_name, split_db_inode,
};
use super::notify::SharedNames;
use super::prime::PrimeRequests;
use super::session::MountOptions;
use super::stats::{self, RequestStats};
use crate::store::lock::{HALT_BYTE, LockFile, LockKind, LockSet, LockType};
use crate::store::{Db, FileKind, Invalidation, Store};
use fuse_backend_rs::abi::fuse_abi::{
    CreateIn, FsOptions, LK_FLOCK, OpenOptions, SetattrValid, stat64, statvfs64,
};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, ZeroCopyReader, ZeroCopyWriter,
};
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `FOPEN_NOFLUSH` (FUSE 7.35, kernel 5.16): closes of this open send no FLUSH. Not named
/// by fuse-backend-rs 0.14.
const FOPEN_NOFLUSH: u32 = 1 << 5;
/// How long the kernel may cache a name (bazil's default, as LiteFS).
const ENTRY_TIMEOUT: Duration = Duration::from_secs(60);
/// File attributes are not cached: sizes change with every commit (as LiteFS).
const ATTR_TIMEOUT: Duration = Duration::ZERO;
/// How long the kernel may cache a backing file's attributes, or the absence of a name, when
/// this node is the primary: then every change to those files arrives through this kernel
/// (writes, truncates, creates, unlinks), which keeps its cached size and dentries right, so
/// SQLite's per-transaction `fstat` and hot-journal `access` cost no request. Virtual files
/// (`-pos`, `.lag`) and every file on a replica (the daemon changes them behind the kernel's
/// back) keep `ATTR_TIMEOUT`, and failed lookups are not cached there.
const PRIMARY_CACHE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest read or write we accept in one request (the kernel never sends more than 1 MiB).
const IO_SIZE_MAX_BYTES: u32 = 4 << 20;

/// The largest request buffer a worker thread keeps between requests (READ and WRITE data).
/// SQLite writes a page or a frame header at a time and the kernel reads ahead at most 128
/// KiB by default, so 256 KiB serves nearly every request from the kept buffer, at most
/// 256 KiB resident per worker; a larger request gets a fresh one. A fresh zeroed buffer per
/// request showed in bulk inserts' profile as allocator page faults (~2 µs per 4 KiB on the
/// VM of docs/ARCHITECTURE.md §8) and 5–8 % more CPU in A/B runs.
const KEPT_REQUEST_BUFFER_BYTES_MAX: usize = 256 << 10;

thread_local! {
    static REQUEST_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `len` bytes: the calling worker's kept one when `len` fits, else a
/// fresh one. The bytes are whatever an earlier request left there, so `f` must use only
/// what it filled (a read's first `n` bytes, a write's whole request).
fn with_request_buffer<T>(len: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
    if len > KEPT_REQUEST_BUFFER_BYTES_MAX {
        return f(&mut vec![0u8; len]);
    }
    REQUEST_BUFFER.with(|kept| match kept.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0);
            }
            f(&mut buf[..len])
        }
        // Not reached (a worker serves one request at a time); never a panic if it were.
        Err(_) => f(&mut vec![0u8; len]),
    })
}

pub struct LitefsFs {
    store: Arc<Store>,
    names: SharedNames,
    uid: u32,
    gid: u32,
    /// Ask for `FUSE_POSIX_LOCKS` in INIT ([`MountOptions::posix_locks`]).
    posix_locks: bool,
    /// Where a WAL restart is announced, so its pages are read into the kernel's cache
    /// (`prime.rs`); none in unit tests.
    primer: Option<PrimeRequests>,
    stats: Arc<RequestStats>,
}

/// How the kernel caches an open backing file: its pages are kept (KEEP_CACHE), except a
/// rollback journal's, which are never cached. SQLite writes a journal in records of
/// 4 + page + 4 bytes, never page aligned, mostly to pages the kernel has not cached; through the page
/// cache each record's page is split into two WRITEs at the first page boundary (the kernel
/// ends a write at a partly written page that is not up to date). Direct I/O sends each of
/// SQLite's writes as one. Every open of the journal is direct, readers' too: a page cached by
/// a reader's open could miss a writer's direct write (the kernel drops overlapping pages
/// after a direct write only on recent kernels), and a stale header read from the cache
/// decides whether a crashed writer's journal is rolled back. It costs a READ per hot
/// journal check where the journal persists (PERSIST mode).
fn cache_options(kind: FileKind) -> OpenOptions {
    if kind == FileKind::Journal {
        OpenOptions::DIRECT_IO
    } else {
        OpenOptions::KEEP_CACHE
    }
}

/// The pid reported to `F_GETLK` for a conflicting lock. LiteFS does not know which process
/// holds a lock and Go LiteFS sends −1; `fuse_file_lock.pid` is unsigned, and the kernel
/// translates any pid it cannot find (0 and 0xFFFF_FFFF alike) to 0, so 0 is what callers see
/// either way.
const CONFLICT_PID: u32 = 0;

/// `l_type` of a lock request as the kernel passes it in `fuse_file_lock.type`.
fn lock_kind(lock_type: u32) -> Option<LockKind> {
    match i32::try_from(lock_type).ok()? {
        libc::F_RDLCK => Some(LockKind::Read),
        libc::F_WRLCK => Some(LockKind::Write),
        libc::F_UNLCK => Some(LockKind::Unlock),
        _ => None,
    }
}

fn lock_type_code(kind: LockKind) -> u32 {
    let code = match kind {
        LockKind::Read => libc::F_RDLCK,
        LockKind::Write => libc::F_WRLCK,
        LockKind::Unlock => libc::F_UNLCK,
    };
    code as u32
}

/// The thread a request comes from, as the kernel names it in the mount's pid namespace (0
/// outside it): the store tells SQLite's commit fsync from another's by it.
fn caller_tid(ctx: &Context) -> u32 {
    u32::try_from(ctx.pid).unwrap_or(0)
}

fn zeroed_stat() -> stat64 {
    // SAFETY: `stat64` is a plain C struct of integers; all-zero bytes is a valid value.
    unsafe { std::mem::zeroed() }
}

fn cstr_name(name: &CStr) -> io::Result<&str> {
    name.to_str().map_err(|_| errno(libc::ENOENT))
}

impl LitefsFs {
    /// A drop removed the database's `-journal`, `-wal` and `-shm` behind the kernel, which
    /// keeps their names (and `-shm`'s attributes, while SQLite has it mapped) for the entry
    /// timeout: it is told to forget them. From another thread, after this UNLINK is
    /// answered: the kernel holds the root directory's lock until then, and a notification
    /// about a name in it waits for that lock. One short thread per drop (drops are rare).
    fn forget_companions_later(&self, db_name: &str) {
        let store = self.store.clone();
        let name = db_name.to_string();
        let spawned = std::thread::Builder::new()
            .name("litefs-drop".into())
            .spawn(move || {
                for kind in [FileKind::Journal, FileKind::Wal, FileKind::Shm] {
                    store
                        .invalidate_hook()
                        .send(Invalidation::Entry { db: &name, kind });
                }
            });
        if let Err(e) = spawned {
            eprintln!(
                "litefs: database {db_name:?} dropped; its -wal and -shm may show through the mount \
                 for up to a minute (no thread to tell the kernel: {e})"
            );
        }
    }

    pub fn new(store: Arc<Store>, options: &MountOptions) -> LitefsFs {
        // SAFETY: getuid/getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let fs = LitefsFs {
            store,
            names: SharedNames::default(),
            uid,
            gid,
            posix_locks: options.posix_locks,
            primer: None,
            stats: Arc::new(RequestStats::default()),
        };
        for db in fs.store.dbs() {
            fs.index_of(db.name());
        }
        fs
    }

    /// Announce WAL writes to `primer` (the mount's `prime::Primer`).
    pub fn set_primer(&mut self, primer: PrimeRequests) {
        self.primer = Some(primer);
    }

    /// The name table, for the [`super::notify::Notifier`] of this mount.
    pub fn names(&self) -> SharedNames {
        self.names.clone()
    }

    /// The request counters the transport fills in (shared with [`super::Mount`]).
    pub fn stats(&self) -> Arc<RequestStats> {
        self.stats.clone()
    }

    /// Spec §3.3: on a replica the root is `0555` and databases `0444` (write bits dropped).
    fn writable_mode(&self, mode: u32) -> u32 {
        if self.store.is_writable() {
            mode
        } else {
            mode & 0o555
        }
    }

    /// The database and lock file a lock request on `inode` goes to, or the errno for files
    /// whose locks LiteFS does not arbitrate (spec §3.3 "locks" column).
    fn lock_target(&self, inode: u64) -> io::Result<(Arc<Db>, LockFile)> {
        if split_db_inode(inode).is_none() {
            // Root directory, `.lag`, `.primary`.
            return Err(errno(LOCK_NOT_IMPLEMENTED));
        }
        match self.db_of_inode(inode)? {
            (db, DbNode::File(FileKind::Database)) => Ok((db, LockFile::Db)),
            (db, DbNode::File(FileKind::Shm)) => Ok((db, LockFile::Shm)),
            (_, DbNode::File(FileKind::Journal | FileKind::Wal)) => Err(errno(LOCK_NOT_SUPPORTED)),
            // `-lock` (HALT, spec §5: not implemented yet) and `-pos`.
            (_, DbNode::Pos | DbNode::Lock) => Err(errno(LOCK_NOT_IMPLEMENTED)),
        }
    }

    /// [`Self::lock_target`] for a request with a range: `-lock` has one lock, HALT on byte
    /// 72 (spec §5); any other range there is `EINVAL`, as upstream
    /// `TestFileSystem_HaltLock/ErrInvalidOffset`.
    fn lock_target_for(&self, inode: u64, lock: &FileLock) -> io::Result<(Arc<Db>, LockFile)> {
        if let Some((_, DbNode::Lock)) = split_db_inode(inode)
            && (lock.start, lock.end) != (HALT_BYTE, HALT_BYTE)
        {
            return Err(errno(libc::EINVAL));
        }
        self.lock_target(inode)
    }

    /// POSIX "close drops the process's locks on that file" (spec §3.3): the kernel does not
    /// send an unlock once `FUSE_POSIX_LOCKS` is negotiated, only `FLUSH` with the owner.
    /// On the `-shm` file, an owner still holding WAL_WRITE exclusively gets its WAL captured
    /// first (spec §3.7).
    fn drop_owner_locks(&self, inode: u64, owner: u64, op: &str) -> io::Result<()> {
        if !self.posix_locks {
            return Ok(());
        }
        let Ok((db, file)) = self.lock_target(inode) else {
            return Ok(());
        };
        let locks = db.locks();
        let must_capture = file == LockFile::Shm && locks.needs_wal_commit(owner, file.types());
        if must_capture && let Err(e) = db.capture_wal() {
            // Fail closed: keep WAL_WRITE so no checkpoint copies frames that have no LTX file
            // (the CKPT rule refuses while it is held) and no writer appends after them.
            // Restart recovery derives the missing LTX files from the WAL.
            let others: LockSet = file
                .types()
                .iter()
                .filter(|t| *t != LockType::Write)
                .collect();
            let _ = locks.set_lock(owner, others, LockKind::Unlock);
            return Err(to_io_error(op, e));
        }
        locks.release_all(owner, file);
        Ok(())
    }

    /// `SETLK` / `SETLKW` (spec §3.9).
    fn set_lock(&self, inode: u64, owner: u64, lock: &FileLock, flags: u32) -> io::Result<()> {
        if !self.posix_locks || flags & LK_FLOCK != 0 {
            // We negotiate neither flag without asking for it, so the kernel keeps these.
            return Err(errno(LOCK_NOT_IMPLEMENTED));
        }
        let (db, file) = self.lock_target_for(inode, lock)?;
        let kind = lock_kind(lock.lock_type).ok_or_else(|| errno(LOCK_BAD_TYPE))?;
        if kind != LockKind::Unlock && stats::serving_setlkw() {
            return Err(errno(LOCK_WOULD_WAIT));
        }
        let types = LockType::in_range(file, lock.start, lock.end);
        let locks = db.locks();
        if kind == LockKind::Unlock && locks.needs_wal_commit(owner, types) {
            // On failure the lock stays held (SQLite sees SQLITE_IOERR_UNLOCK): releasing it
            // would let a checkpoint copy frames that have no LTX file.
            db.capture_wal()
                .map_err(|e| to_io_error("capture WAL before WAL_WRITE unlock", e))?;
        }
        locks
            .set_lock(owner, types, kind)
            .map_err(|e| lock_errno(&e))
    }

    /// The stable index of a database name, assigned on first sight.
    fn index_of(&self, name: &str) -> u32 {
        if let Some(&i) = self
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .get(name)
        {
            return i;
        }
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        if let Some(&i) = names.by_name.get(name) {
            return i;
        }
        let i = names.by_index.len() as u32;
        names.by_index.push(name.to_string());
        names.by_name.insert(name.to_string(), i);
        i
    }

    fn db_of_inode(&self, inode: u64) -> io::Result<(Arc<Db>, DbNode)> {
        let (index, node) = split_db_inode(inode).ok_or_else(|| errno(libc::ENOENT))?;
        let name = {
            let names = self.names.read().unwrap_or_else(|p| p.into_inner());
            names
                .by_index
                .get(index as usize)
                .cloned()
                .ok_or_else(|| errno(libc::ENOENT))?
        };
        let db = self.store.db(&name).ok_or_else(|| errno(libc::ENOENT))?;
        Ok((db, node))
    }

    fn stat(&self, inode: u64, mode: u32, size: u64, mtime_ms: i64) -> stat64 {
        let mut st = zeroed_stat();
        st.st_ino = inode;
        st.st_mode = mode;
        st.st_nlink = 1;
        st.st_uid = self.uid;
        st.st_gid = self.gid;
        st.st_size = size as i64;
        st.st_blksize = 4096;
        st.st_blocks = size.div_ceil(512) as i64;
        st.st_mtime = mtime_ms.div_euclid(1000);
        st.st_mtime_nsec = mtime_ms.rem_euclid(1000) * 1_000_000;
        st.st_ctime = st.st_mtime;
        st.st_atime = st.st_mtime;
        st
    }

    fn attr(&self, inode: u64) -> io::Result<stat64> {
        match inode {
            ROOT_INODE => Ok(self.stat(inode, libc::S_IFDIR | self.writable_mode(0o777), 0, 0)),
            LAG_INODE => {
                // mtime: now on the primary, the epoch before initial replication, else the
                // primary's last timestamp (spec §3.3).
                let mtime_ms = match self.store.role().primary_timestamp_ms() {
                    0 => now_ms(),
                    t => t.max(0),
                };
                Ok(self.stat(inode, libc::S_IFREG | 0o444, 11, mtime_ms))
            }
            PRIMARY_INODE => {
                let info = self.store.role().primary_info();
                let info = info.ok_or_else(|| errno(libc::ENOENT))?;
                let size = info.hostname.len() as u64 + 1;
                Ok(self.stat(inode, libc::S_IFREG | 0o444, size, now_ms()))
            }
            _ => {
                let (db, node) = self.db_of_inode(inode)?;
                match node {
                    DbNode::File(kind) => {
                        let md = db.metadata(kind).map_err(|e| to_io_error("getattr", e))?;
                        let mtime_ms = md.mtime() * 1000 + md.mtime_nsec() / 1_000_000;
                        let mode = if kind == FileKind::Database {
                            self.writable_mode(0o666)
                        } else {
                            0o666
                        };
                        Ok(self.stat(inode, libc::S_IFREG | mode, md.len(), mtime_ms))
                    }
                    DbNode::Pos => {
                        Ok(self.stat(inode, libc::S_IFREG | 0o666, 34, db.pos_timestamp_ms()))
                    }
                    DbNode::Lock => Ok(self.stat(inode, libc::S_IFREG | 0o444, 0, 0)),
                }
            }
        }
    }

    fn entry(&self, inode: u64) -> io::Result<Entry> {
        Ok(Entry {
            inode,
            generation: 0,
            attr: self.attr(inode)?,
            attr_flags: 0,
            attr_timeout: self.attr_timeout(inode),
            entry_timeout: ENTRY_TIMEOUT,
        })
    }

    /// See [`PRIMARY_CACHE_TIMEOUT`].
    fn attr_timeout(&self, inode: u64) -> Duration {
        match split_db_inode(inode) {
            Some((_, DbNode::File(_))) if self.store.is_writable() => PRIMARY_CACHE_TIMEOUT,
            _ if inode == ROOT_INODE => ENTRY_TIMEOUT,
            _ => ATTR_TIMEOUT,
        }
    }

    /// `base` plus, with kernel-local locks, FOPEN_NOFLUSH: there a FLUSH carries nothing for
    /// us (the kernel drops the locks itself), and skipping it keeps every close from waiting
    /// on the daemon. That matters for the daemon's own descriptions on the mount
    /// (`kernel_locks.rs` keeps them open): a close at exit — `kill -9` included — would
    /// otherwise send a FLUSH the kernel waits for without interruption while no worker is
    /// left to answer. Kernels before 5.16 ignore the bit; they learn from our ENOSYS reply
    /// to the first FLUSH instead.
    fn open_options(&self, base: OpenOptions) -> OpenOptions {
        if self.posix_locks {
            return base;
        }
        // SAFETY: `from_bits_unchecked` only keeps a bit the `bitflags` type does not name;
        // the value is a plain `u32` sent to the kernel as `fuse_open_out.open_flags`.
        unsafe { OpenOptions::from_bits_unchecked(base.bits() | FOPEN_NOFLUSH) }
    }

    /// A failed lookup: on the primary the kernel may remember that the name does not exist
    /// (inode 0 is a negative entry); it learns of a later create because the create passes
    /// through it.
    fn not_found(&self) -> io::Result<Entry> {
        if !self.store.is_writable() {
            return Err(errno(libc::ENOENT));
        }
        Ok(Entry {
            inode: 0,
            generation: 0,
            attr: zeroed_stat(),
            attr_flags: 0,
            attr_timeout: Duration::ZERO,
            entry_timeout: PRIMARY_CACHE_TIMEOUT,
        })
    }

    /// The bytes of a virtual file.
    fn virtual_content(&self, inode: u64) -> io::Result<Vec<u8>> {
        match inode {
            // Lag in milliseconds, MaxInt32 before initial replication (spec §8.5).
            LAG_INODE => Ok(format!("{:+010}\n", self.store.role().lag_file_ms()).into_bytes()),
            PRIMARY_INODE => match self.store.role().primary_info() {
                Some(info) => Ok(format!("{}\n", info.hostname).into_bytes()),
                None => Err(errno(libc::ENOENT)),
            },
            _ => match self.db_of_inode(inode)? {
                (db, DbNode::Pos) => Ok(db.pos_text().into_bytes()),
                (_, DbNode::Lock) => Ok(Vec::new()),
                _ => Err(errno(libc::EINVAL)),
            },
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl FileSystem for LitefsFs {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        let mut want = FsOptions::BIG_WRITES
            | FsOptions::MAX_PAGES
            | FsOptions::PARALLEL_DIROPS
            | FsOptions::ASYNC_READ;
        // The kernel leaves clearing setuid/setgid bits on write, truncate and chown to us —
        // there are none: modes are not stored — instead of asking for the file's
        // attributes before each chown (SQLite's fchown of every new journal, as root).
        if capable.contains(FsOptions::HANDLE_KILLPRIV_V2) {
            want |= FsOptions::HANDLE_KILLPRIV_V2;
        }
        if self.posix_locks {
            if !capable.contains(FsOptions::POSIX_LOCKS) {
                // Without it the kernel keeps locks local and WAL_WRITE unlocks are invisible;
                // commits are still captured at the commit frame, so serve rather than fail.
                eprintln!("litefs: kernel does not offer FUSE_POSIX_LOCKS; locks stay local");
            }
            want |= FsOptions::POSIX_LOCKS;
        }
        Ok(want)
    }

    fn lookup(&self, _ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        if parent != ROOT_INODE {
            return Err(errno(libc::ENOENT));
        }
        let name = cstr_name(name)?;
        if name == ".lag" {
            return self.entry(LAG_INODE);
        }
        if name == ".primary" {
            if self.store.role().primary_info().is_none() {
                return Err(errno(libc::ENOENT));
            }
            return self.entry(PRIMARY_INODE);
        }
        let (db_name, node) = parse_name(name);
        if self.store.db(db_name).is_none() {
            return self.not_found();
        }
        match self.entry(db_inode(self.index_of(db_name), node)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.not_found(),
            other => other,
        }
    }

    fn getattr(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        Ok((self.attr(inode)?, self.attr_timeout(inode)))
    }

    fn setattr(
        &self,
        _ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        if valid.contains(SetattrValid::SIZE) {
            let (db, node) = self.db_of_inode(inode)?;
            let DbNode::File(kind) = node else {
                return Err(errno(libc::EPERM));
            };
            // `ftruncate` carries its descriptor's handle; `truncate(2)` by name has none.
            db.truncate_opened(kind, handle, attr.st_size as u64)
                .map_err(|e| to_io_error("truncate", e))?;
        }
        // Mode, owner and times are not stored (every file shows the daemon's owner, as
        // LiteFS); SQLite's fchown of a new journal as root must still succeed.
        Ok((self.attr(inode)?, self.attr_timeout(inode)))
    }

    fn unlink(&self, _ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        if parent != ROOT_INODE {
            return Err(errno(libc::ENOENT));
        }
        let (db_name, node) = parse_name(cstr_name(name)?);
        let db = self.store.db(db_name).ok_or_else(|| errno(libc::ENOENT))?;
        match node {
            DbNode::File(kind) => {
                db.unlink(kind).map_err(|e| to_io_error("unlink", e))?;
                if kind == FileKind::Database {
                    self.forget_companions_later(db_name);
                }
                Ok(())
            }
            DbNode::Pos | DbNode::Lock => Err(errno(libc::ENOSYS)),
        }
    }

    fn open(
        &self,
        _ctx: &Context,
        inode: u64,
        flags: u32,
        _fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        match inode {
            LAG_INODE | PRIMARY_INODE => {
                Ok((Some(0), self.open_options(OpenOptions::DIRECT_IO), None))
            }
            ROOT_INODE => Err(errno(libc::EISDIR)),
            _ => match self.db_of_inode(inode)? {
                (db, DbNode::File(kind)) => {
                    let write = flags as i32 & libc::O_ACCMODE != libc::O_RDONLY;
                    let handle = db
                        .open_file(kind, write)
                        .map_err(|e| open_errno("open", e))?;
                    Ok((Some(handle), self.open_options(cache_options(kind)), None))
                }
                // Virtual files change behind the kernel's back: never cache their pages.
                _ => Ok((Some(0), self.open_options(OpenOptions::DIRECT_IO), None)),
            },
        }
    }

    fn create(
        &self,
        _ctx: &Context,
        parent: u64,
        name: &CStr,
        _args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        if parent != ROOT_INODE {
            return Err(errno(libc::ENOENT));
        }
        let name = cstr_name(name)?;
        let (db_name, node) = parse_name(name);
        let handle = match node {
            DbNode::File(FileKind::Database) => {
                self.store
                    .create_db(db_name)
                    .map_err(|e| to_io_error("create", e))?
                    .1
            }
            DbNode::File(kind) => {
                let db = self.store.db(db_name).ok_or_else(|| errno(libc::ENOENT))?;
                db.create(kind).map_err(|e| to_io_error("create", e))?
            }
            DbNode::Pos | DbNode::Lock => return Err(errno(libc::ENOSYS)),
        };
        let entry = self.entry(db_inode(self.index_of(db_name), node))?;
        let options = match node {
            DbNode::File(kind) => cache_options(kind),
            _ => OpenOptions::KEEP_CACHE,
        };
        Ok((entry, Some(handle), self.open_options(options), None))
    }

    fn read(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        _lock_owner: Option<u64>,
        _flags: u32,
    ) -> io::Result<usize> {
        let size = size.min(IO_SIZE_MAX_BYTES) as usize;
        if let Ok((db, DbNode::File(kind))) = self.db_of_inode(inode) {
            return with_request_buffer(size, |buf| {
                let n = db
                    .read(kind, offset, buf)
                    .map_err(|e| to_io_error("read", e))?;
                w.write_all(&buf[..n])?;
                Ok(n)
            });
        }
        let content = self.virtual_content(inode)?;
        let start = (offset as usize).min(content.len());
        let end = start.saturating_add(size).min(content.len());
        w.write_all(&content[start..end])?;
        Ok(end - start)
    }

    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        _lock_owner: Option<u64>,
        _delayed_write: bool,
        _flags: u32,
        _fuse_flags: u32,
    ) -> io::Result<usize> {
        if size > IO_SIZE_MAX_BYTES {
            return Err(errno(libc::EINVAL));
        }
        let (db, node) = self.db_of_inode(inode)?;
        let DbNode::File(kind) = node else {
            return Err(errno(if node == DbNode::Lock {
                libc::EIO
            } else {
                libc::ENOSYS
            }));
        };
        with_request_buffer(size as usize, |buf| {
            r.read_exact(buf)?;
            db.write_opened(kind, Some(handle), caller_tid(ctx), offset, buf)
                .map_err(|e| to_io_error("write", e))
        })?;
        if kind == FileKind::Wal
            && let Some(primer) = &self.primer
        {
            let end = offset + u64::from(size);
            primer.wal_written(&db, offset, end, db.wal_txn_bytes(end));
        }
        Ok(size as usize)
    }

    fn flush(&self, _ctx: &Context, inode: u64, _handle: u64, lock_owner: u64) -> io::Result<()> {
        // Only reached on kernels older than 5.16 in kernel-local mode (see `open_options`).
        if !self.posix_locks {
            // The kernel keeps the locks and drops them on close itself.
            return Err(errno(NOT_NEEDED_STOP_ASKING));
        }
        self.drop_owner_locks(inode, lock_owner, "flush")
    }

    fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, _handle: u64) -> io::Result<()> {
        match self.db_of_inode(inode) {
            Ok((db, DbNode::File(kind))) => db
                .fsync_from(kind, datasync, caller_tid(ctx))
                .map_err(|e| to_io_error("fsync", e)),
            _ => Ok(()),
        }
    }

    fn release(
        &self,
        _ctx: &Context,
        inode: u64,
        _flags: u32,
        _handle: u64,
        _flush: bool,
        _flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        // fuse-backend-rs passes an owner only with RELEASE_FLUSH or RELEASE_FLOCK_UNLOCK;
        // the latter names the open file description, the owner of OFD locks on it.
        if let Some(owner) = lock_owner {
            self.stats.record_release_with_owner();
            self.drop_owner_locks(inode, owner, "release")?;
        }
        Ok(())
    }

    fn getlk(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: u64,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<FileLock> {
        if !self.posix_locks || flags & LK_FLOCK != 0 {
            return Err(errno(LOCK_NOT_IMPLEMENTED));
        }
        let (db, file) = self.lock_target_for(inode, &lock)?;
        let kind = lock_kind(lock.lock_type).ok_or_else(|| errno(LOCK_BAD_TYPE))?;
        let types = LockType::in_range(file, lock.start, lock.end);
        // The reply keeps the request's range: LiteFS does not track which bytes conflict.
        let reply = match db.locks().get_lock(owner, types, kind) {
            Some(conflict) => FileLock {
                lock_type: lock_type_code(conflict.kind),
                pid: CONFLICT_PID,
                ..lock
            },
            None => FileLock {
                lock_type: lock_type_code(LockKind::Unlock),
                ..lock
            },
        };
        Ok(reply)
    }

    fn setlk(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: u64,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        // fuse-backend-rs 0.14 also routes SETLKW here; `set_lock` tells them apart.
        self.set_lock(inode, owner, &lock, flags)
    }

    fn setlkw(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: u64,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        // Not called by fuse-backend-rs 0.14 (see `setlk`); kept correct should it ever be.
        let kind = lock_kind(lock.lock_type).ok_or_else(|| errno(LOCK_BAD_TYPE))?;
        if kind == LockKind::Unlock {
            return self.set_lock(inode, owner, &lock, flags);
        }
        self.lock_target(inode)?;
        Err(errno(LOCK_WOULD_WAIT))
    }

    fn statfs(&self, _ctx: &Context, _inode: u64) -> io::Result<statvfs64> {
        let path = CString::new(self.store.data_dir().as_os_str().as_encoded_bytes())
            .map_err(|_| errno(libc::EINVAL))?;
        // SAFETY: all-zero is a valid `statvfs64` (plain integers).
        let mut st: statvfs64 = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a NUL-terminated string and `st` a valid, writable struct.
        if unsafe { libc::statvfs64(path.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st)
    }

    fn opendir(
        &self,
        _ctx: &Context,
        inode: u64,
        _flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        if inode != ROOT_INODE {
            return Err(errno(libc::ENOTDIR));
        }
        // Not ENOSYS (which would save OPENDIR and RELEASEDIR): without an OPENDIR reply the
        // kernel caches the listing (FOPEN_CACHE_DIR) until the root's mtime changes, and
        // the root's entries change behind its back (replicated databases, `.primary`).
        Ok((Some(0), OpenOptions::KEEP_CACHE))
    }

    fn readdir(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: u64,
        _size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        if inode != ROOT_INODE {
            return Err(errno(libc::ENOTDIR));
        }
        // Spec §3.2 order: `.lag`, then per database sorted by name.
        let mut names: Vec<(u64, String)> = vec![(LAG_INODE, ".lag".into())];
        if self.store.role().primary_info().is_some() {
            names.push((PRIMARY_INODE, ".primary".into()));
        }
        for db in self.store.dbs() {
            let index = self.index_of(db.name());
            if db.page_count() > 0 || db.exists(FileKind::Database) {
                names.push((
                    db_inode(index, DbNode::File(FileKind::Database)),
                    db.name().to_string(),
                ));
            }
            names.push((db_inode(index, DbNode::Pos), format!("{}-pos", db.name())));
            for kind in [FileKind::Journal, FileKind::Shm, FileKind::Wal] {
                if db.exists(kind) {
                    let node = DbNode::File(kind);
                    names.push((
                        db_inode(index, node),
                        format!("{}{}", db.name(), node.suffix()),
                    ));
                }
            }
        }
        for (i, (ino, name)) in names.iter().enumerate().skip(offset as usize) {
            let added = add_entry(DirEntry {
                ino: *ino,
                offset: i as u64 + 1,
                type_: libc::DT_REG as u32,
                name: name.as_bytes(),
            })?;
            if added == 0 {
                break;
            }
        }
        Ok(())
    }

    fn releasedir(&self, _ctx: &Context, _inode: u64, _flags: u32, _handle: u64) -> io::Result<()> {
        Ok(())
    }

    /// SQLite syncs the directory after creating a rollback journal. The mount's root is not
    /// a directory on disk: every file's backing copy lives under `data.dir`, whose entries
    /// the daemon makes durable where it needs them (LTX files; §4.1 of docs/ARCHITECTURE.md).
    fn fsyncdir(
        &self,
        _ctx: &Context,
        _inode: u64,
        _datasync: bool,
        _handle: u64,
    ) -> io::Result<()> {
        Err(errno(NOT_NEEDED_STOP_ASKING))
    }

    /// Everything is allowed (as LiteFS, which mounts without `default_permissions` too):
    /// ENOSYS tells the kernel so once, instead of an ACCESS request per `access(2)`.
    fn access(&self, _ctx: &Context, _inode: u64, _mask: u32) -> io::Result<()> {
        Err(errno(NOT_NEEDED_STOP_ASKING))
    }

    fn mkdir(
        &self,
        _ctx: &Context,
        _parent: u64,
        _name: &CStr,
        _mode: u32,
        _umask: u32,
    ) -> io::Result<Entry> {
        Err(errno(libc::EPERM))
    }

    fn rename(
        &self,
        _ctx: &Context,
        _olddir: u64,
        _oldname: &CStr,
        _newdir: u64,
        _newname: &CStr,
        _flags: u32,
    ) -> io::Result<()> {
        Err(errno(libc::EIO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_types_round_trip_and_reject_unknown() {
        for kind in [LockKind::Read, LockKind::Write, LockKind::Unlock] {
            assert_eq!(lock_kind(lock_type_code(kind)), Some(kind));
        }
        assert_eq!(lock_kind(3), None);
        assert_eq!(lock_kind(u32::MAX), None);
    }
}
