//! What the run did: a live progress bar, then a summary (text and JSON), a timeline
//! (CSV) and a chart (SVG) of request rate, queue backlog and workers over time. Goose
//! writes its own HTML report beside them.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use goose::metrics::GooseMetrics;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde::Serialize;

use crate::Args;
use crate::shared::{Sample, Shared};

pub fn progress_bar(shared: Arc<Shared>, duration: Duration, started: Instant) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len}s {msg}")
            .expect("static template"),
    );
    let handle = bar.clone();
    tokio::spawn(async move {
        while !handle.is_finished() {
            handle.set_position(
                started
                    .elapsed()
                    .as_secs()
                    .min(handle.length().unwrap_or(0)),
            );
            handle.set_message(format!(
                "{} req, {} err, {} orders ({} final)",
                shared.requests.load(Ordering::Relaxed),
                shared.errors.load(Ordering::Relaxed),
                shared.orders_placed.load(Ordering::Relaxed),
                shared.orders_final(),
            ));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    bar
}

#[derive(Debug, Serialize)]
pub struct PageLatency {
    pub page: String,
    pub requests: usize,
    pub failures: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub profile: String,
    pub users: usize,
    pub duration_secs: f64,
    pub requests: u64,
    pub requests_per_sec: f64,
    pub errors: u64,
    pub errors_by_kind: Vec<(String, usize)>,
    pub pages: Vec<PageLatency>,
    pub orders_placed: u64,
    pub orders_fulfilled: u64,
    pub orders_rejected: u64,
    pub orders_timed_out: u64,
    pub orders_unfinished: u64,
    pub sold_out_skips: u64,
    pub placed_to_final_p50_secs: f64,
    pub placed_to_final_p95_secs: f64,
    pub placed_to_final_p99_secs: f64,
    pub max_workers: Option<u64>,
    pub max_backlog: Option<u64>,
    /// Flash sale: orders a second asked for, and arrivals that started over a second
    /// after their slot because every shopper was busy (the rate was not held).
    pub flash_sale_rate: Option<f64>,
    pub late_arrivals: u64,
}

pub struct Outcome {
    pub summary: Summary,
    pub text: String,
}

impl Outcome {
    /// Passed: no failed request, every placed order reached a final status, and a flash
    /// sale held its arrival rate.
    pub fn passed(&self) -> bool {
        let s = &self.summary;
        s.errors == 0 && s.orders_timed_out == 0 && s.orders_unfinished == 0 && s.late_arrivals == 0
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Percentile of a histogram of (bucket value in µs, count), in milliseconds.
fn bucket_percentile(buckets: &[(u64, usize)], p: f64) -> f64 {
    let total: usize = buckets.iter().map(|b| b.1).sum();
    if total == 0 {
        return 0.0;
    }
    let wanted = ((p / 100.0) * total as f64).ceil().max(1.0) as usize;
    let mut seen = 0;
    for (value, count) in buckets {
        seen += count;
        if seen >= wanted {
            return *value as f64 / 1000.0;
        }
    }
    buckets.last().map_or(0.0, |b| b.0 as f64 / 1000.0)
}

pub fn write(
    args: &Args,
    shared: &Shared,
    metrics: &GooseMetrics,
    elapsed: Duration,
) -> anyhow::Result<Outcome> {
    let mut pages: Vec<PageLatency> = metrics
        .requests
        .iter()
        .map(|(key, aggregate)| {
            let mut buckets: Vec<(u64, usize)> = aggregate
                .raw_data
                .times_us
                .iter()
                .map(|(v, c)| (*v, *c))
                .collect();
            buckets.sort_unstable();
            PageLatency {
                page: key.clone(),
                requests: aggregate.success_count + aggregate.fail_count,
                failures: aggregate.fail_count,
                p50_ms: bucket_percentile(&buckets, 50.0),
                p95_ms: bucket_percentile(&buckets, 95.0),
                p99_ms: bucket_percentile(&buckets, 99.0),
            }
        })
        .collect();
    pages.sort_by(|a, b| a.page.cmp(&b.page));
    let mut errors_by_kind: Vec<(String, usize)> = metrics
        .errors
        .values()
        .map(|e| {
            (
                format!("{} {}: {}", e.method, e.name, e.error),
                e.occurrences,
            )
        })
        .collect();
    errors_by_kind.sort_by_key(|e| std::cmp::Reverse(e.1));

    let mut latencies = shared
        .fulfil_latencies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    latencies.sort_by(f64::total_cmp);
    let timeline = shared
        .timeline
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let requests = shared.requests.load(Ordering::Relaxed);
    let failed_requests: usize = pages.iter().map(|p| p.failures).sum();
    let summary = Summary {
        profile: format!("{:?}", args.profile).to_lowercase(),
        users: args.users,
        duration_secs: elapsed.as_secs_f64(),
        requests,
        requests_per_sec: requests as f64 / args.duration.as_secs_f64().max(1.0),
        errors: shared
            .errors
            .load(Ordering::Relaxed)
            .max(failed_requests as u64),
        errors_by_kind,
        pages,
        orders_placed: shared.orders_placed.load(Ordering::Relaxed),
        orders_fulfilled: shared.orders_fulfilled.load(Ordering::Relaxed),
        orders_rejected: shared.orders_rejected.load(Ordering::Relaxed),
        orders_timed_out: shared.orders_timed_out.load(Ordering::Relaxed),
        orders_unfinished: shared.outstanding(),
        sold_out_skips: shared.sold_out_skips.load(Ordering::Relaxed),
        placed_to_final_p50_secs: percentile(&latencies, 50.0),
        placed_to_final_p95_secs: percentile(&latencies, 95.0),
        placed_to_final_p99_secs: percentile(&latencies, 99.0),
        max_workers: timeline.iter().filter_map(|s| s.workers).max(),
        max_backlog: timeline.iter().filter_map(|s| s.backlog).max(),
        flash_sale_rate: (args.profile == crate::Profile::FlashSale).then_some(args.rate),
        late_arrivals: shared.late_arrivals.load(Ordering::Relaxed),
    };

    std::fs::write(
        args.report.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    write_timeline(&args.report.join("timeline.csv"), &timeline)?;
    chart(&args.report.join("report.svg"), &timeline)?;
    let text = render(&summary, args);
    std::fs::write(args.report.join("summary.txt"), &text)?;
    Ok(Outcome { summary, text })
}

fn write_timeline(path: &std::path::Path, timeline: &[Sample]) -> anyhow::Result<()> {
    let mut csv = String::from(
        "t_secs,requests,requests_per_sec,errors,orders_placed,orders_final,backlog,workers\n",
    );
    let mut previous: Option<&Sample> = None;
    for s in timeline {
        let rate = previous.map_or(0.0, |p| {
            (s.requests - p.requests) as f64 / (s.t_secs - p.t_secs).max(0.001)
        });
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let _ = writeln!(
            csv,
            "{:.1},{},{:.1},{},{},{},{},{}",
            s.t_secs,
            s.requests,
            rate,
            s.errors,
            s.orders_placed,
            s.orders_final,
            opt(s.backlog),
            opt(s.workers)
        );
        previous = Some(s);
    }
    std::fs::write(path, csv)?;
    Ok(())
}

/// Three stacked panels sharing the time axis: requests/s, backlog, workers.
fn chart(path: &std::path::Path, timeline: &[Sample]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));
    let t_max = timeline.last().map_or(1.0, |s| s.t_secs).max(1.0);
    let rates: Vec<(f64, f64)> = timeline
        .windows(2)
        .map(|w| {
            let dt = (w[1].t_secs - w[0].t_secs).max(0.001);
            (w[1].t_secs, (w[1].requests - w[0].requests) as f64 / dt)
        })
        .collect();
    let backlog: Vec<(f64, f64)> = timeline
        .iter()
        .filter_map(|s| Some((s.t_secs, s.backlog? as f64)))
        .collect();
    let workers: Vec<(f64, f64)> = timeline
        .iter()
        .filter_map(|s| Some((s.t_secs, s.workers? as f64)))
        .collect();
    type Points = Vec<(f64, f64)>;
    let series: [(&str, &Points, RGBColor); 3] = [
        ("requests / s", &rates, RGBColor(29, 78, 216)),
        (
            "queue backlog (ready + unacked)",
            &backlog,
            RGBColor(194, 65, 12),
        ),
        ("workers", &workers, RGBColor(21, 128, 61)),
    ];
    for (panel, (title, points, color)) in panels.iter().zip(series) {
        let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .light_line_style(WHITE)
            .draw()?;
        if points.is_empty() {
            chart.draw_series(std::iter::once(Text::new(
                "not sampled (pass --autoscaler URL)",
                (t_max * 0.3, y_max * 0.5),
                ("sans-serif", 16),
            )))?;
        } else {
            chart.draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

fn render(s: &Summary, args: &Args) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== loadtest: {} profile, {} users, {:.0} s against {}",
        s.profile, s.users, s.duration_secs, args.target
    );
    let _ = writeln!(
        out,
        "requests: {} ({:.1}/s), errors: {}",
        s.requests, s.requests_per_sec, s.errors
    );
    let _ = writeln!(
        out,
        "{:<16} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "page", "requests", "failed", "p50 ms", "p95 ms", "p99 ms"
    );
    for p in &s.pages {
        let _ = writeln!(
            out,
            "{:<16} {:>8} {:>8} {:>9.1} {:>9.1} {:>9.1}",
            p.page, p.requests, p.failures, p.p50_ms, p.p95_ms, p.p99_ms
        );
    }
    for (kind, count) in &s.errors_by_kind {
        let _ = writeln!(out, "error x{count}: {kind}");
    }
    let _ = writeln!(
        out,
        "orders: {} placed, {} fulfilled, {} rejected, {} timed out, {} unfinished ({} sold-out products skipped)",
        s.orders_placed,
        s.orders_fulfilled,
        s.orders_rejected,
        s.orders_timed_out,
        s.orders_unfinished,
        s.sold_out_skips
    );
    if let Some(rate) = s.flash_sale_rate {
        let _ = writeln!(
            out,
            "flash sale: {rate}/s asked, {:.1}/s placed, {} arrivals late",
            s.orders_placed as f64 / args.duration.as_secs_f64().max(1.0),
            s.late_arrivals
        );
    }
    // A flash sale reads the orders after the sale: its times are no latencies.
    if s.flash_sale_rate.is_none() {
        let _ = writeln!(
            out,
            "placed -> final: p50 {:.2} s, p95 {:.2} s, p99 {:.2} s",
            s.placed_to_final_p50_secs, s.placed_to_final_p95_secs, s.placed_to_final_p99_secs
        );
    }
    if let (Some(w), Some(b)) = (s.max_workers, s.max_backlog) {
        let _ = writeln!(out, "peak backlog {b}, peak workers {w}");
    }
    let _ = writeln!(
        out,
        "reports: {0}/summary.txt, summary.json, timeline.csv, report.svg, goose-report.html",
        args.report.display()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        let buckets = vec![(1000, 50), (2000, 45), (10_000, 5)];
        assert_eq!(bucket_percentile(&buckets, 50.0), 1.0);
        assert_eq!(bucket_percentile(&buckets, 95.0), 2.0);
        assert_eq!(bucket_percentile(&buckets, 99.0), 10.0);
    }
}
