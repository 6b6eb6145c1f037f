//! The FUSE layer: translates kernel requests into store calls (spec §3). The file-system
//! logic (`fs`) is separate from the transport (`session`, /dev/fuse today).

pub mod errno;
pub mod fs;
pub mod node;
pub mod notify;
pub mod session;
pub mod stats;

pub use fs::LitefsFs;
pub use session::{Mount, MountOptions};
pub use stats::{RequestCounts, RequestStats};
