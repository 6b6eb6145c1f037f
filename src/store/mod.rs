//! The store: every database under `data.dir/dbs/`, their recovery at startup, the capture
//! of transactions as LTX files, and the daemon's record of SQLite's locks.
//!
//! No FUSE or HTTP types live here (see `docs/ARCHITECTURE.md` §3): the FUSE adapter turns a
//! request into typed calls and maps the returned errors to errno values in one place.
//!
//! - [`db`]: one database: backing files, position, checksums, journal/WAL commit capture,
//!   recovery.
//! - [`lock`]: per-database lock words, per-owner guard sets, the CKPT rule and the internal
//!   write lock LiteFS takes for itself (spec §3.8, §3.9, §3.16).

pub mod capture;
pub mod changes;
pub mod checksums;
pub mod db;
pub mod error;
pub mod events;
pub mod lock;
pub mod monitor;
pub mod role;
pub mod shared;
pub mod stats;

pub use changes::{CHANGE_QUEUE_DEPTH_MAX, Changes};
pub use db::{
    APPLY_LOCK_TIMEOUT_MS, Db, DbOptions, EXPORT_LOCK_TIMEOUT_MS, FileKind,
    HALT_ACQUIRE_TIMEOUT_MS, HALT_EXPIRY_CHECK_INTERVAL_MS, HALT_LOCK_TTL_MS, HaltLock,
    IMPORT_LOCK_TIMEOUT_MS, JournalMode, LtxUsage, RECEIVE_IN_MEMORY_BYTES_MAX, Receipt, Received,
    SNAPSHOT_LOCK_TIMEOUT_MS, SpilledLtx, SpooledImage, VerifiedLtx, receives_into_file,
};
pub use error::{Error, Result};
pub use events::{EVENT_QUEUE_DEPTH_MAX, Event, Events};
pub use role::PrimaryInfo;
use shared::Shared;
pub use shared::{
    FatalHandler, FatalHook, InvalidateHandler, InvalidateHook, Invalidation, KernelLocks,
    KernelLocksHook,
};
pub use stats::{HistogramSnapshot, RequestCountSource, RequestCountsHook};

