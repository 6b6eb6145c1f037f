//! The `litefs` command line (spec §8.10). Only `main.rs` and this module exit the process
//! or use `anyhow`.
//!
//! LiteFS uses Go's `flag` package, so users type `-config x` as well as `--config x`;
//! [`go_style_args`] turns single-dash long flags into clap's double-dash form.

pub mod export;
pub mod import;
pub mod ltx;
pub mod mount;
pub mod run;
mod transfer;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The version line printed by `litefs version`.
pub fn version_line() -> String {
    format!(
        "LiteFS {}, commit={}",
        env!("CARGO_PKG_VERSION"),
        option_env!("LITEFS_COMMIT").unwrap_or("unknown")
    )
}

const USAGE: &str = "\
litefs is a distributed file system for replicating SQLite databases.

Usage:

	litefs <command> [arguments]

The commands are:

	export       export a database from a LiteFS cluster to disk
	import       import a SQLite database into a LiteFS cluster
	mount        mount the LiteFS FUSE file system
	run          execute a subcommand for remote writes
	version      prints the version
	ltx          inspect LTX files: dump, verify, checksum
";

#[derive(Parser, Debug)]
#[command(
    name = "litefs ltx",
    about = "Inspect LTX files (like Go's `ltx` tool)"
)]
struct LtxArgs {
    #[command(subcommand)]
    command: LtxCommand,
}

#[derive(Subcommand, Debug)]
enum LtxCommand {
    /// Print the header, page numbers and trailer of an LTX file.
    Dump { path: PathBuf },
    /// Fully decode LTX files and check their checksums; exits 1 on any corruption.
    Verify {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the rolling LTX checksum of a SQLite database file.
    Checksum { path: PathBuf },
}

/// Rewrites Go-style `-name` / `-name=value` flags to `--name`, up to a `--` separator.
/// Single-letter flags (`-h`) are left alone.
pub fn go_style_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for arg in args {
        if passthrough || arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let name_len = arg.split('=').next().map_or(0, str::len);
        if arg.starts_with('-') && !arg.starts_with("--") && name_len > 2 {
            out.push(format!("-{arg}"));
        } else {
            out.push(arg);
        }
    }
    out
}

/// Runs the command line; returns the process exit code.
pub fn run(args: Vec<String>) -> i32 {
    let Some(command) = args.get(1).cloned() else {
        eprint!("{USAGE}");
        return 2;
    };
    let rest = || args[1..].iter().cloned();
    let result = match command.as_str() {
        "help" | "-h" | "--help" => {
            eprint!("{USAGE}");
            return 2;
        }
        c if c.starts_with('-') => {
            eprint!("{USAGE}");
            return 2;
        }
        "version" => {
            println!("{}", version_line());
            Ok(())
        }
        "ltx" => match LtxArgs::try_parse_from(go_style_args(rest())) {
            Ok(parsed) => match parsed.command {
                LtxCommand::Dump { path } => ltx::run_dump(&path),
                LtxCommand::Verify { paths } => ltx::run_verify(&paths),
                LtxCommand::Checksum { path } => ltx::run_checksum(&path),
            },
            Err(e) => return clap_exit(e),
        },
        "mount" => return mount::run(go_style_args(rest())),
        // Hidden: started by `litefs mount` itself (fuse/watchdog.rs).
        crate::fuse::watchdog::COMMAND => {
            let arg = |i: usize| args.get(i).map(String::as_str);
            return crate::fuse::watchdog::run(arg(2), arg(3));
        }
        "export" => match export::ExportArgs::try_parse_from(go_style_args(rest())) {
            Ok(parsed) => export::run(parsed),
            Err(e) => return clap_exit(e),
        },
        "import" => match import::ImportArgs::try_parse_from(go_style_args(rest())) {
            Ok(parsed) => import::run(parsed),
            Err(e) => return clap_exit(e),
        },
        "run" => return run::main(go_style_args(rest())),
        other => {
            eprintln!("litefs {other}: unknown command");
            return 1;
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            1
        }
    }
}

/// Prints a clap error (or help) and returns the exit code: 2 for usage errors, as Go's `flag`.
fn clap_exit(e: clap::Error) -> i32 {
    let _ = e.print();
    if e.use_stderr() { 2 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_flags_become_long_flags() {
        let args = [
            "litefs",
            "mount",
            "-config",
            "x.yml",
            "-fuse.debug",
            "-h",
            "--",
            "-app",
            "-x",
        ];
        let out = go_style_args(args.iter().map(|s| s.to_string()));
        assert_eq!(
            out,
            [
                "litefs",
                "mount",
                "--config",
                "x.yml",
                "--fuse.debug",
                "-h",
                "--",
                "-app",
                "-x"
            ]
        );
        let out = go_style_args(["-url=http://x".to_string()]);
        assert_eq!(out, ["--url=http://x"]);
    }
}
