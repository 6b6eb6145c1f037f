//! Our replica following a primary that speaks exactly what Go LiteFS v0.5 speaks: HTTP/2
//! with prior knowledge only (no native stream: it drops the connection on our native hello),
//! the spec §4.4 frames, and LTX files written by Go LiteFS itself (`../shared/golden`: a
//! primary's chain `-p-`, and a late replica's snapshot `-l-`).
//!
//! There is no Go LiteFS binary on this machine; the fake primary below replays Go's files in
//! Go's framing (chunked payloads, an HWM frame after each incremental, Ready, heartbeats),
//! so what is tested is that our replica applies Go-written bytes exactly.

mod common;

use hyper::body::{Body, Bytes, Frame as BodyFrame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use litefs::fuse::{Mount, MountOptions};
use litefs::ltx;
use litefs::proto::{ChunkedWriter, Frame};
use litefs::replica::{Replica, ReplicaOptions};
use litefs::store::{DbOptions, PrimaryInfo, Store};
use litefs::types::{NodeId, Pos, TxId};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden");
const CLUSTER_ID: &str = "LFSC0123456789ABCDEF";
const GO_NODE_ID: &str = "00000000000000A1";

/// The response body: blocks from a channel until the sender is dropped.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(BodyFrame::data(b))))
    }
}

fn frame(f: &Frame) -> Bytes {
    let mut buf = Vec::new();
    f.write_to(&mut buf).unwrap();
    Bytes::from(buf)
}

/// An LTX frame with the file in Go's chunked encoding (32 KiB chunks: Go's `io.Copy` buffer).
fn ltx_frame(db: &str, file: &[u8]) -> Bytes {
    let mut buf = Vec::new();
    Frame::Ltx { name: db.into() }.write_to(&mut buf).unwrap();
    let mut w = ChunkedWriter::new(&mut buf);
    for chunk in file.chunks(32 * 1024) {
        w.write_all(chunk).unwrap();
    }
    w.finish().unwrap();
    Bytes::from(buf)
}

/// Serves `POST /stream` over h2c only, replaying `files` (database name, path) in order
/// with an HWM frame after each non-snapshot file, then Ready, then a heartbeat a second.
fn go_primary(files: Vec<(String, PathBuf)>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let files = Arc::new(files);
            // Serves until the test process ends; bounded by the test's own deadlines.
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let files = files.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let files = files.clone();
                        async move {
                            assert_eq!(req.uri().path(), "/stream");
                            let (tx, rx) = mpsc::channel(64);
                            tokio::spawn(async move {
                                for (db, path) in files.iter() {
                                    let bytes = std::fs::read(path).unwrap();
                                    let _ = tx.send(ltx_frame(db, &bytes)).await;
                                    let h = ltx::verify(bytes.as_slice()).unwrap().header;
                                    if !h.is_snapshot() {
                                        let hwm = Frame::Hwm {
                                            txid: h.max_txid,
                                            name: db.clone(),
                                        };
                                        let _ = tx.send(frame(&hwm)).await;
                                    }
                                }
                                let _ = tx.send(frame(&Frame::Ready)).await;
                                loop {
                                    let now_ms = std::time::SystemTime::now()
                                        .duration_since(std::time::UNIX_EPOCH)
                                        .unwrap()
                                        .as_millis()
                                        as i64;
                                    let hb = Frame::Heartbeat {
                                        timestamp_ms: now_ms,
                                    };
                                    if tx.send(frame(&hb)).await.is_err() {
                                        return;
                                    }
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                            });
                            let mut resp = Response::new(ChannelBody(rx));
                            resp.headers_mut()
                                .insert("litefs-id", GO_NODE_ID.parse().unwrap());
                            resp.headers_mut()
                                .insert("litefs-cluster-id", CLUSTER_ID.parse().unwrap());
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    // HTTP/2 only, as Go's server for /stream: our native hello is not an
                    // HTTP/2 preface, so this connection just fails.
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
    });
    (addr_rx.recv().unwrap(), thread)
}

