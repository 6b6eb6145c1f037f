//! Medians over runs, the text table and the JSON document.

use crate::target::TargetKind;
use crate::workloads::{Sample, Workload};
use serde::Serialize;

/// All samples of one workload on one target: one entry per run, or the error that stopped it.
#[derive(Default)]
pub struct Samples {
    pub ok: Vec<Sample>,
    pub errors: Vec<String>,
}

/// One workload's result on one target, reduced to medians over the runs.
#[derive(Debug, Serialize)]
pub struct TargetResult {
    pub target: TargetKind,
    pub runs_ok: usize,
    /// Why runs failed (each distinct message once).
    pub errors: Vec<String>,
    pub ops: Option<u64>,
    pub elapsed_ms: Option<f64>,
    pub ops_per_sec: Option<f64>,
    /// Daemon facts during the timed section (litefs only); medians over runs.
    pub txids: Option<u64>,
    pub ltx_files: Option<u64>,
    pub ltx_bytes: Option<u64>,
    pub ltx_bytes_per_tx: Option<f64>,
    pub daemon_cpu_us_per_op: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct WorkloadResult {
    pub workload: Workload,
    pub unit: &'static str,
    pub goal: String,
    pub goal_percent: Option<f64>,
    /// Set when the workload cannot run yet (lag, stream).
    pub not_available: Option<&'static str>,
    pub raw: Option<TargetResult>,
    pub litefs: Option<TargetResult>,
    /// Median over runs of litefs ops/s / raw ops/s of the same run, in percent: a pair
    /// measured seconds apart shares the machine's load, a ratio of medians need not.
    pub litefs_percent_of_raw: Option<f64>,
}

pub const NOT_AVAILABLE: &str = "a replication workload: see the replication table";

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn median_u64(values: impl Iterator<Item = u64>) -> Option<u64> {
    median(values.map(|v| v as f64).collect()).map(|m| m.round() as u64)
}

impl TargetResult {
    pub fn from_samples(target: TargetKind, samples: &Samples) -> TargetResult {
        let ok = &samples.ok;
        let daemon: Vec<_> = ok.iter().filter_map(|s| s.daemon).collect();
        let mut errors = samples.errors.clone();
        errors.sort();
        errors.dedup();
        let per_tx: Vec<f64> = daemon
            .iter()
            .filter(|d| d.txid > 0)
            .map(|d| d.ltx_bytes as f64 / d.txid as f64)
            .collect();
        let cpu_per_op: Vec<f64> = ok
            .iter()
            .filter_map(|s| {
                s.daemon
                    .map(|d| d.daemon_cpu_ns as f64 / 1e3 / s.ops as f64)
            })
            .collect();
        TargetResult {
            target,
            runs_ok: ok.len(),
            errors,
            ops: median_u64(ok.iter().map(|s| s.ops)),
            elapsed_ms: median(ok.iter().map(|s| s.elapsed.as_secs_f64() * 1e3).collect()),
            ops_per_sec: median(ok.iter().map(Sample::ops_per_sec).collect()),
            txids: median_u64(daemon.iter().map(|d| d.txid)),
            ltx_files: median_u64(daemon.iter().map(|d| d.ltx_files)),
            ltx_bytes: median_u64(daemon.iter().map(|d| d.ltx_bytes)),
            ltx_bytes_per_tx: median(per_tx),
            daemon_cpu_us_per_op: median(cpu_per_op),
        }
    }
}

impl WorkloadResult {
    pub fn new(workload: Workload, raw: &Samples, litefs: &Samples) -> Self {
        let per_run_percent: Vec<f64> = litefs
            .ok
            .iter()
            .filter_map(|l| {
                let r = raw.ok.iter().find(|r| r.run == l.run)?;
                Some(l.ops_per_sec() / r.ops_per_sec() * 100.0)
            })
            .collect();
        WorkloadResult {
            workload,
            unit: workload.unit(),
            goal: workload.goal_text(),
            goal_percent: workload.goal_percent(),
            not_available: None,
            raw: Some(TargetResult::from_samples(TargetKind::Raw, raw)),
            litefs: Some(TargetResult::from_samples(TargetKind::Litefs, litefs)),
            litefs_percent_of_raw: median(per_run_percent),
        }
    }

