//! The `litefs` command line. Only `main.rs` and this module exit the process or use `anyhow`.
