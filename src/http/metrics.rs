//! `GET /metrics` (spec §8.4): the store's series and the HTTP server's own counters in the
//! Prometheus text format (version 0.0.4). No Go/process collectors.
//!
//! Differences from LiteFS, on purpose: `litefs_db_ltx_count` and `litefs_db_ltx_bytes` are
//! counted from `ltx/` at scrape time (LiteFS keeps gauges that it increments per file and
//! sets to the *last* file's size, then resets at retention — neither is the directory's
//! real state); `litefs_http_frame_send_count` is incremented (LiteFS never does). Ours only:
//! `litefs_db_page_count`, `litefs_event_subscriber_count`, `litefs_commit_duration_seconds`,
//! `litefs_fuse_request_count`, `litefs_http_stream_send_bytes`,
//! `litefs_db_deferred_capture_count`, `litefs_db_early_commit_count`,
//! `litefs_stream_native_send_bytes`, `litefs_http_event_stream_count`.

use super::App;
use super::routes::{Body, error, with_type};
use crate::store::{FileKind, HistogramSnapshot};
use hyper::{Response, StatusCode};
use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Renders on the blocking pool: counting LTX files reads every database's `ltx/` directory.
pub(super) async fn handle(app: Arc<App>) -> Response<Body> {
    match tokio::task::spawn_blocking(move || render(&app)).await {
        Ok(text) => with_type("text/plain; version=0.0.4; charset=utf-8", text),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("render metrics: {e}"),
        ),
    }
}

