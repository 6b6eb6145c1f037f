//! `POST /stream`, the primary side (spec §4.4 "Server (primary) algorithm").
//!
//! One tokio task per replica runs the loop (dirty set → catch up → Ready/Heartbeat → wait);
//! catching up runs on the blocking pool, which reads LTX files and writes snapshots into the
//! body channel through a [`ChannelWriter`] — or, for a native stream (`native.rs`), on the
//! stream's own thread, straight to its socket ([`Passes`]). No lock is held across an
//! `.await`: the blocking work owns its `Arc<Db>` and the task only exchanges positions.

use super::App;
use super::body::{ChannelBody, ChannelWriter, STREAM_QUEUE_DEPTH_MAX};
use super::metrics::FrameKind;
use super::routes::{Body, error};
use crate::ltx;
use crate::proto::{self, Frame, PosMap};
use crate::types::{Pos, TxId};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Version};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;

/// Heartbeat period while nothing changes (spec §4.4, §11).
pub const HEARTBEAT_INTERVAL_MS: u64 = 1000;

/// Largest position-map body accepted: the codec's own limit is 1e6 entries; 64 MiB covers
/// that many short names and stops a hostile body from filling memory.
const POS_MAP_BODY_BYTES_MAX: usize = 64 << 20;

/// Node id from `Litefs-Id`, parsed leniently as LiteFS does (any hex; missing or bad → 0).
pub(super) fn peer_node_id(req: &Request<Incoming>) -> u64 {
    req.headers()
        .get("litefs-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .unwrap_or(0)
}

/// Decodes `%XX` escapes and `+` in a query value (Go's `url.Query`).
pub(super) fn query_unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `filter` query parameter: comma-separated database names; `None` when absent/empty.
fn parse_filter(query: Option<&str>) -> Option<BTreeSet<String>> {
    let value = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("filter="))
        .map(query_unescape)?;
    let names: BTreeSet<String> = value
        .split(',')
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    (!names.is_empty()).then_some(names)
}

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    if req.version() != Version::HTTP_2 {
        return error(StatusCode::UPGRADE_REQUIRED, "Upgrade to HTTP/2 required");
    }
    if peer_node_id(&req) == app.store.node_id().0 {
        return error(StatusCode::BAD_REQUEST, "cannot connect to self");
    }
    if !app.store.is_writable() {
        // Replicas do not serve streams (spec §4.2: 503 when not primary).
        return error(StatusCode::SERVICE_UNAVAILABLE, "node is not the primary");
    }
    // Before reading positions, so a commit between the read and the first wait is seen.
    let changes = app.store.subscribe();
    let filter = parse_filter(req.uri().query());
    let body = match Limited::new(req.into_body(), POS_MAP_BODY_BYTES_MAX)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("read position map: {e}")),
    };
    let pos_map = match proto::read_pos_map(&mut body.as_ref()) {
        Ok(map) => map,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let (tx, rx) = mpsc::channel(STREAM_QUEUE_DEPTH_MAX);
    app.metrics.stream_started();
    let closed = {
        let tx = tx.clone();
        async move { tx.closed().await }
    };
    let sink = Box::new(CompatSink(ChannelWriter::new(tx, app.metrics.clone())));
    tokio::spawn(run(
        app,
        pos_map,
        filter,
        changes,
        sink,
        closed,
        Passes::BlockingPool,
    ));
    // Returning the response sends status and headers now, before any frame.
    Response::new(ChannelBody::new(rx).boxed())
}

/// Every database the replica or we know of: the dirty set of a full pass.
pub(super) fn all_names(app: &App, pos_map: &PosMap) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = pos_map.keys().cloned().collect();
    names.extend(app.store.dbs().iter().map(|db| db.name().to_string()));
    names
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where a stream writes: the compat body channel (LTX payloads in the chunked encoding) or
/// a native socket (length-prefixed payloads sent with `sendfile`, see `native.rs`). Used
/// only where blocking is allowed: the blocking pool, or a native stream's own thread.
pub(super) trait FrameSink: Send {
    fn frame(&mut self, frame: &Frame) -> io::Result<()>;
    /// The payload of the LTX frame just written: all `len_bytes` of `file` from offset 0.
    fn ltx_payload(&mut self, file: &mut File, len_bytes: u64) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
    /// Ends the stream after an error so the replica sees a failure, not a clean end.
    fn abort(&mut self, e: io::Error);
}

/// The compat transport's sink: bytes into the HTTP/2 response body.
struct CompatSink(ChannelWriter);

impl FrameSink for CompatSink {
    fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        frame.write_to(&mut self.0).map_err(io::Error::other)
    }

    fn ltx_payload(&mut self, file: &mut File, _len_bytes: u64) -> io::Result<()> {
        proto::copy_chunked(file, &mut self.0).map(|_| ())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }

    fn abort(&mut self, e: io::Error) {
        // Status 200 is already sent, so instead of LiteFS's error text in the body (which the
        // replica reads as a bad frame type) the HTTP/2 stream is reset: the replica sees a
        // transport error and reconnects either way.
        self.0.abort(e);
    }
}

