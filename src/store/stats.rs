//! Measurements the store takes for `GET /metrics` (spec §8.4 and ours): a fixed-bucket
//! histogram of commit durations, and the hook through which the mount lends its FUSE request
//! counters (the store must not know FUSE types, so it only sees named counts).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the commit-duration buckets, in microseconds: 50 µs to 10 s, roughly
/// 1-2.5-5 per decade. A commit is two fsyncs and an encode, so most land in 100 µs..50 ms.
pub const COMMIT_DURATION_BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

const BUCKET_COUNT: usize = COMMIT_DURATION_BOUNDS_US.len() + 1;

/// A lock-free histogram with the fixed bounds [`COMMIT_DURATION_BOUNDS_US`] (plus +Inf).
/// Recording is two relaxed atomic adds; a snapshot taken during a recording may see its
/// bucket but not yet its sum, which a scrape tolerates (the count is derived from the
/// buckets, so `_count` always equals the `+Inf` bucket).
#[derive(Debug)]
pub struct Histogram {
    /// Non-cumulative: `buckets[i]` counts durations in `(bound[i-1], bound[i]]`; the last
    /// slot counts those above every bound.
    buckets: [AtomicU64; BUCKET_COUNT],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

/// A point-in-time copy of a [`Histogram`], in the shape Prometheus wants.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations ≤ it), ascending; the `+Inf` bucket is `count`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn record(&self, duration: Duration) {
        let us = duration.as_micros();
        let slot = COMMIT_DURATION_BOUNDS_US
            .iter()
            .position(|&bound| us <= u128::from(bound))
            .unwrap_or(BUCKET_COUNT - 1);
        // Relaxed: the counters order no other memory; readers only report them.
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(COMMIT_DURATION_BOUNDS_US.len());
        for (slot, &bound_us) in COMMIT_DURATION_BOUNDS_US.iter().enumerate() {
            cumulative += self.buckets[slot].load(Ordering::Relaxed);
            buckets.push((bound_us as f64 / 1e6, cumulative));
        }
        cumulative += self.buckets[BUCKET_COUNT - 1].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count: cumulative,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Requests served by a front end of the store (the FUSE mount), per operation.
pub trait RequestCountSource: Send + Sync {
    /// (operation name, requests served) for every operation served at least once, in a
    /// stable order. Names are lower-case identifiers (`write`, `setlk`).
    fn request_counts(&self) -> Vec<(&'static str, u64)>;
}

/// Where the mount registers its request counters while it is mounted (a store outlives its
/// mounts in tests); empty otherwise.
#[derive(Default)]
pub struct RequestCountsHook(RwLock<Option<Arc<dyn RequestCountSource>>>);

impl RequestCountsHook {
    /// Registers `source`, replacing any earlier one.
    pub fn set(&self, source: Arc<dyn RequestCountSource>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// Removes the source (at unmount).
    pub fn clear(&self) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The registered source's counts; `None` when nothing is mounted.
    pub fn counts(&self) -> Option<Vec<(&'static str, u64)>> {
        let source = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        source.map(|s| s.request_counts())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        for us in [0, 50, 51, 999, 1_000, 20_000_000] {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 6);
        let le = |bound_s: f64| {
            s.buckets
                .iter()
                .find(|(b, _)| *b == bound_s)
                .map(|&(_, n)| n)
        };
        // ≤ 50 µs: 0 and 50; ≤ 100 µs adds 51; ≤ 1 ms adds 999 and 1000; 20 s is only in +Inf.
        assert_eq!(le(0.00005), Some(2), "{s:?}");
        assert_eq!(le(0.0001), Some(3), "{s:?}");
        assert_eq!(le(0.0005), Some(3), "{s:?}");
        assert_eq!(le(0.001), Some(5), "{s:?}");
        assert_eq!(le(10.0), Some(5), "{s:?}");
        let want_sum = (50 + 51 + 999 + 1_000 + 20_000_000) as f64 / 1e6;
        assert!(
            (s.sum_seconds - want_sum).abs() < 1e-9,
            "sum {} <> {want_sum}",
            s.sum_seconds
        );
        assert!(
            s.buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        );
    }

    struct Fixed;
    impl RequestCountSource for Fixed {
        fn request_counts(&self) -> Vec<(&'static str, u64)> {
            vec![("write", 3)]
        }
    }

    #[test]
    fn request_counts_come_from_the_registered_source_only() {
        let hook = RequestCountsHook::default();
        assert_eq!(hook.counts(), None);
        hook.set(Arc::new(Fixed));
        assert_eq!(hook.counts(), Some(vec![("write", 3)]));
        hook.clear();
        assert_eq!(hook.counts(), None);
    }
}
