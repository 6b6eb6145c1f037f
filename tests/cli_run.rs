//! `litefs run` (spec §5.6) against two real `litefs mount` processes: a static-lease primary
//! (a candidate) and a replica (not one). The command is a shell that leaves a marker file,
//! so each case checks both the exit code and whether the command ran.

mod common;

use common::cluster::{Node, NodeConfig};
use rusqlite::Connection;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// `litefs run ARGS -- sh -c 'touch MARKER; exit CODE'`.
fn litefs_run(args: &[&str], marker: &Path, code: i32) -> Output {
    Command::new(env!("CARGO_BIN_EXE_litefs"))
        .arg("run")
        .args(args)
        .args(["--", "sh", "-c"])
        .arg(format!("touch {}; exit {code}", marker.display()))
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn run_checks_candidacy_and_primacy_before_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let primary = Node::start(NodeConfig::primary(&tmp.path().join("p")));
    let replica = Node::start(NodeConfig::replica(
        &tmp.path().join("r"),
        primary.config.port,
    ));
    let conn = Connection::open(primary.path("db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x);")
        .unwrap();
    let pos = primary.pos("db").unwrap();
    replica.wait_pos("db", pos, Duration::from_secs(10));
    let (p_url, r_url) = (primary.url(), replica.url());
    let marker = tmp.path().join("ran");
    let ran = || std::fs::remove_file(&marker).is_ok();

    // No check asked: the command runs, and its exit code is ours.
    let out = litefs_run(&[], &marker, 3);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(ran());

    // -if-candidate: the primary is one, the replica is not (skipped, success).
    let out = litefs_run(&["-url", &p_url, "-if-candidate"], &marker, 0);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ran());
    let out = litefs_run(&["-url", &r_url, "-if-candidate"], &marker, 0);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("node is not a candidate, skipping execution"),
        "{}",
        stderr(&out)
    );
    assert!(!ran(), "the command must not run on a non-candidate");

    // -promote: the primary already is one; the replica cannot become one (a static lease).
    let out = litefs_run(&["-url", &p_url, "-promote", "-v"], &marker, 0);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("node is already primary"));
    assert!(ran());
    let out = litefs_run(&["-url", &r_url, "-promote"], &marker, 0);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "ERROR: node is not eligible to become primary\n",
        "a static replica is no candidate: /promote answers 409"
    );
    assert!(!ran(), "the command must not run when promotion failed");

    // -with-halt-lock-on: on the primary the lock is not needed; on the replica write
    // forwarding is refused, naming the primary, before anything runs.
    let db = primary.path("db");
    let db = db.to_str().unwrap();
    let out = litefs_run(&["-url", &p_url, "-with-halt-lock-on", db], &marker, 0);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ran());
    let replica_db = replica.path("db");
    let replica_db = replica_db.to_str().unwrap();
    let out = litefs_run(
        &["-url", &r_url, "-with-halt-lock-on", replica_db],
        &marker,
        0,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("write forwarding") && stderr(&out).contains("primary-"),
        "{}",
        stderr(&out)
    );
    assert!(!ran());
    let missing = replica.path("nope");
    let out = litefs_run(
        &[
            "-url",
            &r_url,
            "-with-halt-lock-on",
            missing.to_str().unwrap(),
        ],
        &marker,
        0,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("database does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(!ran());
    // As LiteFS: a non-candidate skips before the database is looked at.
    let out = litefs_run(
        &[
            "-url",
            &r_url,
            "-if-candidate",
            "-with-halt-lock-on",
            missing.to_str().unwrap(),
        ],
        &marker,
        0,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!ran());
}
