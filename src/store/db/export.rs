//! `GET /export` (spec §4.3): the raw SQLite database image at one position.
//!
//! Same consistency protocol as snapshots (see `snapshot.rs`): the export read lock of spec
//! §3.9 (which, unlike the snapshot's, keeps CKPT and RECOVER shared), a [`View`] captured
//! inside it, pages read through [`View::read_page`]. The image is pages 1..pageN, the lock
//! page included as the database file stores it (zeros when the file does not reach it), every
//! other page in its latest committed version (a WAL frame over the database file). The pages
//! (lock page excluded) must add up to the captured position's checksum, so a torn image fails
//! instead of shipping.

use super::Db;
use super::snapshot::View;
use crate::ltx::{RollingChecksum, lock_pgno};
use crate::store::error::{IoContext, Result};
use crate::store::lock::ReadLockPurpose;
use crate::types::Pos;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::time::Instant;

/// Default wait for the export read lock: a rollback-mode writer or a checkpoint holds it off
/// for the length of its transaction, so a minute means something is stuck. The HTTP handler
/// cannot be cancelled once it waits on the blocking pool, so this also bounds a request whose
/// client has gone.
pub const EXPORT_LOCK_TIMEOUT_MS: u64 = 60_000;

impl Db {
    /// Writes the database image at the current position to `w` and returns that position.
    /// Waits until `deadline` for the read lock; holds it until the last page is written, so
    /// `w` should be fast (see [`Db::write_export_spooled`]). A database that never had a
    /// transaction (or was deleted) exports as zero bytes.
    pub fn write_export_to(&self, mut w: impl Write, deadline: Instant) -> Result<Pos> {
        let (_guard, view) = self.capture_read_view(ReadLockPurpose::Export, deadline)?;
        let sum = self.write_image(&view, &mut w)?;
        if view.pos.txid.0 > 0 && sum != view.pos.post_apply_checksum.0 {
            return Err(self.read_error(&format!(
                "export: pages add up to checksum {sum:016x}, not {} of TXID {}: the database changed while it was read; the export lock did not hold writers off — please report this with the daemon's log",
                view.pos.post_apply_checksum, view.pos.txid
            )));
        }
        w.flush().io_context("write export of", self.dir.clone())?;
        Ok(view.pos)
    }

    /// Writes every page of `view` to `w`; returns the rolling checksum of all but the lock page.
    fn write_image(&self, view: &View, w: &mut impl Write) -> Result<u64> {
        let lock = lock_pgno(view.page_size);
        let mut page = vec![0u8; view.page_size as usize];
        let mut sum = RollingChecksum::new();
        for pgno in 1..=view.commit {
            view.read_page(self, pgno, &mut page)?;
            if pgno != lock {
                sum.add_page(pgno, &page);
            }
            w.write_all(&page)
                .io_context("write export of", self.dir.clone())?;
        }
        Ok(sum.value())
    }

    /// [`Db::write_export_to`] into an unlinked spool file in `ltx/`, returned rewound with its
    /// length in bytes and the position: the read lock is held while the image is copied to
    /// local disk, not while a client downloads it.
    pub fn write_export_spooled(&self, deadline: Instant) -> Result<(File, u64, Pos)> {
        let (file, path) = self.create_spool("export")?;
        let mut w = BufWriter::with_capacity(256 * 1024, file);
        let pos = self.write_export_to(&mut w, deadline)?;
        let mut file = w
            .into_inner()
            .map_err(|e| e.into_error())
            .io_context("write", &path)?;
        let len_bytes = file.stream_position().io_context("seek", &path)?;
        file.seek(SeekFrom::Start(0)).io_context("seek", &path)?;
        Ok((file, len_bytes, pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::DbOptions;
    use crate::store::shared::Shared;
    use crate::types::NodeId;
    use std::collections::BTreeMap;
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::sync::Arc;

    const PAGE: u32 = 65536;

    fn page_at(pgno: u32) -> u64 {
        u64::from(pgno - 1) * u64::from(PAGE)
    }

    fn full_page(byte: u8) -> Vec<u8> {
        vec![byte; PAGE as usize]
    }

    /// A view over sparse files: the database file is `db_len_bytes` long with `writes` (bytes
    /// at the start of a page) in it; the WAL's only frame (at offset 32) holds page
    /// `wal_pgno`, all 0x77.
    fn view(dir: &Path, db_len_bytes: u64, writes: &[(u32, Vec<u8>)], wal_pgno: u32) -> View {
        let create = |name: &str| {
            let mut options = std::fs::OpenOptions::new();
            options.read(true).write(true).create(true).truncate(true);
            options.open(dir.join(name)).unwrap()
        };
        let db = create("db.img");
        db.set_len(db_len_bytes).unwrap();
        for (pgno, bytes) in writes {
            db.write_all_at(bytes, page_at(*pgno)).unwrap();
        }
        let wal = create("wal.img");
        wal.write_all_at(&full_page(0x77), 32 + 24).unwrap();
        View {
            pos: Pos::default(),
            page_size: PAGE,
            commit: lock_pgno(PAGE) + 1,
            frames: BTreeMap::from([(wal_pgno, 32)]),
            wal: Some(Arc::new(wal)),
            db: Some(Arc::new(db)),
        }
    }

    #[test]
    fn pages_come_from_the_wal_then_the_file_and_the_lock_page_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let options = DbOptions {
            node_id: NodeId(1),
            compress: false,
            strict_verify: false,
            replica: false,
        };
        let db = Db::open(dir.path(), "x", options, Arc::new(Shared::default())).unwrap();
        let lock = lock_pgno(PAGE);
        assert_eq!(lock, 16385);
        let mut page = full_page(0xEE);
        let ends = |p: &[u8]| (p[0], p[p.len() - 1]);

        // Files are sparse: 1 GiB costs nothing here.
        let writes = [(2, full_page(0x22)), (lock, full_page(0xAB))];
        let v = view(dir.path(), page_at(lock + 2), &writes, 3);
        v.read_page(&db, lock, &mut page).unwrap();
        assert_eq!(
            ends(&page),
            (0xAB, 0xAB),
            "the lock page as the file stores it"
        );
        v.read_page(&db, 2, &mut page).unwrap();
        assert_eq!(ends(&page), (0x22, 0x22), "page 2 from the database file");
        v.read_page(&db, 3, &mut page).unwrap();
        assert_eq!(ends(&page), (0x77, 0x77), "page 3 from its WAL frame");

        // The file ends 10 bytes into the lock page: zeros for the rest.
        let v = view(
            dir.path(),
            page_at(lock) + 10,
            &[(lock, b"0123456789".to_vec())],
            3,
        );
        page.fill(0xEE);
        v.read_page(&db, lock, &mut page).unwrap();
        assert_eq!(&page[..10], b"0123456789");
        assert!(
            page[10..].iter().all(|&b| b == 0),
            "zeros past the end of the file"
        );

        // The file ends before the lock page: all zeros. Any other page missing is an error.
        let v = view(dir.path(), page_at(2), &[], 3);
        page.fill(0xEE);
        v.read_page(&db, lock, &mut page).unwrap();
        assert!(
            page.iter().all(|&b| b == 0),
            "zeros when the file stops short"
        );
        let err = v.read_page(&db, lock + 1, &mut page).unwrap_err();
        assert!(err.to_string().starts_with("read page "), "{err}");
    }
}
