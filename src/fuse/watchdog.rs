//! A process that frees a mount whose daemon died while its own threads waited on it.
//!
//! Some daemon threads send requests to their own mount (`kernel_locks.rs` opens `<db>` and
//! `<db>-shm` through it). The kernel waits uninterruptibly for a request a worker has
//! already taken, so when `kill -9` (or the OOM killer) lands while one is in a worker's
//! hands, the waiting thread never exits; it keeps `/dev/fuse` open, the connection is never
//! aborted, and the daemon stays a zombie with the mount hung for good (every access to it
//! blocks). Nothing inside the daemon can help — all its other threads are gone.
//!
//! `litefs mount` therefore starts this watchdog as a child (`litefs fuse-watchdog <dir>
//! <pid>`).
//! It polls the daemon's `/proc/<pid>/status`; when the daemon is dying (its main thread a
//! zombie with threads left, or SIGKILL pending) on two polls in a row and the mount is still
//! the same connection, it writes 1 to the connection's `abort` file: the stuck requests fail
//! with ENOTCONN, the threads exit, and the next `litefs mount` removes the stale mount as
//! after any crash. It exits when the daemon exits (its pidfd turns readable) or kills it, and
//! ignores SIGINT, SIGTERM and SIGHUP meant for the daemon's group; a SIGKILL of the whole
//! cgroup takes it too.

use super::session::{abort_connection, connection_id};
use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How often the watchdog looks at the daemon. A dying daemon is declared stuck after two
/// looks, so a hung mount is freed within about a second.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The hidden command `litefs` runs as its watchdog.
pub const COMMAND: &str = "fuse-watchdog";

/// The daemon's side: the watchdog child, killed and reaped when dropped (after unmounting).
#[derive(Debug)]
pub struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts `exe fuse-watchdog <mountpoint>` for the mount at `mountpoint`. `exe` is this
    /// program (`/proc/self/exe`), so the watchdog is the same build as the daemon.
    pub fn spawn(exe: &Path, mountpoint: &Path) -> io::Result<Watchdog> {
        // No pre_exec hook: std can use posix_spawn. Only stderr is shared, for its message.
        let child = Command::new(exe)
            .arg(COMMAND)
            .arg(mountpoint)
            .arg(std::process::id().to_string())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Watchdog { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `/proc/<pid>/status` says about the daemon.
#[derive(Debug, PartialEq, Eq)]
pub enum Daemon {
    Alive,
    /// Killed but not gone: its main thread a zombie while threads remain, or SIGKILL pending.
    /// Normally over within milliseconds; still so a poll later, threads are stuck.
    Dying,
    /// Every thread has exited (a zombie waiting to be reaped): the kernel has already
    /// aborted the connection, as it does when the last `/dev/fuse` descriptor closes.
    Exited,
}

/// Classifies the text of `/proc/<pid>/status` (fields `State`, `Threads`, `SigPnd`,
/// `ShdPnd`). Unreadable fields count as alive: the watchdog must never abort a live mount.
pub fn classify(status: &str) -> Daemon {
    let field = |name: &str| {
        status.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key == name).then(|| value.trim())
        })
    };
    let zombie = field("State").is_some_and(|s| s.starts_with('Z') || s.starts_with('X'));
    let threads: u64 = field("Threads").and_then(|t| t.parse().ok()).unwrap_or(1);
    let sigkill_bit = 1u64 << (libc::SIGKILL - 1);
    let killed = ["SigPnd", "ShdPnd"].iter().any(|name| {
        field(name)
            .and_then(|mask| u64::from_str_radix(mask, 16).ok())
            .is_some_and(|mask| mask & sigkill_bit != 0)
    });
    match (zombie, threads) {
        (true, 0..=1) => Daemon::Exited,
        (true, _) => Daemon::Dying,
        (false, _) if killed => Daemon::Dying,
        (false, _) => Daemon::Alive,
    }
}

