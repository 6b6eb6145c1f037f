//! `litefs run [-url URL] [-promote] [-if-candidate] [-with-halt-lock-on PATH] [-v] -- CMD
//! [ARG...]` (spec §5.6): runs a command with a guarantee from the node — only on a
//! candidate, only once this node is primary, or while holding the HALT lock.
//!
//! The checks follow LiteFS, with their messages and order. Two differences: the command
//! replaces this process once the checks pass (`exec`: its exit code and signals are its
//! own; LiteFS waits for it and exits 1 on any failure), and write forwarding is not built,
//! so `-with-halt-lock-on` runs the command only on the primary (where LiteFS's HALT lock is a
//! no-op, spec §5.2) and refuses on a replica, naming the primary, instead of letting the
//! command's writes fail. Which one PATH is on is read from the mount itself: `.primary`
//! exists on a replica (a replica not yet connected to a primary is taken for the primary;
//! the command's writes then fail as read-only).

use super::transfer::{self, DEFAULT_URL};
use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::body::Bytes;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser, Debug)]
#[command(
    name = "litefs run",
    about = "Run a command on a candidate, on the primary, or with the HALT lock",
    after_help = "Usage: litefs run [arguments] -- CMD [ARG...]"
)]
pub struct RunArgs {
    /// The LiteFS node's API URL.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// Promote this node to primary before running the command.
    #[arg(long)]
    promote: bool,
    /// Only run the command if this node is a candidate for primary.
    #[arg(long)]
    if_candidate: bool,
    /// Full path of a database on the mount to hold the HALT lock on while the command runs.
    #[arg(long)]
    with_halt_lock_on: Option<PathBuf>,
    /// Log each step to stderr.
    #[arg(short = 'v')]
    verbose: bool,
    /// Arguments before `--`: none are taken.
    extra: Vec<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true)]
    command: Vec<String>,
}

/// What `GET /info` says of the node (spec §4.3).
#[derive(serde::Deserialize, Debug)]
struct NodeInfo {
    #[serde(rename = "isPrimary", default)]
    is_primary: bool,
    #[serde(default)]
    candidate: bool,
}

/// What to do once the flags are checked against the node's `/info` (pure: tested below).
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Not a candidate and `-if-candidate`: say so, run nothing, succeed.
    Skip,
    /// Ask the node to become primary, then run the command.
    PromoteThenRun,
    /// Run the command.
    Run,
}

fn plan(args: &RunArgs, info: Option<&NodeInfo>) -> Plan {
    let Some(info) = info else {
        return Plan::Run;
    };
    if args.if_candidate && !info.candidate {
        return Plan::Skip;
    }
    if args.promote && !info.is_primary {
        return Plan::PromoteThenRun;
    }
    Plan::Run
}

/// Runs `litefs run` with the arguments after `run` (Go-style flags already rewritten);
/// returns the exit code if the command did not replace this process.
pub fn main(args: Vec<String>) -> i32 {
    let parsed = match RunArgs::try_parse_from(args) {
        Ok(parsed) => parsed,
        Err(e) => return super::clap_exit(e),
    };
    // LiteFS prints its usage (exit 2) when nothing is left after the flags and nothing
    // follows `--`.
    if parsed.extra.is_empty() && parsed.command.is_empty() {
        let _ = <RunArgs as clap::CommandFactory>::command().print_help();
        return 2;
    }
    match run(parsed) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            1
        }
    }
}

fn run(args: RunArgs) -> Result<i32> {
    if !args.extra.is_empty() {
        bail!("too many arguments, specify a '--' to specify an exec command");
    }
    if args.command.is_empty() {
        bail!("no subcommand specified");
    }
    if args.promote && args.with_halt_lock_on.is_some() {
        bail!("cannot specify both -promote & -with-halt-lock-on");
    }
    let log = |message: &str| {
        if args.verbose {
            eprintln!("{message}");
        }
    };
    let info = if args.if_candidate || args.promote {
        log("fetching node metadata");
        Some(node_info(&args.url)?)
    } else {
        None
    };
    match plan(&args, info.as_ref()) {
        Plan::Skip => {
            eprintln!("node is not a candidate, skipping execution");
            return Ok(0);
        }
        Plan::PromoteThenRun => {
            log("promoting node to primary");
            promote(&args.url)?;
            log("promotion successful");
        }
        Plan::Run if args.promote => log("node is already primary, skipping promotion"),
        Plan::Run => {}
    }
    if let Some(db) = &args.with_halt_lock_on {
        check_halt_target(db)?;
        log("the database's node is the primary: the HALT lock is not needed");
    }
    // Replaces this process: the command's exit code and signals are its own.
    let e = Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
    Err(anyhow!(e)).with_context(|| format!("cannot run {:?}", args.command[0]))
}

