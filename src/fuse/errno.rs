//! The one place store errors become errno values (spec §3.4, §3.9).

use crate::store::Error;
use crate::store::lock::LockError;
use std::io;

/// A lock request on a file whose locks are not arbitrated by LiteFS at all: `-journal` and
/// `-wal` (spec §3.3 table: "not supported"). SQLite never locks these files.
pub const LOCK_NOT_SUPPORTED: i32 = libc::ENOTSUP;
/// A lock request on a node without lock support in this build: `-lock` (the HALT lock of
/// spec §5 is not implemented yet), `-pos`, `.lag`, the root directory.
pub const LOCK_NOT_IMPLEMENTED: i32 = libc::ENOSYS;
/// A blocking `SETLKW` on the database or `-shm` file: LiteFS never blocks in a lock request
/// (spec §3.9), and SQLite only uses non-blocking `F_SETLK`.
pub const LOCK_WOULD_WAIT: i32 = libc::ENOSYS;
/// A lock type that is none of `F_RDLCK`, `F_WRLCK`, `F_UNLCK` (the kernel never sends one).
pub const LOCK_BAD_TYPE: i32 = libc::EINVAL;

/// An operation that has nothing to do here, answered so that the kernel stops sending it
/// (it then succeeds locally): FLUSH without `FUSE_POSIX_LOCKS` (no locks to drop on close)
/// and FSYNCDIR (the mount's one directory is not a backing directory). Each was one
/// synchronous round trip per close or directory sync.
pub const NOT_NEEDED_STOP_ASKING: i32 = libc::ENOSYS;

/// Maps a refused lock request to the errno `fcntl` returns. No logging: contention is normal.
pub fn lock_errno(err: &LockError) -> io::Error {
    let code = match err {
        // SQLite maps EAGAIN from F_SETLK to SQLITE_BUSY.
        LockError::WouldBlock { .. } => libc::EAGAIN,
        // "No locks available": the owner cap of `LockTable` was reached.
        LockError::TooManyOwners { .. } => libc::ENOLCK,
        // Only the internal write lock times out; FUSE requests never wait.
        LockError::Timeout { .. } => libc::EAGAIN,
    };
    io::Error::from_raw_os_error(code)
}

/// Maps a store error to the errno SQLite will see, and logs what a user needs to know:
/// SQLite only reports "disk I/O error", so the reason must be in the daemon's log.
pub fn to_io_error(op: &str, err: Error) -> io::Error {
    let errno = match &err {
        Error::NotFound(_) => libc::ENOENT,
        Error::Exists(_) => libc::EEXIST,
        Error::ReadOnly => libc::EACCES,
        Error::Io { source, .. } => match source.kind() {
            io::ErrorKind::NotFound => libc::ENOENT,
            io::ErrorKind::AlreadyExists => libc::EEXIST,
            _ => source.raw_os_error().unwrap_or(libc::EIO),
        },
        // "Stale file handle": the descriptor belongs to a database since dropped.
        Error::Dropped { .. } => libc::ESTALE,
        // Internal lock timeouts never happen on a FUSE request's path today.
        Error::Lock { .. } => libc::EBUSY,
        Error::InvalidWrite { .. }
        | Error::Ltx { .. }
        | Error::Corrupt { .. }
        | Error::PositionMismatch { .. }
        | Error::Import { .. }
        | Error::Halt { .. }
        | Error::Stopping(_)
        | Error::Sqlite(_) => libc::EIO,
    };
    if errno != libc::ENOENT && errno != libc::EEXIST {
        eprintln!("litefs: {op}: {err}");
    }
    io::Error::from_raw_os_error(errno)
}

/// Maps a failed FUSE OPEN of a database's file: as [`to_io_error`], except that a backing
/// file that is gone is ESTALE. The kernel only sends OPEN for a name it believes exists, and
/// the daemon removes files behind it (a dropped database's `-wal`, `-shm` and `-journal`;
/// a replica's applied deletion): ESTALE makes the VFS retry the open once with a fresh
/// lookup, which finds the name missing, so SQLite's O_CREAT open then creates the file, and
/// the kernel takes its new size (dropping the old file's cached pages). ENOENT would fail
/// SQLite's open ("unable to open database file") for as long as the kernel keeps the name.
pub fn open_errno(op: &str, err: Error) -> io::Error {
    let e = to_io_error(op, err);
    if e.raw_os_error() == Some(libc::ENOENT) {
        return errno(libc::ESTALE);
    }
    e
}

pub fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Upstream `TestToErrno`: not-exist → ENOENT, read-only replica → EACCES, others as is.
    #[test]
    fn store_errors_map_to_errno() {
        let io = |kind| Error::Io {
            op: "open",
            path: "x".into(),
            source: io::Error::from(kind),
        };
        let raw = |code| Error::Io {
            op: "write",
            path: "x".into(),
            source: io::Error::from_raw_os_error(code),
        };
        let cases = [
            (Error::NotFound("db".into()), libc::ENOENT),
            (io(io::ErrorKind::NotFound), libc::ENOENT),
            (Error::Exists("db".into()), libc::EEXIST),
            (Error::ReadOnly, libc::EACCES),
            (raw(libc::ENOSPC), libc::ENOSPC),
            (raw(libc::EDQUOT), libc::EDQUOT),
            (
                Error::InvalidWrite {
                    db: "db".into(),
                    message: "x".into(),
                },
                libc::EIO,
            ),
            (
                Error::Corrupt {
                    db: "db".into(),
                    message: "x".into(),
                },
                libc::EIO,
            ),
        ];
        for (err, want) in cases {
            let text = err.to_string();
            assert_eq!(
                to_io_error("test", err).raw_os_error(),
                Some(want),
                "{text}"
            );
        }
        // An open of a file that is gone is ESTALE (retried by the VFS); others as above.
        assert_eq!(
            open_errno("open", io(io::ErrorKind::NotFound)).raw_os_error(),
            Some(libc::ESTALE)
        );
        assert_eq!(
            open_errno("open", Error::ReadOnly).raw_os_error(),
            Some(libc::EACCES)
        );
    }

    #[test]
    fn lock_errors_map_to_errno() {
        use crate::store::lock::LockType;
        let busy = LockError::WouldBlock {
            lock_type: LockType::ALL[0],
        };
        assert_eq!(lock_errno(&busy).raw_os_error(), Some(libc::EAGAIN));
        let full = LockError::TooManyOwners { owners_max: 1 };
        assert_eq!(lock_errno(&full).raw_os_error(), Some(libc::ENOLCK));
    }
}
