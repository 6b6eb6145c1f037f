//! What this node knows about its place in the cluster (spec §7.1, §8.5): the cluster id,
//! the primary it follows, whether initial replication finished, and the primary's clock.

use super::error::{Error, IoContext, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Cluster ids are `LFSC` and 16 upper-case hex digits (spec §7.1).
pub const CLUSTER_ID_PREFIX: &str = "LFSC";
pub const CLUSTER_ID_LEN: usize = 20;
/// The primary timestamp while this node is not connected (spec §8.5).
const TIMESTAMP_NOT_READY_MS: i64 = -1;
/// `.lag` content while initial replication has not finished (`math.MaxInt32`).
pub const LAG_NOT_READY_MS: i64 = i32::MAX as i64;

/// Go LiteFS's check: length and prefix only.
pub fn is_valid_cluster_id(id: &str) -> bool {
    id.len() == CLUSTER_ID_LEN && id.starts_with(CLUSTER_ID_PREFIX)
}

/// A fresh cluster id from 8 random bytes.
pub fn generate_cluster_id() -> String {
    let mut bytes = [0u8; 8];
    crate::types::random_bytes(&mut bytes);
    format!("{CLUSTER_ID_PREFIX}{:016X}", u64::from_be_bytes(bytes))
}

/// The primary a replica follows (`.primary`, `/info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryInfo {
    pub hostname: String,
    pub advertise_url: String,
}

pub struct Role {
    cluster_id_path: PathBuf,
    cluster_id: RwLock<Option<String>>,
    primary: RwLock<Option<PrimaryInfo>>,
    ready: Mutex<bool>,
    ready_changed: Condvar,
    /// Milliseconds since the epoch on the primary's clock: 0 while primary, −1 while not
    /// connected, else the last heartbeat or applied transaction.
    primary_timestamp_ms: AtomicI64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Role {
    /// Reads `data.dir/clusterid` if present (spec §2.3 step 2).
    pub fn open(data_dir: &Path) -> Result<Role> {
        let cluster_id_path = data_dir.join("clusterid");
        let cluster_id = match fs::read_to_string(&cluster_id_path) {
            Ok(text) => {
                let id = text.trim().to_string();
                if !is_valid_cluster_id(&id) {
                    return Err(Error::Corrupt {
                        db: String::new(),
                        message: format!(
                            "invalid cluster id {id:?} in {}: expected LFSC and 16 hex digits; remove the file to join a cluster afresh",
                            cluster_id_path.display()
                        ),
                    });
                }
                Some(id)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).io_context("read", &cluster_id_path),
        };
        Ok(Role {
            cluster_id_path,
            cluster_id: RwLock::new(cluster_id),
            primary: RwLock::new(None),
            ready: Mutex::new(false),
            ready_changed: Condvar::new(),
            primary_timestamp_ms: AtomicI64::new(TIMESTAMP_NOT_READY_MS),
        })
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Persists `id` (`clusterid.tmp`, fsync, rename, fsync the directory) and adopts it.
    pub fn set_cluster_id(&self, id: &str) -> Result<()> {
        if !is_valid_cluster_id(id) {
            return Err(Error::Corrupt {
                db: String::new(),
                message: format!("invalid cluster id {id:?}"),
            });
        }
        let tmp = self.cluster_id_path.with_extension("tmp");
        fs::write(&tmp, format!("{id}\n")).io_context("write", &tmp)?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .io_context("fsync", &tmp)?;
        fs::rename(&tmp, &self.cluster_id_path).io_context("rename", &self.cluster_id_path)?;
        if let Some(dir) = self.cluster_id_path.parent() {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .io_context("fsync directory", dir)?;
        }
        *self.cluster_id.write().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
        Ok(())
    }

    pub fn primary_info(&self) -> Option<PrimaryInfo> {
        self.primary
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the primary this node follows. Only the store calls this
    /// ([`super::Store::set_primary_info`]), so every change becomes an event.
    pub(super) fn set_primary_info(&self, info: Option<PrimaryInfo>) {
        *self.primary.write().unwrap_or_else(|p| p.into_inner()) = info;
    }

    /// Marks initial replication done (or this node primary): `exec` may start.
    pub fn mark_ready(&self) {
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.ready_changed.notify_all();
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until ready, at most `timeout`; returns whether it is.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        let (ready, _) = self
            .ready_changed
            .wait_timeout_while(ready, timeout, |r| !*r)
            .unwrap_or_else(|p| p.into_inner());
        *ready
    }

    /// 0 while primary; a heartbeat's or an applied transaction's timestamp on a replica.
    pub fn set_primary_timestamp_ms(&self, timestamp_ms: i64) {
        self.primary_timestamp_ms
            .store(timestamp_ms, Ordering::Release);
    }

    /// Back to "not connected" (the stream ended).
    pub fn clear_primary_timestamp(&self) {
        self.set_primary_timestamp_ms(TIMESTAMP_NOT_READY_MS);
    }

    pub fn primary_timestamp_ms(&self) -> i64 {
        self.primary_timestamp_ms.load(Ordering::Acquire)
    }

    /// `Store.Lag()` in milliseconds (spec §8.5): 0 when primary or not connected.
    pub fn lag_ms(&self) -> i64 {
        match self.primary_timestamp_ms() {
            0 | TIMESTAMP_NOT_READY_MS => 0,
            t => now_ms() - t,
        }
    }

    /// What `.lag` reports: the lag, or [`LAG_NOT_READY_MS`] before initial replication.
    pub fn lag_file_ms(&self) -> i64 {
        match self.primary_timestamp_ms() {
            0 => 0,
            TIMESTAMP_NOT_READY_MS => LAG_NOT_READY_MS,
            t => now_ms() - t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_generated_valid_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let role = Role::open(dir.path()).unwrap();
        assert_eq!(role.cluster_id(), None);
        let id = generate_cluster_id();
        assert!(is_valid_cluster_id(&id), "{id}");
        assert!(
            id[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        role.set_cluster_id(&id).unwrap();
        let text = fs::read_to_string(dir.path().join("clusterid")).unwrap();
        assert_eq!(text, format!("{id}\n"));
        assert_eq!(Role::open(dir.path()).unwrap().cluster_id(), Some(id));
    }

    #[test]
    fn a_damaged_cluster_id_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("clusterid"), "LFSC12\n").unwrap();
        let err = Role::open(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("invalid cluster id \"LFSC12\"") && err.contains("clusterid"),
            "{err}"
        );
    }

    #[test]
    fn lag_follows_the_primary_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let role = Role::open(dir.path()).unwrap();
        assert_eq!((role.lag_ms(), role.lag_file_ms()), (0, LAG_NOT_READY_MS));
        role.set_primary_timestamp_ms(0);
        assert_eq!((role.lag_ms(), role.lag_file_ms()), (0, 0));
        role.set_primary_timestamp_ms(now_ms() - 1500);
        let lag = role.lag_file_ms();
        assert!((1500..3000).contains(&lag), "lag {lag} ms");
        assert!(!role.wait_ready(Duration::from_millis(1)));
        role.mark_ready();
        assert!(role.wait_ready(Duration::ZERO));
    }
}