/// What the stream loop carries from one wake to the next.
struct LoopState {
    pos_map: PosMap,
    dirty: BTreeSet<String>,
    filter: Option<BTreeSet<String>>,
    ready_sent: bool,
}

/// One wake (spec §4.4 step 5a–c), where [`Passes`] says: catch up every dirty database, then
/// Ready once, and a heartbeat when Ready was just sent or nothing was dirty. Returns the
/// database that failed, with the error.
fn pass(
    app: &App,
    state: &mut LoopState,
    sink: &mut dyn FrameSink,
) -> Result<(), (String, io::Error)> {
    if let Some(filter) = &state.filter {
        state.dirty.retain(|name| filter.contains(name));
    }
    let was_empty = state.dirty.is_empty();
    for name in std::mem::take(&mut state.dirty) {
        let client = state.pos_map.get(&name).copied().unwrap_or_default();
        match stream_db(app, &name, client, sink) {
            Ok(Some(pos)) => {
                state.pos_map.insert(name, pos);
            }
            Ok(None) => {
                state.pos_map.remove(&name);
            }
            Err(e) => return Err((name, e)),
        }
    }
    let mut frames = Vec::new();
    if !state.ready_sent {
        frames.push((Frame::Ready, FrameKind::Ready));
        state.ready_sent = true;
    }
    if frames.len() == 1 || was_empty {
        let timestamp_ms = now_ms();
        frames.push((Frame::Heartbeat { timestamp_ms }, FrameKind::Heartbeat));
    }
    let result = (|| {
        for (frame, kind) in &frames {
            sink.frame(frame)?;
            app.metrics.add_frame("", *kind);
        }
        sink.flush()
    })();
    result.map_err(|e| (String::new(), e))
}

/// Where a stream's passes (blocking file reads and socket writes) run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Passes {
    /// On tokio's blocking pool: the loop is a task of the server's runtime (compat streams,
    /// whose frames go to hyper through a channel).
    BlockingPool,
    /// On the thread running the loop, which is the stream's own (native streams,
    /// `native::serve`): a commit's notification then wakes the thread that sends it, one
    /// thread hand-off fewer — ~28 µs on a VM where a cross-CPU wake-up costs that.
    Inline,
}

/// Runs `f` as [`Passes`] says.
async fn on<T: Send + 'static>(
    passes: Passes,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    match passes {
        Passes::Inline => Some(f()),
        Passes::BlockingPool => match tokio::task::spawn_blocking(f).await {
            Ok(done) => Some(done),
            Err(e) => {
                eprintln!("litefs: stream: pass failed: {e}");
                None
            }
        },
    }
}

/// The stream loop (spec §4.4 step 5): a pass (where `passes` says), then wait for a change,
/// the heartbeat tick, shutdown, or the replica going away (`closed`).
pub(super) async fn run(
    app: Arc<App>,
    pos_map: PosMap,
    filter: Option<BTreeSet<String>>,
    mut changes: tokio::sync::broadcast::Receiver<Arc<str>>,
    mut sink: Box<dyn FrameSink>,
    closed: impl std::future::Future<Output = ()>,
    passes: Passes,
) {
    let mut shutdown = app.shutdown.clone();
    let mut state = LoopState {
        dirty: all_names(&app, &pos_map),
        pos_map,
        filter,
        ready_sent: false,
    };
    tokio::pin!(closed);
    loop {
        let app2 = app.clone();
        let done = on(passes, move || {
            let result = pass(&app2, &mut state, &mut *sink);
            (state, sink, result)
        })
        .await;
        let result;
        (state, sink, result) = match done {
            Some(done) => done,
            None => return app.metrics.stream_ended(),
        };
        if let Err((name, e)) = result {
            if e.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("litefs: stream: database {name:?}: {e}");
                let _ = on(passes, move || sink.abort(e)).await;
            }
            return app.metrics.stream_ended();
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = &mut closed => return app.metrics.stream_ended(),
            changed = changes.recv() => match changed {
                Ok(name) => {
                    state.dirty.insert(name.to_string());
                    // Drain what else is queued: one pass serves a burst of commits.
                    loop {
                        match changes.try_recv() {
                            Ok(name) => { state.dirty.insert(name.to_string()); }
                            Err(TryRecvError::Lagged(_)) => {
                                state.dirty = all_names(&app, &state.pos_map);
                            }
                            Err(_) => break,
                        }
                    }
                }
                // Notifications were dropped while we were busy: assume everything changed.
                Err(RecvError::Lagged(_)) => state.dirty = all_names(&app, &state.pos_map),
                Err(RecvError::Closed) => break,
            },
            // The ticker restarts after every wake (spec §4.4 step 5e).
            _ = tokio::time::sleep(Duration::from_millis(HEARTBEAT_INTERVAL_MS)) => {}
        }
    }
    let app2 = app.clone();
    let _ = on(passes, move || {
        if sink.frame(&Frame::End).and_then(|()| sink.flush()).is_ok() {
            app2.metrics.add_frame("", FrameKind::End);
        }
    })
    .await;
    app.metrics.stream_ended();
}

