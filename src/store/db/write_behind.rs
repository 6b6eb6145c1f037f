//! A file written by a helper thread while the caller goes on: for large files whose bytes
//! the caller also has work to do on (a replica verifies a received LTX file as it spools it),
//! so that the kernel's copy into the page cache (~0.5 ms per MiB here) overlaps that work
//! instead of following it. (Tried for a capture's LTX file too: its publish did not come
//! sooner — 105–108 ms after COMMIT for 100 MB, against 104–122 without — so captures
//! write in place.)
//!
//! Bytes are gathered into [`CHUNK_BYTES`] buffers; a full one goes to the thread over a
//! channel of [`CHUNKS_IN_FLIGHT_MAX`], and comes back empty for reuse. At most
//! [`CHUNKS_MAX`] are ever allocated: the caller waits for one to come back rather than
//! allocating another, so memory stays at a few chunks whatever the file size, a slow disk
//! holds the caller back rather than growing a queue, and no chunk is fresh memory the kernel
//! must zero on first touch (a new 1 MiB buffer per hand-over had cost ~6 ms of a 100 MB
//! receive here in page clearing). A write error ends the thread; the caller's next hand-over, or
//! [`WriteBehind::finish`], returns it.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Bytes handed to the thread at a time.
pub(super) const CHUNK_BYTES: usize = 1 << 20;
/// Full chunks waiting for the thread; the caller blocks beyond.
const CHUNKS_IN_FLIGHT_MAX: usize = 2;
/// Chunks allocated at most: the one being filled, those in flight, the one being written.
const CHUNKS_MAX: usize = CHUNKS_IN_FLIGHT_MAX + 2;

pub(super) struct WriteBehind {
    chunk: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    /// Chunks allocated so far (at most [`CHUNKS_MAX`]).
    allocated: usize,
    thread: Option<JoinHandle<io::Result<File>>>,
}

impl WriteBehind {
    /// Starts the thread that writes `file` from its current offset.
    pub(super) fn new(mut file: File) -> io::Result<WriteBehind> {
        let (full, full_rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT_MAX);
        // Room for every chunk there can be, so returning one never blocks the thread.
        let (empty_tx, empty) = sync_channel::<Vec<u8>>(CHUNKS_MAX);
        let thread = std::thread::Builder::new()
            .name("litefs-write".into())
            .spawn(move || {
                for mut chunk in full_rx {
                    file.write_all(&chunk)?;
                    chunk.clear();
                    let _ = empty_tx.try_send(chunk);
                }
                Ok(file)
            })?;
        Ok(WriteBehind {
            chunk: Vec::with_capacity(CHUNK_BYTES),
            full: Some(full),
            empty,
            allocated: 1,
            thread: Some(thread),
        })
    }

    /// Hands the current chunk to the thread and takes an empty one; if the thread has
    /// stopped (a write failed), returns its error.
    fn hand_over(&mut self) -> io::Result<()> {
        self.send_chunk()?;
        self.chunk = match self.empty.try_recv() {
            Ok(empty) => empty,
            Err(_) if self.allocated < CHUNKS_MAX => {
                self.allocated += 1;
                Vec::with_capacity(CHUNK_BYTES)
            }
            // None allocatable and none returned: with four chunks and at most three away
            // from the caller (two queued, one being written) a running thread always has
            // one back, so this wait is reached only once it stopped — its dropped sender
            // ends it, and its error is returned.
            Err(_) => match self.empty.recv() {
                Ok(empty) => empty,
                Err(_) => return Err(self.stopped()),
            },
        };
        Ok(())
    }

    /// Sends the current chunk to the thread.
    fn send_chunk(&mut self) -> io::Result<()> {
        let chunk = std::mem::take(&mut self.chunk);
        if self
            .full
            .as_ref()
            .is_some_and(|full| full.send(chunk).is_ok())
        {
            return Ok(());
        }
        Err(self.stopped())
    }

    /// The thread's error once it has stopped before the file was complete.
    fn stopped(&mut self) -> io::Error {
        self.join().err().unwrap_or_else(|| {
            io::Error::other("the write-behind thread stopped before the file was complete")
        })
    }

    /// Ends the thread and returns the file or its first error.
    fn join(&mut self) -> io::Result<File> {
        self.full = None;
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the write-behind thread panicked"))),
            None => Err(io::Error::other("the write-behind thread already ended")),
        }
    }

    /// Writes what is left and returns the file once every byte is in it.
    pub(super) fn finish(mut self) -> io::Result<File> {
        if !self.chunk.is_empty() {
            self.send_chunk()?;
        }
        self.join()
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK_BYTES - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK_BYTES {
            self.hand_over()?;
        }
        Ok(n)
    }

    /// Nothing to do: the bytes reach the file by [`WriteBehind::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        // Unfinished (an error on the caller's side): let the thread end.
        self.full = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn every_byte_arrives_in_order_whatever_the_write_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = WriteBehind::new(File::create(&path).unwrap()).unwrap();
        let mut rng = crate::testkit::XorShift64(3);
        let data = rng.bytes(5 * CHUNK_BYTES + 12_345);
        let mut at = 0;
        for size in [1, 4096, 100_000, CHUNK_BYTES + 7, 3].into_iter().cycle() {
            if at == data.len() {
                break;
            }
            let end = (at + size).min(data.len());
            w.write_all(&data[at..end]).unwrap();
            at = end;
        }
        let mut file = w.finish().unwrap();
        let mut back = Vec::new();
        let _ = &mut file;
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "the file differs from what was written");
    }

    #[test]
    fn a_failed_write_is_reported() {
        // A descriptor opened read-only: the thread's first write fails.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        let mut w = WriteBehind::new(File::open(&path).unwrap()).unwrap();
        let chunk = vec![7u8; CHUNK_BYTES];
        let mut failed = None;
        for _ in 0..CHUNKS_IN_FLIGHT_MAX + 3 {
            if let Err(e) = w.write_all(&chunk) {
                failed = Some(e);
                break;
            }
        }
        let error = match failed {
            Some(e) => e,
            None => w.finish().unwrap_err(),
        };
        assert_eq!(error.raw_os_error(), Some(libc::EBADF), "{error}");
    }
}
