//! The built-in HTTP proxy (spec §6, `proxy:` in `litefs.yml`): it sits in front of the
//! application and gives clients read-your-writes across nodes. A write (any method but GET
//! and HEAD) goes to the application on the primary and comes back with a `__txid` cookie
//! holding the tracked database's TXID after it; a read carrying that cookie waits (at most
//! [`READ_WAIT_MAX`]) until this node has applied that TXID. On a replica a write is answered
//! with `fly-replay: instance=<primary>`, which Fly.io's edge replays on the primary.
//!
//! The decisions (patterns, routes, cookies, where a write goes) are pure functions; the
//! server around them runs on its own thread with a current-thread tokio runtime, like the
//! node API (`mod.rs`). Differences from LiteFS, on purpose or not yet: connections to the
//! application are kept and reused ([`AppPool`]) but speak HTTP/1.1 only (LiteFS tries HTTP/2); the
//! wait for a request's headers and the idle wait before it are one deadline
//! ([`request_wait`]); `proxy.write-timeout` is not applied, nor `read-timeout` to bodies.

use super::routes::{Body, error, full, with_type};
use crate::config::ProxyConfig;
use crate::store::Store;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{COOKIE, HeaderValue, SET_COOKIE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// How long a read waits for the TXID in its cookie (LiteFS's `PollTXIDTimeout`).
pub const READ_WAIT_MAX: Duration = Duration::from_secs(5);
/// How often a waiting read looks at the position again (LiteFS's `PollTXIDInterval`).
const READ_POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How often a write looks for a primary while none is known.
const PRIMARY_POLL_INTERVAL: Duration = Duration::from_micros(100);
/// How long the `__txid` cookie lives (LiteFS's `DefaultCookieExpiry`).
const COOKIE_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// How long the proxy keeps dialing an application that refuses connections (it may be
/// restarting), retrying every [`DIAL_RETRY_INTERVAL`].
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
const DIAL_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// Idle connections to the application kept for reuse (LiteFS's transport: 100).
const POOL_IDLE_MAX: usize = 100;
/// How long an idle connection to the application is kept (LiteFS's transport: 90 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often idle connections past [`POOL_IDLE_TIMEOUT`] are closed when no request comes.
const POOL_PRUNE_INTERVAL: Duration = Duration::from_secs(10);
/// The cookie's name.
const TXID_COOKIE: &str = "__txid";

/// A `passthrough` or `always-forward` pattern: `*` matches any run of characters, anything
/// else itself, anchored at both ends, matched against the URL path (LiteFS escapes every
/// other regular-expression character, so this is the whole language).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// The text between the `*`s: the first must start the path, the last end it, and the
    /// others follow in order between them.
    parts: Vec<String>,
}

