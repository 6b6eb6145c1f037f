//! One database: its backing files, position, page checksums and the capture of each
//! rollback-journal transaction as an LTX file (spec §3.5, §3.6, §3.13, §2.4).
//!
//! Every durable change follows write → sync → publish: the LTX file is complete and synced
//! under its final name before the position moves and before SQLite hears that the journal
//! was invalidated (the moment SQLite considers the transaction committed).

use super::checksums::PageChecksums;
use super::error::{Error, IoContext, Result};
use crate::ltx::{self, Encoder, Header, lock_pgno};
use crate::sqlite::{self, DbHeader, JournalReader};
use crate::types::{Checksum, NodeId, Pos, TxId};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::BufWriter;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// The journal header SQLite zeroes to commit in PERSIST mode (spec §3.6).
const JOURNAL_HEADER_SIZE: usize = 28;

/// The backing files of a database, as named in `dbs/<name>/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Database,
    Journal,
    Wal,
    Shm,
}

impl FileKind {
    pub const ALL: [FileKind; 4] = [
        FileKind::Database,
        FileKind::Journal,
        FileKind::Wal,
        FileKind::Shm,
    ];

    pub fn backing_name(self) -> &'static str {
        match self {
            FileKind::Database => "database",
            FileKind::Journal => "journal",
            FileKind::Wal => "wal",
            FileKind::Shm => "shm",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How SQLite invalidated the journal, which is how it committed (spec §3.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalMode {
    Delete,
    Truncate,
    Persist,
}

/// Settings shared by every database of a store.
#[derive(Clone, Copy, Debug)]
pub struct DbOptions {
    pub node_id: NodeId,
    pub compress: bool,
    /// Recompute the whole database checksum from disk after every commit (tests run with it).
    pub strict_verify: bool,
}

#[derive(Debug, Default)]
struct State {
    /// 0 until a database header or journal header told us.
    page_size: u32,
    page_count: u32,
    wal_mode: bool,
    pos: Pos,
    pos_timestamp_ms: i64,
    checksums: PageChecksums,
    /// Pages written since the last commit (rollback-journal modes).
    dirty: BTreeSet<u32>,
    files: [Option<Arc<File>>; 4],
}

pub struct Db {
    name: String,
    dir: PathBuf,
    ltx_dir: PathBuf,
    options: DbOptions,
    state: Mutex<State>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// fsyncs a directory so a rename or create inside it is durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .io_context("fsync directory", dir)
}

impl Db {
    /// Opens (or creates) `dbs/<name>` and recovers it (spec §2.4): a hot journal is rolled
    /// back, page checksums are computed, and the newest LTX file is re-applied and must
    /// match the database's checksum.
    pub fn open(dbs_dir: &Path, name: &str, options: DbOptions) -> Result<Db> {
        let dir = dbs_dir.join(name);
        let ltx_dir = dir.join("ltx");
        fs::create_dir_all(&ltx_dir).io_context("create directory", &ltx_dir)?;
        let db = Db {
            name: name.to_string(),
            dir,
            ltx_dir,
            options,
            state: Mutex::new(State::default()),
        };
        db.recover()?;
        Ok(db)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves state that was only ever changed after its
        // file changes were durable; continuing is as safe as the restart recovery would be.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn path(&self, kind: FileKind) -> PathBuf {
        self.dir.join(kind.backing_name())
    }

    pub fn pos(&self) -> Pos {
        self.lock().pos
    }

    /// Milliseconds since the epoch of the last committed transaction.
    pub fn pos_timestamp_ms(&self) -> i64 {
        self.lock().pos_timestamp_ms
    }

    pub fn page_count(&self) -> u32 {
        self.lock().page_count
    }

    pub fn page_size(&self) -> u32 {
        self.lock().page_size
    }

    pub fn ltx_dir(&self) -> &Path {
        &self.ltx_dir
    }

    /// The text of `<db>-pos`: `"%016x/%016x\n"`, 34 bytes.
    pub fn pos_text(&self) -> String {
        let pos = self.pos();
        format!("{}/{}\n", pos.txid, pos.post_apply_checksum)
    }

    pub fn exists(&self, kind: FileKind) -> bool {
        self.path(kind).exists()
    }

    fn file(&self, state: &mut State, kind: FileKind) -> Result<Arc<File>> {
        if let Some(f) = &state.files[kind.index()] {
            return Ok(f.clone());
        }
        let path = self.path(kind);
        let f = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .io_context("open", &path)?,
        );
        state.files[kind.index()] = Some(f.clone());
        Ok(f)
    }

    /// Creates a backing file that must not exist yet (O_CREAT|O_EXCL, as LiteFS).
    pub fn create(&self, kind: FileKind) -> Result<()> {
        let mut state = self.lock();
        let path = self.path(kind);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .io_context("create", &path)?;
        state.files[kind.index()] = Some(Arc::new(f));
        Ok(())
    }

    /// Opens a backing file for a FUSE open; fails with not-found if it does not exist.
    pub fn open_file(&self, kind: FileKind) -> Result<()> {
        let mut state = self.lock();
        self.file(&mut state, kind).map(|_| ())
    }

    pub fn metadata(&self, kind: FileKind) -> Result<fs::Metadata> {
        let path = self.path(kind);
        fs::metadata(&path).io_context("stat", &path)
    }

    pub fn read(&self, kind: FileKind, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let f = {
            let mut state = self.lock();
            self.file(&mut state, kind)?
        };
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).io_context("read", self.path(kind)),
            }
        }
        Ok(done)
    }

    pub fn write(&self, kind: FileKind, offset: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        match kind {
            FileKind::Database => self.write_database(&mut state, offset, data),
            FileKind::Journal => self.write_journal(&mut state, offset, data),
            FileKind::Wal | FileKind::Shm => self.write_at(&mut state, kind, offset, data),
        }
    }

    fn write_at(&self, state: &mut State, kind: FileKind, offset: u64, data: &[u8]) -> Result<()> {
        let f = self.file(state, kind)?;
        f.write_all_at(data, offset)
            .io_context("write", self.path(kind))
    }

    fn invalid_write(&self, message: String) -> Error {
        Error::InvalidWrite {
            db: self.name.clone(),
            message,
        }
    }

    /// Spec §3.5: whole, page-aligned pages; the first write teaches us the page size.
    fn write_database(&self, state: &mut State, offset: u64, data: &[u8]) -> Result<()> {
        if state.page_size == 0 {
            if offset != 0 {
                return Err(self.invalid_write(format!(
                    "first database write must be at offset 0 to learn the page size, got offset {offset}"
                )));
            }
            let header = DbHeader::parse(data)
                .map_err(|e| self.invalid_write(format!("first database write: {e}")))?
                .ok_or_else(|| self.invalid_write("first database write is empty".into()))?;
            state.page_size = header.page_size_bytes;
        }
        let page_size = u64::from(state.page_size);
        if !offset.is_multiple_of(page_size) {
            return Err(self.invalid_write(format!(
                "database writes must be page-aligned: offset {offset}, page size {page_size}"
            )));
        }
        if data.len() as u64 != page_size {
            return Err(self.invalid_write(format!(
                "database write must be exactly one page: {} bytes, page size {page_size}",
                data.len()
            )));
        }
        let pgno = u32::try_from(offset / page_size + 1).map_err(|_| {
            self.invalid_write(format!(
                "database write at offset {offset} is beyond the largest page number"
            ))
        })?;
        self.write_at(state, FileKind::Database, offset, data)?;
        if pgno != lock_pgno(state.page_size) {
            state.checksums.set(pgno, data);
        }
        if !state.wal_mode {
            state.dirty.insert(pgno);
        }
        Ok(())
    }

    fn write_journal(&self, state: &mut State, offset: u64, data: &[u8]) -> Result<()> {
        if offset == 0 && data.len() == JOURNAL_HEADER_SIZE && data.iter().all(|&b| b == 0) {
            // PERSIST mode commits by zeroing the header (spec §3.6).
            self.commit_journal(state, JournalMode::Persist)?;
            return Ok(());
        }
        if state.page_size == 0 && offset == 0 && data.len() >= JOURNAL_HEADER_SIZE {
            let page_size = u32::from_be_bytes([data[24], data[25], data[26], data[27]]);
            if ltx::is_valid_page_size(page_size) {
                state.page_size = page_size;
            }
        }
        self.write_at(state, FileKind::Journal, offset, data)
    }

    /// Truncation through FUSE setattr (spec §3.3, §3.6).
    pub fn truncate(&self, kind: FileKind, size: u64) -> Result<()> {
        let mut state = self.lock();
        match kind {
            FileKind::Journal if size == 0 => {
                self.commit_journal(&mut state, JournalMode::Truncate)
            }
            FileKind::Journal => Err(self.invalid_write(format!(
                "journal can only be truncated to 0 bytes, not {size}"
            ))),
            FileKind::Wal if size != 0 => {
                Err(self.invalid_write(format!("wal can only be truncated to 0 bytes, not {size}")))
            }
            FileKind::Database => {
                let want = u64::from(state.page_count) * u64::from(state.page_size);
                if size != want {
                    return Err(self.invalid_write(format!(
                        "truncation size ({} pages) does not match database header size ({} pages)",
                        size / u64::from(state.page_size.max(1)),
                        state.page_count
                    )));
                }
                let f = self.file(&mut state, kind)?;
                f.set_len(size).io_context("truncate", self.path(kind))
            }
            FileKind::Wal | FileKind::Shm => {
                let f = self.file(&mut state, kind)?;
                f.set_len(size).io_context("truncate", self.path(kind))
            }
        }
    }

    /// Unlink through FUSE: the journal commits (DELETE mode), WAL and SHM are deleted.
    pub fn unlink(&self, kind: FileKind) -> Result<()> {
        let mut state = self.lock();
        match kind {
            FileKind::Journal => self.commit_journal(&mut state, JournalMode::Delete),
            FileKind::Wal | FileKind::Shm => {
                state.files[kind.index()] = None;
                fs::remove_file(self.path(kind)).io_context("remove", self.path(kind))
            }
            FileKind::Database => self.drop_database(&mut state),
        }
    }

    pub fn fsync(&self, kind: FileKind) -> Result<()> {
        let f = {
            let mut state = self.lock();
            self.file(&mut state, kind)?
        };
        f.sync_all().io_context("fsync", self.path(kind))
    }

    /// Removes the journal in the way SQLite asked, without recording anything.
    fn invalidate_journal(&self, state: &mut State, mode: JournalMode) -> Result<()> {
        let path = self.path(FileKind::Journal);
        match mode {
            JournalMode::Delete => {
                state.files[FileKind::Journal.index()] = None;
                fs::remove_file(&path).io_context("remove", &path)
            }
            JournalMode::Truncate => {
                let f = self.file(state, FileKind::Journal)?;
                f.set_len(0).io_context("truncate", &path)?;
                f.sync_all().io_context("fsync", &path)
            }
            JournalMode::Persist => {
                let f = self.file(state, FileKind::Journal)?;
                f.write_all_at(&[0; JOURNAL_HEADER_SIZE], 0)
                    .io_context("write", &path)?;
                f.sync_all().io_context("fsync", &path)
            }
        }
    }

    /// Spec §3.6 `CommitJournal`: the pages SQLite wrote since the journal appeared become
    /// LTX file TXID+1, then the journal is invalidated as SQLite asked.
    fn commit_journal(&self, state: &mut State, mode: JournalMode) -> Result<()> {
        let journal = self.file(state, FileKind::Journal)?;
        let mut magic = [0u8; 8];
        let has_magic =
            journal.read_exact_at(&mut magic, 0).is_ok() && magic == sqlite::journal::JOURNAL_MAGIC;
        if !has_magic || state.page_size == 0 {
            // A rollback, or a journal that never reached the database: nothing to record.
            state.dirty.clear();
            return self.invalidate_journal(state, mode);
        }
        let db_file = self.file(state, FileKind::Database)?;
        let mut head = [0u8; 32];
        db_file
            .read_exact_at(&mut head, 0)
            .io_context("read database header", self.path(FileKind::Database))?;
        let commit = u32::from_be_bytes([head[28], head[29], head[30], head[31]]);
        let wal_mode = head[18] == 2 && head[19] == 2;
        let pages: Vec<u32> = if state.pos.txid.0 == 0 {
            // TXID 1 is a snapshot: every page, whatever this transaction touched.
            (1..=commit).collect()
        } else {
            state
                .dirty
                .iter()
                .copied()
                .filter(|&p| p <= commit)
                .collect()
        };
        self.write_ltx(state, &db_file, commit, &pages)?;
        self.invalidate_journal(state, mode)?;
        state.dirty.clear();
        state.wal_mode = wal_mode;
        Ok(())
    }

    /// Writes LTX file TXID+1 from database pages `pgnos`, syncs it and publishes the position.
    fn write_ltx(
        &self,
        state: &mut State,
        db_file: &File,
        commit: u32,
        pgnos: &[u32],
    ) -> Result<()> {
        let txid = TxId(state.pos.txid.0 + 1);
        let page_size = state.page_size;
        let header = Header {
            flags: if self.options.compress {
                ltx::FLAG_COMPRESS_LZ4
            } else {
                0
            },
            page_size,
            commit,
            min_txid: txid,
            max_txid: txid,
            timestamp_ms: now_ms(),
            pre_apply_checksum: if txid.0 == 1 {
                Checksum(0)
            } else {
                state.pos.post_apply_checksum
            },
            node_id: self.options.node_id,
            ..Header::new()
        };
        let name = ltx::format_filename(txid, txid);
        let tmp_path = self.ltx_dir.join(format!("{name}.tmp"));
        let final_path = self.ltx_dir.join(&name);
        let ltx_err = |source| Error::Ltx {
            db: self.name.clone(),
            source,
        };
        let file = File::create(&tmp_path).io_context("create", &tmp_path)?;
        let mut enc =
            Encoder::new(BufWriter::with_capacity(256 * 1024, file), &header).map_err(ltx_err)?;
        let lock = lock_pgno(page_size);
        let mut page = vec![0u8; page_size as usize];
        for &pgno in pgnos {
            if pgno == lock {
                continue;
            }
            let offset = u64::from(pgno - 1) * u64::from(page_size);
            db_file
                .read_exact_at(&mut page, offset)
                .io_context("read page", self.path(FileKind::Database))?;
            // Assert in pairs: what we read back must be what we saw written.
            let cached = state.checksums.get(pgno);
            let actual = ltx::page_checksum(pgno, &page);
            if cached != Some(actual) {
                return Err(Error::Corrupt {
                    db: self.name.clone(),
                    message: format!(
                        "updated page ({pgno}) does not match in-memory checksum: {cached:x?} <> {actual:016x}"
                    ),
                });
            }
            enc.encode_page(pgno, &page).map_err(ltx_err)?;
        }
        state.checksums.truncate(commit);
        let post_apply = Checksum(state.checksums.value());
        let (writer, _) = enc.finish(post_apply).map_err(ltx_err)?;
        let file = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .io_context("write", &tmp_path)?;
        file.sync_all().io_context("fsync", &tmp_path)?;
        fs::rename(&tmp_path, &final_path).io_context("rename", &final_path)?;
        sync_dir(&self.ltx_dir)?;
        db_file
            .sync_data()
            .io_context("fsync", self.path(FileKind::Database))?;
        state.page_count = commit;
        state.pos = Pos {
            txid,
            post_apply_checksum: post_apply,
        };
        state.pos_timestamp_ms = header.timestamp_ms;
        if self.options.strict_verify {
            self.verify_on_disk(state)?;
        }
        Ok(())
    }

    fn drop_database(&self, _state: &mut State) -> Result<()> {
        Err(self.invalid_write("dropping a database arrives with a later change".into()))
    }

    /// Recomputes the database checksum from the file and compares it with the position.
    fn verify_on_disk(&self, state: &mut State) -> Result<()> {
        let image = fs::read(self.path(FileKind::Database))
            .io_context("read", self.path(FileKind::Database))?;
        let size = u64::from(state.page_count) * u64::from(state.page_size);
        let image = &image[..(size as usize).min(image.len())];
        let actual = ltx::database_checksum(image, state.page_size);
        if actual != state.pos.post_apply_checksum.0 {
            return Err(Error::Corrupt {
                db: self.name.clone(),
                message: format!(
                    "strict verify: database checksum {actual:016x} on TXID {} does not match position checksum {}",
                    state.pos.txid, state.pos.post_apply_checksum
                ),
            });
        }
        Ok(())
    }

    /// Startup recovery (spec §2.4, in its order).
    fn recover(&self) -> Result<()> {
        let mut state = self.lock();
        let db_path = self.path(FileKind::Database);
        // 1. The database header: page size, page count and mode.
        match fs::read(&db_path) {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => match DbHeader::parse(&bytes[..bytes.len().min(100)]) {
                Ok(Some(h)) => {
                    state.page_size = h.page_size_bytes;
                    state.page_count = h.page_count;
                    state.wal_mode = h.is_wal();
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::Corrupt {
                        db: self.name.clone(),
                        message: format!(
                            "{}: {e}; move {} aside (it is not a SQLite database) and restart",
                            db_path.display(),
                            self.dir.display()
                        ),
                    });
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).io_context("read", &db_path),
        }
        // 3. The shared-memory index is rebuilt by SQLite; a stale one must not survive.
        let shm = self.path(FileKind::Shm);
        if shm.exists() {
            fs::remove_file(&shm).io_context("remove", &shm)?;
        }
        // Temp files are LTX files that never became durable: discard them.
        let last = self.scan_ltx_dir()?;
        // 6a. Roll back a hot journal.
        self.rollback_hot_journal(&mut state)?;
        // 7. Page checksums from the file.
        self.init_checksums(&mut state)?;
        // 8. Re-apply the newest LTX file: it is the truth about the last commit.
        if let Some(path) = last {
            self.reapply_ltx(&mut state, &path)?;
        }
        Ok(())
    }

    /// Deletes `*.tmp` files and returns the LTX file with the highest MaxTXID.
    fn scan_ltx_dir(&self) -> Result<Option<PathBuf>> {
        let mut best: Option<(TxId, PathBuf)> = None;
        let entries = fs::read_dir(&self.ltx_dir).io_context("read directory", &self.ltx_dir)?;
        for entry in entries {
            let entry = entry.io_context("read directory", &self.ltx_dir)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                fs::remove_file(entry.path()).io_context("remove", entry.path())?;
                continue;
            }
            if let Some((_, max)) = ltx::parse_filename(&name)
                && best.as_ref().is_none_or(|(b, _)| max > *b)
            {
                best = Some((max, entry.path()));
            }
        }
        Ok(best.map(|(_, p)| p))
    }

    fn rollback_hot_journal(&self, state: &mut State) -> Result<()> {
        let path = self.path(FileKind::Journal);
        let journal = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).io_context("open", &path),
        };
        let db_path = self.path(FileKind::Database);
        let page_size = (state.page_size != 0).then_some(state.page_size);
        let corrupt = |e: sqlite::Error| Error::Corrupt {
            db: self.name.clone(),
            message: format!("hot journal {}: {e}", path.display()),
        };
        let mut reader =
            JournalReader::new(std::io::BufReader::new(journal), page_size).map_err(corrupt)?;
        let db_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&db_path)
            .io_context("open", &db_path)?;
        let journal_page_size = reader.page_size_bytes();
        let size = sqlite::rollback(&mut reader, |pgno, page| {
            let offset = u64::from(pgno - 1) * page.len() as u64;
            db_file
                .write_all_at(page, offset)
                .io_context("write", &db_path)
        })?;
        if let Some(size_pages) = size {
            db_file
                .set_len(u64::from(size_pages) * u64::from(journal_page_size))
                .io_context("truncate", &db_path)?;
            if state.page_size == 0 {
                state.page_size = journal_page_size;
            }
            state.page_count = size_pages;
        }
        db_file.sync_all().io_context("fsync", &db_path)?;
        fs::remove_file(&path).io_context("remove", &path)?;
        sync_dir(&self.dir)
    }

    fn init_checksums(&self, state: &mut State) -> Result<()> {
        state.checksums.clear();
        if state.page_size == 0 {
            return Ok(());
        }
        let path = self.path(FileKind::Database);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).io_context("open", &path),
        };
        let lock = lock_pgno(state.page_size);
        let mut page = vec![0u8; state.page_size as usize];
        for pgno in 1..=state.page_count {
            if pgno == lock {
                continue;
            }
            let offset = u64::from(pgno - 1) * u64::from(state.page_size);
            match f.read_exact_at(&mut page, offset) {
                Ok(()) => state.checksums.set(pgno, &page),
                // A short file: the re-applied LTX file below fills in the rest.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e).io_context("read", &path),
            }
        }
        Ok(())
    }

    fn reapply_ltx(&self, state: &mut State, path: &Path) -> Result<()> {
        let ltx_err = |source| Error::Ltx {
            db: self.name.clone(),
            source,
        };
        let file = File::open(path).io_context("open", path)?;
        let mut dec = ltx::Decoder::new(std::io::BufReader::new(file)).map_err(ltx_err)?;
        let h = *dec.header();
        let db_path = self.path(FileKind::Database);
        let db_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&db_path)
            .io_context("open", &db_path)?;
        let mut page = vec![0u8; h.page_size as usize];
        while let Some(pgno) = dec.decode_page(&mut page).map_err(ltx_err)? {
            let offset = u64::from(pgno - 1) * u64::from(h.page_size);
            db_file
                .write_all_at(&page, offset)
                .io_context("write", &db_path)?;
            state.checksums.set(pgno, &page);
        }
        let (trailer, _) = dec.finish().map_err(ltx_err)?;
        db_file
            .set_len(u64::from(h.commit) * u64::from(h.page_size))
            .io_context("truncate", &db_path)?;
        db_file.sync_all().io_context("fsync", &db_path)?;
        state.checksums.truncate(h.commit);
        state.page_size = h.page_size;
        state.page_count = h.commit;
        let actual = state.checksums.value();
        if actual != trailer.post_apply_checksum.0 {
            return Err(Error::Corrupt {
                db: self.name.clone(),
                message: format!(
                    "recover ltx: database checksum {actual:016x} on TXID {} does not match LTX post-apply checksum {} ({})",
                    h.max_txid,
                    trailer.post_apply_checksum,
                    path.display()
                ),
            });
        }
        state.pos = Pos {
            txid: h.max_txid,
            post_apply_checksum: trailer.post_apply_checksum,
        };
        state.pos_timestamp_ms = h.timestamp_ms;
        Ok(())
    }
}