    pub fn not_available(workload: Workload) -> Self {
        WorkloadResult {
            workload,
            unit: workload.unit(),
            goal: workload.goal_text(),
            goal_percent: workload.goal_percent(),
            not_available: Some(NOT_AVAILABLE),
            raw: None,
            litefs: None,
            litefs_percent_of_raw: None,
        }
    }
}

/// Thousands separators keep six-digit rates readable.
fn group(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map(format).unwrap_or_else(|| "-".into())
}

fn rate(result: &Option<TargetResult>) -> String {
    match result {
        None => "-".into(),
        Some(r) if r.ops_per_sec.is_none() && !r.errors.is_empty() => "FAILED".into(),
        Some(r) => opt(r.ops_per_sec, group),
    }
}

pub fn print_table(results: &[WorkloadResult]) {
    println!(
        "{:<12} {:>9} {:>12} {:>12} {:>8} {:>6} {:>9} {:>10} {:>12} {:>12}",
        "workload",
        "unit",
        "raw ops/s",
        "litefs ops/s",
        "ratio %",
        "goal %",
        "LTX files",
        "LTX B/tx",
        "LTX MB total",
        "daemon µs/op"
    );
    for r in results {
        if let Some(why) = r.not_available {
            println!("{:<12} {why} (goal {})", r.workload.name(), r.goal);
            continue;
        }
        let litefs = r.litefs.as_ref();
        println!(
            "{:<12} {:>9} {:>12} {:>12} {:>8} {:>6} {:>9} {:>10} {:>12} {:>12}",
            r.workload.name(),
            r.unit,
            rate(&r.raw),
            rate(&r.litefs),
            opt(r.litefs_percent_of_raw, |p| format!("{p:.1}")),
            opt(r.goal_percent, |p| format!("{p:.0}")),
            opt(litefs.and_then(|l| l.ltx_files.map(|v| v as f64)), group),
            opt(litefs.and_then(|l| l.ltx_bytes_per_tx), group),
            opt(litefs.and_then(|l| l.ltx_bytes.map(|v| v as f64)), |b| {
                format!("{:.1}", b / 1e6)
            }),
            opt(litefs.and_then(|l| l.daemon_cpu_us_per_op), |v| {
                format!("{v:.1}")
            }),
        );
    }
    let failures: Vec<_> = results
        .iter()
        .flat_map(|r| {
            [&r.raw, &r.litefs]
                .into_iter()
                .flatten()
                .map(move |t| (r, t))
        })
        .filter(|(_, t)| !t.errors.is_empty())
        .collect();
    for (r, t) in failures {
        for e in &t.errors {
            println!("FAILED {} on {}: {e}", r.workload.name(), t.target.name());
        }
    }
}

/// The replication workloads: lag percentiles and stream throughput, one line per run.
pub fn print_replication(
    lag: &[crate::replication::LagResult],
    stream: &[crate::replication::StreamResult],
) {
    if lag.is_empty() && stream.is_empty() {
        return;
    }
    println!();
    println!(
        "replication (primary and replica in this process; native = our TCP stream with sendfile, compat = LiteFS's HTTP/2 stream)"
    );
    for r in lag {
        println!(
            "lag    {:<6} commit → visible on the replica, {} tx: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs (goal p50 ≤ 250 µs, p99 ≤ 1 ms)",
            r.transport, r.transactions, r.p50_us, r.p90_us, r.p99_us, r.max_us
        );
    }
    for r in stream {
        let copied = r.userspace_bytes_per_sent_byte.map_or_else(
            || "every byte copied through user space".to_string(),
            |v| format!("{v:.6} bytes copied in user space per byte sent"),
        );
        println!(
            "stream {:<6} {:.1} MB in one transaction: visible on the replica {:.0} ms after COMMIT started = {:.0} MB/s end to end; {:.0} ms after the primary published it = {:.0} MB/s shipped (goal ≥ 1000 MB/s); COMMIT itself {:.0} ms; {copied}",
            r.transport,
            r.bytes as f64 / 1e6,
            r.visible_ms,
            r.mb_per_sec,
            r.ship_ms,
            r.ship_mb_per_sec,
            r.commit_ms
        );
    }
}
