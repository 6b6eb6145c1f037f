//! The replication stream of `POST /stream` (spec §4.4): position map, frames and the chunked
//! encoding of LTX payloads. Pure code over `Read`/`Write`.
