//! LTX errors. Display texts match superfly/ltx v0.3.14 exactly (spec §1.3, §1.4, §1.6, §1.10,
//! §1.11) so parity tests and users see the same words as with Go LiteFS.

use crate::types::{Checksum, TxId};
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("invalid LTX file")]
    InvalidFile,

    // Header validation (§1.3), in the order they are checked.
    #[error("invalid version")]
    InvalidVersion,
    #[error("invalid flags: 0x{0:08x}")]
    InvalidFlags(u32),
    #[error("invalid page size: {0}")]
    InvalidPageSize(u32),
    #[error("minimum transaction id required")]
    MinTxIdRequired,
    #[error("maximum transaction id required")]
    MaxTxIdRequired,
    #[error("transaction ids out of order: ({0},{1})")]
    TxIdsOutOfOrder(u64, u64),
    #[error("wal offset cannot be negative: {0}")]
    WalOffsetNegative(i64),
    #[error("wal size cannot be negative: {0}")]
    WalSizeNegative(i64),
    #[error("wal offset required if salt exists")]
    WalOffsetRequiredBySalt,
    #[error("wal size required if salt exists")]
    WalSizeRequiredBySalt,
    #[error("wal size required if wal offset exists")]
    WalSizeRequiredByOffset,
    #[error("wal offset required if wal size exists")]
    WalOffsetRequiredBySize,
    #[error("pre-apply checksum must be zero on snapshots")]
    SnapshotPreApplyNotZero,
    #[error("pre-apply checksum required on non-snapshot files")]
    PreApplyRequired,
    #[error("invalid pre-apply checksum format")]
    InvalidPreApplyFormat,

    // Trailer validation (§1.6), encoder only.
    #[error("post-apply checksum required")]
    PostApplyRequired,
    #[error("invalid post-apply checksum format")]
    InvalidPostApplyFormat,
    #[error("file checksum required")]
    FileChecksumRequired,
    #[error("invalid file checksum format")]
    InvalidFileChecksumFormat,
    #[error("post-apply checksum must be empty for zero-length database")]
    PostApplyNotEmptyForZeroCommit,

    // Page rules enforced by the encoder (§1.4).
    #[error("page number required")]
    PageNumberRequired,
    #[error("page number {pgno} out-of-bounds for commit size {commit}")]
    PageOutOfBounds { pgno: u32, commit: u32 },
    #[error("invalid page buffer size: {got}, expecting {want}")]
    InvalidPageBufferSize { got: usize, want: u32 },
    #[error("cannot encode lock page: pgno={0}")]
    LockPage(u32),
    #[error("snapshot transaction file must start with page number 1")]
    SnapshotStart,
    #[error("nonsequential page numbers in snapshot transaction: {0},{1}")]
    SnapshotNonsequential(u32, u32),
    #[error("nonsequential page numbers in snapshot transaction (skip lock page): {0},{1}")]
    SnapshotNonsequentialLockPage(u32, u32),
    #[error("out-of-order page numbers: {0},{1}")]
    OutOfOrder(u32, u32),
    /// Ours, stricter than Go: a snapshot we write must hold every page up to Commit.
    #[error("snapshot transaction file ends at page {last_pgno}, expecting commit {commit}")]
    SnapshotIncomplete { last_pgno: u32, commit: u32 },
    #[error("ltx encoder closed")]
    EncoderClosed,

    // Decoder (§1.10).
    #[error("file checksum mismatch")]
    ChecksumMismatch {
        trailer: Checksum,
        calculated: Checksum,
    },
    #[error(
        "post-apply checksum in trailer ({trailer}) does not match calculated checksum ({calculated})"
    )]
    PostApplyMismatch {
        trailer: Checksum,
        calculated: Checksum,
    },
    #[error("expected lz4 end frame")]
    ExpectedLz4EndFrame,
    #[error("lz4: {0}")]
    Lz4(String),
    #[error("unexpected pgno while decoding page: read {read}, expected {expected}")]
    UnexpectedPgno { read: u32, expected: u32 },
    #[error("unexpected page {pgno} after commit {commit}")]
    PageAfterCommit { pgno: u32, commit: u32 },
    #[error("cannot decode non-snapshot LTX file to SQLite database")]
    NonSnapshot,

    // Compactor (§1.11).
    #[error("at least one input reader required")]
    InputRequired,
    #[error("input files have mismatched page sizes: {0} != {1}")]
    MismatchedPageSizes(u32, u32),
    #[error("non-contiguous transaction ids in input files: ({0},{1}) -> ({2},{3})")]
    NonContiguous(TxId, TxId, TxId, TxId),

    /// Wraps an error with where it happened, as Go's `fmt.Errorf("decode page %d: %w")`.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Wraps `self` with a context prefix.
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error, under any context wrappers.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            other => other,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
