//! A replica following its primary (spec §4.4 "Client (replica) algorithm", §7.3 static
//! lease): connect with the position map, apply every LTX file as it arrives, mark the node
//! ready at the primary's Ready frame, track its clock for `.lag`, and reconnect after a
//! delay whenever the stream ends.
//!
//! One thread per replica runs the loop; applying is synchronous (it waits for the internal
//! write lock, writes files, sends kernel invalidations) and happens the moment a file's last
//! byte arrives — there is no polling interval anywhere on the path.

use crate::http::client::{self, BaseUrl};
use crate::http::native;
use crate::ltx;
use crate::proto::{ChunkedReader, Frame, PosMap, write_pos_map};
use crate::stop::{Stop, Worker};
use crate::store::{Db, PrimaryInfo, Receipt, Received, Store, VerifiedLtx, receives_into_file};
use hyper::{Method, StatusCode};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Bytes of an error response body worth reporting.
const ERROR_BODY_LEN_MAX: u64 = 4096;

#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// The primary's hostname and API URL (`lease.hostname`, `lease.advertise-url`).
    pub primary: PrimaryInfo,
    /// `lease.reconnect-delay`.
    pub reconnect_delay: Duration,
    /// `lease.databases`: only these are replicated (empty: all).
    pub databases: Vec<String>,
    /// Try the native stream first (`http.native-stream`, a litefs-rs key); the compat
    /// transport is used when off or when the primary does not speak it.
    pub native: bool,
}

/// Why one connection ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Proto(#[from] crate::proto::Error),
    #[error("{0}")]
    Store(#[from] crate::store::Error),
    #[error("invalid response: code={code}: {body}")]
    Status { code: u16, body: String },
    #[error("cannot stream from primary with a different cluster id: {local} <> {remote}")]
    ClusterIdMismatch { local: String, remote: String },
    #[error("{0}")]
    Config(String),
}

/// Stops the loop when dropped (waiting at most [`JOIN_WAIT_MS`]: the thread may be blocked
/// reading a stream and notices at the next heartbeat, ≤ 1 s, or the idle timeout).
pub struct Replica {
    /// Held for its `Drop`.
    _worker: Worker,
}

const JOIN_WAIT_MS: u64 = 3000;

impl Replica {
    /// Starts following `options.primary` on a new thread.
    pub fn start(store: Arc<Store>, options: ReplicaOptions) -> io::Result<Replica> {
        let base = BaseUrl::parse(&options.primary.advertise_url)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        store.become_replica();
        let join_wait = Duration::from_millis(JOIN_WAIT_MS);
        let worker = Worker::spawn("litefs-replica", join_wait, move |stop| {
            run(&store, &options, &base, stop)
        })?;
        Ok(Replica { _worker: worker })
    }
}

/// The native stream's read buffer: small frames are read through it; LTX payloads are read
/// in LZ4 blocks of 64 KiB, which bypass a buffer smaller than that (no extra copy).
const NATIVE_READ_BUFFER_BYTES: usize = 16 * 1024;

fn run(store: &Store, options: &ReplicaOptions, base: &BaseUrl, stop: &Stop) {
    let mut transport = if options.native {
        Transport::Native
    } else {
        Transport::Compat
    };
    while !stop.is_set() {
        if store.fatal_hook().is_raised() {
            // An apply failed halfway: the process exits with 99; apply nothing more.
            break;
        }
        store.set_primary_info(Some(options.primary.clone()));
        match follow(store, options, base, stop, &mut transport) {
            Ok(()) => {}
            Err(e) => eprintln!(
                "litefs: replica: stream from {}: {e}; reconnecting in {:?}",
                options.primary.advertise_url, options.reconnect_delay
            ),
        }
        store.set_primary_info(None);
        store.role().clear_primary_timestamp();
        if stop.sleep(options.reconnect_delay) {
            break;
        }
    }
}