impl Pattern {
    pub fn new(pattern: &str) -> Pattern {
        Pattern {
            parts: pattern.split('*').map(str::to_string).collect(),
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        let (first, rest) = self.parts.split_first().expect("split yields a part");
        let Some((last, middle)) = rest.split_last() else {
            return path == first;
        };
        if path.len() < first.len() + last.len()
            || !path.starts_with(first.as_str())
            || !path.ends_with(last.as_str())
        {
            return false;
        }
        let mut between = &path[first.len()..path.len() - last.len()];
        for part in middle {
            match between.find(part.as_str()) {
                Some(at) => between = &between[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// What the proxy does with a request (spec §6.1, checked in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A `passthrough` path: to the application as it is, no waiting, no cookie.
    Passthrough,
    /// `GET /litefs/health`.
    Health,
    /// GET or HEAD: wait for the cookie's TXID, then to the application.
    Read,
    /// Anything else (and `always-forward` GET/HEAD): to the application on the primary.
    Write,
}

pub fn route(method: &Method, path: &str, passthrough: &[Pattern], always: &[Pattern]) -> Route {
    if passthrough.iter().any(|p| p.matches(path)) {
        return Route::Passthrough;
    }
    if method == Method::GET && path == "/litefs/health" {
        return Route::Health;
    }
    let read = method == Method::GET || method == Method::HEAD;
    if read && !always.iter().any(|p| p.matches(path)) {
        return Route::Read;
    }
    Route::Write
}

/// `path` with its `%XX` escapes decoded (an invalid escape is kept as it is; bytes that do not
/// decode to UTF-8 become U+FFFD, which a `*` matches as Go's `.*` matches the raw byte).
pub fn percent_decoded(path: &str) -> String {
    if !path.contains('%') {
        return path.to_string();
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The TXID in a request's `__txid` cookie; 0 without one, or if it is not 16 hex digits.
pub fn cookie_txid<'a>(cookie_headers: impl IntoIterator<Item = &'a HeaderValue>) -> u64 {
    for header in cookie_headers {
        // Bytes, not text: another cookie's non-ASCII value must not hide this one.
        for pair in header.as_bytes().split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            if name != TXID_COOKIE.as_bytes() {
                continue;
            }
            // One pair of quotes around the value is allowed, as Go reads cookies.
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            return std::str::from_utf8(value)
                .ok()
                .and_then(|v| crate::types::TxId::parse(v).ok())
                .map_or(0, |t| t.0);
        }
    }
    0
}

/// The `Set-Cookie` value carrying `txid`, expiring [`COOKIE_LIFETIME`] after `now`.
pub fn txid_cookie(txid: u64, now: SystemTime) -> String {
    let expires = httpdate::fmt_http_date(now + COOKIE_LIFETIME);
    format!("{TXID_COOKIE}={txid:016x}; Path=/; Expires={expires}; HttpOnly")
}

/// Where a write goes (spec §6.3), once the wait for a primary is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteTarget {
    /// This node is the primary: the local application.
    Local,
    /// Fly.io's edge replays the request on the primary (`fly-replay: instance=<hostname>`).
    Replay(String),
    /// No primary is known: 503.
    NoPrimary,
}

pub fn write_target(is_primary: bool, primary_hostname: Option<&str>) -> WriteTarget {
    match (is_primary, primary_hostname) {
        (true, _) => WriteTarget::Local,
        (false, Some(hostname)) => WriteTarget::Replay(hostname.to_string()),
        (false, None) => WriteTarget::NoPrimary,
    }
}

/// What the proxy needs to run, taken from `proxy:`.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// `proxy.addr`: `:PORT`, `HOST:PORT` or `IP:PORT`.
    pub addr: String,
    /// `proxy.target`: the application's `host:port`.
    pub target: String,
    /// `proxy.db`: the database whose TXID the cookie carries.
    pub db: String,
    pub max_lag: Duration,
    pub debug: bool,
    pub passthrough: Vec<Pattern>,
    pub always_forward: Vec<Pattern>,
    pub primary_redirect_timeout: Duration,
    /// How long a client connection may wait for (idle) and then send a request's headers;
    /// `None`: forever ([`request_wait`]).
    pub request_wait: Option<Duration>,
    /// How long to keep dialing an application that refuses connections.
    pub dial_timeout: Duration,
}

impl ProxyOptions {
    pub fn from_config(config: &ProxyConfig) -> ProxyOptions {
        let patterns = |list: &[String]| list.iter().map(|p| Pattern::new(p)).collect();
        ProxyOptions {
            addr: config.addr.clone(),
            target: config.target.clone(),
            db: config.db.clone(),
            max_lag: config.max_lag,
            debug: config.debug,
            passthrough: patterns(&config.passthrough),
            always_forward: patterns(&config.always_forward),
            primary_redirect_timeout: config.primary_redirect_timeout,
            request_wait: request_wait(
                config.idle_timeout,
                config.read_timeout,
                config.read_header_timeout,
            ),
            dial_timeout: DIAL_TIMEOUT,
        }
    }
}

/// The one deadline hyper offers a client connection (`header_read_timeout`): it starts when
/// the connection is opened or goes idle after a response, and ends when a request's headers
/// are in. Go's server has two: the idle wait (`proxy.idle-timeout`, else `read-timeout`)
/// until the first byte, then the header read (`read-header-timeout`, else `read-timeout`);
/// their sum bounds the same span. A zero is "no limit" for its part; `None` when both are.
/// With the defaults (30 s and 10 s) an idle keep-alive connection is closed after 40 s.
pub fn request_wait(idle: Duration, read: Duration, read_header: Duration) -> Option<Duration> {
    let or_read = |d: Duration| if d.is_zero() { read } else { d };
    let wait = or_read(idle) + or_read(read_header);
    (!wait.is_zero()).then_some(wait)
}

/// The API's body type: the application's answers are passed on with their errors as I/O
/// errors.
type ProxyBody = Body;

struct Proxy {
    store: Arc<Store>,
    options: ProxyOptions,
    pool: Arc<AppPool>,
}

/// Connections to the application, kept for the next requests: a connection per request
/// would leave one socket in TIME_WAIT per request (60 s each; a busy application would run
/// out of local ports) and pay a TCP handshake each time. A connection goes back once hyper
/// reports it ready, i.e. its answer's body has been read to its end (a long answer holds no
/// place meanwhile). At most [`POOL_IDLE_MAX`], each for at most [`POOL_IDLE_TIMEOUT`]
/// (pruned every [`POOL_PRUNE_INTERVAL`] too); closed ones are dropped as they are met.
type AppSender = hyper::client::conn::http1::SendRequest<Body>;

#[derive(Default)]
struct AppPool {
    idle: std::sync::Mutex<Vec<(AppSender, Instant)>>,
}

impl AppPool {
    fn take(&self) -> Option<AppSender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        Self::prune_locked(&mut idle);
        let ready = idle.iter().rposition(|(sender, _)| sender.is_ready())?;
        Some(idle.swap_remove(ready).0)
    }

    /// Closes the connections the application closed or that idled past the timeout.
    fn prune(&self) {
        Self::prune_locked(&mut self.idle.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn prune_locked(idle: &mut Vec<(AppSender, Instant)>) {
        let now = Instant::now();
        idle.retain(|(sender, since)| {
            !sender.is_closed() && now.duration_since(*since) < POOL_IDLE_TIMEOUT
        });
    }

    /// Puts `sender` back once its answer has been read to the end (never, if the connection
    /// closes first).
    fn give_back(self: &Arc<Self>, mut sender: AppSender) {
        let pool = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                pool.put(sender);
            }
        });
    }

    fn put(&self, sender: AppSender) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_IDLE_MAX && !sender.is_closed() {
            idle.push((sender, Instant::now()));
        }
    }
}

