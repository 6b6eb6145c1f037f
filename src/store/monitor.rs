//! The store's background loop: LTX retention every `data.retention-monitor-interval`
//! (spec §2.3 step 4, §8.1).

use super::Store;
use crate::stop::Stop;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Runs until dropped.
pub struct RetentionMonitor {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

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
        let stop = Arc::new(Stop::default());
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("litefs-retention".into())
                .spawn(move || {
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
                })?
        };
        Ok(Some(RetentionMonitor {
            stop,
            thread: Some(thread),
        }))
    }
}

impl Drop for RetentionMonitor {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