/// How LTX payloads are framed on the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// h2c `POST /stream`, chunked payloads: what Go LiteFS speaks.
    Compat,
    /// Our native stream (`http/native.rs`): length-prefixed payloads, sent with `sendfile`.
    Native,
}

/// One connection: returns `Ok` at a clean end (End frame or EOF at a frame boundary).
/// `transport` is the one to try; it becomes `Compat` when the primary does not speak native.
fn follow(
    store: &Store,
    options: &ReplicaOptions,
    base: &BaseUrl,
    stop: &Stop,
    transport: &mut Transport,
) -> Result<(), StreamError> {
    let mut pos_map = PosMap::new();
    for db in store.dbs() {
        pos_map.insert(db.name().to_string(), db.pos());
    }
    if *transport == Transport::Native {
        let hello = native::Hello {
            node_id: store.node_id(),
            filter: options.databases.clone(),
            pos_map: pos_map.clone(),
        };
        match connect_native(base, &hello)? {
            (native::Reply::Native(answer), socket) => {
                if answer.status != 200 {
                    return Err(StreamError::Status {
                        code: answer.status as u16,
                        body: answer.message,
                    });
                }
                check_cluster_id(store, Some(&answer.cluster_id))?;
                let mut r = BufReader::with_capacity(NATIVE_READ_BUFFER_BYTES, socket);
                return read_frames(store, &mut r, Transport::Native, stop);
            }
            (native::Reply::NotNative, _) => {
                eprintln!(
                    "litefs: replica: {} does not speak the native stream; using HTTP/2 (compat)",
                    options.primary.advertise_url
                );
                *transport = Transport::Compat;
            }
            (native::Reply::NoReply, _) => {
                // Restarting, or a proxy that waits: compat this time, native again next time.
                eprintln!(
                    "litefs: replica: no answer to the native hello from {}; trying HTTP/2 (compat) this time",
                    options.primary.advertise_url
                );
            }
        }
    }
    let mut body = Vec::new();
    write_pos_map(&mut body, &pos_map)?;
    let mut path = "/stream".to_string();
    if !options.databases.is_empty() {
        path.push_str("?filter=");
        path.push_str(&options.databases.join(","));
    }
    let resp = client::request(base, Method::POST, &path, store.node_id(), body)?;
    if resp.status != StatusCode::OK {
        return Err(StreamError::Status {
            code: resp.status.as_u16(),
            body: client::body_text(resp.body, ERROR_BODY_LEN_MAX),
        });
    }
    let cluster_id = resp
        .headers
        .get("litefs-cluster-id")
        .and_then(|v| v.to_str().ok());
    check_cluster_id(store, cluster_id)?;
    let mut r = BufReader::with_capacity(256 * 1024, resp.body);
    read_frames(store, &mut r, Transport::Compat, stop)
}

/// Sends the native hello and reads what the peer made of it.
fn connect_native(
    base: &BaseUrl,
    hello: &native::Hello,
) -> Result<(native::Reply, TcpStream), StreamError> {
    let addrs: Vec<SocketAddr> = base.authority.to_socket_addrs()?.collect();
    let connect = Duration::from_millis(client::CONNECT_TIMEOUT_MS);
    let mut last = None;
    let mut socket = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, connect) {
            Ok(s) => {
                socket = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut socket) = socket else {
        let e = last.unwrap_or_else(|| io::Error::other("no address"));
        return Err(io::Error::new(e.kind(), format!("connect to {}: {e}", base.authority)).into());
    };
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(Duration::from_millis(native::HANDSHAKE_TIMEOUT_MS)))?;
    socket.write_all(&hello.to_bytes()?)?;
    let reply = native::Answer::read_from(&mut socket)?;
    socket.set_read_timeout(Some(Duration::from_millis(client::STREAM_IDLE_TIMEOUT_MS)))?;
    Ok((reply, socket))
}

