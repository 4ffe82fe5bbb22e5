//! `strata-bench`: the timing tools and the report of `bench/run`. Each subcommand prints
//! `key<TAB>value` lines the script appends to its raw results.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bench::{autoscale, broker_limit, millis, open_loop, report, wait};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "strata-bench", about = "Timing tools and report of bench/run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The database of the orders and the queue of their commands.
#[derive(clap::Args)]
struct QueueAt {
    #[arg(long)]
    database_url: String,
    #[arg(long)]
    amqp_url: String,
    #[arg(long)]
    queue: String,
}

#[derive(Subcommand)]
enum Command {
    /// Waits until URL answers 200; prints the time since --since-ns.
    WaitHttp {
        #[arg(long)]
        url: String,
        #[arg(long)]
        since_ns: u128,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Waits until QUEUE has a consumer; prints the time since --since-ns.
    WaitConsumer {
        #[arg(long)]
        amqp_url: String,
        #[arg(long)]
        queue: String,
        #[arg(long)]
        since_ns: u128,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
        /// Waits instead until QUEUE has had exactly this many consumers for 3 s.
        #[arg(long)]
        exactly: Option<u32>,
    },
    /// Waits until every pending order's command is in QUEUE; prints how many.
    WaitPreloaded {
        #[command(flatten)]
        at: QueueAt,
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
    /// Times consumers started at --since-ns: until one is registered on QUEUE, then
    /// until no order is pending.
    Drain {
        #[command(flatten)]
        at: QueueAt,
        #[arg(long)]
        since_ns: u128,
        /// Orders pending before the consumers started.
        #[arg(long)]
        orders: u64,
        /// Prefix of the printed keys.
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Prints the number of pending orders.
    Pending {
        #[arg(long)]
        database_url: String,
    },
    /// The broker's limit: publish with confirms, then consume and ack, on a quorum queue.
    Broker {
        #[arg(long)]
        amqp_url: String,
        #[arg(long)]
        messages: usize,
        #[arg(long)]
        prefetch: u16,
        #[arg(long, default_value_t = 200)]
        round_trips: usize,
    },
    /// The least time to open a Postgres and an AMQP connection.
    ConnectFloor {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        amqp_url: String,
    },
    /// Sends orders at a fixed rate and times each from send to its final event.
    OpenLoop {
        #[arg(long)]
        logic_url: String,
        #[arg(long)]
        amqp_url: String,
        #[arg(long)]
        rate: f64,
        #[arg(long)]
        duration_secs: f64,
        /// File with one sku per line.
        #[arg(long)]
        skus: PathBuf,
        #[arg(long, default_value_t = 60)]
        settle_secs: u64,
        /// Splits each latency at the order's transactions (read from this database).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Watches the autoscaler answer a backlog spike started at --since-ns: reaction,
    /// drain against the capacity of the workers running, scale back.
    AutoscaleWatch {
        #[command(flatten)]
        at: QueueAt,
        #[arg(long)]
        since_ns: u128,
        /// Workers before the spike (the autoscaler's minimum).
        #[arg(long, default_value_t = 1)]
        min_workers: u32,
        /// One worker's measured rate, orders per second.
        #[arg(long)]
        worker_capacity: f64,
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        #[arg(long, default_value_t = 120)]
        scale_back_timeout_secs: u64,
    },
    /// Renders the raw results as results.md and results.json in --out, and prints the table.
    Report {
        #[arg(long)]
        raw: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn put(key: &str, value: impl std::fmt::Display) {
    println!("{key}\t{value}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::WaitHttp {
            url,
            since_ns,
            timeout_secs,
        } => {
            wait::http_ok(&url, Duration::from_secs(timeout_secs)).await?;
            println!("{:.1}", millis(bench::elapsed_since(since_ns)));
        }
        Command::WaitConsumer {
            amqp_url,
            queue,
            since_ns,
            timeout_secs,
            exactly,
        } => {
            let timeout = Duration::from_secs(timeout_secs);
            match exactly {
                Some(n) => {
                    let steady = Duration::from_secs(3);
                    wait::consumers_exactly(&amqp_url, &queue, n, steady, timeout).await?;
                }
                None => wait::consumers(&amqp_url, &queue, 1, timeout).await?,
            }
            println!("{:.1}", millis(bench::elapsed_since(since_ns)));
        }
        Command::WaitPreloaded {
            at:
                QueueAt {
                    database_url,
                    amqp_url,
                    queue,
                },
            timeout_secs,
        } => {
            let pool = sqlx::PgPool::connect(&database_url).await?;
            let n = wait::preloaded(&pool, &amqp_url, &queue, Duration::from_secs(timeout_secs))
                .await?;
            println!("{n}");
        }
        Command::Drain {
            at:
                QueueAt {
                    database_url,
                    amqp_url,
                    queue,
                },
            since_ns,
            orders,
            name,
            timeout_secs,
        } => {
            let pool = sqlx::PgPool::connect(&database_url).await?;
            let d = wait::drain(
                &pool,
                &amqp_url,
                &queue,
                since_ns,
                Duration::from_secs(timeout_secs),
            )
            .await?;
            put(
                &format!("{name}_ready_ms"),
                format!("{:.1}", millis(d.ready)),
            );
            put(
                &format!("{name}_drain_ms"),
                format!("{:.1}", millis(d.drain)),
            );
            put(&format!("{name}_rejected"), d.rejected);
            put(
                &format!("{name}_ps"),
                format!("{:.1}", orders as f64 / d.drain.as_secs_f64()),
            );
        }
        Command::Pending { database_url } => {
            let pool = sqlx::PgPool::connect(&database_url).await?;
            println!("{}", wait::pending_orders(&pool).await?);
        }
        Command::Broker {
            amqp_url,
            messages,
            prefetch,
            round_trips,
        } => {
            let f = broker_limit::run(&amqp_url, messages, prefetch, round_trips).await?;
            put("broker_publish_ps", format!("{:.0}", f.published_per_sec));
            put("broker_consume_ps", format!("{:.0}", f.consumed_per_sec));
            put(
                "broker_round_trip_ms",
                format!("{:.3}", millis(f.round_trip_p50)),
            );
            put(
                "broker_round_trip_p99_ms",
                format!("{:.3}", millis(f.round_trip_p99)),
            );
        }
        Command::ConnectFloor {
            database_url,
            amqp_url,
        } => {
            let took = wait::connect_floor(&database_url, &amqp_url).await?;
            put("connect_floor_ms", format!("{:.1}", millis(took)));
        }
        Command::OpenLoop {
            logic_url,
            amqp_url,
            rate,
            duration_secs,
            skus,
            settle_secs,
            database_url,
        } => {
            let skus = std::fs::read_to_string(&skus)
                .with_context(|| format!("reading {}", skus.display()))?
                .lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let f = open_loop::run(open_loop::Settings {
                logic_url,
                amqp_url,
                rate,
                duration: Duration::from_secs_f64(duration_secs),
                skus,
                settle: Duration::from_secs(settle_secs),
                database_url,
            })
            .await?;
            put("e2e_sent", f.sent);
            put("e2e_accepted", f.accepted);
            put("e2e_finished", f.finished);
            put("e2e_accept_p50_ms", format!("{:.2}", millis(f.accept_p50)));
            put("e2e_accept_p99_ms", format!("{:.2}", millis(f.accept_p99)));
            put("e2e_p50_ms", format!("{:.2}", millis(f.e2e_p50)));
            put("e2e_p99_ms", format!("{:.2}", millis(f.e2e_p99)));
            put("e2e_max_ms", format!("{:.2}", millis(f.e2e_max)));
            if let Some(b) = f.breakdown {
                for (name, segment) in [
                    ("to_placing", b.to_placing),
                    ("placing_to_fulfilling", b.placing_to_fulfilling),
                    ("fulfilling_to_event", b.fulfilling_to_event),
                ] {
                    put(
                        &format!("e2e_{name}_p50_ms"),
                        format!("{:.2}", millis(segment.p50)),
                    );
                    put(
                        &format!("e2e_{name}_p99_ms"),
                        format!("{:.2}", millis(segment.p99)),
                    );
                }
            }
        }
        Command::AutoscaleWatch {
            at:
                QueueAt {
                    database_url,
                    amqp_url,
                    queue,
                },
            since_ns,
            min_workers,
            worker_capacity,
            timeout_secs,
            scale_back_timeout_secs,
        } => {
            let f = autoscale::watch(autoscale::Settings {
                database_url,
                amqp_url,
                queue,
                since_ns,
                min_workers,
                worker_capacity,
                timeout: Duration::from_secs(timeout_secs),
                scale_back_timeout: Duration::from_secs(scale_back_timeout_secs),
            })
            .await?;
            put(
                "autoscale_reaction_ms",
                format!("{:.0}", millis(f.reaction)),
            );
            put("autoscale_max_workers", f.max_workers);
            put("autoscale_backlog", f.backlog);
            put("autoscale_drain_s", format!("{:.2}", f.drain.as_secs_f64()));
            put(
                "autoscale_ideal_drain_s",
                format!("{:.2}", f.ideal_drain.as_secs_f64()),
            );
            if let Some(back) = f.scale_back {
                put(
                    "autoscale_scale_back_s",
                    format!("{:.1}", back.as_secs_f64()),
                );
            }
        }
        Command::Report { raw, out } => {
            let text = std::fs::read_to_string(&raw)
                .with_context(|| format!("reading {}", raw.display()))?;
            let report = report::build(&report::parse_raw(&text));
            std::fs::create_dir_all(&out)?;
            let md = report.markdown();
            std::fs::write(out.join("results.md"), &md)?;
            std::fs::write(
                out.join("results.json"),
                serde_json::to_string_pretty(&report)? + "\n",
            )?;
            print!("{md}");
        }
    }
    Ok(())
}
