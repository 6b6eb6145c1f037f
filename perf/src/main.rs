//! litefs-perf: runs the workloads of `shared/perf/BASELINES.md` against a raw directory and
//! against a fresh in-process litefs mount, side by side in one run, and prints ops/s for
//! both and their ratio. Absolute numbers drift between runs and machines; the ratio measured
//! in one run is the number to compare with the goals.

mod replication;
mod report;
mod target;
mod workloads;

use anyhow::{Context, Result, bail};
use clap::Parser;
use report::{Samples, WorkloadResult};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use target::{Target, TargetKind};
use workloads::{Sample, Workload};

#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Comma-separated workloads to run (default: all). Lag and stream are listed but need
    /// replication.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Multiplies every operation and row count (0.1 for a quick run).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Runs per workload and target; the median is reported.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Print one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Where both the raw directory and the mount's data directory are created (the same file
    /// system for both, so only the mount differs).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Where the replica of `lag` and `stream` keeps its data (default: `--dir`). A replica
    /// runs on another machine in practice: on another file system here, the primary's
    /// `syncfs` before each checkpoint does not also flush the replica's writes.
    #[arg(long)]
    replica_dir: Option<PathBuf>,
    /// FUSE worker threads of the mount (default: one per core).
    #[arg(long)]
    fuse_threads: Option<usize>,
    /// Journal mode of the read workloads' database. BASELINES.md leaves it at SQLite's
    /// default (delete); `wal` shows the cost of -shm and WAL lookups through the mount.
    #[arg(long, default_value = "delete")]
    reads_journal_mode: String,
    /// Keep SQLite's locks in the kernel (`fuse.posix-locks: false`, the default), or
    /// negotiate FUSE_POSIX_LOCKS so the daemon decides them, as LiteFS (`--posix-locks true`;
    /// docs/ARCHITECTURE.md §7).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    posix_locks: bool,
    /// FUSE transports to measure, each on its own mount (default: uring and devfuse; uring
    /// needs /sys/module/fuse/parameters/enable_uring = Y).
    #[arg(long, value_delimiter = ',', default_values = ["uring", "devfuse"])]
    transports: Vec<TransportArg>,
    /// Also write the % of raw chart as SVG here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TransportArg {
    Uring,
    Devfuse,
}

impl TransportArg {
    fn kind(self) -> TargetKind {
        match self {
            TransportArg::Uring => TargetKind::LitefsUring,
            TransportArg::Devfuse => TargetKind::LitefsDevfuse,
        }
    }
}

#[derive(Serialize)]
struct Document {
    started_utc: String,
    command: String,
    sqlite_version: &'static str,
    kernel: String,
    cpus: usize,
    scale: f64,
    runs: usize,
    fuse_threads: usize,
    reads_journal_mode: String,
    results: Vec<WorkloadResult>,
    /// One FUSE round trip per transport (µs), as used for `ceiling_percent`.
    round_trip_us: HashMap<TargetKind, f64>,
    /// One entry per run of each replication workload that was asked for.
    lag: Vec<replication::LagResult>,
    stream: Vec<replication::StreamResult>,
}

/// What one target is asked to do in one step: a write workload, or both read workloads on
/// one populated database (populating 100 MB costs more than the lookups, so the read
/// workloads share it; cold drops the kernel caches itself).
enum Step {
    Write(Workload),
    Reads { cold: bool, warm: bool },
}

fn plan(workloads: &[Workload]) -> Vec<Step> {
    let mut steps = Vec::new();
    let has = |w| workloads.contains(&w);
    for &w in workloads {
        match w {
            Workload::ReadsWarm | Workload::ReadsCold => {
                if !steps.iter().any(|s| matches!(s, Step::Reads { .. })) {
                    steps.push(Step::Reads {
                        cold: has(Workload::ReadsCold),
                        warm: has(Workload::ReadsWarm),
                    });
                }
            }
            w if w.needs_replication() => {}
            w => steps.push(Step::Write(w)),
        }
    }
    steps
}

type AllSamples = HashMap<(Workload, TargetKind), Samples>;

