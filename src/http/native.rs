//! The native stream between litefs-rs nodes: the frames of `POST /stream` (spec §4.4) on a
//! plain TCP connection, with LTX payloads sent by `sendfile(2)` — from the page cache to the
//! socket without a copy through user space — and, when large, received by `splice(2)` from
//! the socket into the replica's file ([`splice_to_file`]).
//!
//! Negotiation: a replica opens a connection to the primary's API port and sends the native
//! hello (below) instead of an HTTP request. Our server peeks at the first four bytes of every
//! connection: `LFSN` goes here, anything else to hyper. A Go LiteFS primary answers the hello
//! with an HTTP error (its first line is a malformed request line) and closes; the replica then
//! falls back to the compat transport (h2c `POST /stream`) and keeps using it for that primary.
//! A peer that closes or stays silent gets the compat transport for that connection only.
//!
//! ```text
//! hello    "LFSN/1\r\n" · node id u64 · filter length u32 · filter (comma-separated names,
//!          ≤ 64 KiB) · position map (spec §4.4 encoding); ≤ 64 MiB in all
//! answer   "LFSN/1\r\n" · status u32 (200, 400, 503) · node id u64 ·
//!          cluster id length u32 · cluster id · message length u32 · message (≤ 4 KiB each)
//! frames   as compat, except that an LTX frame's payload is `length u64 · raw bytes` instead
//!          of the chunked encoding (the frame header's size field stays 0)
//! ```
//! All integers big-endian.

use super::App;
use super::stream::{self, FrameSink};
use crate::proto::{self, Frame, PosMap};
use crate::types::NodeId;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

/// What the accept loop peeks at.
pub const MAGIC: &[u8; 4] = b"LFSN";
/// The first line of a hello and of an answer: the magic and the protocol version. A line, so
/// that an HTTP server (Go LiteFS) reads it as a malformed request line and answers `400` at
/// once instead of waiting for the rest of a request.
pub const PREFIX: &[u8; 8] = b"LFSN/1\r\n";
/// Largest hello accepted (the compat transport's position-map body limit).
const HELLO_BYTES_MAX: u64 = 64 << 20;
/// Longest filter and texts in the hello and answer.
const FILTER_LEN_MAX: u32 = 64 * 1024;
const TEXT_LEN_MAX: u32 = 4096;
/// Longest wait for a hello, and for a blocked write to a replica before it is given up.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
pub const SEND_TIMEOUT_MS: u64 = 30_000;
/// Largest `sendfile` call (the kernel caps one call near 2 GiB anyway).
const SENDFILE_CHUNK_BYTES: usize = 1 << 30;

/// Bytes a receiving pipe is asked to hold (`F_SETPIPE_SZ`; the default is 64 KiB): fewer
/// `splice` calls per payload. Best effort: a smaller limit (`/proc/sys/fs/pipe-max-size`)
/// keeps the default.
const SPLICE_PIPE_BYTES: libc::c_int = 1 << 20;

