//! The node HTTP API (spec §4): one plain-TCP listener serving HTTP/1.1 and h2c with prior
//! knowledge (Go LiteFS clients always speak h2c), on a small dedicated tokio runtime
//! (`docs/ARCHITECTURE.md` §2): one thread runs hyper; file reads and snapshots run on the
//! runtime's blocking pool and reach the network through bounded channels (a native stream
//! holds a blocking-pool thread of its own and writes its socket directly, `native.rs`).
//!
//! Built: `GET /info`, `POST /stream` (primary side), `GET /export`, `POST /import`,
//! `GET /events`, `GET /metrics`, `GET /debug/vars`. The other LiteFS routes answer
//! `501 Not Implemented`. The application-facing proxy (`proxy:`, spec §6) is `proxy.rs`, a
//! server of its own on `proxy.addr`.

mod body;
pub mod client;
mod events;
mod export;
mod halt;
pub mod metrics;
pub mod native;
pub mod proxy;
mod routes;
mod stream;

pub use metrics::{FrameKind, Metrics};

use crate::store::Store;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// HTTP/2 ping interval and ack timeout on served connections.
const KEEP_ALIVE_INTERVAL_MS: u64 = 10_000;
/// How long shutdown waits for stream handlers to send their End frame.
const SHUTDOWN_GRACE_MS: u64 = 1000;

/// What the API reports about this node beyond the store.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// `http.addr`: `:PORT` (all interfaces), `HOST:PORT`, `IP:PORT`; port 0 picks a free one.
    pub addr: String,
    pub candidate: bool,
    /// This node's lease hostname (`/info` `primary.hostname` while primary).
    pub hostname: String,
}

/// Shared by every request handler.
struct App {
    store: Arc<Store>,
    options: ServerOptions,
    metrics: Arc<Metrics>,
    /// Becomes `true` at shutdown; stream handlers then send End and finish, and `/events`
    /// responses end.
    shutdown: watch::Receiver<bool>,
}

/// A running API server; stops when dropped.
pub struct Server {
    metrics: Arc<Metrics>,
    thread: ServerThread,
}

/// Binds `addr` as LiteFS does: `:PORT` means every interface (IPv6 and IPv4 when the host
/// has IPv6, else IPv4 only).
fn bind(addr: &str) -> io::Result<StdTcpListener> {
    let listener = if let Some(port) = addr.strip_prefix(':') {
        StdTcpListener::bind(format!("[::]:{port}"))
            .or_else(|_| StdTcpListener::bind(format!("0.0.0.0:{port}")))?
    } else {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        StdTcpListener::bind(&addrs[..])?
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A listener served on its own thread by a current-thread tokio runtime (the API's and the
/// proxy's). Stopping signals `shutdown` and joins the thread, which gives the runtime's
/// blocking tasks [`SHUTDOWN_GRACE_MS`] (not a plain drop, which waits for every one: a
/// proxy's dial resolving a host name can take the resolver's time).
struct ServerThread {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `addr` (`setting` names it in the error) and runs `serve` on a new thread named
    /// `name`, with the listener and the shutdown signal.
    fn spawn<F, Fut>(addr: &str, setting: &str, name: &str, serve: F) -> io::Result<ServerThread>
    where
        F: FnOnce(tokio::net::TcpListener, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let listener = bind(addr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {addr:?} ({setting}): {e}"),
            )
        })?;
        let local_addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("{name}-blocking"))
            .build()?;
        let listener = {
            let _enter = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                runtime.block_on(serve(listener, shutdown_rx));
                runtime.shutdown_timeout(Duration::from_millis(SHUTDOWN_GRACE_MS));
            })?;
        Ok(ServerThread {
            addr: local_addr,
            shutdown: shutdown_tx,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Server {
    /// Binds `options.addr` and serves on a new thread.
    pub fn start(store: Arc<Store>, options: ServerOptions) -> io::Result<Server> {
        let metrics = Arc::new(Metrics::default());
        let app_metrics = metrics.clone();
        let addr = options.addr.clone();
        let thread = ServerThread::spawn(
            &addr,
            "http.addr",
            "litefs-http",
            move |listener, shutdown| {
                let app = Arc::new(App {
                    store,
                    options,
                    metrics: app_metrics,
                    shutdown,
                });
                serve(listener, app)
            },
        )?;
        Ok(Server { metrics, thread })
    }

    /// The bound address (with the real port when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.thread.addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops accepting, lets stream handlers send End, and joins the server thread.
    pub fn shutdown(mut self) {
        self.thread.stop();
    }
}

/// Whether the connection starts with the native stream's magic. A client's first bytes may
/// arrive in pieces, so this peeks until four are there (or the peer stops sending).
async fn peek_magic(socket: &tokio::net::TcpStream) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    loop {
        let n = socket.peek(&mut magic).await?;
        if n == 0 || magic[..n] != native::MAGIC[..n] {
            return Ok(false);
        }
        if n == magic.len() {
            return Ok(true);
        }
        // A prefix of the magic: wait for the rest (peek returns at once while data waits).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn serve(listener: tokio::net::TcpListener, app: Arc<App>) {
    let mut shutdown = app.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    // Frames are small and latency matters more than packet count.
                    let _ = socket.set_nodelay(true);
                    let app = app.clone();
                    tokio::spawn(async move {
                        // The native stream announces itself with its magic (native.rs); a
                        // client that sends nothing for a while is HTTP's problem.
                        let peeked = tokio::time::timeout(
                            Duration::from_millis(native::HANDSHAKE_TIMEOUT_MS),
                            peek_magic(&socket),
                        )
                        .await;
                        if matches!(peeked, Ok(Ok(true))) {
                            return native::serve(app, socket).await;
                        }
                        let service = service_fn(move |req| {
                            let app = app.clone();
                            async move { Ok::<_, std::convert::Infallible>(routes::handle(app, req).await) }
                        });
                        // `auto` reads the first bytes: the HTTP/2 preface means h2c with prior
                        // knowledge, anything else HTTP/1.1.
                        let mut builder = auto::Builder::new(TokioExecutor::new());
                        // Pings find a replica that vanished without a reset, so its stream
                        // (and a spooled snapshot) is released in seconds, not when TCP gives up.
                        builder
                            .http2()
                            .timer(TokioTimer::new())
                            .keep_alive_interval(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS))
                            .keep_alive_timeout(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS));
                        let _ = builder.serve_connection(TokioIo::new(socket), service).await;
                    });
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    eprintln!("litefs: http accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    while app.metrics.streams_active() + app.metrics.event_streams_active() > 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the connections write the End frames just queued.
    tokio::time::sleep(Duration::from_millis(50)).await;
}