fn record(all: &mut AllSamples, w: Workload, kind: TargetKind, run: usize, result: Result<Sample>) {
    let samples = all.entry((w, kind)).or_default();
    match result {
        Ok(sample) => {
            let sample = Sample { run, ..sample };
            eprintln!(
                "  {:<11} {:<6} {:>12.0} {} ({} ops in {:.2} s)",
                w.name(),
                kind.name(),
                sample.ops_per_sec(),
                w.unit(),
                sample.ops,
                sample.elapsed.as_secs_f64()
            );
            samples.ok.push(sample);
        }
        Err(e) => {
            eprintln!("  {:<11} {:<6} FAILED: {e:#}", w.name(), kind.name());
            samples.errors.push(format!("{e:#}"));
        }
    }
}

/// Says so when a failure was caused by someone unmounting the mount under us, not by the
/// daemon.
fn explain<T>(target: &Target, result: Result<T>) -> Result<T> {
    result.map_err(|e| {
        if target.mount_lost() {
            e.context("the mount disappeared during the run (unmounted by another process)")
        } else {
            e
        }
    })
}

/// Runs one step on one fresh target and records a sample (or error) per workload.
fn run_step(
    step: &Step,
    kind: TargetKind,
    run: usize,
    args: &Args,
    threads: usize,
    all: &mut AllSamples,
    spent: &mut Vec<tempfile::TempDir>,
) {
    let workloads: Vec<Workload> = match *step {
        Step::Write(w) => vec![w],
        Step::Reads { cold, warm } => [(cold, Workload::ReadsCold), (warm, Workload::ReadsWarm)]
            .into_iter()
            .filter_map(|(on, w)| on.then_some(w))
            .collect(),
    };
    let target = match Target::new(kind, &args.dir, threads, args.posix_locks) {
        Ok(t) => t,
        Err(e) => {
            for &w in &workloads {
                record(
                    all,
                    w,
                    kind,
                    run,
                    Err(anyhow::anyhow!("set up target: {e:#}")),
                );
            }
            return;
        }
    };
    match *step {
        Step::Write(w) => {
            let result = explain(&target, workloads::run_write(w, &target, args.scale));
            record(all, w, kind, run, result);
        }
        Step::Reads { .. } => {
            let populated =
                workloads::populate_reads(&target, args.scale, &args.reads_journal_mode);
            match explain(&target, populated) {
                Err(e) => {
                    let message = format!("populate the read table: {e:#}");
                    for &w in &workloads {
                        record(all, w, kind, run, Err(anyhow::anyhow!("{message}")));
                    }
                }
                Ok(()) => {
                    for &w in &workloads {
                        let result = explain(
                            &target,
                            match w {
                                Workload::ReadsCold => {
                                    workloads::run_reads_cold(&target, args.scale)
                                }
                                _ => workloads::run_reads_warm(&target, args.scale),
                            },
                        );
                        record(all, w, kind, run, result);
                    }
                }
            }
        }
    }
    if let Err(e) = target.close(spent) {
        eprintln!("  {} FAILED to close: {e:#}", kind.name());
        for &w in &workloads {
            all.entry((w, kind))
                .or_default()
                .errors
                .push(format!("close: {e:#}"));
        }
    }
}

/// `stat` calls per round-trip measurement (~0.1–0.3 s per target).
const ROUND_TRIP_STATS: u32 = 30_000;