/// Moves exactly `len_bytes` from `socket` into `file` at `offset` on, through a pipe with
/// `splice(2)`: the socket's pages go into the pipe without a copy (on loopback they are the
/// sender's page-cache pages `sendfile` queued), and from it into the file's page cache with
/// the one copy a write needs — none through user space. Where `splice` is not supported
/// (some sockets, some file systems: `EINVAL`), the rest is copied with `read` and `pwrite`.
/// The socket's read timeout applies to every wait (`SO_RCVTIMEO`: a silent peer is a
/// `TimedOut` error); an early end of the stream is `UnexpectedEof`.
pub fn splice_to_file(
    socket: &TcpStream,
    file: &File,
    mut offset: u64,
    len_bytes: u64,
) -> io::Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two c_ints for the call to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return copy_by_reads(socket, file, offset, len_bytes);
    }
    // SAFETY: `pipe2` succeeded, so both descriptors are open and owned by nobody else.
    let (pipe_r, pipe_w) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: the pipe is open (owned above); F_SETPIPE_SZ takes an int argument.
    let pipe_bytes =
        match unsafe { libc::fcntl(pipe_w.as_raw_fd(), libc::F_SETPIPE_SZ, SPLICE_PIPE_BYTES) } {
            n if n > 0 => n as usize,
            _ => 64 * 1024,
        };
    let unsupported = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS));
    let mut left = len_bytes;
    while left > 0 {
        let want = usize::try_from(left).map_or(pipe_bytes, |l| l.min(pipe_bytes));
        // SAFETY: the socket and the pipe are open for the call; null offsets (a socket and
        // a pipe have none).
        let n = unsafe {
            libc::splice(
                socket.as_raw_fd(),
                std::ptr::null_mut(),
                pipe_w.as_raw_fd(),
                std::ptr::null_mut(),
                want,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Err(read_timed_out(left)),
                // The pipe is empty here: the rest by reads.
                _ if unsupported(&e) => return copy_by_reads(socket, file, offset, left),
                _ => return Err(e),
            }
        }
        if n == 0 {
            return Err(stream_ended(left));
        }
        let mut in_pipe = n as usize;
        while in_pipe > 0 {
            let mut at = libc::loff_t::try_from(offset)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: the pipe and the file are open for the call; `at` is a valid loff_t the
            // kernel advances.
            let m = unsafe {
                libc::splice(
                    pipe_r.as_raw_fd(),
                    std::ptr::null_mut(),
                    file.as_raw_fd(),
                    &mut at,
                    in_pipe,
                    libc::SPLICE_F_MOVE,
                )
            };
            if m < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if !unsupported(&e) {
                    return Err(e);
                }
                // The file cannot take a splice: empty the pipe into it, then read the rest.
                let mut held = vec![0u8; in_pipe];
                File::from(pipe_r).read_exact(&mut held)?;
                file.write_all_at(&held, offset)?;
                offset += in_pipe as u64;
                return copy_by_reads(socket, file, offset, left - n as u64);
            }
            if m == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "splice into the LTX file wrote nothing",
                ));
            }
            in_pipe -= m as usize;
            offset += m as u64;
        }
        left -= n as u64;
    }
    Ok(())
}

/// [`splice_to_file`] by `read` and `pwrite`, 1 MiB at a time.
fn copy_by_reads(
    mut socket: &TcpStream,
    file: &File,
    mut offset: u64,
    mut left: u64,
) -> io::Result<()> {
    const CHUNK_BYTES: u64 = 1 << 20;
    let mut buf = vec![0u8; left.min(CHUNK_BYTES) as usize];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match socket.read(&mut buf[..want]) {
            Ok(0) => return Err(stream_ended(left)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(read_timed_out(left)),
            Err(e) => return Err(e),
        };
        file.write_all_at(&buf[..n], offset)?;
        offset += n as u64;
        left -= n as u64;
    }
    Ok(())
}

fn read_timed_out(left: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no LTX bytes within the read timeout, {left} bytes short"),
    )
}

fn stream_ended(left: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the stream ended {left} bytes before the end of an LTX payload"),
    )
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn read_text(r: &mut impl Read, max: u32, what: &str) -> io::Result<String> {
    let len = read_u32(r)?;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("native stream: {what} of {len} bytes exceeds {max}"),
        ));
    }
    let mut b = vec![0u8; len as usize];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("native stream: {what} is not UTF-8"),
        )
    })
}

fn put_text(buf: &mut Vec<u8>, text: &str) {
    buf.extend_from_slice(&(text.len() as u32).to_be_bytes());
    buf.extend_from_slice(text.as_bytes());
}

/// What a replica asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub node_id: NodeId,
    pub filter: Vec<String>,
    pub pos_map: PosMap,
}

impl Hello {
    pub fn to_bytes(&self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        buf.extend_from_slice(PREFIX);
        buf.extend_from_slice(&self.node_id.0.to_be_bytes());
        put_text(&mut buf, &self.filter.join(","));
        proto::write_pos_map(&mut buf, &self.pos_map).map_err(io::Error::other)?;
        Ok(buf)
    }

