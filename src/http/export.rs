//! `GET /export` and `POST /import` (spec §4.2, §4.3): a database as a raw SQLite file.
//!
//! Both run the store's work on the blocking pool and move bytes through bounded channels:
//! an export is spooled to local disk first (the read lock is held for that copy only) and
//! then sent from the spool; an import's body is read by the store, which spools it before
//! taking the write lock. Neither holds a lock while waiting on the network.

use super::App;
use super::body::{Block, ChannelBody, ChannelReader, STREAM_QUEUE_DEPTH_MAX};
use super::routes::{Body, error, query_value};
use crate::store::{EXPORT_LOCK_TIMEOUT_MS, Error, IMPORT_LOCK_TIMEOUT_MS};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Bytes read from the spool per block sent.
const EXPORT_BLOCK_BYTES: usize = 256 * 1024;

/// Longest silence while a client uploads an import before the import is abandoned.
pub const IMPORT_BODY_IDLE_TIMEOUT_MS: u64 = 60_000;

/// After a refused import, how much more of the body is read and discarded so that the
/// client, still sending, gets our answer instead of a reset connection.
const IMPORT_DRAIN_BYTES_MAX: u64 = 64 << 20;

/// The `name` query parameter; `None` means LiteFS's 400 [`name_required`].
pub(super) fn db_name(req: &Request<Incoming>) -> Option<String> {
    query_value(req.uri().query(), "name").filter(|name| !name.is_empty())
}

fn name_required() -> Response<Body> {
    error(StatusCode::BAD_REQUEST, "name required")
}

/// `GET /export?name=`: 200 with the image (`Content-Length` set), on any node.
pub async fn export(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let Some(name) = db_name(&req) else {
        return name_required();
    };
    let Some(db) = app.store.db(&name) else {
        return error(StatusCode::NOT_FOUND, "database not found");
    };
    let deadline = Instant::now() + Duration::from_millis(EXPORT_LOCK_TIMEOUT_MS);
    let spooled = tokio::task::spawn_blocking(move || db.write_export_spooled(deadline)).await;
    let (file, len_bytes) = match spooled {
        Ok(Ok((file, len_bytes, _pos))) => (file, len_bytes),
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("export: {e}")),
    };
    let (tx, rx) = mpsc::channel(STREAM_QUEUE_DEPTH_MAX);
    tokio::task::spawn_blocking(move || send_file(file, len_bytes, &tx));
    let mut resp = Response::new(ChannelBody::with_len(rx, len_bytes).boxed());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// Sends `len_bytes` of `file` as blocks; stops early when the client is gone. A read error
/// (or a short spool) is sent as an error block, which aborts the response: the status is
/// already 200, so the client sees a truncated transfer rather than a clean end.
fn send_file(mut file: File, len_bytes: u64, tx: &mpsc::Sender<Block>) {
    let mut left_bytes = len_bytes;
    while left_bytes > 0 {
        let mut block = vec![0u8; EXPORT_BLOCK_BYTES.min(left_bytes as usize)];
        let item = match file.read_exact(&mut block) {
            Ok(()) => Ok(Bytes::from(block)),
            Err(e) => Err(io::Error::new(e.kind(), format!("read export spool: {e}"))),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
        left_bytes -= EXPORT_BLOCK_BYTES.min(left_bytes as usize) as u64;
    }
}

/// `POST /import?name=`: only on the primary (503 `lease expired` elsewhere); creates the
/// database if needed; 200 once the image is the database's new version, 400 for an image
/// that cannot be one (the text says why), 500 otherwise.
pub async fn import(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let Some(name) = db_name(&req) else {
        return name_required();
    };
    if !app.store.is_writable() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "lease expired");
    }
    let deadline = Instant::now() + Duration::from_millis(IMPORT_LOCK_TIMEOUT_MS);
    let store = app.store.clone();
    let imported = read_body_blocking(req.into_body(), move |body| {
        store.import_db(&name, body, deadline)
    })
    .await;
    match imported {
        Ok(Ok(_pos)) => Response::new(super::routes::full(Bytes::new())),
        Ok(Err(e)) if is_client_fault(&e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("import: {e}")),
    }
}

/// A bad image or database name: the request, not the node, is at fault.
fn is_client_fault(e: &Error) -> bool {
    match e {
        Error::Import { source, .. } => source.is_invalid_input(),
        Error::InvalidWrite { .. } => true,
        _ => false,
    }
}

/// Runs `consume` on a blocking thread with the request body as a `Read` (`POST /import`,
/// `POST /tx`); the rest of the body, if `consume` leaves some, is read and dropped.
pub(super) async fn read_body_blocking<T: Send + 'static>(
    body: Incoming,
    consume: impl FnOnce(ChannelReader) -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let (tx, rx) = mpsc::channel(STREAM_QUEUE_DEPTH_MAX);
    let forward = tokio::spawn(forward_body(body, tx));
    let consumed = tokio::task::spawn_blocking(move || consume(ChannelReader::new(rx))).await;
    // The reader is gone: the forwarder now discards the rest of the body (bounded).
    let _ = forward.await;
    consumed
}

/// Moves the request body into the import's channel. Once the importer stops reading (it
/// has the whole image, or refused it), the rest is read and dropped, up to
/// [`IMPORT_DRAIN_BYTES_MAX`]. A client silent for [`IMPORT_BODY_IDLE_TIMEOUT_MS`] fails the
/// import.
async fn forward_body(mut body: Incoming, tx: mpsc::Sender<Block>) {
    let idle = Duration::from_millis(IMPORT_BODY_IDLE_TIMEOUT_MS);
    let mut importer_reading = true;
    let mut drained_bytes = 0u64;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => return,
            Ok(Some(Err(e))) => {
                let _ = tx
                    .send(Err(io::Error::other(format!("read request body: {e}"))))
                    .await;
                return;
            }
            Err(_) => {
                let message = format!("no request body data for {IMPORT_BODY_IDLE_TIMEOUT_MS} ms");
                let _ = tx
                    .send(Err(io::Error::new(io::ErrorKind::TimedOut, message)))
                    .await;
                return;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if importer_reading {
            let len_bytes = data.len() as u64;
            if tx.send(Ok(data)).await.is_err() {
                importer_reading = false;
                drained_bytes += len_bytes;
            }
        } else {
            drained_bytes += data.len() as u64;
        }
        if !importer_reading && drained_bytes > IMPORT_DRAIN_BYTES_MAX {
            return;
        }
    }
}