/// Reads frames until the stream ends, applying LTX files as they arrive. Small files of one
/// database that arrive back to back — already in the read buffer when the one before is
/// verified, as when the replica is behind a primary committing at full rate — are applied
/// as one batch (`Db::apply_received_batch`): one lock, one `-shm` rewrite, one round of
/// invalidations for all of them.
fn read_frames<R: StreamSource>(
    store: &Store,
    r: &mut BufReader<R>,
    transport: Transport,
    stop: &Stop,
) -> Result<(), StreamError> {
    let mut batch = Batch::default();
    while !stop.is_set() {
        if r.buffer().is_empty() {
            // Nothing more has arrived: what is verified becomes visible before we wait.
            batch.apply(store)?;
        }
        let Some(frame) = Frame::read_from(r)? else {
            break;
        };
        let Frame::Ltx { name } = frame else {
            // Ready ("caught up") and End come after the files before them are visible; an
            // HWM or heartbeat between two files does not end a batch.
            if matches!(frame, Frame::Ready | Frame::End) {
                batch.apply(store)?;
            }
            if !handle_control_frame(store, frame)? {
                break;
            }
            continue;
        };
        let db = store.open_db(&name)?;
        let receipt = match transport {
            Transport::Compat => {
                let mut payload = ChunkedReader::new(&mut *r);
                let receipt = db.receive_verified(&mut payload)?;
                // The decoder stops at the trailer; the terminator follows.
                payload.drain()?;
                receipt
            }
            Transport::Native => {
                let mut len = [0u8; 8];
                r.read_exact(&mut len)?;
                let len_bytes = u64::from_be_bytes(len);
                if receives_into_file(len_bytes) && r.get_ref().socket().is_some() {
                    // A large file goes from the socket to its temp file by `splice`: its
                    // header and what is buffered already first, then the rest without
                    // passing through here.
                    let mut head = [0u8; ltx::HEADER_SIZE];
                    r.read_exact(&mut head)?;
                    db.receive_into_file(len_bytes, &head, |file| {
                        let mut at = ltx::HEADER_SIZE as u64;
                        let left = len_bytes - at;
                        let buffered = r.buffer();
                        let ahead = buffered
                            .len()
                            .min(usize::try_from(left).unwrap_or(usize::MAX));
                        std::os::unix::fs::FileExt::write_all_at(file, &buffered[..ahead], at)?;
                        r.consume(ahead);
                        at += ahead as u64;
                        let socket = r.get_ref().socket().expect("checked above");
                        native::splice_to_file(socket, file, at, len_bytes - at)
                    })?
                } else {
                    let mut payload = (&mut *r).take(len_bytes);
                    let receipt = db.receive_verified(&mut payload)?;
                    let extra = io::copy(&mut payload, &mut io::sink())?;
                    if extra != 0 || payload.limit() != 0 {
                        return Err(StreamError::Config(format!(
                            "native stream: the LTX file {name:?} ended {} bytes before its \
                             declared length of {len_bytes}",
                            payload.limit() + extra
                        )));
                    }
                    receipt
                }
            }
        };
        match receipt {
            Receipt::Own => {}
            Receipt::Memory(verified) if verified.is_increment() => {
                if !batch.takes(&db, &verified) {
                    batch.apply(store)?;
                }
                batch.push(db, verified);
            }
            Receipt::Memory(verified) => {
                batch.apply(store)?;
                batch.push(db, verified);
                batch.apply(store)?;
            }
            Receipt::Spilled(spilled) => {
                // In arrival order: what is held back goes first.
                batch.apply(store)?;
                note_applied(store, db.apply_spilled(spilled)?);
            }
        }
    }
    batch.apply(store)
}

