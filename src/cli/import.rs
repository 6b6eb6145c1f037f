//! `litefs import -url URL -name DB PATH` (spec §8.10): send a SQLite file to the primary,
//! which records it as the database's next transaction (creating the database if needed).
//! The node does not check the file's integrity; run `PRAGMA integrity_check` first if in
//! doubt. The file must not be written to while it is sent.

use super::export::single_path;
use super::transfer::{self, DEFAULT_URL, FileBody, Progress};
use anyhow::{Context, Result, bail};
use clap::Parser;
use hyper::StatusCode;
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "litefs import",
    about = "Import a SQLite file into a LiteFS cluster (on the primary)"
)]
pub struct ImportArgs {
    /// The LiteFS primary's API URL.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// The database's name on the node.
    #[arg(long, default_value = "")]
    name: String,
    /// The SQLite file to import (exactly one path).
    paths: Vec<PathBuf>,
}

pub fn run(args: ImportArgs) -> Result<()> {
    if args.name.is_empty() {
        bail!("database name required");
    }
    let path = single_path(args.paths)?;
    let authority = transfer::node_authority(&args.url)?;
    let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let len_bytes = file
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?
        .len();
    let started = Instant::now();
    let progress = Progress::new(format!("import {:?}", args.name), len_bytes);
    let body = FileBody::new(file, len_bytes, progress);
    let path_and_query = format!("/import?name={}", transfer::query_escape(&args.name));
    transfer::runtime()?.block_on(async {
        let resp = transfer::send(&authority, hyper::Method::POST, &path_and_query, body).await?;
        let status = resp.status();
        if status != StatusCode::OK {
            let text = transfer::error_text(resp).await;
            bail!("import failed with HTTP {}: {text}", status.as_u16());
        }
        Ok(())
    })?;
    println!(
        "Import of database {:?} in {}",
        args.name,
        transfer::go_duration(started.elapsed())
    );
    Ok(())
}
