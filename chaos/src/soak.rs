//! The soak: the load test against logic, presentation and autoscaled workers for a number
//! of minutes, each process's resident memory and open file descriptors, the database's
//! connections and the queue depths sampled every minute. It fails on an order that never
//! became final, on a load test that failed, and on growth that does not level off.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use plotters::prelude::*;

use crate::procs::{Proc, group_members};
use crate::stack::{ScalerPlan, Stack, StackPlan};

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Length of the load.
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 60)]
    pub sample_secs: u64,
    /// Shoppers of the load test (each places an order on about half its journeys).
    #[arg(long, default_value_t = 10)]
    pub users: u32,
    /// Where the CSV and the SVG chart go.
    #[arg(long, default_value = "docs/reports")]
    pub reports: PathBuf,
    /// Markdown file whose marked soak section gets the figures.
    #[arg(long)]
    pub docs: Option<PathBuf>,
    /// Where the processes' logs and the load test's report go.
    #[arg(long, default_value = "target/soak")]
    pub out: PathBuf,
}

/// One series: a name, its unit, and what a minute of growth may add at most once it
/// levelled off.
struct Series {
    name: &'static str,
    unit: &'static str,
    floor_per_min: f64,
}

const SERIES: [Series; 10] = [
    Series {
        name: "logic_rss",
        unit: "MiB",
        floor_per_min: 1.0,
    },
    Series {
        name: "presentation_rss",
        unit: "MiB",
        floor_per_min: 1.0,
    },
    Series {
        name: "autoscaler_rss",
        unit: "MiB",
        floor_per_min: 1.0,
    },
    Series {
        name: "worker_rss_mean",
        unit: "MiB",
        floor_per_min: 1.0,
    },
    Series {
        name: "logic_fds",
        unit: "fds",
        floor_per_min: 1.0,
    },
    Series {
        name: "presentation_fds",
        unit: "fds",
        floor_per_min: 1.0,
    },
    Series {
        name: "autoscaler_fds",
        unit: "fds",
        floor_per_min: 1.0,
    },
    Series {
        name: "worker_fds_mean",
        unit: "fds",
        floor_per_min: 1.0,
    },
    Series {
        name: "pg_connections",
        unit: "conns",
        floor_per_min: 1.0,
    },
    Series {
        name: "queue_depth",
        unit: "msgs",
        floor_per_min: 20.0,
    },
];