/// What a stream is read from, and the socket under it when LTX payloads can be spliced from
/// it into their files (the native transport's plain TCP connection; not the compat
/// transport's HTTP/2 body).
trait StreamSource: Read {
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl StreamSource for TcpStream {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl StreamSource for client::BodyReader {}

/// Most files, and bytes, one batch applies at once: bounds how long readers wait for the
/// lock and how much a replica holds in memory.
const BATCH_FILES_MAX: usize = 64;
const BATCH_BYTES_MAX: usize = 4 << 20;

/// Verified files of one database waiting to be applied together.
#[derive(Default)]
struct Batch {
    db: Option<Arc<Db>>,
    files: Vec<VerifiedLtx>,
    len_bytes: usize,
}

impl Batch {
    /// Whether `file` of `db` may join without applying what is here first.
    fn takes(&self, db: &Arc<Db>, file: &VerifiedLtx) -> bool {
        match &self.db {
            None => true,
            Some(held) => {
                Arc::ptr_eq(held, db)
                    && self.files.len() < BATCH_FILES_MAX
                    && self.len_bytes + file.len_bytes() <= BATCH_BYTES_MAX
            }
        }
    }

    fn push(&mut self, db: Arc<Db>, file: VerifiedLtx) {
        self.len_bytes += file.len_bytes();
        self.files.push(file);
        self.db = Some(db);
    }

    fn apply(&mut self, store: &Store) -> Result<(), StreamError> {
        let Some(db) = self.db.take() else {
            return Ok(());
        };
        self.len_bytes = 0;
        let received = db.apply_received_batch(std::mem::take(&mut self.files))?;
        note_applied(store, received);
        Ok(())
    }
}

fn note_applied(store: &Store, received: Received) {
    if let Received::Applied { timestamp_ms, .. } = received
        && store.role().is_ready()
    {
        store.role().set_primary_timestamp_ms(timestamp_ms);
    }
}

/// Every frame but LTX; false when the stream is over.
fn handle_control_frame(store: &Store, frame: Frame) -> Result<bool, StreamError> {
    match frame {
        Frame::Ltx { name } => {
            return Err(StreamError::Config(format!(
                "internal: the LTX frame of {name:?} reached the control frame handler"
            )));
        }
        Frame::Ready => store.role().mark_ready(),
        Frame::End => return Ok(false),
        Frame::DropDb { name } => {
            eprintln!("litefs: replica: deprecated drop db frame received for {name:?}, skipping");
        }
        Frame::Handoff { .. } => {
            // Static leases have no handoff (spec §7.3); a primary sending one is confused.
            return Err(StreamError::Config(
                "the primary offered a lease handoff, which static leases do not support".into(),
            ));
        }
        Frame::Hwm { .. } => {} // backups are not built yet: nothing tracks the HWM
        Frame::Heartbeat { timestamp_ms } => {
            store.role().set_primary_timestamp_ms(timestamp_ms);
        }
    }
    Ok(true)
}

/// Spec §4.4 step 2: adopt the primary's cluster id if we have none; refuse a different one.
fn check_cluster_id(store: &Store, remote: Option<&str>) -> Result<(), StreamError> {
    let Some(remote) = remote.filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    match store.role().cluster_id() {
        None => Ok(store.role().set_cluster_id(remote)?),
        Some(local) if local == remote => Ok(()),
        Some(local) => Err(StreamError::ClusterIdMismatch {
            local,
            remote: remote.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DbOptions, FileKind};
    use crate::types::{Checksum, NodeId, TxId};
    use std::net::TcpListener;

    /// A snapshot of `pages` random 4 KiB pages written by node 1 (LZ4: its blocks are stored
    /// raw), and the database image it holds.
    fn random_snapshot(pages: u32) -> (Vec<u8>, Vec<u8>) {
        let mut rng = crate::testkit::XorShift64(17);
        let image = rng.bytes(pages as usize * 4096);
        let header = ltx::Header {
            flags: ltx::FLAG_COMPRESS_LZ4,
            page_size: 4096,
            commit: pages,
            min_txid: TxId(1),
            max_txid: TxId(1),
            timestamp_ms: 1_700_000_000_000,
            node_id: NodeId(1),
            ..ltx::Header::new()
        };
        let mut enc = ltx::Encoder::new(Vec::new(), &header).unwrap();
        for (i, page) in image.chunks_exact(4096).enumerate() {
            enc.encode_page(i as u32 + 1, page).unwrap();
        }
        let post = ltx::database_checksum(&image, 4096);
        (enc.finish(Checksum(post)).unwrap().0, image)
    }

    /// A file too large to keep in memory arrives over the native transport by `splice`: whole,
    /// it is applied byte for byte; damaged (a byte flipped, a byte added after the trailer,
    /// or cut short by the peer closing), it is refused — nothing applied, no temp file left.
    #[test]
    fn a_large_native_file_is_spliced_verified_and_applied() {
        let (file, image) = random_snapshot(600);
        assert!(file.len() > crate::store::RECEIVE_IN_MEMORY_BYTES_MAX);
        let mut flipped = file.clone();
        flipped[file.len() / 2] ^= 0x01;
        let mut longer = file.clone();
        longer.push(0);
        let cut = file[..file.len() - 100].to_vec();
        let cases: [(&str, Vec<u8>, u64, bool); 5] = [
            ("whole", file.clone(), file.len() as u64, true),
            ("flipped", flipped, file.len() as u64, false),
            ("longer", longer.clone(), longer.len() as u64, false),
            ("cut short", cut, file.len() as u64, false),
            // A length garbled in transit: refused at the header, nothing stored.
            ("garbled length", file.clone(), 512 << 20, false),
        ];
        for (case, bytes, declared_len, whole) in cases {
            let dir = tempfile::tempdir().unwrap();
            let options = DbOptions {
                node_id: NodeId(2),
                compress: false,
                strict_verify: false,
                replica: true,
            };
            let store = Store::open(dir.path(), options).unwrap();
            let mut out = Vec::new();
            Frame::Ltx { name: "db".into() }.write_to(&mut out).unwrap();
            out.extend_from_slice(&declared_len.to_be_bytes());
            out.extend_from_slice(&bytes);
            if declared_len == bytes.len() as u64 {
                Frame::End.write_to(&mut out).unwrap();
            }
            // In pieces, so some of the payload is buffered and some spliced.
            let (socket, server) = crate::testkit::loopback_sending(out, 300_000);
            let mut r = BufReader::with_capacity(NATIVE_READ_BUFFER_BYTES, socket);
            let result = read_frames(&store, &mut r, Transport::Native, &Stop::default());
            drop(r);
            server.join().unwrap();
            let db = store.db("db").expect("the frame names the database");
            let tmp_left: Vec<_> = std::fs::read_dir(db.ltx_dir())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().ends_with(".tmp"))
                .collect();
            assert!(tmp_left.is_empty(), "{case}: temp files left: {tmp_left:?}");
            if whole {
                result.unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(db.pos().txid, TxId(1), "{case}");
                let applied = std::fs::read(db.path(FileKind::Database)).unwrap();
                assert!(
                    applied == image,
                    "{case}: the database differs from the snapshot"
                );
            } else {
                assert!(result.is_err(), "{case}: the damaged file was accepted");
                assert_eq!(db.pos().txid, TxId(0), "{case}: applied anyway");
            }
        }
    }

    /// A Go LiteFS primary answers the native hello as a malformed HTTP request: the replica
    /// must recognise that and fall back, not fail.
    #[test]
    fn an_http_answer_to_the_native_hello_means_fall_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n400 Bad Request")
                .unwrap();
            buf[..n].to_vec()
        });
        let base = BaseUrl::parse(&format!("http://{addr}")).unwrap();
        let hello = native::Hello {
            node_id: crate::types::NodeId(9),
            filter: Vec::new(),
            pos_map: PosMap::new(),
        };
        let (reply, _) = connect_native(&base, &hello).unwrap();
        assert_eq!(
            reply,
            native::Reply::NotNative,
            "an HTTP answer means 'not native'"
        );
        let sent = server.join().unwrap();
        assert_eq!(
            &sent[..4],
            b"LFSN",
            "the hello starts with the magic: {sent:?}"
        );
    }
}
