//! Kernel cache invalidation (spec §3.12): FUSE notification messages written to a clone of
//! the session's /dev/fuse descriptor.
//!
//! A notification is one `write(2)` of `fuse_out_header` (`unique` 0, `error` = the notify
//! code) and its payload; the kernel processes it synchronously. It may write back dirty pages
//! of the file first, which arrive as ordinary requests on the worker threads, so it must never
//! be sent from a worker, nor while holding a lock those requests need (the store sends after
//! releasing a database's state lock).

use super::node::{DbNode, ROOT_INODE, db_inode};
use crate::store::Invalidation;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, RwLock};

/// `FUSE_NOTIFY_INVAL_INODE` and `FUSE_NOTIFY_INVAL_ENTRY` (include/uapi/linux/fuse.h).
const NOTIFY_INVAL_INODE: i32 = 2;
const NOTIFY_INVAL_ENTRY: i32 = 3;
const OUT_HEADER_SIZE_BYTES: usize = 16;

/// Database names by index, so inodes can be derived from names and back (shared by the file
/// system and the notifier).
#[derive(Default)]
pub struct Names {
    pub by_index: Vec<String>,
    pub by_name: HashMap<String, u32>,
}

pub type SharedNames = Arc<RwLock<Names>>;

/// Sends invalidations for the mount it was created for.
pub struct Notifier {
    dev: File,
    names: SharedNames,
}

fn out_header(len: usize, code: i32) -> [u8; OUT_HEADER_SIZE_BYTES] {
    let mut h = [0u8; OUT_HEADER_SIZE_BYTES];
    h[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    h[4..8].copy_from_slice(&code.to_ne_bytes());
    // unique (bytes 8..16) stays 0: this is a notification, not a reply.
    h
}

/// `fuse_notify_inval_inode_out`: data of `ino` in `offset..offset+len` (`len` 0: to the end;
/// a negative offset would mean "attributes only").
pub fn inval_inode_message(ino: u64, offset: i64, len: i64) -> Vec<u8> {
    let total = OUT_HEADER_SIZE_BYTES + 24;
    let mut m = out_header(total, NOTIFY_INVAL_INODE).to_vec();
    m.extend_from_slice(&ino.to_ne_bytes());
    m.extend_from_slice(&offset.to_ne_bytes());
    m.extend_from_slice(&len.to_ne_bytes());
    m
}

/// `fuse_notify_inval_entry_out` followed by the name and its NUL.
pub fn inval_entry_message(parent: u64, name: &str) -> Vec<u8> {
    let total = OUT_HEADER_SIZE_BYTES + 16 + name.len() + 1;
    let mut m = out_header(total, NOTIFY_INVAL_ENTRY).to_vec();
    m.extend_from_slice(&parent.to_ne_bytes());
    m.extend_from_slice(&(name.len() as u32).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // flags
    m.extend_from_slice(name.as_bytes());
    m.push(0);
    m
}

impl Notifier {
    pub fn new(dev: File, names: SharedNames) -> Notifier {
        Notifier { dev, names }
    }

    fn index(&self, db: &str) -> Option<u32> {
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        names.by_name.get(db).copied()
    }

    pub fn send(&self, invalidation: Invalidation<'_>) {
        let message = match invalidation {
            Invalidation::Data {
                db,
                kind,
                offset,
                len,
            } => {
                // A database the kernel never looked up has nothing cached.
                let Some(index) = self.index(db) else {
                    return;
                };
                let ino = db_inode(index, DbNode::File(kind));
                inval_inode_message(ino, offset as i64, len as i64)
            }
            Invalidation::Entry { db, kind } => {
                let name = format!("{db}{}", DbNode::File(kind).suffix());
                inval_entry_message(ROOT_INODE, &name)
            }
            Invalidation::Created { db } => {
                for node in DbNode::ALL {
                    let name = format!("{db}{}", node.suffix());
                    self.write_logged(&inval_entry_message(ROOT_INODE, &name), &invalidation);
                }
                return;
            }
        };
        self.write_logged(&message, &invalidation);
    }

    /// Sends one notification; a failure other than ENOENT is logged.
    fn write_logged(&self, message: &[u8], invalidation: &Invalidation<'_>) {
        if let Err(e) = self.write(message) {
            // ENOENT: the kernel had nothing cached for it. Anything else is logged: a reader
            // could see stale pages until it reopens the file.
            if e.raw_os_error() != Some(libc::ENOENT) {
                eprintln!("litefs: kernel cache invalidation ({invalidation:?}): {e}");
            }
        }
    }

    fn write(&self, message: &[u8]) -> io::Result<()> {
        // SAFETY: `message` is a valid buffer of `message.len()` bytes for the whole call and
        // the descriptor is owned by `self.dev`, open for the life of `self`.
        let n =
            unsafe { libc::write(self.dev.as_raw_fd(), message.as_ptr().cast(), message.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inval_inode_layout() {
        let m = inval_inode_message(0x10, 4096, 8192);
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 40);
        assert_eq!(i32::from_ne_bytes(m[4..8].try_into().unwrap()), 2);
        assert_eq!(u64::from_ne_bytes(m[8..16].try_into().unwrap()), 0);
        assert_eq!(u64::from_ne_bytes(m[16..24].try_into().unwrap()), 0x10);
        assert_eq!(i64::from_ne_bytes(m[24..32].try_into().unwrap()), 4096);
        assert_eq!(i64::from_ne_bytes(m[32..40].try_into().unwrap()), 8192);
    }

    #[test]
    fn inval_entry_layout() {
        let m = inval_entry_message(1, "db-wal");
        assert_eq!(m.len(), 16 + 16 + 7);
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(i32::from_ne_bytes(m[4..8].try_into().unwrap()), 3);
        assert_eq!(u64::from_ne_bytes(m[16..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(m[24..28].try_into().unwrap()), 6);
        assert_eq!(&m[32..], b"db-wal\0");
    }
}
