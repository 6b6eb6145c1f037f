//! The capture thread: writes the LTX files of the WAL commits that databases queued
//! (`db/deferred.rs`), so that a FUSE worker answers SQLite's commit-frame write before the
//! file exists and SQLite's next transaction runs while it is written.
//!
//! One thread per store, started by the mount. It is woken with the database that has work
//! (a weak reference: a database dropped meanwhile publishes its own queue as it closes)
//! and writes that database's queue until it is empty. Wakes beyond
//! [`CAPTURE_WAKES_MAX`] are refused; the database then captures before answering, as it
//! does without this thread.

use super::Store;
use super::db::Db;
use super::shared::Shared;
use std::io;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;

/// Wakes waiting for the capture thread. A database sends one only when its queue was idle
/// (one that another thread drained may send again before the first is served).
const CAPTURE_WAKES_MAX: usize = 1024;

/// Where a database wakes the capture thread; empty when no thread runs (not mounted, or
/// a store opened by a tool or a test), and then every capture happens before the reply.
#[derive(Default)]
pub struct CaptureHook(Mutex<Option<SyncSender<Weak<Db>>>>);

impl CaptureHook {
    /// Hands `db` to the capture thread; false if there is none, or it has too much queued.
    pub(crate) fn wake(&self, db: Weak<Db>) -> bool {
        match &*self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(tx) => tx.try_send(db).is_ok(),
            None => false,
        }
    }
}

/// The running capture thread; stopping it (or dropping this) lets it finish what it was
/// handed, then joins it.
pub struct CaptureThread {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl Store {
    /// Starts the store's capture thread (the mount does, once its workers can write).
    pub fn start_capture_thread(&self) -> io::Result<CaptureThread> {
        let (tx, rx) = sync_channel::<Weak<Db>>(CAPTURE_WAKES_MAX);
        let handle = std::thread::Builder::new()
            .name("litefs-capture".into())
            .spawn(move || {
                // Ends when the hook's sender is dropped and every wake is served.
                for db in rx {
                    if let Some(db) = db.upgrade() {
                        db.run_deferred();
                    }
                }
            })?;
        let shared = self.shared.clone();
        *shared
            .capture
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        Ok(CaptureThread {
            shared,
            handle: Some(handle),
        })
    }
}

impl CaptureThread {
    /// No more wakes are taken (databases capture before replying again); the thread
    /// finishes the queues it was handed and exits.
    pub fn stop(&mut self) {
        self.shared
            .capture
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for CaptureThread {
    fn drop(&mut self) {
        self.stop();
    }
}
