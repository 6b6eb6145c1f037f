//! The store's background loop: LTX retention every `data.retention-monitor-interval`
//! (spec §2.3 step 4, §8.1).

use super::Store;
use crate::stop::Worker;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