use crate::types::Pos;
use error::IoContext;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Database names are single path components: no `/`, not `.` or `..`, not empty, and not
/// ending in a suffix the mount reserves for the database's companion files.
pub fn is_valid_db_name(name: &str) -> bool {
    const RESERVED_SUFFIXES: [&str; 5] = ["-journal", "-wal", "-shm", "-pos", "-lock"];
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && !name.starts_with('.')
        && !RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Renames `dbs/<name>` to `dbs/.<name>.damaged-<unix seconds>` (a name no database can
/// have, so later scans skip it) and returns the new path.
fn set_aside(dbs_dir: &Path, name: &str) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let from = dbs_dir.join(name);
    // Unique even for two set-asides within a second (a crash loop).
    let to = (0u32..)
        .map(|n| match n {
            0 => dbs_dir.join(format!(".{name}.damaged-{secs}")),
            n => dbs_dir.join(format!(".{name}.damaged-{secs}-{n}")),
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| dbs_dir.join(format!(".{name}.damaged-{secs}-x")));
    fs::rename(&from, &to).io_context("rename", &from)?;
    Ok(to)
}

pub struct Store {
    data_dir: PathBuf,
    dbs_dir: PathBuf,
    options: DbOptions,
    dbs: RwLock<BTreeMap<String, Arc<Db>>>,
    shared: Arc<Shared>,
    role: role::Role,
    /// The mount's FUSE request counters, while mounted.
    request_counts: RequestCountsHook,
    /// (is primary, primary hostname) as last announced by a `primaryChange` event, so an
    /// event means a change (a store opens writable, following nobody).
    announced_role: Mutex<(bool, String)>,
}

impl Store {
    /// Opens `data_dir`, recovering every database found in `dbs/` (spec §2.3).
    pub fn open(data_dir: &Path, options: DbOptions) -> Result<Store> {
        let dbs_dir = data_dir.join("dbs");
        fs::create_dir_all(&dbs_dir).io_context("create directory", &dbs_dir)?;
        // Node ids are per process since LiteFS v0.5; a legacy `id` file is removed.
        let legacy_id = data_dir.join("id");
        if legacy_id.exists() {
            fs::remove_file(&legacy_id).io_context("remove", &legacy_id)?;
        }
        let role = role::Role::open(data_dir)?;
        role.set_primary_timestamp_ms(0);
        let shared = Arc::new(Shared {
            writable: AtomicBool::new(true),
            ..Shared::default()
        });
        let mut dbs = BTreeMap::new();
        for entry in fs::read_dir(&dbs_dir).io_context("read directory", &dbs_dir)? {
            let entry = entry.io_context("read directory", &dbs_dir)?;
            if !entry.path().is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_valid_db_name(&name) {
                continue;
            }
            let db = match Db::open(&dbs_dir, &name, options, shared.clone()) {
                Ok(db) => db,
                // Only damage: an I/O error such as EMFILE or EACCES says nothing about the
                // files, and a good copy must not be thrown away for it.
                Err(e @ (Error::Corrupt { .. } | Error::Ltx { .. })) if options.replica => {
                    // A replica's files are a cache of the primary's transactions: keep the
                    // damaged copy for inspection and start this database empty, so the
                    // primary sends a snapshot (spec §4.4: TXID 0 ⇒ snapshot).
                    let aside = set_aside(&dbs_dir, &name)?;
                    eprintln!(
                        "litefs: database {name:?} cannot be recovered ({e}); moved to {} and fetching it again from the primary",
                        aside.display()
                    );
                    Db::open(&dbs_dir, &name, options, shared.clone())?
                }
                Err(e) => return Err(e),
            };
            dbs.insert(name, db.into_shared());
        }
        Ok(Store {
            data_dir: data_dir.to_path_buf(),
            dbs_dir,
            options,
            dbs: RwLock::new(dbs),
            shared,
            role,
            request_counts: RequestCountsHook::default(),
            announced_role: Mutex::new((true, String::new())),
        })
    }

    /// Where every database reports errors the process must exit on (exit code 99).
    pub fn fatal_hook(&self) -> &FatalHook {
        &self.shared.fatal
    }

    /// Cluster id, primary, readiness and lag (spec §7.1, §8.5).
    pub fn role(&self) -> &role::Role {
        &self.role
    }

    /// Where databases send kernel cache invalidations (set by the mount).
    /// Where a mount with kernel-local locks lends its lock targets (`fuse/kernel_locks.rs`).
    pub fn kernel_locks_hook(&self) -> &KernelLocksHook {
        &self.shared.kernel_locks
    }

    pub fn invalidate_hook(&self) -> &InvalidateHook {
        &self.shared.invalidate
    }

    /// Whether this node may change its databases (the primary, spec §3.5). A replica's
    /// applications get SQLITE_READONLY (rollback modes) or an I/O error (WAL mode). A store
    /// opens writable: a lone store is its own primary.
    pub fn set_writable(&self, writable: bool) {
        self.shared.writable.store(writable, Ordering::Release);
    }

    /// This node is the primary (spec §7.5): writable, ready, never behind. Publishes a
    /// `primaryChange` event if it was not.
    pub fn become_primary(&self) {
        self.set_writable(true);
        self.role.set_primary_info(None);
        self.role.set_primary_timestamp_ms(0);
        self.role.mark_ready();
        self.publish_primary_change();
    }

    /// This node follows a primary: read-only, behind until the stream says otherwise.
    /// Publishes a `primaryChange` event if it was the primary.
    pub fn become_replica(&self) {
        self.set_writable(false);
        self.role.clear_primary_timestamp();
        self.publish_primary_change();
    }

    /// The primary this replica is connected to (`None`: none). Publishes a `primaryChange`
    /// event when that changes the role announced last.
    pub fn set_primary_info(&self, info: Option<PrimaryInfo>) {
        self.role.set_primary_info(info);
        self.publish_primary_change();
    }

    /// Publishes a `primaryChange` event if the role differs from the last one announced.
    fn publish_primary_change(&self) {
        // Held while publishing, so concurrent role changes are announced in order.
        let mut announced = self
            .announced_role
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let role = (self.is_writable(), self.primary_hostname());
        if *announced != role {
            self.shared.events.publish(Event::PrimaryChange {
                is_primary: role.0,
                hostname: role.1.clone(),
            });
            *announced = role;
        }
    }

    /// The hostname of the primary this node follows; empty when none (and while primary).
    pub fn primary_hostname(&self) -> String {
        self.role
            .primary_info()
            .map(|p| p.hostname)
            .unwrap_or_default()
    }

    /// The database `name`, known to the store from now on (spec §4.4: a replica creates the
    /// entry for a database it first hears of on the stream). No file is created.
    pub fn open_db(&self, name: &str) -> Result<Arc<Db>> {
        if !is_valid_db_name(name) {
            return Err(Error::InvalidWrite {
                db: name.to_string(),
                message: "invalid database name".into(),
            });
        }
        // Known databases (every LTX frame on a replica) need only the read lock.
        if let Some(db) = self.db(name) {
            return Ok(db);
        }
        let mut dbs = self.dbs.write().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = dbs.get(name) {
            return Ok(db.clone());
        }
        let db = Db::open(&self.dbs_dir, name, self.options, self.shared.clone())?.into_shared();
        dbs.insert(name.to_string(), db.clone());
        Ok(db)
    }

    pub fn is_writable(&self) -> bool {
        self.shared.writable.load(Ordering::Acquire)
    }

    /// Subscribes to "database changed" notifications, published after every commit's
    /// position update (see [`Changes`]). Subscribe before reading positions so no change
    /// between the read and the first wait is missed.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.shared.changes.subscribe()
    }

    /// Connected change subscribers (`litefs_subscriber_count`).
    pub fn subscriber_count(&self) -> usize {
        self.shared.changes.subscriber_count()
    }

    /// Subscribes to the event feed (`GET /events`, spec §8.3): every transaction and role
    /// change from now on. A subscriber more than [`EVENT_QUEUE_DEPTH_MAX`] events behind
    /// gets `RecvError::Lagged`.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Connected event subscribers.
    pub fn event_subscriber_count(&self) -> usize {
        self.shared.events.subscriber_count()
    }

    /// Durations of local commits so far (`litefs_commit_duration_seconds`).
    pub fn commit_durations(&self) -> HistogramSnapshot {
        self.shared.commit_duration.snapshot()
    }

    /// Where the mount registers its FUSE request counters.
    pub fn request_counts_hook(&self) -> &RequestCountsHook {
        &self.request_counts
    }

    pub fn node_id(&self) -> crate::types::NodeId {
        self.options.node_id
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn db(&self, name: &str) -> Option<Arc<Db>> {
        self.dbs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// All databases, sorted by name.
    pub fn dbs(&self) -> Vec<Arc<Db>> {
        self.dbs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// `POST /import` (spec §4.3): imports the SQLite image read from `r` into database
    /// `name`, created if needed, and returns its new position. The image is spooled (and its
    /// header checked) before the database is created, so a bad image creates nothing. Waits
    /// until `deadline` for the database's internal write lock.
    pub fn import_db(&self, name: &str, r: impl Read, deadline: Instant) -> Result<Pos> {
        if !is_valid_db_name(name) {
            return Err(Error::InvalidWrite {
                db: name.to_string(),
                message: "invalid database name".into(),
            });
        }
        if !self.is_writable() {
            return Err(Error::ReadOnly);
        }
        let image = Db::spool_image(name, &self.data_dir, r)?;
        let pos = self.open_db(name)?.import_spooled(image, deadline)?;
        // Perhaps not created through the mount: the kernel may remember its names as
        // missing (our own lock files are opened through the mount during the import).
        self.shared
            .invalidate
            .send(shared::Invalidation::Created { db: name });
        Ok(pos)
    }

    /// Creates a database and its `database` file (spec §3.3 create): an existing database
    /// with pages is `Exists`; an empty or dropped one is reused.
    /// Also returns the database's incarnation, the new descriptor's handle
    /// ([`Db::create`]).
    pub fn create_db(&self, name: &str) -> Result<(Arc<Db>, u64)> {
        let db = self.open_db(name)?;
        if db.page_count() > 0 {
            return Err(Error::Exists(name.to_string()));
        }
        let incarnation = db.create(FileKind::Database)?;
        Ok((db, incarnation))
    }
}
