//! The LiteFS file system behind FUSE: names, attributes and the per-file behaviour of spec
//! §3.2–§3.3, translated into calls on the store. No replication or checksum logic here.

use super::errno::{errno, to_io_error};
use super::node::{
    DbNode, LAG_INODE, PRIMARY_INODE, ROOT_INODE, db_inode, parse_name, split_db_inode,
};
use crate::store::{Db, FileKind, Store};
use fuse_backend_rs::abi::fuse_abi::{
    CreateIn, FsOptions, OpenOptions, SetattrValid, stat64, statvfs64,
};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, ZeroCopyReader, ZeroCopyWriter,
};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may cache a name (bazil's default, as LiteFS).
const ENTRY_TIMEOUT: Duration = Duration::from_secs(60);
/// File attributes are not cached: sizes change with every commit (as LiteFS).
const ATTR_TIMEOUT: Duration = Duration::ZERO;
/// Largest read or write we accept in one request (the kernel never sends more than 1 MiB).
const IO_SIZE_MAX_BYTES: u32 = 4 << 20;

/// Database names by index, so inodes can be derived from names and back.
#[derive(Default)]
struct Names {
    by_index: Vec<String>,
    by_name: HashMap<String, u32>,
}

pub struct LitefsFs {
    store: Arc<Store>,
    names: RwLock<Names>,
    uid: u32,
    gid: u32,
}

fn zeroed_stat() -> stat64 {
    // SAFETY: `stat64` is a plain C struct of integers; all-zero bytes is a valid value.
    unsafe { std::mem::zeroed() }
}

fn cstr_name(name: &CStr) -> io::Result<&str> {
    name.to_str().map_err(|_| errno(libc::ENOENT))
}

impl LitefsFs {
    pub fn new(store: Arc<Store>) -> LitefsFs {
        // SAFETY: getuid/getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let fs = LitefsFs {
            store,
            names: RwLock::new(Names::default()),
            uid,
            gid,
        };
        for db in fs.store.dbs() {
            fs.index_of(db.name());
        }
        fs
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
            ROOT_INODE => Ok(self.stat(inode, libc::S_IFDIR | 0o777, 0, 0)),
            LAG_INODE => Ok(self.stat(inode, libc::S_IFREG | 0o444, 11, now_ms())),
            PRIMARY_INODE => Err(errno(libc::ENOENT)),
            _ => {
                let (db, node) = self.db_of_inode(inode)?;
                match node {
                    DbNode::File(kind) => {
                        let md = db.metadata(kind).map_err(|e| to_io_error("getattr", e))?;
                        let mtime_ms = md.mtime() * 1000 + md.mtime_nsec() / 1_000_000;
                        Ok(self.stat(inode, libc::S_IFREG | 0o666, md.len(), mtime_ms))
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
            attr_timeout: ATTR_TIMEOUT,
            entry_timeout: ENTRY_TIMEOUT,
        })
    }

    /// The bytes of a virtual file.
    fn virtual_content(&self, inode: u64) -> io::Result<Vec<u8>> {
        match inode {
            // Lag in milliseconds; a primary is never behind (spec §8.5).
            LAG_INODE => Ok(format!("{:+010}\n", 0).into_bytes()),
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

    fn init(&self, _capable: FsOptions) -> io::Result<FsOptions> {
        Ok(FsOptions::BIG_WRITES
            | FsOptions::MAX_PAGES
            | FsOptions::PARALLEL_DIROPS
            | FsOptions::ASYNC_READ)
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
            return Err(errno(libc::ENOENT));
        }
        let (db_name, node) = parse_name(name);
        if self.store.db(db_name).is_none() {
            return Err(errno(libc::ENOENT));
        }
        self.entry(db_inode(self.index_of(db_name), node))
    }

    fn getattr(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        let timeout = if inode == ROOT_INODE {
            ENTRY_TIMEOUT
        } else {
            ATTR_TIMEOUT
        };
        Ok((self.attr(inode)?, timeout))
    }

    fn setattr(
        &self,
        _ctx: &Context,
        inode: u64,
        attr: stat64,
        _handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        if valid.contains(SetattrValid::SIZE) {
            let (db, node) = self.db_of_inode(inode)?;
            let DbNode::File(kind) = node else {
                return Err(errno(libc::EPERM));
            };
            db.truncate(kind, attr.st_size as u64)
                .map_err(|e| to_io_error("truncate", e))?;
        }
        // Mode, owner and times are not stored (every file shows the daemon's owner, as
        // LiteFS); SQLite's fchown of a new journal as root must still succeed.
        Ok((self.attr(inode)?, ATTR_TIMEOUT))
    }

    fn unlink(&self, _ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        if parent != ROOT_INODE {
            return Err(errno(libc::ENOENT));
        }
        let (db_name, node) = parse_name(cstr_name(name)?);
        let db = self.store.db(db_name).ok_or_else(|| errno(libc::ENOENT))?;
        match node {
            DbNode::File(kind) => db.unlink(kind).map_err(|e| to_io_error("unlink", e)),
            DbNode::Pos | DbNode::Lock => Err(errno(libc::ENOSYS)),
        }
    }

    fn open(
        &self,
        _ctx: &Context,
        inode: u64,
        _flags: u32,
        _fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        match inode {
            LAG_INODE => Ok((Some(0), OpenOptions::DIRECT_IO, None)),
            ROOT_INODE => Err(errno(libc::EISDIR)),
            _ => match self.db_of_inode(inode)? {
                (db, DbNode::File(kind)) => {
                    db.open_file(kind).map_err(|e| to_io_error("open", e))?;
                    Ok((Some(0), OpenOptions::KEEP_CACHE, None))
                }
                // Virtual files change behind the kernel's back: never cache their pages.
                _ => Ok((Some(0), OpenOptions::DIRECT_IO, None)),
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
        match node {
            DbNode::File(FileKind::Database) => {
                self.store
                    .create_db(db_name)
                    .map_err(|e| to_io_error("create", e))?;
            }
            DbNode::File(kind) => {
                let db = self.store.db(db_name).ok_or_else(|| errno(libc::ENOENT))?;
                db.create(kind).map_err(|e| to_io_error("create", e))?;
            }
            DbNode::Pos | DbNode::Lock => return Err(errno(libc::ENOSYS)),
        }
        let entry = self.entry(db_inode(self.index_of(db_name), node))?;
        Ok((entry, Some(0), OpenOptions::KEEP_CACHE, None))
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
            let mut buf = vec![0u8; size];
            let n = db
                .read(kind, offset, &mut buf)
                .map_err(|e| to_io_error("read", e))?;
            w.write_all(&buf[..n])?;
            return Ok(n);
        }
        let content = self.virtual_content(inode)?;
        let start = (offset as usize).min(content.len());
        let end = start.saturating_add(size).min(content.len());
        w.write_all(&content[start..end])?;
        Ok(end - start)
    }

    fn write(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: u64,
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
        let mut buf = vec![0u8; size as usize];
        r.read_exact(&mut buf)?;
        db.write(kind, offset, &buf)
            .map_err(|e| to_io_error("write", e))?;
        Ok(buf.len())
    }

    fn flush(&self, _ctx: &Context, _inode: u64, _handle: u64, _lock_owner: u64) -> io::Result<()> {
        Ok(())
    }

    fn fsync(&self, _ctx: &Context, inode: u64, _datasync: bool, _handle: u64) -> io::Result<()> {
        match self.db_of_inode(inode) {
            Ok((db, DbNode::File(kind))) => db.fsync(kind).map_err(|e| to_io_error("fsync", e)),
            _ => Ok(()),
        }
    }

    fn release(
        &self,
        _ctx: &Context,
        _inode: u64,
        _flags: u32,
        _handle: u64,
        _flush: bool,
        _flock_release: bool,
        _lock_owner: Option<u64>,
    ) -> io::Result<()> {
        Ok(())
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

    fn fsyncdir(
        &self,
        _ctx: &Context,
        _inode: u64,
        _datasync: bool,
        _handle: u64,
    ) -> io::Result<()> {
        Ok(())
    }

    fn access(&self, _ctx: &Context, _inode: u64, _mask: u32) -> io::Result<()> {
        Ok(())
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