/// One FUSE round trip per transport, in µs: a `stat` through the mount minus a `stat` of a
/// local directory, measured on a fresh target of each kind in each run; medians.
fn measure_round_trips(
    args: &Args,
    kinds: &[TargetKind],
    threads: usize,
) -> HashMap<TargetKind, f64> {
    let mut stats: HashMap<TargetKind, Vec<f64>> = HashMap::new();
    for _ in 0..args.runs {
        for &kind in kinds {
            let measured = Target::new(kind, &args.dir, threads, args.posix_locks).and_then(|t| {
                let us =
                    t.stat_us(workloads::scaled(u64::from(ROUND_TRIP_STATS), args.scale) as u32);
                let mut spent = Vec::new();
                t.close(&mut spent)?;
                us
            });
            match measured {
                Ok(us) => stats.entry(kind).or_default().push(us),
                Err(e) => eprintln!("  round trip {:<6} FAILED: {e:#}", kind.name()),
            }
        }
    }
    let median_of = |k: TargetKind| stats.get(&k).and_then(|v| report::median(v.clone()));
    let Some(local_us) = median_of(TargetKind::Raw) else {
        return HashMap::new();
    };
    kinds[1..]
        .iter()
        .filter_map(|&k| {
            // Noise could make it negative, and a ceiling above 100 %.
            let rt_us = (median_of(k)? - local_us).max(0.0);
            eprintln!(
                "  round trip  {:<7} {rt_us:.2} µs (stat through the mount minus a local stat)",
                k.name()
            );
            Some((k, rt_us))
        })
        .collect()
}

/// Lag transactions and stream bytes at `--scale 1` (BASELINES.md).
const LAG_TX_COUNT: u64 = 1000;
/// Transactions committed back to back for the lag at full primary rate.
const LAG_FULL_RATE_TX_COUNT: u64 = 10_000;
const STREAM_BYTES: u64 = 100 * 1000 * 1000;

/// The replication workloads, each on a fresh primary/replica pair per run.
fn run_replication(
    args: &Args,
    threads: usize,
    spent: &mut Vec<tempfile::TempDir>,
) -> (Vec<replication::LagResult>, Vec<replication::StreamResult>) {
    let (mut lag, mut stream) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        for (&w, native) in args
            .workloads
            .iter()
            .flat_map(|w| [(w, true), (w, false)])
            .filter(|(w, _)| w.needs_replication())
        {
            let transport = if native { "native" } else { "compat" };
            let result = replication::Pair::start(
                &args.dir,
                args.replica_dir.as_deref(),
                args.posix_locks,
                threads,
                native,
            )
            .and_then(|pair| {
                let measured =
                    measure_replication(&pair, w, run, transport, args, &mut lag, &mut stream);
                pair.close(spent);
                measured
            });
            if let Err(e) = result {
                eprintln!("  {:<11} run {run} {transport}: FAILED: {e:#}", w.name());
            }
        }
    }
    (lag, stream)
}

/// Runs replication workload `w` once on `pair`, printing and keeping its results.
fn measure_replication(
    pair: &replication::Pair,
    w: Workload,
    run: usize,
    transport: &str,
    args: &Args,
    lag: &mut Vec<replication::LagResult>,
    stream: &mut Vec<replication::StreamResult>,
) -> Result<()> {
    match w {
        Workload::Lag => {
            let n = workloads::scaled(LAG_TX_COUNT, args.scale) as usize;
            let r = replication::run_lag(pair, n)?;
            eprintln!(
                "  lag         run {run} {transport}: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs ({n} tx)",
                r.p50_us, r.p90_us, r.p99_us, r.max_us
            );
            lag.push(r);
            let n = workloads::scaled(LAG_FULL_RATE_TX_COUNT, args.scale) as usize;
            let r = replication::run_lag_full_rate(pair, n)?;
            eprintln!(
                "  lag full    run {run} {transport}: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs ({n} tx at {:.0} tx/s)",
                r.p50_us,
                r.p90_us,
                r.p99_us,
                r.max_us,
                r.full_rate_tx_per_sec.unwrap_or(0.0)
            );
            lag.push(r);
        }
        Workload::Stream => {
            let bytes = workloads::scaled(STREAM_BYTES, args.scale);
            let r = replication::run_stream(pair, bytes)?;
            eprintln!(
                "  stream      run {run} {transport}: {:.0} MB/s ({:.1} MB visible {:.0} ms after COMMIT started)",
                r.mb_per_sec,
                r.bytes as f64 / 1e6,
                r.visible_ms
            );
            stream.push(r);
        }
        _ => {}
    }
    Ok(())
}

