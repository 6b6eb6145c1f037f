//! The LTX v1 file format (spec §1), byte-compatible with superfly/ltx v0.3.14.