/// The running proxy; stops when dropped (requests in flight are cut).
pub struct ProxyServer {
    thread: super::ServerThread,
}

impl ProxyServer {
    /// Binds `options.addr` and serves on a new thread.
    pub fn start(store: Arc<Store>, options: ProxyOptions) -> io::Result<ProxyServer> {
        let addr = options.addr.clone();
        let proxy = Arc::new(Proxy {
            store,
            options,
            pool: Arc::new(AppPool::default()),
        });
        let thread = super::ServerThread::spawn(
            &addr,
            "proxy.addr",
            "litefs-proxy",
            move |listener, shutdown| serve(listener, proxy, shutdown),
        )?;
        Ok(ProxyServer { thread })
    }

    /// The bound address (with the real port when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.thread.addr
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    proxy: Arc<Proxy>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut prune = tokio::time::interval(POOL_PRUNE_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = prune.tick() => proxy.pool.prune(),
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let _ = socket.set_nodelay(true);
                    let proxy = proxy.clone();
                    let request_wait = proxy.options.request_wait;
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let proxy = proxy.clone();
                            async move { Ok::<_, std::convert::Infallible>(handle(proxy, req).await) }
                        });
                        let mut builder = hyper::server::conn::http1::Builder::new();
                        builder.timer(TokioTimer::new()).header_read_timeout(request_wait);
                        let _ = builder.serve_connection(TokioIo::new(socket), service).await;
                    });
                }
                // Out of descriptors, or a connection reset before accept: keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

