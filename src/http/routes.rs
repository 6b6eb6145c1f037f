//! Routing and the small endpoints (spec §4.1–§4.3): common headers, Go-style errors,
//! `/info`, `/debug/vars`, `/handoff` and `/promote`. `/export` and `/import` live in
//! `export.rs`, `/halt` and `/tx` in `halt.rs`, `/stream` in `stream.rs`, `/events` in
//! `events.rs`, `/metrics` in `metrics.rs`.

use super::App;
use crate::store::Db;
use crate::store::lock::{LockType, RwState};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::io;
use std::sync::Arc;

pub type Body = BoxBody<Bytes, io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Go's `http.Error`: plain text, the message and a newline.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = Response::new(full(format!("{message}\n")));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

pub fn with_type(content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The first value of `key` in a query string, unescaped (Go's `url.Values.Get`).
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (super::stream::query_unescape(k) == key).then(|| super::stream::query_unescape(v))
    })
}

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    // `/debug/*` and `/metrics` are not LiteFS API routes and carry no node headers.
    let api_route = !(path.starts_with("/debug/") || path == "/metrics");
    let mut resp = route(&app, &path, req).await;
    if api_route {
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&app.store.node_id().to_string()) {
            headers.insert("litefs-id", v);
        }
        if let Some(id) = app.store.role().cluster_id()
            && let Ok(v) = HeaderValue::from_str(&id)
        {
            headers.insert("litefs-cluster-id", v);
        }
    }
    resp
}

async fn route(app: &Arc<App>, path: &str, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let allowed: &[Method] = match path {
        "/info" | "/metrics" | "/debug/vars" | "/export" | "/events" => &[Method::GET],
        "/stream" | "/import" | "/handoff" | "/promote" | "/tx" => &[Method::POST],
        "/halt" => &[Method::POST, Method::DELETE],
        _ => return error(StatusCode::NOT_FOUND, "404 page not found"),
    };
    if !allowed.contains(&method) {
        return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    match path {
        "/info" => info(app),
        "/metrics" => super::metrics::handle(app.clone()).await,
        "/debug/vars" => debug_vars(app),
        "/events" => super::events::handle(app.clone()).await,
        "/stream" => super::stream::handle(app.clone(), req).await,
        "/export" => super::export::export(app.clone(), req).await,
        "/import" => super::export::import(app.clone(), req).await,
        "/handoff" => handoff(app, req.uri().query()),
        "/promote" => promote(app),
        "/halt" if method == Method::POST => super::halt::post_halt(app.clone(), req).await,
        "/halt" => super::halt::delete_halt(app.clone(), req).await,
        "/tx" => super::halt::post_tx(app.clone(), req).await,
        _ => error(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

#[derive(serde::Serialize)]
struct NodeInfo<'a> {
    #[serde(rename = "clusterID", skip_serializing_if = "Option::is_none")]
    cluster_id: Option<&'a str>,
    #[serde(rename = "isPrimary")]
    is_primary: bool,
    candidate: bool,
    path: String,
    primary: PrimaryInfo<'a>,
}

#[derive(serde::Serialize)]
struct PrimaryInfo<'a> {
    hostname: &'a str,
}

/// `GET /info`: pretty JSON with a 2-space indent and a newline, as Go's encoder writes it.
/// `primary.hostname` is ours while primary, else the primary's we follow, else empty.
fn info(app: &App) -> Response<Body> {
    let cluster_id = app.store.role().cluster_id();
    let is_primary = app.store.is_writable();
    let primary_hostname = if is_primary {
        app.options.hostname.clone()
    } else {
        app.store
            .role()
            .primary_info()
            .map(|p| p.hostname)
            .unwrap_or_default()
    };
    let info = NodeInfo {
        cluster_id: cluster_id.as_deref(),
        is_primary,
        candidate: app.options.candidate,
        path: app.store.data_dir().display().to_string(),
        primary: PrimaryInfo {
            hostname: &primary_hostname,
        },
    };
    match serde_json::to_string_pretty(&info) {
        Ok(mut text) => {
            text.push('\n');
            with_type("application/json", text)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `POST /handoff?nodeID=<hex>` (spec §4.3): hands the lease to a connected replica. The
/// leases this build has are static, and a static lease never moves, so a primary refuses
/// as LiteFS's does (whether or not the node is connected: nothing could follow).
fn handoff(app: &App, query: Option<&str>) -> Response<Body> {
    let id = query_value(query, "nodeID").unwrap_or_default();
    // Go's ParseUint: hex digits only (Rust's parser would also take a leading `+`).
    if id.starts_with('+') || u64::from_str_radix(&id, 16).is_err() {
        return error(StatusCode::BAD_REQUEST, "invalid node id");
    }
    if !app.store.is_writable() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot handoff: node is not currently primary",
        );
    }
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "cannot handoff: static lease does not support handoff",
    )
}

/// `POST /promote` (spec §4.3): a candidate asks the primary for the lease. Not a candidate:
/// 409; already primary: 200. Otherwise the primary's `/handoff` would refuse, its lease
/// being static as ours (a cluster has one lease type), so this answers what LiteFS then does.
fn promote(app: &App) -> Response<Body> {
    if !app.options.candidate {
        return error(StatusCode::CONFLICT, "not eligible to become primary");
    }
    if app.store.is_writable() {
        return Response::new(full(Bytes::new()));
    }
    if app.store.role().primary_info().is_none() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no primary is currently available for handoff, cannot promote",
        );
    }
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "handoff failed: cannot handoff: static lease does not support handoff",
    )
}

