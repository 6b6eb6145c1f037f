//! `litefs mount` (spec §8.6, §8.7): load the config, open the store, mount, run the exec
//! commands, and wait for the supervised command to exit or for SIGINT/SIGTERM.

use crate::config::{Config, ExecConfig, LeaseType};
use crate::fuse::Mount;
use crate::fuse::session::MountOptions;
use crate::fuse::watchdog::Watchdog;
use crate::http::proxy::{ProxyOptions, ProxyServer};
use crate::http::{Server, ServerOptions};
use crate::replica::{Replica, ReplicaOptions};
use crate::store::monitor::{HaltMonitor, RetentionMonitor};
use crate::store::{DbOptions, PrimaryInfo, Store};
use crate::types::NodeId;
use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

/// FUSE worker threads: one per core (2 on the machines we target) plus one, so a request
/// blocked on an fsync does not stall readers.
/// Why `auto` fell back to /dev/fuse, for the startup line.
fn transport_note(config: &Config) -> &'static str {
    if config.fuse.transport != crate::config::FuseTransport::Auto {
        return "";
    }
    match crate::fuse::uring::enabled_in_kernel() {
        None => " (this kernel has no FUSE-over-io_uring)",
        Some(false) => {
            " (FUSE-over-io_uring is off: /sys/module/fuse/parameters/enable_uring is N)"
        }
        Some(true) => "",
    }
}

fn fuse_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
}

#[derive(Parser, Debug)]
#[command(name = "litefs mount", about = "Mount the LiteFS FUSE file system")]
pub struct MountArgs {
    /// Path to the config file (disables the search of ./litefs.yml, ~/litefs.yml, /etc/litefs.yml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Do not expand environment variables in the config file.
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
    /// Log every FUSE operation.
    #[arg(long = "fuse.debug")]
    fuse_debug: bool,
    /// Debug logging.
    #[arg(long)]
    debug: bool,
    /// Trace logging to stdout.
    #[arg(long)]
    tracing: bool,
    /// Do not unmount a stale mount at fuse.dir before mounting.
    #[arg(long = "skip-unmount")]
    skip_unmount: bool,
    /// `-- CMD ARGS`: run this command instead of the config's `exec`.
    #[arg(last = true)]
    exec: Vec<String>,
}

/// Exit code after a committed transaction could not be recorded (as LiteFS).
const FATAL_EXIT_CODE: i32 = 99;

/// What ended the wait in step 9.
#[derive(Debug)]
enum Event {
    Signal(i32),
    /// A committed transaction could not be recorded (exit code 99, spec §3.7).
    Fatal,
    ChildExited(std::io::Result<std::process::ExitStatus>),
}

/// Blocks SIGINT and SIGTERM in this thread (and every thread it starts) and returns a
/// receiver that gets them, delivered by a dedicated `sigwait` thread.
fn catch_signals(tx: mpsc::SyncSender<Event>) -> Result<()> {
    // SAFETY: a zeroed sigset_t is a valid argument to sigemptyset, which initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; these calls only modify it and the thread's mask.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("cannot block SIGINT/SIGTERM");
        }
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is initialised and `sig` is a valid out-pointer.
                if unsafe { libc::sigwait(&set, &mut sig) } == 0
                    && tx.send(Event::Signal(sig)).is_err()
                {
                    return;
                }
            }
        })?;
    Ok(())
}

/// Builds a command from a shell-words command line, with the signal mask of a normal process.
fn command(line: &str) -> Result<Command> {
    let words =
        shell_words::split(line).with_context(|| format!("cannot parse exec command {line:?}"))?;
    let (program, args) = words
        .split_first()
        .ok_or_else(|| anyhow!("empty exec command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // sigemptyset/pthread_sigmask, an atomic load and prctl, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            crate::restore_huge_page_policy();
            Ok(())
        });
    }
    Ok(cmd)
}

/// Runs every exec entry but the last synchronously; returns the last, started.
fn run_exec(entries: &[ExecConfig], candidate: bool) -> Result<Option<Child>> {
    let entries: Vec<&ExecConfig> = entries
        .iter()
        .filter(|e| candidate || !e.if_candidate)
        .collect();
    let Some((last, first)) = entries.split_last() else {
        return Ok(None);
    };
    for entry in first {
        eprintln!("litefs: running: {}", entry.cmd);
        let status = command(&entry.cmd)?
            .status()
            .with_context(|| format!("cannot run {:?}", entry.cmd))?;
        if !status.success() {
            bail!("exec command {:?} failed: {status}", entry.cmd);
        }
    }
    eprintln!("litefs: starting background subprocess: {}", last.cmd);
    let child = command(&last.cmd)?
        .spawn()
        .with_context(|| format!("cannot start {:?}", last.cmd))?;
    Ok(Some(child))
}

