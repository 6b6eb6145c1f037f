//! Nodes of a test cluster: `litefs mount` processes with their own data directory, mount
//! and HTTP port on loopback, started from a generated `litefs.yml`. Dropping a node stops it
//! (SIGTERM, then SIGKILL and a lazy unmount), so a failing test leaves nothing behind.

use litefs::ltx;
use litefs::types::{Pos, TxId};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to mount.
pub const MOUNT_WAIT_MAX: Duration = Duration::from_secs(15);
/// How long a replica may take to reach the primary's position in these tests.
pub const CATCH_UP_WAIT_MAX: Duration = Duration::from_secs(60);

/// Ports handed to test nodes come from below Linux's ephemeral range (32768–60999 by
/// default), so no `bind(0)` and no outgoing connection of another test can take one between
/// this choice and the node's own bind.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;
/// Where test processes (nextest runs each test in its own) reserve ports: an `flock`ed file
/// per port, held until the process exits, so two tests never get the same port. One
/// directory per user: another user's files could not be opened.
fn port_reservations_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/litefs-test-ports-{uid}"))
}

/// A loopback port no other test process holds and nothing listens on.
pub fn free_port() -> u16 {
    use std::os::fd::AsRawFd;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = port_reservations_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    // Processes start at different places, so they rarely contend for the same files.
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = TEST_PORTS.start + offset as u16;
        let path = dir.join(port.to_string());
        let Ok(file) = std::fs::File::create(&path) else {
            continue;
        };
        // SAFETY: `file` is an open descriptor; flock does not touch memory.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // Another test process holds it.
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // Something outside the tests listens there.
        }
        HELD.lock().unwrap().push(file);
        return port;
    }
    panic!(
        "no free port in {TEST_PORTS:?}: every one is reserved under {} or in use",
        dir.display()
    );
}

/// `umount -l`: detaches `path` now, whatever still uses it (a last resort for a mount whose
/// daemon is gone or killed).
pub fn lazy_unmount(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub dir: PathBuf,
    pub port: u16,
    /// `None`: primary; `Some(port)`: replica of the primary on that port.
    pub primary_port: Option<u16>,
    /// Extra YAML appended to the `data:` section (e.g. retention).
    pub data_extra: String,
    /// The address this node's API binds, and the primary's (loopback unless a test puts
    /// the primary in a network namespace).
    pub host: String,
    pub primary_host: String,
    /// `http.native-stream` (replicas: try the native stream first).
    pub native_stream: bool,
    /// Run inside this network namespace (`/run/netns/<name>`, via nsenter: the mount
    /// namespace stays the test's, so the mount is visible).
    pub netns: Option<String>,
    /// `fuse.posix-locks` (false: the kernel keeps SQLite's locks).
    pub posix_locks: bool,
    /// Extra top-level YAML sections (e.g. `proxy:`).
    pub extra_yaml: String,
}

impl NodeConfig {
    pub fn primary(dir: &Path) -> NodeConfig {
        NodeConfig {
            dir: dir.to_path_buf(),
            port: free_port(),
            primary_port: None,
            data_extra: String::new(),
            host: "127.0.0.1".into(),
            primary_host: "127.0.0.1".into(),
            native_stream: true,
            netns: None,
            posix_locks: true,
            extra_yaml: String::new(),
        }
    }

    pub fn replica(dir: &Path, primary_port: u16) -> NodeConfig {
        NodeConfig {
            primary_port: Some(primary_port),
            ..NodeConfig::primary(dir)
        }
    }

    fn yaml(&self) -> String {
        let primary_port = self.primary_port.unwrap_or(self.port);
        format!(
            "fuse:\n  dir: {mnt}\n  transport: {transport}\n  posix-locks: {posix_locks}\ndata:\n  dir: {data}\n{extra}strict-verify: true\nhttp:\n  addr: {host}:{port}\n  native-stream: {native}\nlease:\n  type: static\n  candidate: {candidate}\n  hostname: primary-{primary_port}\n  advertise-url: http://{primary_host}:{primary_port}\n  reconnect-delay: 100ms\n{extra_yaml}",
            host = self.host,
            transport = super::fuse_transport_name(),
            native = self.native_stream,
            posix_locks = self.posix_locks,
            primary_host = self.primary_host,
            mnt = self.dir.join("mnt").display(),
            data = self.dir.join("data").display(),
            extra = self.data_extra,
            port = self.port,
            candidate = self.primary_port.is_none(),
            extra_yaml = self.extra_yaml,
        )
    }
}

pub struct Node {
    pub config: NodeConfig,
    child: Option<Child>,
}

