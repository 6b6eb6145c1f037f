//! `litefs ltx dump|verify|checksum`: the Go `ltx` tool's inspection commands.

use crate::ltx::{self, Decoder, Error, diagnose, format_timestamp_trimmed, header::HEADER_SIZE};
use crate::sqlite::db_header::DbHeader;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// Writes the Go `ltx dump` text for one file into `out`. Output identical to ltx v0.3.14
/// for a valid file; on a decode error the text so far is kept and the error returned.
pub fn dump<R: Read>(r: R, out: &mut String) -> ltx::Result<()> {
    let mut dec = Decoder::new(r)?;
    let h = *dec.header();
    let _ = writeln!(out, "# HEADER");
    let _ = writeln!(out, "Version:   {}", h.version);
    let _ = writeln!(out, "Flags:     0x{:08x}", h.flags);
    let _ = writeln!(out, "Page size: {}", h.page_size);
    let _ = writeln!(out, "Commit:    {}", h.commit);
    let _ = writeln!(out, "Min TXID:  {} ({})", h.min_txid, h.min_txid.0);
    let _ = writeln!(out, "Max TXID:  {} ({})", h.max_txid, h.max_txid.0);
    let ts = h.timestamp_ms;
    let _ = writeln!(out, "Timestamp: {} ({ts})", format_timestamp_trimmed(ts));
    let _ = writeln!(out, "Pre-apply: {}", h.pre_apply_checksum);
    let _ = writeln!(out, "WAL offset: {}", h.wal_offset);
    let _ = writeln!(out, "WAL size:   {}", h.wal_size);
    let _ = writeln!(out, "WAL salt:   {:08x} {:08x}", h.wal_salt1, h.wal_salt2);
    let _ = writeln!(out);
    let _ = writeln!(out, "# PAGE DATA");
    let mut page = vec![0u8; h.page_size as usize];
    let mut index = 0u32;
    while let Some(pgno) = dec.decode_page(&mut page)? {
        let _ = writeln!(out, "Frame #{index}: pgno={pgno}");
        index += 1;
    }
    let _ = writeln!(out);
    let (trailer, _) = dec.finish()?;
    let _ = writeln!(out, "# TRAILER");
    let _ = writeln!(out, "Post-apply:    {}", trailer.post_apply_checksum);
    let _ = writeln!(out, "File Checksum: {}", trailer.file_checksum);
    let _ = writeln!(out);
    Ok(())
}

fn open(path: &Path) -> Result<BufReader<File>> {
    let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    Ok(BufReader::with_capacity(256 * 1024, f))
}

pub fn run_dump(path: &Path) -> Result<()> {
    let mut out = String::new();
    let result = dump(open(path)?, &mut out);
    print!("{out}");
    result.with_context(|| format!("dump {}", path.display()))
}

/// Verifies each file; prints one line per file and details for each failure.
pub fn run_verify(paths: &[std::path::PathBuf]) -> Result<()> {
    let mut failed = 0usize;
    for path in paths {
        match verify_one(path) {
            Ok(line) => println!("{}: {line}", path.display()),
            Err(report) => {
                failed += 1;
                eprintln!("{}: {report}", path.display());
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} LTX file(s) failed verification",
            paths.len()
        );
    }
    Ok(())
}

fn verify_one(path: &Path) -> std::result::Result<String, String> {
    let r = open(path).map_err(|e| format!("{e:#}"))?;
    match ltx::verify(r) {
        Ok(s) => Ok(format!(
            "ok: TXID {}-{}, commit {}, {} page(s), post-apply {}",
            s.header.min_txid,
            s.header.max_txid,
            s.header.commit,
            s.page_count,
            s.trailer.post_apply_checksum
        )),
        Err(e) => Err(explain(path, &e)),
    }
}