    /// Reads a hello whose magic was already checked (peeked) by the caller.
    pub fn read_from(r: &mut impl Read) -> io::Result<Hello> {
        let r = &mut r.take(HELLO_BYTES_MAX);
        let mut prefix = [0u8; PREFIX.len()];
        r.read_exact(&mut prefix)?;
        if &prefix != PREFIX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "native stream: hello starts {:?}; this node speaks {:?}",
                    String::from_utf8_lossy(&prefix),
                    String::from_utf8_lossy(PREFIX)
                ),
            ));
        }
        let node_id = NodeId(read_u64(r)?);
        let filter = read_text(r, FILTER_LEN_MAX, "filter")?;
        let pos_map = proto::read_pos_map(r).map_err(io::Error::other)?;
        Ok(Hello {
            node_id,
            filter: filter
                .split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
            pos_map,
        })
    }
}

/// The primary's answer to a hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u32,
    pub node_id: NodeId,
    pub cluster_id: String,
    pub message: String,
}

impl Answer {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        buf.extend_from_slice(PREFIX);
        buf.extend_from_slice(&self.status.to_be_bytes());
        buf.extend_from_slice(&self.node_id.0.to_be_bytes());
        put_text(&mut buf, &self.cluster_id);
        put_text(&mut buf, &self.message);
        buf
    }

    /// Reads the peer's reply to a hello.
    pub fn read_from(r: &mut impl Read) -> io::Result<Reply> {
        let mut prefix = [0u8; PREFIX.len()];
        let mut got = 0;
        while got < prefix.len() {
            match r.read(&mut prefix[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Closed with a reset, or silent until the read timeout: no verdict.
                Err(e)
                    if got == 0
                        && matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionReset
                                | io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                        ) =>
                {
                    return Ok(Reply::NoReply);
                }
                Err(e) => return Err(e),
            }
        }
        if got == 0 {
            return Ok(Reply::NoReply);
        }
        if got < prefix.len() || prefix != *PREFIX {
            // Bytes that are not ours (an HTTP status line from Go LiteFS).
            return Ok(Reply::NotNative);
        }
        Ok(Reply::Native(Answer {
            status: read_u32(r)?,
            node_id: NodeId(read_u64(r)?),
            cluster_id: read_text(r, TEXT_LEN_MAX, "cluster id")?,
            message: read_text(r, TEXT_LEN_MAX, "message")?,
        }))
    }
}

/// What a peer did with a hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Native(Answer),
    /// It answered in another protocol: it does not speak the native stream.
    NotNative,
    /// It closed or said nothing: no verdict (use compat for this connection only).
    NoReply,
}

/// The native transport's sink: frames by `write`, LTX payloads by `sendfile`. Counts the
/// bytes of each path, so the share copied through user space can be reported.
struct NativeSink {
    socket: TcpStream,
    app: Arc<App>,
    /// TCP_CORK is on: frames written since the last flush wait for full segments.
    corked: bool,
}

impl NativeSink {
    /// Corks the socket before the first write after a flush, so the frames of one pass — a
    /// header, a length, a payload and an HWM per file — leave in full segments rather than
    /// four packets per transaction (which the replica woke up for one by one, never finding
    /// two files to apply together).
    fn cork(&mut self, on: bool) -> io::Result<()> {
        if self.corked == on {
            return Ok(());
        }
        let value: libc::c_int = on.into();
        // SAFETY: the socket is open for the call; `value` is a valid c_int that outlives it
        // and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.corked = on;
        Ok(())
    }
}

impl FrameSink for NativeSink {
    fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        self.cork(true)?;
        let mut buf = Vec::with_capacity(32);
        frame.write_to(&mut buf).map_err(io::Error::other)?;
        self.socket.write_all(&buf)?;
        self.app.metrics.add_sent_bytes(buf.len() as u64);
        self.app.metrics.add_native_written_bytes(buf.len() as u64);
        Ok(())
    }

    fn ltx_payload(&mut self, file: &mut File, len_bytes: u64) -> io::Result<()> {
        self.cork(true)?;
        self.socket.write_all(&len_bytes.to_be_bytes())?;
        self.app.metrics.add_native_written_bytes(8);
        let mut offset: libc::off_t = 0;
        let mut left = len_bytes;
        while left > 0 {
            let want =
                usize::try_from(left).map_or(SENDFILE_CHUNK_BYTES, |l| l.min(SENDFILE_CHUNK_BYTES));
            // SAFETY: both descriptors are open for the duration of the call (owned by
            // `self.socket` and `file`), and `offset` is a valid, exclusively borrowed off_t.
            let n = unsafe {
                libc::sendfile(self.socket.as_raw_fd(), file.as_raw_fd(), &mut offset, want)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("LTX file ended {left} bytes early while streaming it"),
                ));
            }
            left -= n as u64;
            self.app.metrics.add_sent_bytes(n as u64);
            self.app.metrics.add_native_sendfile_bytes(n as u64);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Uncorking sends what is queued at once (TCP_NODELAY is set).
        self.cork(false)
    }

    fn abort(&mut self, _e: io::Error) {
        // A reset (linger 0, then close when the sink is dropped) tells the replica it was not
        // a clean end; a FIN at a frame boundary would read as one.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the descriptor is open (owned by `self.socket`), and `linger` is a valid
        // `struct linger` of the size passed.
        unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        let _ = self.socket.shutdown(std::net::Shutdown::Read);
    }
}

