//! Change notifications: "database `name` has a new position" (spec §4.4 step 2, §8.4
//! `litefs_subscriber_count`). Publishers are commit paths running under a database's state
//! mutex on FUSE workers, so publishing must never block or allocate much: a bounded
//! `tokio::sync::broadcast` channel drops the oldest notifications for a slow subscriber, who
//! then sees `RecvError::Lagged` and must treat every database as changed.

use std::sync::Arc;
use tokio::sync::broadcast;

/// Notifications kept per subscriber before the oldest are dropped (as LiteFS's 1024-event
/// buffers). A stream handler drains them in one wake-up, so this is only reached when a
/// handler is stalled; lagging then costs it one extra pass over all databases.
pub const CHANGE_QUEUE_DEPTH_MAX: usize = 1024;

/// The store's change fan-out. Cheap to clone into every database.
#[derive(Debug)]
pub struct Changes {
    tx: broadcast::Sender<Arc<str>>,
}

impl Default for Changes {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(CHANGE_QUEUE_DEPTH_MAX);
        Changes { tx }
    }
}

impl Changes {
    /// Announces that `name`'s position moved. Never blocks; with no subscriber it is a no-op.
    pub fn publish(&self, name: &str) {
        let _ = self.tx.send(Arc::from(name));
    }

    /// A receiver of every notification published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// Subscribers currently connected (stream handlers).
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    #[test]
    fn slow_subscriber_lags_instead_of_blocking_the_publisher() {
        let changes = Changes::default();
        let mut rx = changes.subscribe();
        assert_eq!(changes.subscriber_count(), 1);
        for _ in 0..CHANGE_QUEUE_DEPTH_MAX + 10 {
            changes.publish("db");
        }
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Lagged(10))));
        assert_eq!(rx.try_recv().unwrap().as_ref(), "db");
        drop(rx);
        changes.publish("db"); // no subscriber: fine
        assert_eq!(changes.subscriber_count(), 0);
    }
}