/// `litefs fuse-watchdog <mountpoint> <daemon pid>`: watches the daemon serving `mountpoint`
/// — its parent — until it exits; returns the exit code.
pub fn run(mountpoint: Option<&str>, daemon: Option<&str>) -> i32 {
    let daemon = daemon.and_then(|p| p.parse::<libc::pid_t>().ok());
    let (Some(mountpoint), Some(daemon)) = (mountpoint, daemon) else {
        eprintln!("litefs {COMMAND}: usage: litefs {COMMAND} <mounted directory> <daemon pid>");
        return 2;
    };
    let mountpoint = match Path::new(mountpoint).canonicalize() {
        Ok(path) => path,
        Err(e) => {
            eprintln!("litefs {COMMAND}: {mountpoint}: {e}");
            return 1;
        }
    };
    // It leaves with the daemon (below); a Ctrl-C, `systemctl stop` or hang-up meant for the
    // daemon's group must not take it away while the daemon is still shutting down.
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: SIG_IGN is a valid disposition for these signals; no handler runs.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != daemon {
        return 0; // The daemon exited before we started (we were reparented): nothing to do.
    }
    let mounted = || {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        connection_id(&info, &mountpoint)
    };
    let Some(connection) = mounted() else {
        eprintln!("litefs {COMMAND}: {} is not mounted", mountpoint.display());
        return 1;
    };
    let status_path = format!("/proc/{daemon}/status");
    let exited = ExitWatch::new(daemon);
    let mut dying_polls = 0;
    loop {
        if exited.wait(POLL_INTERVAL) {
            return 0; // Every daemon thread has exited.
        }
        let Ok(status) = std::fs::read_to_string(&status_path) else {
            return 0;
        };
        match classify(&status) {
            Daemon::Alive => dying_polls = 0,
            Daemon::Exited => return 0,
            Daemon::Dying => {
                dying_polls += 1;
                if dying_polls >= 2 {
                    break;
                }
            }
        }
    }
    if mounted() != Some(connection) {
        return 0; // Unmounted (or another file system mounted there) meanwhile.
    }
    match abort_connection(&mountpoint) {
        Ok(()) => {
            eprintln!(
                "litefs: the daemon (pid {daemon}) was killed while its threads waited on its own \
                 mount; aborted FUSE connection {connection} so they can exit. {} stays \
                 mounted but disconnected until the next `litefs mount` (or `umount -l`).",
                mountpoint.display()
            );
            0
        }
        Err(e) => {
            eprintln!(
                "litefs {COMMAND}: cannot abort FUSE connection {connection} of {}: {e}; \
                 write 1 to /sys/fs/fuse/connections/{connection}/abort to free it",
                mountpoint.display()
            );
            1
        }
    }
}

/// Wakes the watchdog the moment the daemon's last thread exits (a pidfd turns readable), so
/// it leaves with a daemon that exits. Not the parent pid: a killed daemon's threads are all
/// exiting, so its children are handed to init at once, even while one of its threads is
/// stuck in its exit — found with a real daemon stuck closing a file on its own mount
/// (`fuse_flush` from `do_exit`), whose pidfd stayed unreadable. Without pidfds (Linux < 5.3)
/// the parent pid is all there is.
struct ExitWatch(Option<std::os::fd::OwnedFd>, libc::pid_t);

impl ExitWatch {
    fn new(pid: libc::pid_t) -> ExitWatch {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a non-negative result is a descriptor this process now owns alone.
        let fd = (fd >= 0).then(|| unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32)
        });
        ExitWatch(fd, pid)
    }

    /// True if the process exited within `limit`.
    fn wait(&self, limit: Duration) -> bool {
        let Some(fd) = &self.0 else {
            std::thread::sleep(limit);
            // SAFETY: getppid has no preconditions.
            return unsafe { libc::getppid() } != self.1;
        };
        let mut poll = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(fd),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd that outlives the call.
        let ready = unsafe { libc::poll(&mut poll, 1, limit.as_millis() as libc::c_int) };
        ready > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &str, threads: u32, sig_pnd: &str, shd_pnd: &str) -> String {
        format!(
            "Name:\tlitefs\nState:\t{state}\nTgid:\t7\nThreads:\t{threads}\n\
             SigQ:\t0/95000\nSigPnd:\t{sig_pnd}\nShdPnd:\t{shd_pnd}\nSigBlk:\t0000000000000000\n"
        )
    }

    #[test]
    fn a_running_or_stopped_daemon_is_alive() {
        let zero = "0000000000000000";
        for state in [
            "S (sleeping)",
            "R (running)",
            "D (disk sleep)",
            "T (stopped)",
        ] {
            assert_eq!(
                classify(&status(state, 9, zero, zero)),
                Daemon::Alive,
                "{state}"
            );
        }
        // SIGTERM pending (bit 15) is a clean shutdown on its way, not a kill.
        let sigterm = "0000000000004000";
        assert_eq!(
            classify(&status("S (sleeping)", 9, zero, sigterm)),
            Daemon::Alive
        );
    }

    #[test]
    fn a_killed_daemon_with_threads_left_is_dying_and_one_without_has_exited() {
        let zero = "0000000000000000";
        let sigkill = "0000000000000100";
        let cases = [
            ("Z (zombie)", 2, zero, zero, Daemon::Dying),
            ("D (disk sleep)", 1, sigkill, zero, Daemon::Dying),
            ("S (sleeping)", 3, zero, sigkill, Daemon::Dying),
            ("Z (zombie)", 1, zero, zero, Daemon::Exited),
            ("X (dead)", 0, zero, zero, Daemon::Exited),
        ];
        for (state, threads, sig_pnd, shd_pnd, want) in cases {
            let got = classify(&status(state, threads, sig_pnd, shd_pnd));
            assert_eq!(got, want, "{state}, {threads} threads, {sig_pnd}/{shd_pnd}");
        }
    }

    #[test]
    fn unreadable_status_never_aborts() {
        assert_eq!(classify(""), Daemon::Alive);
        assert_eq!(classify("State:\t?\nSigPnd:\tzz\n"), Daemon::Alive);
    }
}
