//! `litefs mount -- CMD` as a process: the daemon runs CMD once the mount is ready, exits with
//! CMD's exit code and leaves no mount behind. CMD gets the huge-page policy the daemon was
//! started with, though the daemon keeps its own heap in 4 KiB pages
//! (`litefs::keep_heap_in_small_pages`).

mod common;

use common::ChildGuard;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long the daemon may take to mount, run a shell and unmount.
const RUN_WAIT_MAX: Duration = Duration::from_secs(30);

/// The `THP_enabled:` value of `/proc/<pid>/status` lines in `text` (1 allowed, 0 disabled by
/// `PR_SET_THP_DISABLE`), in order.
fn thp_enabled(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim)
        .collect()
}

/// Whether `path` is a mount point: its device differs from its parent's (no parsing of
/// `/proc/self/mounts`, whose paths are escaped and may differ by symlinks). A dead FUSE
/// mount fails `stat` with ENOTCONN and counts as mounted, so it gets detached.
fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = path.parent() else {
        return false;
    };
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(here), Ok(up)) => here.dev() != up.dev(),
        (Err(e), _) => e.raw_os_error() == Some(libc::ENOTCONN),
        _ => false,
    }
}

/// Lazily unmounts its path when dropped if it is still mounted: a daemon killed after a
/// timeout must not leave its mount behind.
struct UnmountGuard(PathBuf);

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            common::cluster::lazy_unmount(&self.0);
        }
    }
}

#[test]
fn mount_runs_its_command_with_the_callers_huge_page_policy_and_exits_with_its_code() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let _unmount = UnmountGuard(mnt.clone());
    let out = tmp.path().join("thp.txt");
    let config = tmp.path().join("litefs.yml");
    std::fs::write(
        &config,
        format!(
            "fuse:\n  dir: {}\n  transport: {}\ndata:\n  dir: {}\nhttp:\n  addr: 127.0.0.1:0\nlease:\n  type: static\n  advertise-url: http://127.0.0.1:20202\n",
            mnt.display(),
            common::fuse_transport_name(),
            tmp.path().join("data").display(),
        ),
    )
    .unwrap();
    // The command's own status line, then its parent's (the daemon), then whether the mount
    // was there for it; exit 7.
    let script = format!(
        "grep THP_enabled /proc/self/status /proc/$PPID/status | cut -d: -f2- > {out}; \
         test -e {mnt}/.lag && echo mounted >> {out}; exit 7",
        out = out.display(),
        mnt = mnt.display(),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_litefs"));
    common::die_with_test(&mut cmd)
        .args([
            "mount",
            "-config",
            config.to_str().unwrap(),
            "--",
            "sh",
            "-c",
        ])
        .arg(&script)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let daemon = ChildGuard(Some(cmd.spawn().unwrap()));
    let output = daemon.wait_output(RUN_WAIT_MAX);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(7), "daemon stderr:\n{stderr}");
    assert!(
        !is_mounted(&mnt),
        "{} still mounted after exit",
        mnt.display()
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.ends_with("mounted\n"),
        "the command ran before the mount: {text:?}"
    );
    // This test process's policy is what the daemon started with (its parent's, inherited).
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    match thp_enabled(&ours).as_slice() {
        // The daemon turned huge pages off for itself; its command has ours back.
        [mine] => assert_eq!(thp_enabled(&text), [*mine, "0"], "{text:?}"),
        // No `THP_enabled:` line (a kernel older than 5.0): nothing to compare.
        _ => assert!(thp_enabled(&text).is_empty(), "{text:?}"),
    }
}
