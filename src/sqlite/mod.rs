//! Readers for SQLite's own files: the database header, the WAL and the rollback journal.
//! Pure code over byte slices and `Read`; fixtures in the tests are written by real SQLite.