fn load_config(args: &MountArgs) -> Result<(Config, PathBuf)> {
    let (mut config, path) = Config::load(args.config.as_deref(), !args.no_expand_env)?;
    if !args.exec.is_empty() {
        // LiteFS joins the words with spaces and re-splits them, which breaks arguments that
        // contain spaces; quoting them keeps the argv exactly as given (same result otherwise).
        config.exec = vec![ExecConfig {
            cmd: shell_words::join(&args.exec),
            if_candidate: false,
        }];
    }
    if args.fuse_debug {
        config.fuse.debug = true;
    }
    Ok((config, path))
}

/// Runs `litefs mount`; returns the process exit code.
pub fn run(argv: Vec<String>) -> i32 {
    crate::keep_heap_in_small_pages();
    let args = match MountArgs::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let (config, path) = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            return 2;
        }
    };
    eprintln!("{}", super::version_line());
    eprintln!("litefs: config file read from {}", path.display());
    let (tx, rx) = mpsc::sync_channel::<Event>(4);
    if let Err(e) = catch_signals(tx.clone()) {
        eprintln!("ERROR: {e:#}");
        return 1;
    }
    let running = match start(&config, &args, tx.clone(), &rx) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            if config.exit_on_error {
                return 1;
            }
            eprintln!("litefs: exit-on-error is off: waiting for a signal");
            let _ = rx.recv();
            return 1;
        }
    };
    let Running {
        mount,
        watchdog,
        server,
        proxy,
        replica,
        retention,
        halt_monitor,
        child,
    } = running;
    let mut child_pid = None;
    if let Some(mut child) = child {
        child_pid = Some(child.id());
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Event::ChildExited(child.wait()));
        });
    }
    let code = loop {
        match rx.recv() {
            Ok(Event::Signal(sig)) => {
                eprintln!("litefs: signal received ({sig}), litefs shutting down");
                let Some(pid) = child_pid.take() else { break 0 };
                // SAFETY: kill has no memory-safety preconditions; `pid` is our child.
                unsafe { libc::kill(pid as libc::pid_t, sig) };
                // Wait for the child to exit (its ChildExited event), then shut down.
            }
            Ok(Event::Fatal) => {
                if let Some(pid) = child_pid.take() {
                    // SAFETY: kill has no memory-safety preconditions; `pid` is our child.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                }
                break FATAL_EXIT_CODE;
            }
            Ok(Event::ChildExited(status)) => {
                if child_pid.is_none() {
                    break 0;
                }
                break match status {
                    Ok(s) => {
                        eprintln!("litefs: subprocess exited with {s}, litefs shutting down");
                        s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
                    }
                    Err(e) => {
                        eprintln!("ERROR: cannot wait for exec process: {e}");
                        1
                    }
                };
            }
            Err(_) => break 1,
        }
    };
    // Spec §8.6 step 10: the HTTP server (replica streams get their End frame) before FUSE.
    drop(proxy);
    drop(replica);
    drop(retention);
    server.shutdown();
    // No `/halt` comes in any more: the halt locks' files on the mount are closed.
    drop(halt_monitor);
    if let Err(e) = mount.unmount() {
        eprintln!("litefs: unmount: {e}");
    }
    drop(watchdog);
    eprintln!("litefs: unmounted {}", config.fuse.dir.display());
    code
}

