//! The client side of the node API as LiteFS speaks it: HTTP/2 with prior knowledge over
//! plain TCP (h2c, spec §4.1), which Go LiteFS servers require for `/stream`.
//!
//! Each call runs on its own thread with a current-thread tokio runtime; the response body
//! reaches the caller as a blocking [`Read`] through a bounded channel, so the replica's
//! apply code stays synchronous. The network thread ends when the body ends, when the
//! reader is dropped, or when the peer has been silent for [`STREAM_IDLE_TIMEOUT_MS`].

use super::body::ChannelReader;
use crate::types::NodeId;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::io::{self, Read};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Longest silence on a stream before it is considered dead: the primary sends a heartbeat
/// every second, so ten missed heartbeats mean a broken connection or a hung primary.
pub const STREAM_IDLE_TIMEOUT_MS: u64 = 10_000;
/// Longest wait for the TCP connection, and again for the HTTP/2 handshake and the response
/// head together.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// HTTP/2 pings while waiting on a stream, so a peer that vanished without a reset is noticed.
const KEEP_ALIVE_INTERVAL_MS: u64 = 5_000;
/// Response body blocks queued between the network thread and the reader.
const BODY_QUEUE_DEPTH_MAX: usize = 64;

/// `scheme://host:port[/path]` reduced to what we dial. The path and query are discarded, as
/// LiteFS does (spec §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub authority: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("invalid URL scheme in {url:?}"))?;
        match scheme {
            "http" => {}
            "https" => {
                return Err(format!(
                    "{url:?}: https is not supported by litefs-rs yet; use http:// on a private network"
                ));
            }
            _ => return Err(format!("invalid URL scheme in {url:?}")),
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("URL host required in {url:?}"));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
        }) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(BaseUrl { authority })
    }
}

/// A response whose body is read as a byte stream.
pub struct StreamingResponse {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: BodyReader,
}

/// The response body as a blocking reader (blocks through a bounded channel from the client
/// thread).
pub type BodyReader = ChannelReader;

/// The rest of `body` as text (an error response's message), at most `limit_bytes`.
pub fn body_text(mut body: BodyReader, limit_bytes: u64) -> String {
    let mut s = String::new();
    let _ = (&mut body).take(limit_bytes).read_to_string(&mut s);
    s.trim_end().to_string()
}

/// Sends `method path_and_query` with `body` to `base` over h2c, with the `Litefs-Id` header,
/// and returns once the response head has arrived.
pub fn request(
    base: &BaseUrl,
    method: Method,
    path_and_query: &str,
    node_id: NodeId,
    body: Vec<u8>,
) -> io::Result<StreamingResponse> {
    let authority = base.authority.clone();
    let uri = format!("http://{authority}{path_and_query}");
    let (head_tx, head_rx) = std_mpsc::sync_channel(1);
    let (body_tx, body_rx) = mpsc::channel(BODY_QUEUE_DEPTH_MAX);
    std::thread::Builder::new()
        .name("litefs-client".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = head_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let head = async {
                    let connect = tokio::net::TcpStream::connect(&authority);
                    let tcp =
                        tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect)
                            .await
                            .map_err(|_| {
                                io::Error::new(
                                    io::ErrorKind::TimedOut,
                                    format!("connect to {authority}: timed out"),
                                )
                            })?
                            .map_err(|e| {
                                io::Error::new(e.kind(), format!("connect to {authority}: {e}"))
                            })?;
                    tcp.set_nodelay(true)?;
                    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                        .timer(TokioTimer::new())
                        .keep_alive_interval(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS))
                        .keep_alive_timeout(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS))
                        .keep_alive_while_idle(true)
                        // DATA frames of up to 1 MiB instead of HTTP/2's 16 KiB: a 100 MB
                        // LTX file in ~400 frames, not 6,400 (compat shipping, 6 pairs:
                        // median 579 → 627 MB/s, within this host's spread of ±25 %).
                        .max_frame_size(1 << 20)
                        .handshake(TokioIo::new(tcp));
                    let exchange = async move {
                        let (mut sender, conn) = handshake.await.map_err(io::Error::other)?;
                        tokio::spawn(conn);
                        let req = Request::builder()
                            .method(method)
                            .uri(&uri)
                            .header("litefs-id", node_id.to_string())
                            .body(Full::new(Bytes::from(body)))
                            .map_err(io::Error::other)?;
                        sender.send_request(req).await.map_err(io::Error::other)
                    };
                    tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), exchange)
                        .await
                        .map_err(|_| {
                            io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!(
                                    "no response head from {authority} within {CONNECT_TIMEOUT_MS} ms"
                                ),
                            )
                        })?
                };
                let resp = match head.await {
                    Ok(resp) => resp,
                    Err(e) => {
                        let _ = head_tx.send(Err(e));
                        return;
                    }
                };
                let (parts, mut body) = resp.into_parts();
                if head_tx.send(Ok((parts.status, parts.headers))).is_err() {
                    return;
                }
                let idle = Duration::from_millis(STREAM_IDLE_TIMEOUT_MS);
                loop {
                    let item = match tokio::time::timeout(idle, body.frame()).await {
                        Err(_) => Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no data from the primary for {STREAM_IDLE_TIMEOUT_MS} ms"),
                        )),
                        Ok(None) => break,
                        Ok(Some(Err(e))) => Err(io::Error::other(e)),
                        Ok(Some(Ok(frame))) => match frame.into_data() {
                            Ok(bytes) => Ok(bytes),
                            Err(_) => continue, // trailers
                        },
                    };
                    let failed = item.is_err();
                    // A dropped reader ends the call (and closes the connection).
                    if body_tx.send(item).await.is_err() || failed {
                        break;
                    }
                }
            });
        })?;
    let (status, headers) = head_rx
        .recv()
        .map_err(|_| io::Error::other("client thread ended before the response"))??;
    Ok(StreamingResponse {
        status,
        headers,
        body: ChannelReader::new(body_rx),
    })
}

#[cfg(test)]
mod tests {
    use super::BaseUrl;

    #[test]
    fn base_urls_keep_host_and_port_only() {
        let a = |u: &str| BaseUrl::parse(u).map(|b| b.authority);
        assert_eq!(a("http://node1:20202").unwrap(), "node1:20202");
        assert_eq!(a("http://node1:20202/x/y?z=1").unwrap(), "node1:20202");
        assert_eq!(a("http://node1").unwrap(), "node1:80");
        assert_eq!(a("http://[::1]:7").unwrap(), "[::1]:7");
        assert_eq!(a("http://[::1]").unwrap(), "[::1]:80");
        assert!(a("ftp://x").unwrap_err().contains("invalid URL scheme"));
        assert!(a("node1:20202").unwrap_err().contains("invalid URL scheme"));
        assert!(a("http:///x").unwrap_err().contains("URL host required"));
        assert!(
            a("https://x")
                .unwrap_err()
                .contains("https is not supported")
        );
    }
}