/// Serves one native connection (the caller peeked `LFSN`); returns when the stream ends.
pub(super) async fn serve(app: Arc<App>, socket: tokio::net::TcpStream) {
    let socket = match socket.into_std().and_then(|s| {
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_millis(HANDSHAKE_TIMEOUT_MS)))?;
        s.set_write_timeout(Some(Duration::from_millis(SEND_TIMEOUT_MS)))?;
        s.set_nodelay(true)?;
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => return eprintln!("litefs: native stream: {e}"),
    };
    // Before reading positions, so a commit between the read and the first wait is seen.
    let changes = app.store.subscribe();
    let app2 = app.clone();
    let handshake = tokio::task::spawn_blocking(move || handshake(&app2, socket)).await;
    let (socket, hello) = match handshake {
        Ok(Ok(Some(done))) => done,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return eprintln!("litefs: native stream: {e}"),
        Err(e) => return eprintln!("litefs: native stream: {e}"),
    };
    let filter: Option<BTreeSet<String>> =
        (!hello.filter.is_empty()).then(|| hello.filter.into_iter().collect());
    app.metrics.stream_started();
    let sink = Box::new(NativeSink {
        socket,
        app: app.clone(),
        corked: false,
    });
    // The loop gets a thread of its own (a runtime of its own on a blocking-pool thread, held
    // for the stream's life: one per replica, against tokio's 512), so a commit's
    // notification wakes the thread that sends the file (`stream::Passes::Inline`). A gone
    // replica shows as a failed write at the next heartbeat at the latest.
    let metrics = app.metrics.clone();
    let stream = tokio::task::spawn_blocking(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                app.metrics.stream_ended();
                return eprintln!("litefs: native stream: runtime: {e}");
            }
        };
        rt.block_on(stream::run(
            app,
            hello.pos_map,
            filter,
            changes,
            sink,
            std::future::pending(),
            stream::Passes::Inline,
        ));
    });
    if let Err(e) = stream.await {
        // A pass panicked, or the task never ran: `run` did not get to count the end.
        metrics.stream_ended();
        eprintln!("litefs: native stream: {e}");
    }
}