/// `GET /debug/vars`: expvar's `store` variable (spec §4.3), plus page size and count.
fn debug_vars(app: &App) -> Response<Body> {
    let mut dbs = serde_json::Map::new();
    for db in app.store.dbs() {
        let pos = db.pos();
        dbs.insert(
            db.name().to_string(),
            serde_json::json!({
                "name": db.name(),
                "txid": pos.txid.to_string(),
                "checksum": pos.post_apply_checksum.to_string(),
                "pageSize": db.page_size(),
                "pageCount": db.page_count(),
                "locks": lock_states(&db),
            }),
        );
    }
    let vars = serde_json::json!({
        "store": {
            "isPrimary": app.store.is_writable(),
            "candidate": app.options.candidate,
            "dbs": dbs,
        }
    });
    with_type("application/json; charset=utf-8", format!("{vars}\n"))
}

/// The state of each SQLite lock byte of `db` as LiteFS's expvar names it (spec §4.3). A
/// snapshot of independent words: it may mix moments when locks change meanwhile.
fn lock_states(db: &Db) -> serde_json::Map<String, serde_json::Value> {
    let mut locks = serde_json::Map::new();
    for t in LockType::ALL {
        let name = match t {
            LockType::Pending => "pending",
            LockType::Shared => "shared",
            LockType::Reserved => "reserved",
            LockType::Write => "write",
            LockType::Ckpt => "ckpt",
            LockType::Recover => "recover",
            LockType::Read0 => "read0",
            LockType::Read1 => "read1",
            LockType::Read2 => "read2",
            LockType::Read3 => "read3",
            LockType::Read4 => "read4",
            LockType::Dms => "dms",
            // Not in LiteFS's list (and not built yet).
            LockType::Halt => continue,
        };
        let state = match db.locks().words().word(t).state() {
            RwState::Unlocked => "unlocked",
            RwState::Shared { .. } => "shared",
            RwState::Exclusive { .. } => "exclusive",
        };
        locks.insert(name.into(), state.into());
    }
    locks
}

#[cfg(test)]
mod tests {
    use super::query_value;

    #[test]
    fn query_value_is_the_first_unescaped_value() {
        assert_eq!(query_value(None, "name"), None);
        assert_eq!(query_value(Some("x=1"), "name"), None);
        assert_eq!(query_value(Some("name"), "name").as_deref(), Some(""));
        assert_eq!(query_value(Some("name="), "name").as_deref(), Some(""));
        let q = Some("a=b&name=my%20db.sqlite&name=second");
        assert_eq!(query_value(q, "name").as_deref(), Some("my db.sqlite"));
        assert_eq!(
            query_value(Some("na%6De=x+y"), "name").as_deref(),
            Some("x y")
        );
    }
}
