//! The store's background loops: LTX retention every `data.retention-monitor-interval`
//! (spec §2.3 step 4, §8.1), and the expiry of halt locks (spec §5.5).

use super::Store;
use crate::stop::Worker;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Runs until dropped.
pub struct RetentionMonitor {
    /// Held for its `Drop`.
    _worker: Worker,
}

/// Longest wait for the loop at shutdown (one pass over the databases).
const JOIN_WAIT_MS: u64 = 3000;

impl RetentionMonitor {
    /// Every `interval`, removes LTX files older than `retention` (never the newest of a
    /// database). Not started when either is zero (spec: 0 disables).
    pub fn start(
        store: Arc<Store>,
        interval: Duration,
        retention: Duration,
    ) -> io::Result<Option<RetentionMonitor>> {
        if interval.is_zero() || retention.is_zero() {
            return Ok(None);
        }
        let join_wait = Duration::from_millis(JOIN_WAIT_MS);
        let worker = Worker::spawn("litefs-retention", join_wait, move |stop| {
            while !stop.sleep(interval) {
                let Some(cutoff) = SystemTime::now().checked_sub(retention) else {
                    continue;
                };
                for db in store.dbs() {
                    if let Err(e) = db.enforce_retention(cutoff) {
                        eprintln!("litefs: retention: {e}");
                    }
                }
            }
        })?;
        Ok(Some(RetentionMonitor { _worker: worker }))
    }
}

/// Releases halt locks that lapsed, every [`HALT_EXPIRY_CHECK_INTERVAL_MS`]; dropped, releases
/// every halt lock still held (after the HTTP server stopped, so none is taken after): their
/// write locks hold files open on the mount.
///
/// [`HALT_EXPIRY_CHECK_INTERVAL_MS`]: super::HALT_EXPIRY_CHECK_INTERVAL_MS
pub struct HaltMonitor {
    store: Arc<Store>,
    worker: Option<Worker>,
}

impl HaltMonitor {
    pub fn start(store: Arc<Store>) -> io::Result<HaltMonitor> {
        let interval = Duration::from_millis(super::HALT_EXPIRY_CHECK_INTERVAL_MS);
        let join_wait = Duration::from_millis(JOIN_WAIT_MS);
        let looked_at = store.clone();
        let worker = Worker::spawn("litefs-halt", join_wait, move |stop| {
            while !stop.sleep(interval) {
                for db in looked_at.dbs() {
                    if let Some(lock) = db.expire_halt_lock(Instant::now()) {
                        eprintln!(
                            "litefs: database {:?}: halt lock {} expired after {} ms",
                            db.name(),
                            lock.id,
                            super::HALT_LOCK_TTL_MS
                        );
                    }
                }
            }
        })?;
        Ok(HaltMonitor {
            store,
            worker: Some(worker),
        })
    }
}

impl Drop for HaltMonitor {
    fn drop(&mut self) {
        drop(self.worker.take());
        for db in self.store.dbs() {
            db.close_halt_locks();
        }
    }
}