async fn handle(proxy: Arc<Proxy>, req: Request<Incoming>) -> Response<ProxyBody> {
    let o = &proxy.options;
    // Matched decoded, as Go's `URL.Path` is.
    let path = percent_decoded(req.uri().path());
    let route = route(req.method(), &path, &o.passthrough, &o.always_forward);
    if o.debug {
        eprintln!("litefs: proxy: {} {path}: {route:?}", req.method());
    }
    match route {
        Route::Passthrough => forward(&proxy, req, false, true).await,
        Route::Health => health(&proxy),
        Route::Read => {
            let txid = cookie_txid(req.headers().get_all(COOKIE));
            if !wait_for_txid(&proxy, txid).await {
                return error(StatusCode::GATEWAY_TIMEOUT, "Proxy timeout");
            }
            forward(&proxy, req, false, true).await
        }
        Route::Write => match wait_for_primary(&proxy).await {
            WriteTarget::Local => {
                let set_cookie = req.method() != Method::GET && req.method() != Method::HEAD;
                // Not sent twice: an `always-forward` GET is one that writes.
                forward(&proxy, req, set_cookie, false).await
            }
            WriteTarget::Replay(hostname) => {
                if o.debug {
                    eprintln!("litefs: proxy: {path}: fly-replay to {hostname}");
                }
                let mut response = Response::new(empty());
                if let Ok(value) = HeaderValue::from_str(&format!("instance={hostname}")) {
                    response.headers_mut().insert("fly-replay", value);
                }
                response
            }
            WriteTarget::NoPrimary => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Proxy error: no primary available",
            ),
        },
    }
}

/// Spec §6.4: 503 while a replica lags more than `max-lag` (0: never), else `OK`.
fn health(proxy: &Proxy) -> Response<ProxyBody> {
    let max_lag = proxy.options.max_lag;
    let lag = Duration::from_millis(proxy.store.role().lag_ms().max(0) as u64);
    if !max_lag.is_zero() && lag > max_lag {
        return error(StatusCode::SERVICE_UNAVAILABLE, "Replication lag exceeded");
    }
    with_type("text/plain; charset=utf-8", "OK\n")
}

/// Waits until the tracked database reaches `txid` (0, or no such database: at once); false
/// after [`READ_WAIT_MAX`].
async fn wait_for_txid(proxy: &Proxy, txid: u64) -> bool {
    if txid == 0 {
        return true;
    }
    let deadline = Instant::now() + READ_WAIT_MAX;
    loop {
        let Some(db) = proxy.store.db(&proxy.options.db) else {
            return true;
        };
        if db.pos().txid.0 >= txid {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(READ_POLL_INTERVAL).await;
    }
}

/// Where a write goes, waiting up to `primary-redirect-timeout` for a primary to be known.
async fn wait_for_primary(proxy: &Proxy) -> WriteTarget {
    let deadline = Instant::now() + proxy.options.primary_redirect_timeout;
    loop {
        let primary = proxy.store.role().primary_info();
        let target = write_target(
            proxy.store.is_writable(),
            primary.as_ref().map(|p| p.hostname.as_str()),
        );
        if target != WriteTarget::NoPrimary || Instant::now() >= deadline {
            return target;
        }
        tokio::time::sleep(PRIMARY_POLL_INTERVAL).await;
    }
}

/// Sends `req` to the application and streams its answer back; with `set_cookie`, adds the
/// `__txid` cookie with the tracked database's TXID once the answer has arrived. With
/// `may_replay`, a bodyless GET or HEAD that failed on a kept connection is sent again.
async fn forward(
    proxy: &Proxy,
    mut req: Request<Incoming>,
    set_cookie: bool,
    may_replay: bool,
) -> Response<ProxyBody> {
    // Origin form (path and query); the client's Host header goes along unchanged.
    let origin = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    match origin.parse() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("Proxy error: {e}")),
    }
    let mut req = req.map(|body| body.map_err(io::Error::other).boxed());
    // What a GET or HEAD without a body is sent again from, should a kept connection fail
    // under it: the application may have closed it just as the request went out.
    let mut replay = may_replay.then(|| replayable(&req)).flatten();
    let mut pooled = proxy.pool.take();
    let response = loop {
        let reused = pooled.is_some();
        let mut sender = match pooled.take() {
            Some(sender) => sender,
            None => match connect(&proxy.options).await {
                Ok(sender) => sender,
                Err(e) => return error(StatusCode::BAD_GATEWAY, &format!("Proxy error: {e}")),
            },
        };
        match sender.try_send_request(req).await {
            Ok(response) => {
                proxy.pool.give_back(sender);
                break response;
            }
            // Sent again on a new connection, once: a request the kept connection never took
            // (it was closed), or one that can be repeated.
            Err(mut e) => match (reused, e.take_message(), replay.take()) {
                (true, Some(unsent), _) => req = unsent,
                (true, None, Some(again)) => req = again,
                _ => {
                    let e = e.into_error();
                    return error(StatusCode::BAD_GATEWAY, &format!("Proxy error: {e}"));
                }
            },
        }
    };
    let (mut parts, body) = response.into_parts();
    if set_cookie && let Some(txid) = committed_txid(proxy).await {
        let cookie = txid_cookie(txid, SystemTime::now());
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            parts.headers.append(SET_COOKIE, value);
        }
    }
    Response::from_parts(parts, body.map_err(io::Error::other).boxed())
}

