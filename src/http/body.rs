//! Bodies as bounded channels of byte blocks. The response body of `/stream` and `/export` is
//! fed by the stream task (frames) and by blocking tasks that read LTX files, snapshots and
//! export spools; the request body of `/import` is read by a blocking task. The channel bound
//! is the back-pressure: a slow peer blocks its own producer, nobody else.

use super::metrics::Metrics;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Blocks queued per stream before the producer waits (each ≤ [`BLOCK_LEN_MAX`]): at most
/// 4 MiB in flight per replica on top of HTTP/2's own window.
pub const STREAM_QUEUE_DEPTH_MAX: usize = 16;

/// Bytes gathered by a [`ChannelWriter`] before they are queued as one block.
pub const BLOCK_LEN_MAX: usize = 256 * 1024;

/// An item of the body channel; an `Err` resets the HTTP/2 stream so the replica sees a
/// failure (and reconnects) rather than a clean end.
pub type Block = io::Result<Bytes>;

/// Response body reading blocks from the channel until every sender is gone.
pub struct ChannelBody {
    rx: mpsc::Receiver<Block>,
    /// The exact length when known in advance (sent as `Content-Length`).
    len_bytes: Option<u64>,
}

impl ChannelBody {
    pub fn new(rx: mpsc::Receiver<Block>) -> ChannelBody {
        ChannelBody {
            rx,
            len_bytes: None,
        }
    }

    /// A body of exactly `len_bytes` (hyper fails the response if the blocks differ).
    pub fn with_len(rx: mpsc::Receiver<Block>, len_bytes: u64) -> ChannelBody {
        ChannelBody {
            rx,
            len_bytes: Some(len_bytes),
        }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|block| block.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        self.len_bytes
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// A request body as a blocking [`Read`] for a blocking task: blocks arrive through a bounded
/// channel from the task reading the body. Ends (`Ok(0)`) when the sender is dropped.
/// Must not be used on a runtime thread (it uses `blocking_recv`).
pub struct ChannelReader {
    rx: mpsc::Receiver<Block>,
    current: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Block>) -> ChannelReader {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// A `Write` for blocking tasks: gathers bytes into blocks and queues them, waiting while the
/// queue is full. Fails with `BrokenPipe` once the replica is gone (the body was dropped).
/// Must not be used on a runtime thread (it uses `blocking_send`).
pub struct ChannelWriter {
    tx: mpsc::Sender<Block>,
    buf: Vec<u8>,
    metrics: Arc<Metrics>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Block>, metrics: Arc<Metrics>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(BLOCK_LEN_MAX),
            metrics,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK_LEN_MAX));
        let len_bytes = block.len() as u64;
        self.tx
            .blocking_send(Ok(Bytes::from(block)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "replica disconnected"))?;
        self.metrics.add_sent_bytes(len_bytes);
        Ok(())
    }
}

impl ChannelWriter {
    /// Queues `e` so the response body fails (hyper resets the stream) instead of ending.
    pub fn abort(&mut self, e: io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BLOCK_LEN_MAX {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
