//! A stop request a background thread can sleep on: its waits end early when stopping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Stop {
    flag: AtomicBool,
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl Stop {
    pub fn set(&self) {
        self.flag.store(true, Ordering::Release);
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Sleeps `duration` unless stopped first; returns whether stopped.
    pub fn sleep(&self, duration: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (stopped, _) = self
            .changed
            .wait_timeout_while(stopped, duration, |s| !*s)
            .unwrap_or_else(|p| p.into_inner());
        *stopped
    }
}

#[cfg(test)]
mod tests {
    use super::Stop;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn sleep_ends_at_stop() {
        let stop = Arc::new(Stop::default());
        assert!(!stop.sleep(Duration::from_millis(1)));
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            let started = Instant::now();
            (s.sleep(Duration::from_secs(30)), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(20));
        stop.set();
        let (stopped, waited) = t.join().unwrap();
        assert!(
            stopped && waited < Duration::from_secs(5),
            "waited {waited:?}"
        );
        assert!(stop.is_set() && stop.sleep(Duration::from_secs(30)));
    }
}
