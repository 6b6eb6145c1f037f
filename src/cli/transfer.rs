//! What `litefs export` and `litefs import` share: the node URL, one HTTP/1.1 exchange over
//! hyper's client connection API (a Go LiteFS node serves HTTP/1.1 next to h2c, as we do),
//! Go's duration format for the final line, and a progress line on a terminal.

use crate::http::client::BaseUrl;
use anyhow::{Context, Result, anyhow};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::client::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

/// `-url` when not given (spec §8.10).
pub const DEFAULT_URL: &str = "http://localhost:20202";
/// Longest wait for the TCP connection to the node.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Transfers smaller than this show no progress (they take a moment).
pub const PROGRESS_MIN_BYTES: u64 = 64 << 20;
/// Least time between two progress lines.
const PROGRESS_INTERVAL_MS: u64 = 200;
/// Bytes read from the file per request body frame.
const UPLOAD_BLOCK_BYTES: usize = 256 * 1024;
/// Most of an error response's body shown to the user.
const ERROR_TEXT_BYTES_MAX: usize = 4096;

/// `host:port` to dial for `url` (spec §4.1; see [`BaseUrl::parse`]).
pub fn node_authority(url: &str) -> Result<String> {
    BaseUrl::parse(url)
        .map(|b| b.authority)
        .map_err(|e| anyhow!(e))
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space is `+`, others `%XX`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// `whole` with `frac_digits` decimals of `frac`, trailing zeros (and a bare point) dropped.
fn trimmed_decimal(whole: u64, frac: u64, frac_digits: usize) -> String {
    let mut s = format!("{whole}.{frac:0frac_digits$}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    s
}

/// Go's `time.Duration.String()`: `0s`, `850ns`, `1.5µs`, `12.345678ms`, `2m3.5s`, `1h0m0s`.
pub fn go_duration(d: Duration) -> String {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    match ns {
        0 => "0s".into(),
        1..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{}µs", trimmed_decimal(ns / 1_000, ns % 1_000, 3)),
        1_000_000..=999_999_999 => {
            format!("{}ms", trimmed_decimal(ns / 1_000_000, ns % 1_000_000, 6))
        }
        _ => {
            let (h, m) = (ns / 3_600_000_000_000, ns / 60_000_000_000 % 60);
            let s_ns = ns % 60_000_000_000;
            let s = trimmed_decimal(s_ns / 1_000_000_000, s_ns % 1_000_000_000, 9);
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

/// One progress line: `export "db": 12.0 of 100.0 MiB (12%)`.
pub fn progress_line(label: &str, done_bytes: u64, total_bytes: u64) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let percent = (done_bytes * 100).checked_div(total_bytes).unwrap_or(100);
    format!(
        "{label}: {:.1} of {:.1} MiB ({percent}%)",
        mib(done_bytes),
        mib(total_bytes)
    )
}

/// A progress line on stderr, redrawn in place, shown only when stderr is a terminal and the
/// transfer is at least [`PROGRESS_MIN_BYTES`].
pub struct Progress {
    label: String,
    total_bytes: u64,
    done_bytes: u64,
    enabled: bool,
    last_draw: Option<Instant>,
}

impl Progress {
    pub fn new(label: String, total_bytes: u64) -> Progress {
        // SAFETY: isatty only inspects the descriptor number; any value is allowed.
        let terminal = unsafe { libc::isatty(libc::STDERR_FILENO) } == 1;
        Progress {
            label,
            total_bytes,
            done_bytes: 0,
            enabled: terminal && total_bytes >= PROGRESS_MIN_BYTES,
            last_draw: None,
        }
    }

    pub fn add(&mut self, bytes: u64) {
        self.done_bytes += bytes;
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let due = self
            .last_draw
            .is_none_or(|at| now.duration_since(at) >= Duration::from_millis(PROGRESS_INTERVAL_MS));
        if due {
            self.last_draw = Some(now);
            self.draw();
        }
    }

    fn draw(&self) {
        let line = progress_line(&self.label, self.done_bytes, self.total_bytes);
        let _ = write!(io::stderr(), "\r{line}\x1b[K");
    }

    /// Draws the final state and ends the line.
    pub fn finish(&self) {
        if self.enabled {
            self.draw();
            let _ = writeln!(io::stderr());
        }
    }
}

/// A request body streamed from a file, with an exact length (sent as `Content-Length`).
/// Reads happen on the runtime thread: the CLI runs nothing else there, and a local read
/// of one block is short.
pub struct FileBody {
    file: File,
    left_bytes: u64,
    progress: Progress,
}

impl FileBody {
    pub fn new(file: File, len_bytes: u64, progress: Progress) -> FileBody {
        FileBody {
            file,
            left_bytes: len_bytes,
            progress,
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.left_bytes == 0 {
            self.progress.finish();
            return Poll::Ready(None);
        }
        let len = UPLOAD_BLOCK_BYTES.min(usize::try_from(self.left_bytes).unwrap_or(usize::MAX));
        let mut block = vec![0u8; len];
        if let Err(e) = self.file.read_exact(&mut block) {
            let e = io::Error::new(e.kind(), format!("read the file to import: {e}"));
            return Poll::Ready(Some(Err(e)));
        }
        self.left_bytes -= len as u64;
        self.progress.add(len as u64);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(block)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left_bytes == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left_bytes)
    }
}

/// A current-thread runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the I/O runtime")
}

/// Sends `method /path?query` to `authority` over a fresh HTTP/1.1 connection and returns
/// the response head and its streaming body.
pub async fn send<B>(
    authority: &str,
    method: hyper::Method,
    path_and_query: &str,
    body: B,
) -> Result<Response<hyper::body::Incoming>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connect = tokio::net::TcpStream::connect(authority);
    let tcp = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect)
        .await
        .map_err(|_| anyhow!("connect to {authority}: timed out after {CONNECT_TIMEOUT_MS} ms"))?
        .with_context(|| format!("connect to {authority}"))?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .with_context(|| format!("HTTP handshake with {authority}"))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(hyper::header::HOST, authority)
        .body(body)?;
    sender
        .send_request(req)
        .await
        .with_context(|| format!("{path_and_query} on {authority}"))
}

/// The text of an error response (Go's `http.Error`: the message and a newline), at most
/// [`ERROR_TEXT_BYTES_MAX`] bytes.
pub async fn error_text(resp: Response<hyper::body::Incoming>) -> String {
    use http_body_util::BodyExt;
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while text.len() < ERROR_TEXT_BYTES_MAX {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    text.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    text.truncate(ERROR_TEXT_BYTES_MAX);
    String::from_utf8_lossy(&text).trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_escape_matches_go() {
        assert_eq!(query_escape("my.db"), "my.db");
        assert_eq!(query_escape("a b&c=d/é~"), "a+b%26c%3Dd%2F%C3%A9~");
    }

    #[test]
    fn durations_print_as_go_does() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(850), "850ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_nanos(12_345_678), "12.345678ms"),
            (Duration::from_millis(12), "12ms"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_millis(123_500), "2m3.5s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_nanos(3_723_000_000_001), "1h2m3.000000001s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line("export \"db\"", 12 << 20, 100 << 20),
            "export \"db\": 12.0 of 100.0 MiB (12%)"
        );
        assert_eq!(progress_line("x", 0, 0), "x: 0.0 of 0.0 MiB (100%)");
    }
}
