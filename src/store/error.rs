//! Errors of the store. Each says which database and file, and what to do where it can.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("database {db:?}: {source}")]
    Ltx {
        db: String,
        #[source]
        source: crate::ltx::Error,
    },
    #[error(transparent)]
    Sqlite(#[from] crate::sqlite::Error),
    #[error("database {0:?} not found")]
    NotFound(String),
    #[error("database {0:?} already exists")]
    Exists(String),
    #[error("read only replica")]
    ReadOnly,
    /// A write SQLite would never issue; the text names the rule (spec §3.5).
    #[error("database {db:?}: {message}")]
    InvalidWrite { db: String, message: String },
    #[error("database {db:?}: {source}")]
    Lock {
        db: String,
        #[source]
        source: crate::store::lock::LockError,
    },
    /// A received LTX file does not continue this database's position (spec §4.4); the
    /// stream reconnects and the primary decides between the next file and a snapshot.
    #[error("position mismatch on db {db:?}: {local} <> {remote}")]
    PositionMismatch {
        db: String,
        local: crate::types::Pos,
        remote: crate::types::Pos,
    },
    /// An image given to `POST /import` that cannot be imported, or an I/O error while
    /// copying it; [`crate::ltx::ImageError::is_invalid_input`] tells the client's fault.
    #[error("database {db:?}: {source}")]
    Import {
        db: String,
        #[source]
        source: crate::ltx::ImageError,
    },
    #[error("database {db:?}: {message}")]
    Corrupt { db: String, message: String },
    /// A HALT lock or forwarded transaction refused (spec §5); the text says what to do.
    #[error("database {db:?}: {message}")]
    Halt { db: String, message: String },
    /// A fatal error was raised (a committed transaction could not be recorded): the process
    /// is going down and nothing more may change, or the LTX files and the database would
    /// disagree at the next start.
    #[error(
        "database {0:?}: litefs is stopping after a fatal error (see the message before); \
         nothing more is written. Restart it: recovery records what SQLite committed from the WAL"
    )]
    Stopping(String),
    #[error(
        "database {db:?} was dropped since this descriptor of its {file} file was opened \
         (it may exist again as a new database): the change is refused; reopen it"
    )]
    Dropped { db: String, file: &'static str },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Attaches an operation and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn io_context(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn io_context(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.into(),
            source,
        })
    }
}

impl Error {
    /// True when the underlying cause is "no such file".
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound(_) => true,
            Error::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}