/// Reads the hello and answers it; `None` when the answer refused the replica.
fn handshake(app: &App, mut socket: TcpStream) -> io::Result<Option<(TcpStream, Hello)>> {
    // Unbuffered: a buffer could swallow bytes after the hello (there are none today, but
    // the socket is handed on).
    let hello = Hello::read_from(&mut socket)?;
    let (status, message) = if hello.node_id == app.store.node_id() {
        (400, "cannot connect to self")
    } else if !app.store.is_writable() {
        (503, "node is not the primary")
    } else {
        (200, "")
    };
    let answer = Answer {
        status,
        node_id: app.store.node_id(),
        cluster_id: app.store.role().cluster_id().unwrap_or_default(),
        message: message.to_string(),
    };
    socket.write_all(&answer.to_bytes())?;
    if status != 200 {
        return Ok(None);
    }
    Ok(Some((socket, hello)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Checksum, Pos, TxId};

    /// Sends `data` on a loopback connection in pieces and splices `len` bytes of it into a
    /// file opened by `open` at offset 5; returns the result and the file's bytes.
    fn splice_loopback(
        data: Vec<u8>,
        len: u64,
        open: impl FnOnce(&std::path::Path) -> File,
    ) -> (io::Result<()>, Vec<u8>) {
        let (socket, sender) = crate::testkit::loopback_sending(data, 100_000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"head_").unwrap();
        let file = open(&path);
        let result = splice_to_file(&socket, &file, 5, len);
        drop(socket);
        sender.join().unwrap();
        (result, std::fs::read(&path).unwrap())
    }

    /// Every byte lands in order after the offset; a file that cannot take a splice (opened
    /// `O_APPEND`: `EINVAL`) gets the same bytes by reads; a stream that ends early is an
    /// `UnexpectedEof`.
    #[test]
    fn splice_to_file_moves_exactly_the_payload() {
        let mut rng = crate::testkit::XorShift64(4);
        let data = rng.bytes(3_000_017);
        let len = data.len() as u64;
        let writable =
            |p: &std::path::Path| std::fs::OpenOptions::new().write(true).open(p).unwrap();
        let appending =
            |p: &std::path::Path| std::fs::OpenOptions::new().append(true).open(p).unwrap();
        for (case, open) in [
            ("splice", &writable as &dyn Fn(&std::path::Path) -> File),
            ("reads", &appending),
        ] {
            let (result, back) = splice_loopback(data.clone(), len, open);
            result.unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(back.len(), 5 + data.len(), "{case}");
            assert_eq!(&back[..5], b"head_", "{case}");
            assert!(
                back[5..] == data[..],
                "{case}: the file differs from what was sent"
            );
        }
        let (result, _) = splice_loopback(data[..1000].to_vec(), 5000, writable);
        let error = result.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
    }

    #[test]
    fn hello_and_answer_round_trip_byte_for_byte() {
        let mut pos_map = PosMap::new();
        pos_map.insert(
            "db".into(),
            Pos {
                txid: TxId(3),
                post_apply_checksum: Checksum(0x9d81_a60d_39fb_4760),
            },
        );
        let hello = Hello {
            node_id: NodeId(0x0102_0304_0506_0708),
            filter: vec!["a".into(), "b".into()],
            pos_map,
        };
        let bytes = hello.to_bytes().unwrap();
        let want: Vec<u8> = [
            &b"LFSN/1\r\n"[..],
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &[0, 0, 0, 3],
            b"a,b",
            &[0, 0, 0, 1, 0, 0, 0, 2],
            b"db",
            &[0, 0, 0, 0, 0, 0, 0, 3],
            &[0x9d, 0x81, 0xa6, 0x0d, 0x39, 0xfb, 0x47, 0x60],
        ]
        .concat();
        assert_eq!(bytes, want);
        assert_eq!(Hello::read_from(&mut bytes.as_slice()).unwrap(), hello);

        let answer = Answer {
            status: 503,
            node_id: NodeId(7),
            cluster_id: "LFSC0123456789ABCDEF".into(),
            message: "node is not the primary".into(),
        };
        let bytes = answer.to_bytes();
        assert_eq!(&bytes[..12], b"LFSN/1\r\n\0\0\x01\xf7");
        assert_eq!(
            Answer::read_from(&mut bytes.as_slice()).unwrap(),
            Reply::Native(answer)
        );
    }

    #[test]
    fn replies_that_are_not_native_and_limits() {
        let http = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        assert_eq!(Answer::read_from(&mut &http[..]).unwrap(), Reply::NotNative);
        assert_eq!(
            Answer::read_from(&mut &b"HT"[..]).unwrap(),
            Reply::NotNative
        );
        assert_eq!(Answer::read_from(&mut &b""[..]).unwrap(), Reply::NoReply);
        let mut hostile = b"LFSN/1\r\n".to_vec();
        hostile.extend_from_slice(&[0; 8]);
        hostile.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = Hello::read_from(&mut hostile.as_slice()).unwrap_err();
        assert!(
            err.to_string()
                .contains("filter of 4294967295 bytes exceeds 65536"),
            "{err}"
        );
        let newer = b"LFSN/2\r\n";
        let err = Hello::read_from(&mut &newer[..]).unwrap_err();
        assert!(err.to_string().contains("this node speaks"), "{err}");
    }
}
