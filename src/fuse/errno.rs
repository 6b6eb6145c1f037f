//! The one place store errors become errno values (spec §3.4).

use crate::store::Error;
use std::io;

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
        Error::InvalidWrite { .. }
        | Error::Ltx { .. }
        | Error::Corrupt { .. }
        | Error::Sqlite(_) => libc::EIO,
    };
    if errno != libc::ENOENT && errno != libc::EEXIST {
        eprintln!("litefs: {op}: {err}");
    }
    io::Error::from_raw_os_error(errno)
}

pub fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}
