//! LTX retention (spec §8.1): files older than `data.retention` are removed (their inodes kept
//! for reuse, `spare.rs`), except the newest,
//! which always stays (it is what restart recovery re-applies and what a replica's next
//! request is compared with). A replica that falls behind the oldest kept file gets a
//! snapshot instead.

use super::Db;
use crate::ltx;
use crate::store::error::{IoContext, Result};
use std::fs;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// Which of `files` (LTX file names with their modification times, any order) to remove:
/// the oldest by name (= by TXID range) up to the first modified at or after `cutoff`, never
/// the last. Stopping at the first newer file keeps the chain without a gap even where a
/// file's mtime is newer than a later file's (one restored from the LTX log at a restart,
/// `recover.rs`): removing the files after it would leave a hole that a replica could not be
/// served across, and that the next start's torn-tail check would take for a crash's.
pub fn retention_victims(files: &[(String, SystemTime)], cutoff: SystemTime) -> Vec<String> {
    let mut sorted: Vec<&(String, SystemTime)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let Some((_, rest)) = sorted.split_last() else {
        return Vec::new();
    };
    rest.iter()
        .take_while(|(_, mtime)| *mtime < cutoff)
        .map(|(name, _)| name.clone())
        .collect()
}

impl Db {
    /// Removes the LTX files retention no longer keeps; returns how many.
    pub fn enforce_retention(&self, cutoff: SystemTime) -> Result<usize> {
        // Read before listing: a file past it is being written (its mtime may still be a
        // reused spare's) and is never a victim.
        let committed = self.pos().txid;
        let mut files = Vec::new();
        let entries = fs::read_dir(&self.ltx_dir).io_context("read directory", &self.ltx_dir)?;
        for entry in entries {
            let entry = entry.io_context("read directory", &self.ltx_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match ltx::parse_filename(&name) {
                Some((_, max)) if max <= committed => {}
                _ => continue,
            }
            let mtime = entry
                .metadata()
                .and_then(|m| m.modified())
                .io_context("stat", entry.path())?;
            files.push((name, mtime));
        }
        let victims = retention_victims(&files, cutoff);
        if victims.is_empty() {
            return Ok(0);
        }
        // Every file up to `committed` durable before any is removed: a journal commit's file
        // is restored from the LTX log after a crash only if its predecessor is still there
        // (`recover.rs`), and a torn newest file's predecessor must not be the one retired.
        // Then, if nothing is pending, the log's round is retired for good: its files are
        // durable, and some are about to go.
        self.presync(1, false)?;
        self.retire_ltx_log_round(&self.lock_undrained(), true)?;
        for name in &victims {
            // Into the spare pool (`spare.rs`) while it has room. False: removed meanwhile
            // (a snapshot replaced the chain), nothing left to do.
            if self.retire_ltx_file(&self.ltx_dir.join(name))? {
                self.ltx_reap_count.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(victims.len())
    }
}

#[cfg(test)]
mod tests {
    use super::retention_victims;
    use std::time::{Duration, SystemTime};

    #[test]
    fn old_files_go_but_the_newest_always_stays() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let files = vec![
            ("0000000000000003-0000000000000003.ltx".to_string(), at(30)),
            ("0000000000000001-0000000000000001.ltx".to_string(), at(10)),
            ("0000000000000002-0000000000000002.ltx".to_string(), at(20)),
        ];
        assert_eq!(
            retention_victims(&files, at(25)),
            [
                "0000000000000001-0000000000000001.ltx",
                "0000000000000002-0000000000000002.ltx"
            ]
        );
        // Everything is old: still the newest by name stays, whatever its mtime.
        assert_eq!(retention_victims(&files, at(100)).len(), 2);
        assert!(retention_victims(&files, at(5)).is_empty());
        assert!(retention_victims(&[], at(5)).is_empty());
        assert!(retention_victims(&files[..1], at(100)).is_empty());
        // A file newer than the ones after it (restored at a restart) stops the removal
        // there: no gap in the chain.
        let name = |txid: u64| format!("{txid:016x}-{txid:016x}.ltx");
        let files = vec![
            (name(1), at(10)),
            (name(2), at(40)),
            (name(3), at(20)),
            (name(4), at(50)),
        ];
        assert_eq!(retention_victims(&files, at(30)), [name(1)]);
    }
}