/// The tracked database's TXID after every transaction SQLite committed — not the published
/// position, which can trail by the captures still queued (`store/db/deferred.rs`): the
/// cookie must cover the write the application just made. Read on the blocking pool, as it
/// takes the database's state lock. `None` if there is no such database.
async fn committed_txid(proxy: &Proxy) -> Option<u64> {
    let (store, name) = (proxy.store.clone(), proxy.options.db.clone());
    tokio::task::spawn_blocking(move || store.db(&name).map(|db| db.committed_pos().txid.0))
        .await
        .ok()
        .flatten()
}

/// A copy of `req` to send again if it is a GET or HEAD without a body (safe to repeat, and
/// nothing of it is consumed by sending it).
fn replayable(req: &Request<Body>) -> Option<Request<Body>> {
    use hyper::body::Body as _;
    if !matches!(*req.method(), Method::GET | Method::HEAD) || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(full(Bytes::new()));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// A new HTTP/1.1 connection to the application (`proxy.target`).
async fn connect(o: &ProxyOptions) -> Result<AppSender, String> {
    let stream = dial(&o.target, o.dial_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // Runs until either side closes; dropping `sender` (out of the pool) closes it.
    tokio::spawn(connection);
    Ok(sender)
}

/// Connects to `target`, retrying while it refuses (the application restarting) until
/// `timeout` has passed.
async fn dial(target: &str, timeout: Duration) -> io::Result<tokio::net::TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            tokio::net::TcpStream::connect(target),
        )
        .await;
        match attempt {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e))
                if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline =>
            {
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(DIAL_RETRY_INTERVAL.min(left)).await;
            }
            Ok(Err(e)) => return Err(io::Error::new(e.kind(), format!("dial {target}: {e}"))),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("dial {target}: no connection within {timeout:?}"),
                ));
            }
        }
    }
}