fn check_environment(args: &Args) -> Result<()> {
    if !(args.scale > 0.0 && args.scale.is_finite()) {
        bail!("--scale must be a positive number, not {}", args.scale);
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !args.dir.is_dir() {
        bail!("--dir {} is not a directory", args.dir.display());
    }
    if let Some(dir) = args.replica_dir.as_ref().filter(|d| !d.is_dir()) {
        bail!("--replica-dir {} is not a directory", dir.display());
    }
    // Without these every litefs sample fails with the reason; say it once up front.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("litefs-perf: not root: mounting and dropping caches will fail");
    }
    if !Path::new("/dev/fuse").exists() {
        eprintln!("litefs-perf: /dev/fuse is missing: the litefs target will fail");
    }
    Ok(())
}

fn main() -> Result<()> {
    // As `litefs mount` does, so the in-process daemon's memory behaves as it does there.
    // This process is also the SQLite client of every target, raw included: all of them run
    // with huge pages off, and the RSS reported is client and daemon together.
    litefs::keep_heap_in_small_pages();
    let mut args = Args::parse();
    check_environment(&args)?;
    if args.workloads.is_empty() {
        args.workloads = Workload::ALL.to_vec();
    }
    if args.transports.contains(&TransportArg::Uring)
        && litefs::fuse::uring::enabled_in_kernel() != Some(true)
    {
        eprintln!(
            "litefs-perf: FUSE-over-io_uring is not available ({} is not Y): measuring devfuse only",
            litefs::fuse::uring::ENABLE_PARAM
        );
        args.transports.retain(|t| *t != TransportArg::Uring);
    }
    let mut seen = Vec::new();
    args.workloads.retain(|w| {
        let first = !seen.contains(w);
        seen.push(*w);
        first
    });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.fuse_threads.unwrap_or(cpus);
    let started_utc = utc_now();
    let steps = plan(&args.workloads);
    let mut kinds = vec![TargetKind::Raw];
    kinds.extend(args.transports.iter().map(|t| t.kind()));
    kinds.dedup();
    let mut all = AllSamples::new();
    // Targets' directories, removed only once everything is measured (`Target::close`).
    let mut spent = Vec::new();
    for run in 1..=args.runs {
        eprintln!("run {run}/{}", args.runs);
        for step in &steps {
            // Raw then each litefs transport for each step, so all see the same machine state.
            for &kind in &kinds {
                run_step(step, kind, run, &args, threads, &mut all, &mut spent);
            }
        }
    }
    let round_trip_us = measure_round_trips(&args, &kinds, threads);
    let (lag, stream) = run_replication(&args, threads, &mut spent);
    let results: Vec<WorkloadResult> = args
        .workloads
        .iter()
        .map(|&w| {
            if w.needs_replication() {
                return WorkloadResult::not_available(w);
            }
            let empty = Samples::default();
            let get = |k| all.get(&(w, k)).unwrap_or(&empty);
            let litefs: Vec<(TargetKind, &Samples)> =
                kinds[1..].iter().map(|&k| (k, get(k))).collect();
            WorkloadResult::new(w, get(TargetKind::Raw), &litefs, &round_trip_us)
        })
        .collect();
    let document = Document {
        started_utc,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        sqlite_version: rusqlite::version(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        cpus,
        scale: args.scale,
        runs: args.runs,
        fuse_threads: threads,
        reads_journal_mode: args.reads_journal_mode.clone(),
        results,
        round_trip_us,
        lag,
        stream,
    };
    if let Some(path) = &args.svg {
        std::fs::write(path, report::chart_svg(&document.results))
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("litefs-perf: chart written to {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        println!(
            "litefs-perf {} | SQLite {} | kernel {} | {} CPUs | scale {} | runs {} (median) | \
             {} FUSE threads | reads journal_mode={}",
            document.started_utc,
            document.sqlite_version,
            document.kernel,
            cpus,
            args.scale,
            args.runs,
            threads,
            args.reads_journal_mode
        );
        report::print_table(&document.results);
        let transports: Vec<&str> = kinds[1..].iter().map(|k| k.name()).collect();
        println!("(litefs transports measured: {})", transports.join(", "));
        report::print_round_trips(&document.round_trip_us);
        report::print_replication(&document.lag, &document.stream);
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SSZ` without a date crate (civil-from-days, H. Hinnant).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
