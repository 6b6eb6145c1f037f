//! `POST /halt`, `DELETE /halt` and `POST /tx` (spec §4.3, §5): write forwarding from a
//! replica. Statuses and texts are LiteFS's; what the primary checks beyond it is in
//! `store/db/halt.rs`. One deliberate difference here: `DELETE /halt` for an unknown database
//! answers 404 (LiteFS's handler dereferences a missing database and the client sees a reset
//! stream).

use super::App;
use super::export::read_body_blocking;
use super::routes::{Body, error, full, query_value, with_type};
use super::stream::peer_node_id;
use crate::ltx::format_timestamp_trimmed;
use crate::store::{Db, HaltLock};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;

/// The `id` parameter as Go's `strconv.ParseInt(s, 10, 64)` reads it, from a node other than
/// this one; else the 400 answer (`self_message` for a request from this node itself).
fn peer_lock_id(
    app: &App,
    req: &Request<Incoming>,
    self_message: &str,
) -> Result<i64, Box<Response<Body>>> {
    let text = query_value(req.uri().query(), "id").unwrap_or_default();
    let Ok(id) = text.parse::<i64>() else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("invalid id: {text:?}"),
        )));
    };
    if is_self(app, req) {
        return Err(Box::new(error(StatusCode::BAD_REQUEST, self_message)));
    }
    Ok(id)
}

fn name(req: &Request<Incoming>) -> String {
    query_value(req.uri().query(), "name").unwrap_or_default()
}

fn is_self(app: &App, req: &Request<Incoming>) -> bool {
    peer_node_id(req) == app.store.node_id().0
}

/// The database named by `name`, or the 404 answer (as LiteFS's `/tx`; its `DELETE /halt`
/// dereferences the missing database instead).
fn known_db(app: &App, req: &Request<Incoming>) -> Result<Arc<Db>, Box<Response<Body>>> {
    let name = name(req);
    app.store.db(&name).ok_or_else(|| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            &format!("database not found: {name:?}"),
        ))
    })
}

/// The lock as LiteFS's JSON encoder writes a `HaltLock`: its fields in Go's order, compact,
/// newline included.
fn halt_lock_json(lock: &HaltLock) -> String {
    format!(
        "{{\"id\":{},\"pos\":{{\"TXID\":\"{:016x}\",\"PostApplyChecksum\":\"{:016x}\"}},\"expires\":\"{}\"}}\n",
        lock.id,
        lock.pos.txid.0,
        lock.pos.post_apply_checksum.0,
        format_timestamp_trimmed(lock.expires_ms)
    )
}

/// `POST /halt?name=&id=`: takes the halt lock for the calling replica (the database is
/// created if unknown) and answers it as JSON.
pub async fn post_halt(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let id = match peer_lock_id(&app, &req, "cannot remotely halt self") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    // Before the database is created: a replica is never halted (LiteFS does not check).
    if !app.store.is_writable() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "acquire halt lock: read only replica",
        );
    }
    let db = match app.store.open_db(&name(&req)) {
        Ok(db) => db,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("create db: {e}"),
            );
        }
    };
    let acquired = tokio::task::spawn_blocking(move || db.acquire_halt_lock(id))
        .await
        .map_err(|e| e.to_string())
        .and_then(|acquired| acquired.map_err(|e| e.to_string()));
    match acquired {
        Ok(lock) => with_type("application/json", halt_lock_json(&lock)),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("acquire halt lock: {e}"),
        ),
    }
}

/// `DELETE /halt?name=&id=`: releases the halt lock if it is `id`'s; 200 either way.
pub async fn delete_halt(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let id = match peer_lock_id(&app, &req, "cannot remotely unhalt self") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let db = match known_db(&app, &req) {
        Ok(db) => db,
        Err(resp) => return *resp,
    };
    // Waits for a forwarded transaction being applied under this lock.
    match tokio::task::spawn_blocking(move || db.release_halt_lock(id)).await {
        Ok(()) => Response::new(full(Bytes::new())),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("release halt lock: {e}"),
        ),
    }
}

/// `POST /tx?name=&lockID=`: applies the raw LTX file in the body, a transaction committed by
/// the replica holding halt lock `lockID`, and streams it to every replica.
pub async fn post_tx(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    if is_self(&app, &req) {
        return error(StatusCode::BAD_REQUEST, "cannot remotely halt self");
    }
    let db = match known_db(&app, &req) {
        Ok(db) => db,
        Err(resp) => return *resp,
    };
    // LiteFS does not read it; a missing or bad one matches no held lock.
    let lock_id = query_value(req.uri().query(), "lockID")
        .and_then(|text| text.parse::<i64>().ok())
        .unwrap_or(0);
    let applied = read_body_blocking(req.into_body(), move |body| {
        db.apply_forwarded(body, lock_id)
    })
    .await;
    match applied {
        Ok(Ok(_pos)) => Response::new(full(Bytes::new())),
        // An apply that fails once the database started changing stops the process (exit
        // 99), as LiteFS's does; anything before it changed nothing.
        Ok(Err(e)) if app.store.fatal_hook().is_raised() => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot apply ltx: {e}"),
        ),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("write ltx file: {e}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("write ltx file: {e}"),
        ),
    }
}