/// The database and its `-lock` file must exist (LiteFS's checks and messages), on a mount
/// of the primary: a replica's mount has `.primary`, naming it.
fn check_halt_target(db: &Path) -> Result<()> {
    if !db.exists() {
        bail!("database does not exist: {}", db.display());
    }
    let dir = db.parent().unwrap_or(Path::new(""));
    let lock = super::export::with_suffix(db, "-lock");
    if !lock.exists() {
        bail!(
            "lock file not available, are you sure {:?} is a LiteFS mount?",
            dir.display().to_string()
        );
    }
    match std::fs::read_to_string(dir.join(".primary")) {
        Ok(primary) => bail!(
            "{} is on a replica, and write forwarding (the HALT lock) is not built in \
             litefs-rs: run the command on the primary ({:?}) instead",
            db.display(),
            primary.trim_end()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("read {}", dir.join(".primary").display())),
    }
}

fn node_info(url: &str) -> Result<NodeInfo> {
    let authority = transfer::node_authority(url)?;
    transfer::runtime()?.block_on(async {
        let resp = transfer::send(&authority, hyper::Method::GET, "/info", empty()).await?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            bail!("GET /info: {status}: {}", transfer::error_text(resp).await);
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .context("read /info")?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| anyhow!("GET /info: {e}"))
    })
}

fn promote(url: &str) -> Result<()> {
    let authority = transfer::node_authority(url)?;
    transfer::runtime()?.block_on(async {
        let resp = transfer::send(&authority, hyper::Method::POST, "/promote", empty()).await?;
        match resp.status() {
            StatusCode::OK => Ok(()),
            StatusCode::CONFLICT => bail!("node is not eligible to become primary"),
            status => bail!("promote: {status}: {}", transfer::error_text(resp).await),
        }
    })
}

fn empty() -> Empty<Bytes> {
    Empty::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> RunArgs {
        let mut all = vec!["litefs run".to_string()];
        all.extend(flags.iter().map(|s| s.to_string()));
        all.extend(["--".to_string(), "true".to_string()]);
        RunArgs::try_parse_from(super::super::go_style_args(all)).unwrap()
    }

    fn info(is_primary: bool, candidate: bool) -> NodeInfo {
        NodeInfo {
            is_primary,
            candidate,
        }
    }

    #[test]
    fn the_plan_follows_litefs() {
        let replica = info(false, true);
        let non_candidate = info(false, false);
        let primary = info(true, true);
        assert_eq!(plan(&args(&[]), None), Plan::Run);
        assert_eq!(
            plan(&args(&["-if-candidate"]), Some(&non_candidate)),
            Plan::Skip
        );
        assert_eq!(plan(&args(&["-if-candidate"]), Some(&replica)), Plan::Run);
        assert_eq!(
            plan(&args(&["-promote"]), Some(&replica)),
            Plan::PromoteThenRun
        );
        assert_eq!(plan(&args(&["-promote"]), Some(&primary)), Plan::Run);
        assert_eq!(
            plan(&args(&["-if-candidate", "-promote"]), Some(&non_candidate)),
            Plan::Skip
        );
    }

    #[test]
    fn flags_that_litefs_refuses_are_refused() {
        let parse = |v: &[&str]| {
            let all: Vec<String> = std::iter::once("litefs run")
                .chain(v.iter().copied())
                .map(String::from)
                .collect();
            run(RunArgs::try_parse_from(super::super::go_style_args(all)).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            parse(&["x", "--", "true"]),
            "too many arguments, specify a '--' to specify an exec command"
        );
        let usage = |v: &[&str]| {
            let all = std::iter::once("litefs run").chain(v.iter().copied());
            main(super::super::go_style_args(all.map(String::from)))
        };
        assert_eq!(usage(&[]), 2, "no flags, no command: usage");
        assert_eq!(usage(&["-v", "--"]), 2, "nothing after --: usage");
        assert_eq!(usage(&["-promote"]), 2, "no --: usage");
        assert_eq!(
            parse(&["-promote", "-with-halt-lock-on", "/x", "--", "true"]),
            "cannot specify both -promote & -with-halt-lock-on"
        );
        assert_eq!(
            parse(&["-with-halt-lock-on", "/nonexistent/db", "--", "true"]),
            "database does not exist: /nonexistent/db"
        );
    }
}
