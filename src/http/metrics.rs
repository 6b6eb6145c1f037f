//! Counters of the HTTP server, rendered with the store's gauges by `GET /metrics` (spec §8.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Frame kinds counted by `litefs_http_frame_send_count` (`type` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FrameKind {
    Ltx,
    Snapshot,
    Hwm,
    Ready,
    Heartbeat,
    End,
    DropDb,
}

impl FrameKind {
    fn label(self) -> &'static str {
        match self {
            FrameKind::Ltx => "ltx",
            FrameKind::Snapshot => "ltx:snapshot",
            FrameKind::Hwm => "hwm",
            FrameKind::Ready => "ready",
            FrameKind::Heartbeat => "heartbeat",
            FrameKind::End => "end",
            FrameKind::DropDb => "dropdb",
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    streams_active: AtomicI64,
    sent_bytes: AtomicU64,
    /// (db, kind) → frames sent; db is empty for frames about no database. Upstream registers
    /// this counter but never increments it (spec §4.4 step 7); we count.
    frames: Mutex<BTreeMap<(String, FrameKind), u64>>,
    /// Native transport: bytes written from user-space buffers (frame headers, lengths) and
    /// bytes sent by `sendfile` from the page cache (LTX payloads).
    native_written_bytes: AtomicU64,
    native_sendfile_bytes: AtomicU64,
}

impl Metrics {
    pub fn add_sent_bytes(&self, n_bytes: u64) {
        self.sent_bytes.fetch_add(n_bytes, Ordering::Relaxed);
    }

    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes.load(Ordering::Relaxed)
    }

    pub fn add_native_written_bytes(&self, n_bytes: u64) {
        self.native_written_bytes
            .fetch_add(n_bytes, Ordering::Relaxed);
    }

    pub fn add_native_sendfile_bytes(&self, n_bytes: u64) {
        self.native_sendfile_bytes
            .fetch_add(n_bytes, Ordering::Relaxed);
    }

    /// (bytes written from user space, bytes sent by `sendfile`) on native streams.
    pub fn native_bytes(&self) -> (u64, u64) {
        (
            self.native_written_bytes.load(Ordering::Relaxed),
            self.native_sendfile_bytes.load(Ordering::Relaxed),
        )
    }

    pub fn add_frame(&self, db: &str, kind: FrameKind) {
        let mut frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        *frames.entry((db.to_string(), kind)).or_default() += 1;
    }

    pub fn frame_count(&self, db: &str, kind: FrameKind) -> u64 {
        let frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        frames.get(&(db.to_string(), kind)).copied().unwrap_or(0)
    }

    pub fn stream_started(&self) {
        self.streams_active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_ended(&self) {
        self.streams_active.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn streams_active(&self) -> i64 {
        self.streams_active.load(Ordering::Relaxed)
    }

    /// Appends this server's series in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP litefs_http_stream_count Active /stream handlers."
        );
        let _ = writeln!(out, "# TYPE litefs_http_stream_count gauge");
        let _ = writeln!(out, "litefs_http_stream_count {}", self.streams_active());
        let _ = writeln!(
            out,
            "# HELP litefs_http_stream_send_bytes Bytes queued to replicas by /stream handlers."
        );
        let _ = writeln!(out, "# TYPE litefs_http_stream_send_bytes counter");
        let _ = writeln!(out, "litefs_http_stream_send_bytes {}", self.sent_bytes());
        let (written, sendfile) = self.native_bytes();
        let _ = writeln!(
            out,
            "# HELP litefs_stream_native_send_bytes Bytes sent on native streams, by path: write (copied from user space) or sendfile (page cache to socket)."
        );
        let _ = writeln!(out, "# TYPE litefs_stream_native_send_bytes counter");
        let _ = writeln!(
            out,
            "litefs_stream_native_send_bytes{{path=\"write\"}} {written}"
        );
        let _ = writeln!(
            out,
            "litefs_stream_native_send_bytes{{path=\"sendfile\"}} {sendfile}"
        );
        let _ = writeln!(
            out,
            "# HELP litefs_http_frame_send_count Frames sent by /stream handlers."
        );
        let _ = writeln!(out, "# TYPE litefs_http_frame_send_count counter");
        let frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        for ((db, kind), n) in frames.iter() {
            let _ = writeln!(
                out,
                "litefs_http_frame_send_count{{db=\"{}\",type=\"{}\"}} {n}",
                escape_label(db),
                kind.label()
            );
        }
    }
}

/// Escapes a Prometheus label value (backslash, quote, newline).
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