fn empty() -> ProxyBody {
    full(Bytes::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wait_adds_the_idle_and_header_deadlines() {
        let s = Duration::from_secs;
        let z = Duration::ZERO;
        assert_eq!(request_wait(s(30), z, s(10)), Some(s(40)), "the defaults");
        assert_eq!(
            request_wait(z, s(5), z),
            Some(s(10)),
            "read-timeout fills both"
        );
        assert_eq!(request_wait(z, z, s(10)), Some(s(10)), "no idle limit");
        assert_eq!(request_wait(s(30), z, z), Some(s(30)), "no header limit");
        assert_eq!(request_wait(z, z, z), None, "no limit at all");
    }

    /// The upstream tests' examples (spec §6.1).
    #[test]
    fn patterns_match_as_litefs_wildcards() {
        let build = Pattern::new("/build/*");
        for (path, want) in [
            ("/build/", true),
            ("/build/foo", true),
            ("/build/foo/bar", true),
            ("/build", false),
        ] {
            assert_eq!(build.matches(path), want, "/build/* against {path}");
        }
        assert!(Pattern::new("*.png").matches("/images/pic.png"));
        assert!(!Pattern::new("*.png").matches("/images/pic.jpg"));
        let foo = Pattern::new("*foo*");
        for (path, want) in [
            ("/foo", true),
            ("foo/bar", true),
            ("/foo/bar", true),
            ("/bar/baz", false),
        ] {
            assert_eq!(foo.matches(path), want, "*foo* against {path}");
        }
        // Regular-expression characters are themselves; the pattern is anchored.
        assert!(Pattern::new("^/a$").matches("^/a$"));
        assert!(!Pattern::new("/a").matches("/ab"));
        assert!(!Pattern::new("/a.c").matches("/abc"));
        // Prefix and suffix may not overlap.
        assert!(!Pattern::new("ab*ba").matches("aba"));
        assert!(Pattern::new("a*b*c").matches("a-b-c"));
        assert!(!Pattern::new("a*b*c").matches("a-c-b"));
    }

    #[test]
    fn routes_follow_the_spec_order() {
        let pass = [Pattern::new("/static/*")];
        let always = [Pattern::new("/admin/*")];
        let r = |m: Method, p: &str| route(&m, p, &pass, &always);
        assert_eq!(r(Method::POST, "/static/x"), Route::Passthrough);
        assert_eq!(r(Method::GET, "/litefs/health"), Route::Health);
        assert_eq!(r(Method::POST, "/litefs/health"), Route::Write);
        assert_eq!(r(Method::GET, "/"), Route::Read);
        assert_eq!(r(Method::HEAD, "/x"), Route::Read);
        assert_eq!(r(Method::GET, "/admin/users"), Route::Write);
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(r(m.clone(), "/x"), Route::Write, "{m}");
        }
        // A passthrough pattern wins over the health check.
        let all = [Pattern::new("*")];
        assert_eq!(
            route(&Method::GET, "/litefs/health", &all, &[]),
            Route::Passthrough
        );
    }

    #[test]
    fn the_txid_cookie_round_trips_and_bad_values_read_as_zero() {
        let header = |s: &str| HeaderValue::from_str(s).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cookie = txid_cookie(0x2a, now);
        assert_eq!(
            cookie,
            "__txid=000000000000002a; Path=/; Expires=Tue, 14 Nov 2023 22:18:20 GMT; HttpOnly"
        );
        let sent = cookie.split(';').next().unwrap();
        assert_eq!(cookie_txid([&header(sent)]), 0x2a);
        assert_eq!(
            cookie_txid([&header("a=1; __txid=00000000000000ff; b=2")]),
            0xff
        );
        assert_eq!(
            cookie_txid([&header("a=1"), &header("__txid=0000000000000010")]),
            0x10
        );
        assert_eq!(cookie_txid([&header("__txid=\"000000000000002a\"")]), 0x2a);
        let non_ascii =
            HeaderValue::from_bytes(b"name=Jos\xc3\xa9; __txid=00000000000000ff").unwrap();
        assert_eq!(cookie_txid([&non_ascii]), 0xff, "after a non-ASCII cookie");
        for bad in [
            "__txid=2a",
            "__txid=zzzzzzzzzzzzzzzz",
            "__txid=",
            "other=1",
            "__txid=\"000000000000002a",
        ] {
            assert_eq!(cookie_txid([&header(bad)]), 0, "{bad}");
        }
        assert_eq!(cookie_txid([]), 0);
    }

    #[test]
    fn paths_are_matched_decoded() {
        assert_eq!(percent_decoded("/%61dmin/x"), "/admin/x");
        assert_eq!(percent_decoded("/a%2Fb"), "/a/b");
        assert_eq!(percent_decoded("/plain"), "/plain");
        for kept in ["/100%", "/%zz", "/%4"] {
            assert_eq!(percent_decoded(kept), kept, "{kept}");
        }
        // A byte that is not UTF-8 does not stop the rest from decoding.
        assert_eq!(percent_decoded("/%61dmin/x%ff"), "/admin/x\u{fffd}");
        assert!(Pattern::new("/admin/*").matches(&percent_decoded("/%61dmin/x%ff")));
    }

    #[test]
    fn writes_go_to_the_primary() {
        assert_eq!(write_target(true, None), WriteTarget::Local);
        assert_eq!(write_target(true, Some("other")), WriteTarget::Local);
        assert_eq!(
            write_target(false, Some("node-a")),
            WriteTarget::Replay("node-a".into())
        );
        assert_eq!(write_target(false, None), WriteTarget::NoPrimary);
    }
}