impl Node {
    /// Starts the node and waits for its mount to appear (not for a replica's sync).
    pub fn start(config: NodeConfig) -> Node {
        std::fs::create_dir_all(&config.dir).unwrap();
        let yml = config.dir.join("litefs.yml");
        std::fs::write(&yml, config.yaml()).unwrap();
        let log = std::fs::File::create(config.dir.join("litefs.log")).unwrap();
        let mut cmd = match &config.netns {
            None => Command::new(env!("CARGO_BIN_EXE_litefs")),
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg(env!("CARGO_BIN_EXE_litefs"));
                c
            }
        };
        let child = super::die_with_test(&mut cmd)
            .args(["mount", "-config", yml.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut node = Node {
            config,
            child: Some(child),
        };
        let started = Instant::now();
        while !node.mnt().join(".lag").exists() {
            if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "litefs mount exited during startup: {status}\n{}",
                    node.log()
                );
            }
            assert!(
                started.elapsed() < MOUNT_WAIT_MAX,
                "mount did not appear in {MOUNT_WAIT_MAX:?}\n{}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        node
    }

    pub fn mnt(&self) -> PathBuf {
        self.config.dir.join("mnt")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.mnt().join(name)
    }

    pub fn db_dir(&self, db: &str) -> PathBuf {
        self.config.dir.join("data").join("dbs").join(db)
    }

    pub fn ltx_dir(&self, db: &str) -> PathBuf {
        self.db_dir(db).join("ltx")
    }

    /// The API's socket address.
    pub fn addr(&self) -> std::net::SocketAddr {
        format!("{}:{}", self.config.host, self.config.port)
            .parse()
            .unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.config.host, self.config.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config.dir.join("litefs.log")).unwrap_or_default()
    }

    /// The position `<db>-pos` reports through the mount; `None` if the database is unknown.
    pub fn pos(&self, db: &str) -> Option<Pos> {
        let text = std::fs::read_to_string(self.path(&format!("{db}-pos"))).ok()?;
        Some(Pos::parse(text.trim_end()).unwrap())
    }

    /// Waits until `db` on this node is at `want`; panics with both positions after `limit`.
    pub fn wait_pos(&self, db: &str, want: Pos, limit: Duration) {
        let started = Instant::now();
        loop {
            let got = self.pos(db);
            if got == Some(want) {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "{db} on {} is at {got:?}, not {want} after {limit:?}\n{}",
                self.url(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL (no clean shutdown) and a lazy unmount of the dead mount.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            lazy_unmount(&self.mnt());
        }
    }

    /// SIGTERM and wait (≤ 10 s); SIGKILL and a lazy unmount if it does not exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                lazy_unmount(&self.mnt());
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest LTX file's header in `dir` (by MaxTXID); `None` if there is none or it is
/// still being written.
pub fn newest_ltx_header(dir: &Path) -> Option<ltx::Header> {
    let mut files: Vec<(TxId, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let (_, max) = ltx::parse_filename(e.file_name().to_str()?)?;
            Some((max, e.path()))
        })
        .collect();
    files.sort();
    let (_, path) = files.last()?;
    let f = std::fs::File::open(path).ok()?;
    ltx::Decoder::new(std::io::BufReader::new(f))
        .ok()
        .map(|d| *d.header())
}

/// The logical database image of `db` on `node` (file + committed WAL frames), sized by the
/// newest LTX file's commit.
pub fn image(node: &Node, db: &str) -> Vec<u8> {
    // A replica records a small transaction's LTX file just after applying it: wait for the
    // file of the position the node reports.
    let started = Instant::now();
    let h = loop {
        let h = newest_ltx_header(&node.ltx_dir(db));
        if let Some(h) = h
            && Some(h.max_txid) == node.pos(db).map(|p| p.txid)
        {
            break h;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{db} on {}: newest LTX file {:?} behind position {:?}",
            node.url(),
            h.map(|h| h.max_txid),
            node.pos(db)
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    super::logical_image(&node.db_dir(db), h.commit, h.page_size)
}

/// `litefs export` of `db` from `node`'s API, read back.
pub fn export(node: &Node, db: &str) -> Vec<u8> {
    let out_path = node.config.dir.join(format!("export-{db}.sqlite"));
    let out = Command::new(env!("CARGO_BIN_EXE_litefs"))
        .args(["export", "-url", &node.url(), "-name", db])
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "litefs export from {}: {}",
        node.url(),
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&out_path).unwrap();
    std::fs::remove_file(&out_path).unwrap();
    bytes
}
