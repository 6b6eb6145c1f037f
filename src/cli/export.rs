//! `litefs export -url URL -name DB PATH` (spec §8.10): download a database as a SQLite file.
//!
//! The file arrives as `PATH.tmp` (fsynced), then `PATH-journal`, `PATH-wal` and `PATH-shm`
//! are deleted (a journal or WAL left from an older copy would be applied to the new file by
//! SQLite) and `PATH.tmp` is renamed over `PATH`, and the directory fsynced. LiteFS deletes
//! first and downloads second; downloading first leaves an existing copy untouched when the
//! export fails (unknown database, node down).

use super::transfer::{self, DEFAULT_URL, Progress};
use anyhow::{Context, Result, bail};
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::body::Bytes;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "litefs export",
    about = "Export a database from a LiteFS node to a SQLite file"
)]
pub struct ExportArgs {
    /// The LiteFS node's API URL.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// The database's name on the node.
    #[arg(long, default_value = "")]
    name: String,
    /// Where to write the database (exactly one path).
    paths: Vec<PathBuf>,
}

/// `path` with `suffix` appended to its file name (`db` → `db-wal`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The one positional argument Go's `export` and `import` take, with their error texts.
pub fn single_path(paths: Vec<PathBuf>) -> Result<PathBuf> {
    let mut paths = paths.into_iter();
    match (paths.next(), paths.next()) {
        (None, _) => bail!("database path required"),
        (Some(_), Some(_)) => bail!("too many arguments"),
        (Some(path), None) => Ok(path),
    }
}

pub fn run(args: ExportArgs) -> Result<()> {
    if args.name.is_empty() {
        bail!("database name required");
    }
    let path = single_path(args.paths)?;
    let authority = transfer::node_authority(&args.url)?;
    let started = Instant::now();
    let tmp = with_suffix(&path, ".tmp");
    let downloaded = transfer::runtime()?.block_on(download(&authority, &args.name, &tmp));
    if let Err(e) = downloaded {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    for suffix in ["-journal", "-wal", "-shm"] {
        let companion = with_suffix(&path, suffix);
        match fs::remove_file(&companion) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove {}", companion.display())),
        }
    }
    fs::rename(&tmp, &path)
        .with_context(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync directory {}", dir.display()))?;
    println!(
        "Export of database {:?} in {}",
        args.name,
        transfer::go_duration(started.elapsed())
    );
    Ok(())
}

/// `GET /export?name=` into `tmp`, fsynced; the body must have the announced length.
async fn download(authority: &str, name: &str, tmp: &Path) -> Result<()> {
    let path_and_query = format!("/export?name={}", transfer::query_escape(name));
    let body = Empty::<Bytes>::new();
    let resp = transfer::send(authority, hyper::Method::GET, &path_and_query, body).await?;
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => bail!("database not found"),
        status => {
            let text = transfer::error_text(resp).await;
            bail!("export failed with HTTP {}: {text}", status.as_u16());
        }
    }
    let announced_bytes = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let file = File::create(tmp).with_context(|| format!("create {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(256 * 1024, file);
    let mut progress = Progress::new(format!("export {name:?}"), announced_bytes.unwrap_or(0));
    let mut body = resp.into_body();
    let mut received_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| format!("download database {name:?}"))?;
        if let Ok(data) = frame.into_data() {
            w.write_all(&data)
                .with_context(|| format!("write {}", tmp.display()))?;
            received_bytes += data.len() as u64;
            progress.add(data.len() as u64);
        }
    }
    progress.finish();
    if let Some(want) = announced_bytes
        && want != received_bytes
    {
        bail!("export of {name:?} ended after {received_bytes} of {want} bytes");
    }
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("write {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("fsync {}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_path() {
        let p = |v: &[&str]| single_path(v.iter().map(PathBuf::from).collect());
        assert_eq!(p(&[]).unwrap_err().to_string(), "database path required");
        assert_eq!(
            p(&["a", "b"]).unwrap_err().to_string(),
            "too many arguments"
        );
        assert_eq!(p(&["a"]).unwrap(), PathBuf::from("a"));
        assert_eq!(
            with_suffix(Path::new("/x/db"), "-wal"),
            PathBuf::from("/x/db-wal")
        );
    }
}
