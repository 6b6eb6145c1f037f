//! Medians over runs, the text table and the JSON document.

use crate::target::TargetKind;
use crate::workloads::{Sample, Workload};
use serde::Serialize;
use std::collections::HashMap;

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
    /// FUSE requests per operation (per transaction, per lookup): the round trips it cost.
    pub fuse_requests_per_op: Option<f64>,
    /// Process RSS (client and, for litefs, the in-process daemon) at the start and the end
    /// of the timed section, MiB.
    pub rss_idle_mib: Option<f64>,
    pub rss_load_mib: Option<f64>,
}

/// One litefs transport's result for a workload.
#[derive(Debug, Serialize)]
pub struct LitefsResult {
    pub result: TargetResult,
    /// Median over runs of litefs ops/s / raw ops/s of the same run, in percent: a pair
    /// measured seconds apart shares the machine's load, a ratio of medians need not.
    pub percent_of_raw: Option<f64>,
    /// What a FUSE file system that costs nothing but its round trips could reach, in % of
    /// raw: raw's time per op / (that + requests per op × one round trip). The requests are
    /// SQLite's (its writes, syncs and stats) as served here, so no design that keeps the
    /// kernel sending them gets past this.
    pub ceiling_percent: Option<f64>,
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
    /// One entry per FUSE transport measured.
    pub litefs: Vec<LitefsResult>,
}

pub const NOT_AVAILABLE: &str = "a replication workload: see the replication table";

pub fn median(mut values: Vec<f64>) -> Option<f64> {
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
            fuse_requests_per_op: median(
                ok.iter()
                    .filter_map(|s| Some(s.daemon?.fuse_requests as f64 / s.ops.max(1) as f64))
                    .collect(),
            ),
            rss_idle_mib: median(ok.iter().map(|s| s.rss_idle_kib as f64 / 1024.0).collect()),
            rss_load_mib: median(ok.iter().map(|s| s.rss_load_kib as f64 / 1024.0).collect()),
        }
    }
}

impl WorkloadResult {
    /// `litefs`: each measured transport with its samples.
    pub fn new(
        workload: Workload,
        raw: &Samples,
        litefs: &[(TargetKind, &Samples)],
        round_trip_us: &HashMap<TargetKind, f64>,
    ) -> Self {
        let raw_result = TargetResult::from_samples(TargetKind::Raw, raw);
        let litefs = litefs
            .iter()
            .map(|&(kind, samples)| {
                let per_run_percent: Vec<f64> = samples
                    .ok
                    .iter()
                    .filter_map(|l| {
                        let r = raw.ok.iter().find(|r| r.run == l.run)?;
                        Some(l.ops_per_sec() / r.ops_per_sec() * 100.0)
                    })
                    .collect();
                let result = TargetResult::from_samples(kind, samples);
                let ceiling_percent = (|| {
                    let raw_us = 1e6 / raw_result.ops_per_sec?;
                    let requests_us = result.fuse_requests_per_op? * round_trip_us.get(&kind)?;
                    Some(100.0 * raw_us / (raw_us + requests_us))
                })();
                LitefsResult {
                    result,
                    percent_of_raw: median(per_run_percent),
                    ceiling_percent,
                }
            })
            .collect();
        WorkloadResult {
            workload,
            unit: workload.unit(),
            goal: workload.goal_text(),
            goal_percent: workload.goal_percent(),
            not_available: None,
            raw: Some(raw_result),
            litefs,
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
            litefs: Vec::new(),
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

fn rate(result: Option<&TargetResult>) -> String {
    match result {
        None => "-".into(),
        Some(r) if r.ops_per_sec.is_none() && !r.errors.is_empty() => "FAILED".into(),
        Some(r) => opt(r.ops_per_sec, group),
    }
}

/// The table, in Markdown: one row per workload and litefs transport.
pub fn print_table(results: &[WorkloadResult]) {
    println!(
        "| workload | unit | raw ops/s | transport | litefs ops/s | % of raw | goal % | ceiling % | FUSE req/op | LTX B/tx | daemon µs/op | RSS idle/load MiB (raw) |"
    );
    println!("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        if let Some(why) = r.not_available {
            println!(
                "| {} | {} | {why} (goal {}) | | | | | | | | | |",
                r.workload.name(),
                r.unit,
                r.goal
            );
            continue;
        }
        let raw = r.raw.as_ref();
        let mib = |t: Option<&TargetResult>| {
            format!(
                "{}/{}",
                opt(t.and_then(|t| t.rss_idle_mib), |v| format!("{v:.0}")),
                opt(t.and_then(|t| t.rss_load_mib), |v| format!("{v:.0}"))
            )
        };
        for l in &r.litefs {
            let t = &l.result;
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) |",
                r.workload.name(),
                r.unit,
                rate(raw),
                t.target.name(),
                rate(Some(t)),
                opt(l.percent_of_raw, |p| format!("{p:.1}")),
                opt(r.goal_percent, |p| format!("{p:.0}")),
                opt(l.ceiling_percent, |p| format!("{p:.0}")),
                opt(t.fuse_requests_per_op, |v| format!("{v:.2}")),
                opt(t.ltx_bytes_per_tx, group),
                opt(t.daemon_cpu_us_per_op, |v| format!("{v:.1}")),
                mib(Some(t)),
                mib(raw),
            );
        }
    }
    for r in results {
        let targets = r.raw.iter().chain(r.litefs.iter().map(|l| &l.result));
        for t in targets {
            for e in &t.errors {
                println!("FAILED {} on {}: {e}", r.workload.name(), t.target.name());
            }
        }
    }
}

