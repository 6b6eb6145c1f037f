//! Shared by the real-mount tests: a mounted store in a temporary directory (unmounted in
//! `Drop`), and checks of the LTX chain against the database files.
#![allow(dead_code)] // Each test crate uses a different subset.

pub mod cluster;

use litefs::config::FuseTransport;
use litefs::fuse::{Mount, MountOptions, RequestCounts};
use litefs::store::{DbOptions, Store};
use litefs::types::{NodeId, Pos, TxId};
use litefs::{ltx, sqlite};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The FUSE transport the mount tests run on: `LITEFS_TEST_FUSE_TRANSPORT` = `uring`,
/// `devfuse` or `auto` (the default). `scripts/test.sh` runs the suite once with each of the
/// first two, so every real-mount test proves both transports.
pub fn fuse_transport_name() -> String {
    let name = std::env::var("LITEFS_TEST_FUSE_TRANSPORT").unwrap_or_else(|_| "auto".into());
    assert!(
        ["auto", "uring", "devfuse"].contains(&name.as_str()),
        "LITEFS_TEST_FUSE_TRANSPORT={name}: expected auto, uring or devfuse"
    );
    name
}

pub fn fuse_transport() -> FuseTransport {
    match fuse_transport_name().as_str() {
        "uring" => FuseTransport::Uring,
        "devfuse" => FuseTransport::DevFuse,
        _ => FuseTransport::Auto,
    }
}

pub struct TestMount {
    mount: Option<Mount>,
    store: Option<Arc<Store>>,
    pub data: PathBuf,
    pub mnt: PathBuf,
    pub compress: bool,
    pub posix_locks: bool,
    _dir: tempfile::TempDir,
}

impl TestMount {
    /// A mount with `FUSE_POSIX_LOCKS` (as LiteFS; not the default since §7.5).
    pub fn new(compress: bool) -> TestMount {
        TestMount::with_locks(compress, true)
    }

    /// A mount negotiating `FUSE_POSIX_LOCKS` only if `posix_locks`.
    pub fn with_locks(compress: bool, posix_locks: bool) -> TestMount {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mnt = dir.path().join("mnt");
        let mut t = TestMount {
            mount: None,
            store: None,
            data,
            mnt,
            compress,
            posix_locks,
            _dir: dir,
        };
        t.start();
        t
    }

    pub fn start(&mut self) {
        let options = DbOptions {
            node_id: NodeId(0xABCD),
            compress: self.compress,
            strict_verify: true,
            replica: false,
        };
        let store = Arc::new(Store::open(&self.data, options).unwrap());
        let mount_options = MountOptions {
            threads: 2,
            allow_other: false,
            posix_locks: self.posix_locks,
            transport: fuse_transport(),
            ..MountOptions::default()
        };
        self.mount = Some(Mount::new(store.clone(), &self.mnt, mount_options).unwrap());
        self.store = Some(store);
    }

    pub fn stop(&mut self) {
        if let Some(m) = self.mount.take() {
            m.unmount().unwrap();
        }
        self.store = None;
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("mounted")
    }

    pub fn store_arc(&self) -> Arc<Store> {
        self.store.clone().expect("mounted")
    }

    pub fn mount(&self) -> &Mount {
        self.mount.as_ref().expect("mounted")
    }

    /// FUSE requests served so far, per opcode.
    pub fn requests(&self) -> RequestCounts {
        self.mount().request_stats().snapshot()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    pub fn pos(&self, db: &str) -> Pos {
        let text = std::fs::read_to_string(self.path(&format!("{db}-pos"))).unwrap();
        assert_eq!(text.len(), 34, "-pos is 34 bytes: {text:?}");
        Pos::parse(text.trim_end()).unwrap()
    }

    pub fn ltx_dir(&self, db: &str) -> PathBuf {
        self.data.join("dbs").join(db).join("ltx")
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest LTX file decodes, verifies, and its post-apply checksum is the file's.
pub fn check_newest_ltx(t: &TestMount, db: &str, page_size: u32) -> ltx::Summary {
    let pos = t.pos(db);
    let name = ltx::format_filename(pos.txid, pos.txid);
    let path = t.ltx_dir(db).join(&name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let summary = ltx::verify(bytes.as_slice()).unwrap();
    assert_eq!(summary.trailer.post_apply_checksum, pos.post_apply_checksum);
    let image = logical_image(
        &t.data.join("dbs").join(db),
        summary.header.commit,
        page_size,
    );
    assert_eq!(
        ltx::database_checksum(&image, page_size),
        pos.post_apply_checksum.0,
        "database checksum (file + committed WAL frames) differs from the position after TXID {}",
        pos.txid
    );
    summary
}

/// The database as SQLite sees it: the file with the WAL's committed frames on top, read with
/// the WAL reader (tested against real SQLite), not with the store's own bookkeeping.
pub fn logical_image(dir: &Path, commit: u32, page_size: u32) -> Vec<u8> {
    let mut image = std::fs::read(dir.join("database")).unwrap_or_default();
    image.resize(commit as usize * page_size as usize, 0);
    let Ok(wal) = std::fs::read(dir.join("wal")) else {
        return image;
    };
    let mut cursor = std::io::Cursor::new(&wal);
    if let Ok(Some(header)) = sqlite::WalHeader::read_from(&mut cursor) {
        let (txns, _) = sqlite::committed_transactions(cursor, &header, header.start()).unwrap();
        let (pages, _) = sqlite::checkpoint_plan(&txns);
        for (pgno, frame) in pages {
            if pgno <= commit {
                let at = (pgno as usize - 1) * page_size as usize;
                let from = frame as usize + 24;
                image[at..at + page_size as usize]
                    .copy_from_slice(&wal[from..from + page_size as usize]);
            }
        }
    }
    image
}

/// LTX files `1-1`, `2-2`, … `last-last` with no gap.
pub fn assert_chain_contiguous(dir: &Path, last: TxId) {
    let end = ltx_chain_end(dir);
    assert_eq!(end, last, "chain ends at {end} but position is {last}");
}

/// Checks that the LTX files in `dir` cover TXIDs 1..=N without a gap; returns N.
pub fn ltx_chain_end(dir: &Path) -> TxId {
    let mut ranges: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| ltx::parse_filename(e.unwrap().file_name().to_str().unwrap()))
        .map(|(a, b)| (a.0, b.0))
        .collect();
    ranges.sort();
    let mut next = 1;
    for (min, max) in &ranges {
        assert_eq!(*min, next, "LTX chain has a gap before {min}: {ranges:?}");
        next = max + 1;
    }
    TxId(next - 1)
}

/// Makes `cmd`'s process get SIGTERM when the thread that starts it ends: a test process
/// killed by nextest (a timeout, a cancelled run) runs no `Drop`, and its daemons would
/// otherwise keep their mounts. SIGTERM lets `litefs mount` unmount cleanly.
pub fn die_with_test(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the child between fork and exec and only calls prctl, which is
    // async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct ChildGuard(pub Option<std::process::Child>);

impl ChildGuard {
    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child not yet waited for")
    }

    /// Waits at most `limit` for the child to exit; kills it and panics after that.
    pub fn wait_output(mut self, limit: std::time::Duration) -> std::process::Output {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(_status) = self.child().try_wait().unwrap() {
                let child = self.0.take().unwrap();
                return child.wait_with_output().unwrap();
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child().kill();
                panic!("child process did not finish within {limit:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET path` from an API server over HTTP/1.1; returns the body (the status must be 200).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}