/// Turns a verification error into a report that says what is wrong and where.
fn explain(path: &Path, err: &Error) -> String {
    let mut report = format!("FAILED: {err}");
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match err.root() {
        Error::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            let place = match err {
                Error::Context { context, .. } if context == "close reader" => {
                    "inside the 16-byte trailer"
                }
                Error::Context { context, .. } if context.starts_with("decode page") => {
                    "inside the page block"
                }
                _ => "inside the 100-byte header",
            };
            let _ = write!(
                report,
                "\n  the file is truncated: it is {file_len} bytes long and ends {place}"
            );
        }
        Error::ChecksumMismatch {
            trailer,
            calculated,
        } => {
            let _ = write!(
                report,
                "\n  trailer file checksum {trailer}, contents hash to {calculated}"
            );
            let _ = write!(report, "\n  {}", locate(path, trailer.0, calculated.0));
        }
        Error::PostApplyMismatch { .. } => {
            let _ = write!(
                report,
                "\n  the snapshot's pages do not add up to its post-apply checksum"
            );
        }
        Error::Lz4(_) | Error::ExpectedLz4EndFrame => {
            let _ = write!(report, "\n  the compressed page block is damaged");
        }
        _ => {}
    }
    report
}

/// Re-reads the file's pages to say which single byte explains a checksum mismatch.
fn locate(path: &Path, stored: u64, calculated: u64) -> String {
    let Ok(r) = open(path) else {
        return "cannot reopen the file to locate the damage".into();
    };
    let Ok(mut dec) = Decoder::new(r) else {
        return "cannot re-read the header to locate the damage".into();
    };
    let header = *dec.header();
    let mut page = vec![0u8; header.page_size as usize];
    let mut pgnos = Vec::new();
    while let Ok(Some(pgno)) = dec.decode_page(&mut page) {
        pgnos.push(pgno);
    }
    let frame_len = 4 + u64::from(header.page_size);
    let logical_len = HEADER_SIZE as u64 + frame_len * pgnos.len() as u64 + 4 + 8;
    let found = diagnose::locate_byte_errors(stored, calculated, logical_len);
    let describe = |e: &diagnose::ByteError| {
        format!(
            "{} (logical offset {}, xor 0x{:02x})",
            diagnose::describe_offset(&header, &pgnos, e.offset_bytes),
            e.offset_bytes,
            e.xor
        )
    };
    match found.as_slice() {
        [] => {
            let diff = stored ^ calculated;
            if diff.count_ones() <= 8
                && (diff.trailing_zeros() / 8 == (63 - diff.leading_zeros()) / 8)
            {
                let byte = 7 - diff.trailing_zeros() / 8;
                format!(
                    "no damaged content byte explains it; the stored checksum differs in byte {byte} only, so the trailer's file checksum field itself is damaged"
                )
            } else {
                "no single damaged byte explains it: the stored file checksum or several bytes are damaged".into()
            }
        }
        [one] => format!("one damaged byte explains it: {}", describe(one)),
        many => {
            let list: Vec<String> = many.iter().map(describe).collect();
            format!("one damaged byte explains it, one of: {}", list.join("; "))
        }
    }
}

/// `ltx checksum PATH`: the rolling LTX checksum of a SQLite database file.
pub fn run_checksum(path: &Path) -> Result<()> {
    let mut r = open(path)?;
    let mut head = [0u8; 100];
    r.read_exact(&mut head)
        .with_context(|| format!("read database header of {}", path.display()))?;
    let page_size = DbHeader::parse(&head)
        .with_context(|| format!("{} is not a SQLite database file", path.display()))?
        .with_context(|| format!("{} is empty", path.display()))?
        .page_size_bytes;
    let mut sum = ltx::RollingChecksum::new();
    let lock = ltx::lock_pgno(page_size);
    let mut page = vec![0u8; page_size as usize];
    page[..100].copy_from_slice(&head);
    r.read_exact(&mut page[100..])
        .with_context(|| format!("read page 1 of {}", path.display()))?;
    let mut pgno = 1u32;
    loop {
        if pgno != lock {
            sum.add_page(pgno, &page);
        }
        pgno += 1;
        match r.read_exact(&mut page) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                return Err(e).with_context(|| format!("read page {pgno} of {}", path.display()));
            }
        }
    }
    println!("{:016x}", sum.value());
    Ok(())
}