/// The round trips behind the `ceiling %` column.
pub fn print_round_trips(round_trip_us: &HashMap<TargetKind, f64>) {
    let mut parts: Vec<String> = round_trip_us
        .iter()
        .map(|(k, us)| format!("{} {us:.2} µs", k.name()))
        .collect();
    parts.sort();
    if !parts.is_empty() {
        println!(
            "(one FUSE round trip — a stat through the mount minus a local stat: {}; ceiling % = \
             raw time per op / (raw time + FUSE req/op × round trip))",
            parts.join(", ")
        );
    }
}

/// A bar chart of % of raw per workload and transport, with each goal as a tick, as SVG.
pub fn chart_svg(results: &[WorkloadResult]) -> String {
    const ROW_PX: f64 = 22.0;
    const LEFT_PX: f64 = 170.0;
    const WIDTH_PX: f64 = 560.0;
    // The axis ends at the larger of 100 % and the best result, so nothing is cut off.
    let top = results
        .iter()
        .flat_map(|r| r.litefs.iter().filter_map(|l| l.percent_of_raw))
        .fold(100.0f64, f64::max);
    let scale = |p: f64| LEFT_PX + p / top * WIDTH_PX;
    let rows: Vec<(&WorkloadResult, &LitefsResult)> = results
        .iter()
        .flat_map(|r| r.litefs.iter().map(move |l| (r, l)))
        .collect();
    let height = 40.0 + ROW_PX * rows.len() as f64 + 30.0;
    let width = LEFT_PX + WIDTH_PX + 90.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">litefs throughput as % of raw SQLite (bars), goal (black tick)</text>\n"
    );
    for (i, (r, l)) in rows.iter().enumerate() {
        let y = 40.0 + ROW_PX * i as f64;
        let p = l.percent_of_raw.unwrap_or(0.0);
        let color = if l.result.target == TargetKind::LitefsUring {
            "#3b7dd8"
        } else {
            "#e08a2c"
        };
        svg += &format!(
            "<text x=\"10\" y=\"{:.0}\">{} {}</text>\n<rect x=\"{LEFT_PX}\" y=\"{:.0}\" width=\"{:.1}\" height=\"{:.0}\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.0}\">{}</text>\n",
            y + 14.0,
            r.workload.name(),
            l.result.target.name(),
            y + 3.0,
            scale(p) - LEFT_PX,
            ROW_PX - 6.0,
            scale(p) + 4.0,
            y + 14.0,
            opt(l.percent_of_raw, |p| format!("{p:.1} %")),
        );
        if let Some(goal) = r.goal_percent {
            svg += &format!(
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.0}\" y2=\"{:.0}\" stroke=\"black\" stroke-width=\"2\"/>\n",
                y,
                y + ROW_PX - 2.0,
                x = scale(goal)
            );
        }
    }
    let axis_y = 40.0 + ROW_PX * rows.len() as f64 + 16.0;
    for tick in [0.0, 25.0, 50.0, 75.0, 100.0] {
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{axis_y:.0}\" text-anchor=\"middle\">{tick:.0} %</text>\n",
            scale(tick)
        );
    }
    svg += "</svg>\n";
    svg
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
        let (how, goal) = match r.full_rate_tx_per_sec {
            None => ("one at a time".to_string(), "goal p50 ≤ 250 µs, p99 ≤ 1 ms"),
            Some(rate) => (format!("back to back at {rate:.0} tx/s"), "goal p99 ≤ 5 ms"),
        };
        println!(
            "lag    {:<6} commit → visible on the replica, {} tx {how}: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs ({goal})",
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