/// Steps 3–8 of §8.6 for a single node with a static lease.
fn start(
    config: &Config,
    args: &MountArgs,
    events: mpsc::SyncSender<Event>,
    received: &mpsc::Receiver<Event>,
) -> Result<Running> {
    match LeaseType::parse(&config.lease.kind) {
        Some(LeaseType::Static) => {}
        Some(LeaseType::Consul) => bail!("consul leasing is not built yet; use lease.type: static"),
        None => bail!(
            "invalid lease type, must be either 'consul' or 'static', got: '{}'",
            config.lease.kind
        ),
    }
    let options = DbOptions {
        node_id: NodeId::random(),
        compress: config.data.compress,
        strict_verify: config.strict_verify,
        replica: !config.lease.candidate,
    };
    eprintln!("litefs: node id {}", options.node_id);
    let store = Store::open(&config.data.dir, options)
        .with_context(|| format!("cannot open store at {}", config.data.dir.display()))?;
    store.fatal_hook().set(Box::new(move |_| {
        let _ = events.try_send(Event::Fatal);
    }));
    if args.skip_unmount && crate::fuse::session::is_mounted(&config.fuse.dir) {
        bail!(
            "{} is already mounted (and -skip-unmount was given)",
            config.fuse.dir.display()
        );
    }
    let options = MountOptions {
        posix_locks: config.fuse.posix_locks,
        threads: fuse_threads(),
        allow_other: config.fuse.allow_other,
        transport: config.fuse.transport,
        ..MountOptions::default()
    };
    let store = Arc::new(store);
    if config.lease.candidate {
        // Spec §7.3: the static primary owns the cluster id; replicas adopt it.
        if store.role().cluster_id().is_none() {
            let id = crate::store::role::generate_cluster_id();
            store.role().set_cluster_id(&id)?;
            eprintln!("litefs: cluster id set: {id}");
        }
        store.become_primary();
    } else {
        store.become_replica();
    }
    let mount = Mount::new(store.clone(), &config.fuse.dir, options)
        .with_context(|| format!("cannot mount at {}", config.fuse.dir.display()))?;
    eprintln!("litefs: LiteFS mounted to: {}", config.fuse.dir.display());
    // Frees the mount should this process be killed while a thread of it waits on the mount
    // (fuse/watchdog.rs). Without it the daemon still runs, as it did before the watchdog.
    // Absolute: the watchdog runs in `/`.
    let mountpoint = config
        .fuse
        .dir
        .canonicalize()
        .unwrap_or(config.fuse.dir.clone());
    let watchdog = Watchdog::spawn(Path::new("/proc/self/exe"), &mountpoint)
        .inspect_err(|e| eprintln!("litefs: warning: no mount watchdog ({e})"))
        .ok();
    eprintln!(
        "litefs: FUSE transport: {}{}",
        mount.transport(),
        transport_note(config)
    );
    let server = Server::start(
        store.clone(),
        ServerOptions {
            addr: config.http.addr.clone(),
            candidate: config.lease.candidate,
            hostname: config.lease.hostname.clone(),
        },
    );
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            let _ = mount.unmount();
            return Err(e).context("cannot start http server");
        }
    };
    eprintln!("litefs: http server listening on: {}", server.addr());
    let retention = RetentionMonitor::start(
        store.clone(),
        config.data.retention_monitor_interval,
        config.data.retention,
    )
    .context("cannot start the retention monitor")?;
    let halt_monitor =
        HaltMonitor::start(store.clone()).context("cannot start the halt lock monitor")?;
    let replica = if config.lease.candidate {
        eprintln!(
            "litefs: primary lease acquired (static), advertising as {}",
            config.lease.advertise_url
        );
        None
    } else {
        let replica = Replica::start(
            store.clone(),
            ReplicaOptions {
                primary: PrimaryInfo {
                    hostname: config.lease.hostname.clone(),
                    advertise_url: config.lease.advertise_url.clone(),
                },
                reconnect_delay: config.lease.reconnect_delay,
                databases: config.lease.databases.clone(),
                native: config.http.native_stream,
            },
        );
        let replica = match replica {
            Ok(r) => r,
            Err(e) => {
                server.shutdown();
                let _ = mount.unmount();
                return Err(e).context("cannot start replication");
            }
        };
        eprintln!(
            "litefs: replica: following the primary at {}",
            config.lease.advertise_url
        );
        if !config.skip_sync {
            // Spec §8.6 step 6: exec starts once the primary's Ready frame arrived.
            eprintln!("litefs: waiting to connect to cluster");
            while !store.role().wait_ready(Duration::from_millis(100)) {
                if let Ok(event) = received.try_recv() {
                    drop(replica);
                    server.shutdown();
                    let _ = mount.unmount();
                    bail!("stopped ({event:?}) before the replica finished its initial sync");
                }
            }
            eprintln!("litefs: connected to cluster, ready");
        }
        Some(replica)
    };
    // Spec §6: after the node is ready (or at once with skip-sync), before exec.
    let proxy = if config.proxy.target.is_empty() {
        None
    } else {
        match ProxyServer::start(store.clone(), ProxyOptions::from_config(&config.proxy)) {
            Ok(proxy) => {
                eprintln!(
                    "litefs: proxy server listening on: {} (to {}, tracking {:?})",
                    proxy.addr(),
                    config.proxy.target,
                    config.proxy.db
                );
                Some(proxy)
            }
            Err(e) => {
                drop(replica);
                server.shutdown();
                let _ = mount.unmount();
                return Err(e).context("cannot start the proxy");
            }
        }
    };
    let child = match run_exec(&config.exec, config.lease.candidate) {
        Ok(child) => child,
        Err(e) => {
            drop(proxy);
            server.shutdown();
            let _ = mount.unmount();
            return Err(e);
        }
    };
    Ok(Running {
        mount,
        watchdog,
        server,
        proxy,
        replica,
        retention,
        halt_monitor,
        child,
    })
}

/// What `start` leaves running.
struct Running {
    mount: Mount,
    /// Dropped (killed) after the unmount.
    watchdog: Option<Watchdog>,
    server: Server,
    /// `proxy:` when `proxy.target` is set (spec §6).
    proxy: Option<ProxyServer>,
    replica: Option<Replica>,
    retention: Option<RetentionMonitor>,
    halt_monitor: HaltMonitor,
    child: Option<Child>,
}