/// Prometheus text: a `# HELP` and `# TYPE` line per family, then its samples.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// A sample; label values are escaped here.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape_label(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for &(le, n) in &h.buckets {
            self.sample(&bucket, &[("le", &le.to_string())], n);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count);
        self.sample(&format!("{name}_sum"), &[], h.sum_seconds);
        self.sample(&format!("{name}_count"), &[], h.count);
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Every series, store first, then the HTTP server's.
fn render(app: &App) -> String {
    let store = &app.store;
    let dbs = store.dbs();
    let mut t = Text(String::with_capacity(4096));
    t.single(
        "litefs_db_count",
        "gauge",
        "Number of managed databases.",
        dbs.len(),
    );
    t.single(
        "litefs_is_primary",
        "gauge",
        "1 if this node is the primary, else 0.",
        u8::from(store.is_writable()),
    );
    t.single(
        "litefs_subscriber_count",
        "gauge",
        "Connected change subscribers (replica streams).",
        store.subscriber_count(),
    );
    t.single(
        "litefs_event_subscriber_count",
        "gauge",
        "Connected event subscribers (/events responses).",
        store.event_subscriber_count(),
    );
    t.single(
        "litefs_lag_seconds",
        "gauge",
        "How far this replica is behind the primary's clock; 0 when primary or not connected.",
        seconds(store.role().lag_ms()),
    );
    type DbValue = fn(&crate::store::Db) -> String;
    let per_db: [(&str, &str, &str, DbValue); 11] = [
        ("litefs_db_txid", "gauge", "Current transaction id.", |db| {
            db.pos().txid.0.to_string()
        }),
        (
            "litefs_db_page_count",
            "gauge",
            "Pages in the database (Commit).",
            |db| db.page_count().to_string(),
        ),
        (
            "litefs_db_commit_count",
            "counter",
            "Local commits (journal, WAL, drop) since the database was opened.",
            |db| db.commit_count().to_string(),
        ),
        (
            "litefs_db_database_write_count",
            "counter",
            "Writes to the database file.",
            |db| db.write_count(FileKind::Database).to_string(),
        ),
        (
            "litefs_db_journal_write_count",
            "counter",
            "Writes to the rollback journal.",
            |db| db.write_count(FileKind::Journal).to_string(),
        ),
        (
            "litefs_db_wal_write_count",
            "counter",
            "Writes to the WAL.",
            |db| db.write_count(FileKind::Wal).to_string(),
        ),
        (
            "litefs_db_shm_write_count",
            "counter",
            "Writes to the shared-memory (-shm) file.",
            |db| db.write_count(FileKind::Shm).to_string(),
        ),
        (
            "litefs_db_deferred_capture_count",
            "counter",
            "WAL commits whose LTX files were written after SQLite's write was answered.",
            |db| db.deferred_capture_count().to_string(),
        ),
        (
            "litefs_db_early_commit_count",
            "counter",
            "Journal commits logged at SQLite's database fsync (0 where the file system, or a \
             writer outside the mount's pid namespace, does not allow it).",
            |db| db.early_commit_count().to_string(),
        ),
        (
            "litefs_db_ltx_reap_count",
            "counter",
            "LTX files removed by retention.",
            |db| db.ltx_reap_count().to_string(),
        ),
        (
            "litefs_db_lag_seconds",
            "gauge",
            "Age of the last applied LTX file when it was applied; 0 after a local commit.",
            |db| seconds(db.lag_ms()).to_string(),
        ),
    ];
    for (name, kind, help, value) in per_db {
        t.family(name, kind, help);
        for db in &dbs {
            t.sample(name, &[("db", db.name())], value(db));
        }
    }
    // One directory listing per database serves both families.
    let mut usage = Vec::with_capacity(dbs.len());
    for db in &dbs {
        match db.ltx_usage() {
            Ok(u) => usage.push((db.name(), u)),
            Err(e) => eprintln!("litefs: metrics: database {:?}: {e}", db.name()),
        }
    }
    t.family(
        "litefs_db_ltx_count",
        "gauge",
        "LTX files in the database's ltx directory, counted at scrape time.",
    );
    for (name, u) in &usage {
        t.sample("litefs_db_ltx_count", &[("db", name)], u.file_count);
    }
    t.family(
        "litefs_db_ltx_bytes",
        "gauge",
        "Total size of the LTX files in the database's ltx directory, at scrape time.",
    );
    for (name, u) in &usage {
        t.sample("litefs_db_ltx_bytes", &[("db", name)], u.size_bytes);
    }
    t.histogram(
        "litefs_commit_duration_seconds",
        "Local commits, from the start of writing the LTX file to the new position published.",
        &store.commit_durations(),
    );
    if let Some(counts) = store.request_counts_hook().counts() {
        t.family(
            "litefs_fuse_request_count",
            "counter",
            "FUSE requests served by the mount, per opcode.",
        );
        for (op, n) in counts {
            t.sample("litefs_fuse_request_count", &[("op", op)], n);
        }
    }
    app.metrics.render(&mut t);
    t.0
}

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
    event_streams_active: AtomicI64,
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

    pub fn event_stream_started(&self) {
        self.event_streams_active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn event_stream_ended(&self) {
        self.event_streams_active.fetch_sub(1, Ordering::Relaxed);
    }

    /// `/events` responses in progress.
    pub fn event_streams_active(&self) -> i64 {
        self.event_streams_active.load(Ordering::Relaxed)
    }

    /// Appends this server's series.
    fn render(&self, t: &mut Text) {
        t.single(
            "litefs_http_stream_count",
            "gauge",
            "Active /stream handlers.",
            self.streams_active(),
        );
        t.single(
            "litefs_http_event_stream_count",
            "gauge",
            "Active /events responses.",
            self.event_streams_active(),
        );
        t.single(
            "litefs_http_stream_send_bytes",
            "counter",
            "Bytes queued to replicas by /stream handlers.",
            self.sent_bytes(),
        );
        let (written, sendfile) = self.native_bytes();
        t.family(
            "litefs_stream_native_send_bytes",
            "counter",
            "Bytes sent on native streams, by path: write (copied from user space) or sendfile (page cache to socket).",
        );
        t.sample(
            "litefs_stream_native_send_bytes",
            &[("path", "write")],
            written,
        );
        t.sample(
            "litefs_stream_native_send_bytes",
            &[("path", "sendfile")],
            sendfile,
        );
        t.family(
            "litefs_http_frame_send_count",
            "counter",
            "Frames sent by /stream handlers.",
        );
        let frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        for ((db, kind), n) in frames.iter() {
            t.sample(
                "litefs_http_frame_send_count",
                &[("db", db), ("type", kind.label())],
                n,
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
