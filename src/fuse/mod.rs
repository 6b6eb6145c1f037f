//! The FUSE layer: translates kernel requests into store calls (spec §3). The file-system
//! logic (`fs`) is separate from the transports (`session`: /dev/fuse and `uring`:
//! FUSE-over-io_uring).

pub mod errno;
pub mod fs;
pub mod kernel_locks;
pub mod node;
pub mod notify;
pub mod prime;
pub mod session;
pub mod stats;
pub mod uring;
pub mod watchdog;

pub use fs::LitefsFs;
pub use session::{ActiveTransport, Mount, MountOptions};
pub use stats::{RequestCounts, RequestStats};
