//! The store: databases on disk, their positions, and the daemon's record of SQLite's locks.
//!
//! No FUSE or HTTP types live here (see `docs/ARCHITECTURE.md` §3): the FUSE adapter turns a
//! request into typed calls (a lock owner, a set of lock types, a lock kind) and maps the
//! returned errors to errno values in one place.
//!
//! - [`lock`]: per-database lock words, per-owner guard sets, the CKPT rule and the internal
//!   write lock LiteFS takes for itself (spec §3.8, §3.9, §3.16).

pub mod lock;