fn rss_mib(pid: i32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn fds(pid: i32) -> Option<f64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as f64)
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Least-squares slope of `ys` against minutes `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let (mx, my) = (mean(xs), mean(ys));
    let num: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

async fn sample(stack: &Stack, presentation: &Proc, minute: f64) -> Vec<f64> {
    let logic = stack.logic.as_ref().map(Proc::pid).unwrap_or_default();
    let scaler = stack.autoscaler.as_ref().map(Proc::pid).unwrap_or_default();
    let workers: Vec<i32> = group_members(scaler)
        .into_iter()
        .filter(|p| *p != scaler)
        .collect();
    let worker_rss: Vec<f64> = workers.iter().filter_map(|p| rss_mib(*p)).collect();
    let worker_fds: Vec<f64> = workers.iter().filter_map(|p| fds(*p)).collect();
    let pg: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
    )
    .fetch_one(&stack.env.pool)
    .await
    .unwrap_or(-1);
    let (ready, unacked) = stack
        .queue_depth(contracts::FULFIL_QUEUE)
        .await
        .unwrap_or_default();
    let (dlq, _) = stack
        .queue_depth(contracts::FULFIL_DLQ)
        .await
        .unwrap_or_default();
    vec![
        minute,
        rss_mib(logic).unwrap_or(0.0),
        rss_mib(presentation.pid()).unwrap_or(0.0),
        rss_mib(scaler).unwrap_or(0.0),
        mean(&worker_rss),
        fds(logic).unwrap_or(0.0),
        fds(presentation.pid()).unwrap_or(0.0),
        fds(scaler).unwrap_or(0.0),
        mean(&worker_fds),
        pg as f64,
        (ready + unacked) as f64,
        workers.len() as f64,
        dlq as f64,
    ]
}

pub async fn run(args: SoakArgs) -> anyhow::Result<bool> {
    let bins = crate::bins::dir()?;
    std::fs::create_dir_all(&args.out)?;
    std::fs::create_dir_all(&args.reports)?;
    let plan = StackPlan {
        workers: 0,
        autoscaler: Some(ScalerPlan {
            min: 1,
            max: 4,
            target_backlog: 20,
            poll: "2s",
            scale_down_window: "60s",
        }),
        worker_amqp_proxy: false,
        logic_db_proxy: false,
        payment_latency_ms: 50,
        hot_stock: 100,
    };
    let mut stack = Stack::start(plan, &bins, &args.out).await?;
    stack.seed(500).await?;
    let web_port = testkit::leaks::free_port();
    let presentation = stack.start_presentation(web_port).await?;
    let report_dir = args.out.join("loadtest");
    let load_env = vec![("RUST_LOG".to_owned(), "warn".to_owned())];
    let mut load = Proc::start(
        &crate::bins::path(&bins, "loadtest")?,
        "loadtest",
        &load_env,
        &[
            "--target",
            &format!("http://127.0.0.1:{web_port}"),
            "--users",
            &args.users.to_string(),
            "--duration",
            &format!("{}m", args.minutes),
            "--order-timeout-secs",
            "60",
            "--autoscaler",
            &stack.scaler_url(),
            "--report",
            &report_dir.display().to_string(),
        ],
        &args.out,
    )?;
    println!(
        "soak: {} minutes, {} shoppers, a sample every {} s",
        args.minutes, args.users, args.sample_secs
    );
    let start = Instant::now();
    let mut rows = Vec::new();
    let total = Duration::from_secs(args.minutes * 60);
    let every = Duration::from_secs(args.sample_secs);
    let mut next = Duration::ZERO;
    while next <= total {
        tokio::time::sleep_until((start + next).into()).await;
        let row = sample(&stack, &presentation, start.elapsed().as_secs_f64() / 60.0).await;
        println!(
            "  {:5.1} min: logic {:.1} MiB / {} fds, workers {} ({:.1} MiB each), pg {} conns, queue {}",
            row[0], row[1], row[5], row[11], row[4], row[9], row[10]
        );
        rows.push(row);
        next += every;
    }
    let load_ok = load
        .exited_within(Duration::from_secs(180))
        .await
        .is_some_and(|s| s.success());
    let settle = crate::ledger::settle(&stack.env.pool, Duration::from_secs(90)).await;
    let (orders, pending): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM orders")
            .fetch_one(&stack.env.pool)
            .await?;

    let mut failures = Vec::new();
    if !load_ok {
        failures.push(format!(
            "the load test failed (see {})",
            args.out.join("loadtest.log").display()
        ));
    }
    if pending > 0 {
        failures.push(format!(
            "{pending} orders of {orders} never became final (lost)"
        ));
    }
    let figures = growth(&rows, &mut failures);
    write_csv(&args.reports.join("soak.csv"), &rows)?;
    chart(&args.reports.join("soak.svg"), &rows)?;
    let passed = failures.is_empty();
    for f in &failures {
        println!("  FAIL: {f}");
    }
    let failed_text: String = failures.iter().map(|f| format!("\n- {f}")).collect();
    let summary = format!(
        "Soak of {} minutes ({} build), {} shoppers, autoscaler 1 to 4 workers: {orders} orders, {pending} never final, settled {:.1} s after the load; {}.{failed_text}\n\n{figures}\n![the soak's samples](reports/soak.svg)",
        args.minutes,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        args.users,
        settle.as_secs_f64(),
        if passed { "passed" } else { "FAILED" }
    );
    println!("{summary}");
    if let Some(docs) = &args.docs {
        replace_section(docs, "<!-- soak:begin -->", "<!-- soak:end -->", &summary)?;
    }
    drop(presentation);
    if let Some(s) = stack.autoscaler.take() {
        s.stop(Duration::from_secs(35)).await;
    }
    Ok(passed)
}

/// Per series: first, last and largest value, and the slope (per minute) of the first and
/// the last third of the samples. Growth levels off when the last third's slope is at most
/// half the first third's or under the series' floor.
fn growth(rows: &[Vec<f64>], failures: &mut Vec<String>) -> String {
    let mut out = String::from(
        "| series | first | last | max | slope, first third (/min) | slope, last third (/min) | levels off |\n|---|--:|--:|--:|--:|--:|---|\n",
    );
    let third = (rows.len() / 3).max(2).min(rows.len());
    let xs: Vec<f64> = rows.iter().map(|r| r[0]).collect();
    for (i, s) in SERIES.iter().enumerate() {
        let ys: Vec<f64> = rows.iter().map(|r| r[i + 1]).collect();
        let (Some(first), Some(last)) = (ys.first(), ys.last()) else {
            continue;
        };
        let max = ys.iter().copied().fold(f64::MIN, f64::max);
        let early = slope(&xs[..third], &ys[..third]);
        let late = slope(&xs[xs.len() - third..], &ys[ys.len() - third..]);
        let ok = late <= s.floor_per_min || late <= early / 2.0;
        if !ok {
            failures.push(format!(
                "{} still grows {late:.2} {}/min in the last third (first third {early:.2})",
                s.name, s.unit
            ));
        }
        out.push_str(&format!(
            "| {} ({}) | {first:.1} | {last:.1} | {max:.1} | {early:.2} | {late:.2} | {} |\n",
            s.name,
            s.unit,
            if ok { "yes" } else { "NO" }
        ));
    }
    out
}

fn write_csv(path: &Path, rows: &[Vec<f64>]) -> anyhow::Result<()> {
    let mut text = String::from("minute");
    for s in &SERIES {
        text.push(',');
        text.push_str(s.name);
    }
    text.push_str(",workers,dlq\n");
    for r in rows {
        let line: Vec<String> = r.iter().map(|v| format!("{v:.2}")).collect();
        text.push_str(&line.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn chart(path: &Path, rows: &[Vec<f64>]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));
    let t_max = rows.last().map_or(1.0, |r| r[0]).max(1.0);
    let colors = [
        RGBColor(29, 78, 216),
        RGBColor(194, 65, 12),
        RGBColor(21, 128, 61),
        RGBColor(126, 34, 206),
    ];
    let groups: [(&str, &[usize]); 3] = [
        (
            "resident memory, MiB (logic, presentation, autoscaler, worker mean)",
            &[1, 2, 3, 4],
        ),
        (
            "open file descriptors (logic, presentation, autoscaler, worker mean)",
            &[5, 6, 7, 8],
        ),
        ("Postgres connections, queue depth", &[9, 10]),
    ];
    for (panel, (title, columns)) in panels.iter().zip(groups) {
        let y_max = rows
            .iter()
            .flat_map(|r| columns.iter().map(move |c| r[*c]))
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .light_line_style(WHITE)
            .draw()?;
        for (k, c) in columns.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    rows.iter().map(|r| (r[0], r[*c])),
                    colors[k % colors.len()].stroke_width(2),
                ))?
                .label(SERIES[*c - 1].name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colors[k % colors.len()])
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Replaces the text between two markers of a file.
pub fn replace_section(path: &Path, begin: &str, end: &str, body: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
        anyhow::bail!("{} has no {begin} ... {end} section", path.display());
    };
    let updated = format!("{}{begin}\n{body}\n{}", &text[..b], &text[e..]);
    std::fs::write(path, updated)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thirty one-minute samples; `at(minute)` gives every series' value.
    fn run(at: impl Fn(f64) -> f64) -> Vec<String> {
        let rows: Vec<Vec<f64>> = (0..=30)
            .map(|m| {
                let m = f64::from(m);
                let mut row = vec![m];
                row.extend(std::iter::repeat_n(at(m), SERIES.len()));
                row.extend([1.0, 0.0]);
                row
            })
            .collect();
        let mut failures = Vec::new();
        growth(&rows, &mut failures);
        failures
    }

    #[test]
    fn growth_that_levels_off_passes() {
        // Warm-up, then flat: 20 MiB growing to 40 over five minutes, then 40.
        assert!(run(|m| 20.0 + 4.0 * m.min(5.0)).is_empty());
        assert!(run(|_| 12.0).is_empty());
    }

    #[test]
    fn steady_growth_fails() {
        // Growth of 25 a minute from start to end never levels off (above every floor).
        assert_eq!(run(|m| 20.0 + 25.0 * m).len(), SERIES.len());
    }
}
