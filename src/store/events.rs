//! The store's event feed (spec §8.3, `GET /events`): one [`Event`] per transaction that
//! changes a database on this node — local commits and applied LTX files alike — and one per
//! change of this node's place in the cluster.
//!
//! Separate from the change feed ([`super::Changes`]): that one wakes `/stream` handlers with
//! a database name and counts as `litefs_subscriber_count`; this one carries the whole event
//! for observers. Publishers run on FUSE workers under a database's state mutex, so publishing
//! never blocks: a bounded `tokio::sync::broadcast` keeps the newest [`EVENT_QUEUE_DEPTH_MAX`]
//! events per subscriber, and one that falls further behind sees `RecvError::Lagged` (LiteFS
//! then drops the subscriber; `/events` ends its response).

use crate::types::{Checksum, TxId};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Events kept per subscriber before the oldest are dropped: LiteFS's per-subscriber channel
/// buffer (spec §4.3 `/events`).
pub const EVENT_QUEUE_DEPTH_MAX: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A database moved to a new position: a local commit (journal, WAL, drop) or an applied
    /// LTX file (replication, import). The fields are the LTX file's.
    Tx {
        db: Arc<str>,
        txid: TxId,
        post_apply_checksum: Checksum,
        page_size: u32,
        /// Database size in pages after the transaction; 0 for a drop.
        commit: u32,
        /// The LTX header's timestamp (milliseconds since the epoch, the writer's clock).
        timestamp_ms: i64,
    },
    /// This node became or stopped being the primary, or connected to or disconnected from
    /// a primary. `hostname` is the primary's this node follows; empty when none (and while
    /// primary, as LiteFS).
    PrimaryChange { is_primary: bool, hostname: String },
}

/// The store's event fan-out.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events::with_capacity(EVENT_QUEUE_DEPTH_MAX)
    }
}

impl Events {
    /// A feed keeping `capacity` events per subscriber (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Events { tx }
    }

    /// Sends `event` to every subscriber. Never blocks; with no subscriber it is a no-op.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Connected event subscribers (`/events` responses).
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    fn tx(txid: u64) -> Event {
        Event::Tx {
            db: Arc::from("db"),
            txid: TxId(txid),
            post_apply_checksum: Checksum(0x8000_0000_0000_0001),
            page_size: 4096,
            commit: 2,
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn events_arrive_in_order_and_a_slow_subscriber_lags() {
        let events = Events::default();
        let mut rx = events.subscribe();
        assert_eq!(events.subscriber_count(), 1);
        for txid in 1..=(EVENT_QUEUE_DEPTH_MAX as u64 + 3) {
            events.publish(tx(txid));
        }
        let lagged = rx.try_recv();
        assert!(
            matches!(lagged, Err(TryRecvError::Lagged(3))),
            "after {} events into a {EVENT_QUEUE_DEPTH_MAX}-deep feed: {lagged:?}",
            EVENT_QUEUE_DEPTH_MAX + 3
        );
        // The oldest kept event is the 4th.
        assert_eq!(rx.try_recv().unwrap(), tx(4));
        drop(rx);
        events.publish(tx(1)); // no subscriber: fine
        assert_eq!(events.subscriber_count(), 0);
    }
}