struct ReplicaNode {
    replica: Option<Replica>,
    mount: Option<Mount>,
    store: Arc<Store>,
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl ReplicaNode {
    fn start(primary: SocketAddr) -> ReplicaNode {
        let dir = tempfile::tempdir().unwrap();
        let options = DbOptions {
            node_id: NodeId(0xB2),
            compress: true,
            strict_verify: true,
            replica: true,
        };
        let store = Arc::new(Store::open(&dir.path().join("data"), options).unwrap());
        let mnt = dir.path().join("mnt");
        let options = MountOptions {
            transport: common::fuse_transport(),
            ..MountOptions::default()
        };
        let mount = Mount::new(store.clone(), &mnt, options).unwrap();
        let replica = Replica::start(
            store.clone(),
            ReplicaOptions {
                primary: PrimaryInfo {
                    hostname: "go-primary".into(),
                    advertise_url: format!("http://{primary}"),
                },
                reconnect_delay: Duration::from_millis(100),
                databases: Vec::new(),
                // Tried first; the Go-like primary refuses it and the replica falls back.
                native: true,
            },
        )
        .unwrap();
        ReplicaNode {
            replica: Some(replica),
            mount: Some(mount),
            store,
            mnt,
            _dir: dir,
        }
    }

    fn wait_pos(&self, db: &str, want: Pos) {
        let started = Instant::now();
        loop {
            let got = self.store.db(db).map(|d| d.pos());
            if got == Some(want) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{db}: replica at {got:?}, want {want}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ReplicaNode {
    fn drop(&mut self) {
        drop(self.replica.take());
        if let Some(m) = self.mount.take() {
            m.unmount().unwrap();
        }
    }
}

fn golden(name: &str) -> PathBuf {
    Path::new(GOLDEN).join(name)
}

/// The Go files of one database in TXID order, e.g. `lz4-p-wal4k` 1..=6.
fn primary_chain(prefix: &str, last: u64) -> Vec<PathBuf> {
    (1..=last)
        .map(|t| {
            golden(&format!(
                "{prefix}-{}",
                ltx::format_filename(TxId(t), TxId(t))
            ))
        })
        .collect()
}

fn final_pos(path: &Path) -> Pos {
    let s = ltx::verify(std::fs::read(path).unwrap().as_slice()).unwrap();
    Pos {
        txid: s.header.max_txid,
        post_apply_checksum: s.trailer.post_apply_checksum,
    }
}

fn sql_one(path: &Path, sql: &str) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
        .map(|v| format!("{v:?}"))
        .unwrap()
}

#[test]
fn our_replica_applies_a_go_primarys_chain_and_snapshot() {
    let wal = primary_chain("lz4-p-wal4k", 6);
    let delete = primary_chain("raw-p-delete4k", 4);
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    files.extend(wal.iter().map(|p| ("wal.db".to_string(), p.clone())));
    files.extend(delete.iter().map(|p| ("delete.db".to_string(), p.clone())));
    // A late replica's multi-TXID snapshot, as a Go primary sends a new replica.
    let snapshot = golden("lz4-l-delete4k-0000000000000001-0000000000000004.ltx");
    files.push(("snap.db".to_string(), snapshot.clone()));
    let (addr, _server) = go_primary(files);
    let node = ReplicaNode::start(addr);
    let want_wal = final_pos(wal.last().unwrap());
    let want_delete = final_pos(delete.last().unwrap());
    let want_snap = final_pos(&snapshot);
    node.wait_pos("wal.db", want_wal);
    node.wait_pos("delete.db", want_delete);
    node.wait_pos("snap.db", want_snap);
    assert!(
        node.store.role().wait_ready(Duration::from_secs(10)),
        "Ready not seen"
    );
    assert_eq!(node.store.role().cluster_id().as_deref(), Some(CLUSTER_ID));
    // The databases as SQLite reads them through the replica's mount.
    for db in ["wal.db", "delete.db", "snap.db"] {
        let path = node.mnt.join(db);
        assert_eq!(
            sql_one(&path, "PRAGMA integrity_check"),
            "Text(\"ok\")",
            "{db}"
        );
    }
    assert_eq!(
        sql_one(
            &node.mnt.join("delete.db"),
            "SELECT count(*) FROM sqlite_master"
        ),
        sql_one(
            &node.mnt.join("snap.db"),
            "SELECT count(*) FROM sqlite_master"
        ),
        "the chain and the snapshot of the same database agree"
    );
    assert_eq!(
        std::fs::read_to_string(node.mnt.join(".primary")).unwrap(),
        "go-primary\n"
    );
    eprintln!(
        "applied Go-written files: wal.db at {want_wal}, delete.db at {want_delete}, snap.db at {want_snap}"
    );
}
