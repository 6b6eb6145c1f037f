//! `litefs mount -- CMD` as a process: the daemon runs CMD once the mount is ready, exits with
//! CMD's exit code and leaves no mount behind. CMD gets the system's huge-page policy, though
//! the daemon keeps its own heap in 4 KiB pages (`litefs::keep_heap_in_small_pages`).

mod common;

use common::ChildGuard;
use std::path::Path;
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

fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let path = path.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(path))
}

#[test]
fn mount_runs_its_command_with_the_systems_huge_page_policy_and_exits_with_its_code() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
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
    let mounted_after = is_mounted(&mnt);
    if mounted_after {
        let c = std::ffi::CString::new(mnt.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    assert_eq!(output.status.code(), Some(7), "daemon stderr:\n{stderr}");
    assert!(!mounted_after, "{} still mounted after exit", mnt.display());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.ends_with("mounted\n"),
        "the command ran before the mount: {text:?}"
    );
    if Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
        // The kernel has THP: the daemon opted out, its command did not inherit that.
        assert_eq!(thp_enabled(&text), ["1", "0"], "{text:?}");
    } else {
        assert!(thp_enabled(&text).iter().all(|v| *v == "0"), "{text:?}");
    }
}
