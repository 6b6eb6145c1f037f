//! A stop request a background thread can sleep on: its waits end early when stopping.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// A background thread and its stop request. Dropping it asks the thread to stop and waits
/// for it at most `join_wait` (a thread blocked in a read notices later; shutdown must not be
/// held hostage to it).
pub struct Worker {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
    join_wait: Duration,
}

impl Worker {
    /// Runs `body` on a thread named `name`; `body` should return soon after its `Stop` is set.
    pub fn spawn(
        name: &str,
        join_wait: Duration,
        body: impl FnOnce(&Stop) + Send + 'static,
    ) -> io::Result<Worker> {
        let stop = Arc::new(Stop::default());
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || body(&stop))?
        };
        Ok(Worker {
            stop,
            thread: Some(thread),
            join_wait,
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.set();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + self.join_wait;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
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

    #[test]
    fn dropping_a_worker_stops_it() {
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = super::Worker::spawn("test-worker", Duration::from_secs(5), move |stop| {
            while !stop.sleep(Duration::from_secs(30)) {}
            tx.send(()).unwrap();
        })
        .unwrap();
        let started = Instant::now();
        drop(worker);
        rx.try_recv()
            .expect("the worker finished before drop returned");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