/// Catches the replica up on one database (spec §4.4 step 6); returns the replica's new
/// position, or `None` when we do not have the database (a DropDB frame was sent).
fn stream_db(
    app: &App,
    name: &str,
    mut client: Pos,
    w: &mut dyn FrameSink,
) -> io::Result<Option<Pos>> {
    let Some(db) = app.store.db(name) else {
        w.frame(&Frame::DropDb {
            name: name.to_string(),
        })?;
        w.flush()?;
        app.metrics.add_frame(name, FrameKind::DropDb);
        return Ok(None);
    };
    loop {
        let local = db.pos();
        if client.txid > local.txid
            || (client.txid == local.txid
                && client.post_apply_checksum != local.post_apply_checksum)
        {
            // A diverged old primary, or the same TXID with other contents: start over.
            client = Pos::default();
        }
        if client.txid >= local.txid {
            return Ok(Some(client));
        }
        let txid = TxId(client.txid.0 + 1);
        // TXID 1 is always a snapshot (avoids the write-forwarding own-NodeID edge case).
        let next = if txid.0 == 1 {
            None
        } else {
            incremental_file(&db, txid, client)?
        };
        let header = Frame::Ltx {
            name: name.to_string(),
        };
        client = match next {
            Some((mut file, summary)) => {
                let len_bytes = file.metadata()?.len();
                w.frame(&header)?;
                w.ltx_payload(&mut file, len_bytes)?;
                // No backup client yet, so no backup HWM: we send our current TXID, which is
                // what a replica's HWM means when the primary itself is the only copy.
                let hwm = Frame::Hwm {
                    txid: db.pos().txid,
                    name: name.to_string(),
                };
                w.frame(&hwm)?;
                // Not flushed per file: a pass catching up sends its files in full segments
                // (or body chunks) and flushes once at its end (`pass`).
                app.metrics.add_frame(name, FrameKind::Ltx);
                app.metrics.add_frame(name, FrameKind::Hwm);
                Pos {
                    txid: summary.header.max_txid,
                    post_apply_checksum: summary.trailer.post_apply_checksum,
                }
            }
            None => {
                // Spool first: the snapshot read lock is held for the encode only, not for as
                // long as the replica takes to download.
                let (mut file, pos) = db.write_snapshot_spooled().map_err(io::Error::other)?;
                let len_bytes = file.metadata()?.len();
                w.frame(&header)?;
                w.ltx_payload(&mut file, len_bytes)?;
                w.flush()?;
                app.metrics.add_frame(name, FrameKind::Snapshot);
                pos
            }
        };
    }
}

/// The single-TXID file for `txid`, verified (or just written by us, see
/// `Db::written_summary`) and at offset 0, if it exists and follows the replica's checksum;
/// `None` means "send a snapshot instead".
fn incremental_file(
    db: &crate::store::Db,
    txid: TxId,
    client: Pos,
) -> io::Result<Option<(std::fs::File, ltx::Summary)>> {
    let Some(mut file) = db.open_ltx(txid).map_err(io::Error::other)? else {
        return Ok(None);
    };
    let summary = match db.written_summary(txid, file.metadata()?.len()) {
        Some(summary) => {
            // Debug builds (every test) still read the file back and compare.
            if cfg!(debug_assertions) {
                let read = ltx::verify(BufReader::new(&file)).map_err(io::Error::other)?;
                assert_eq!(read, summary, "remembered summary of TXID {txid} differs");
                file.seek(SeekFrom::Start(0))?;
            }
            summary
        }
        None => {
            let summary = ltx::verify(BufReader::new(&file)).map_err(|e| {
                io::Error::other(format!("verify {}: {e}", db.ltx_path(txid).display()))
            })?;
            file.seek(SeekFrom::Start(0))?;
            summary
        }
    };
    if summary.header.pre_apply_checksum != client.post_apply_checksum {
        return Ok(None);
    }
    Ok(Some((file, summary)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_is_split_and_unescaped() {
        assert_eq!(parse_filter(None), None);
        assert_eq!(parse_filter(Some("filter=")), None);
        let f = parse_filter(Some("x=1&filter=a.db%2Cb.db,c+d")).unwrap();
        let want: BTreeSet<String> = ["a.db", "b.db", "c d"].map(String::from).into();
        assert_eq!(f, want);
        assert_eq!(query_unescape("%zz%4"), "%zz%4");
        assert_eq!(query_unescape("é%C3%A9"), "éé");
    }
}
