//! The command line: `chaos run` (the suite, or one fault) and `chaos soak`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::faults::{self, Fault};
use crate::ledger::{self, Ledger};
use crate::stack::{HOT, PLENTY, PRODUCTS, Stack};

#[derive(Debug, Parser)]
#[command(name = "chaos", about = "Strata's chaos suite and soak")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs faults under load and checks the ledger of every order.
    Run(RunArgs),
    /// Runs the load test for a while and watches the processes' resources.
    Soak(crate::soak::SoakArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run only these faults (repeatable); all of them when absent.
    #[arg(long, value_enum)]
    pub fault: Vec<Fault>,
    /// Orders sent per fault.
    #[arg(long, default_value_t = 200)]
    pub orders: usize,
    /// Orders a second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// How long the system may take to settle after the load, in seconds.
    #[arg(long, default_value_t = 90)]
    pub settle_secs: u64,
    /// Where the ledgers (one CSV per fault) and the processes' logs go.
    #[arg(long, default_value = "target/chaos")]
    pub out: PathBuf,
    /// Markdown file whose marked table section gets this run's rows.
    #[arg(long)]
    pub docs: Option<PathBuf>,
}

pub async fn run(cli: Cli) -> ExitCode {
    let outcome = tokio::select! {
        r = dispatch(cli) => r,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the run's future drops its guards: processes killed, services
            // restarted, the database, vhost and keys removed.
            eprintln!("interrupted; cleaning up");
            Err(anyhow::anyhow!("interrupted"))
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Run(args) => suite(args).await,
        Command::Soak(args) => crate::soak::run(args).await,
    }
}

async fn suite(args: RunArgs) -> anyhow::Result<bool> {
    let faults = if args.fault.is_empty() {
        faults::ALL.to_vec()
    } else {
        args.fault.clone()
    };
    let bins = crate::bins::dir()?;
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut outcomes = Vec::new();
    let mut all_passed = true;
    for fault in &faults {
        let name = fault.name();
        println!("==> {name}");
        let began = Instant::now();
        let ledger = match one(*fault, &args, &bins).await {
            Ok(l) => l,
            Err(err) => {
                println!("    {name}: the run failed: {err:#}");
                Ledger {
                    problems: vec![format!("the run failed: {err:#}")],
                    ..Ledger::default()
                }
            }
        };
        for p in &ledger.problems {
            println!("    {name}: {p}");
        }
        let row = crate::report::row(&name, &ledger);
        println!(
            "{}    ({:.0} s)",
            crate::report::table(&[(name.clone(), row.clone())]),
            began.elapsed().as_secs_f64()
        );
        all_passed &= ledger.passed();
        outcomes.push(crate::report::Outcome {
            name: name.clone(),
            row: row.clone(),
            problems: ledger.problems.clone(),
        });
        rows.push((name, row));
    }
    println!("{}", crate::report::table(&rows));
    println!(
        "{} faults in {:.0} s: {}",
        rows.len(),
        started.elapsed().as_secs_f64(),
        if all_passed { "all passed" } else { "FAILED" }
    );
    if let Some(docs) = &args.docs {
        let names: Vec<String> = faults.iter().map(|f| format!("`{}`", f.name())).collect();
        let note = format!(
            "Run {} UTC: {} orders per fault at {}/s ({} build), {}: {}.",
            chrono::Utc::now().format("%Y-%m-%d %H:%M"),
            args.orders,
            args.rate,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            names.join(", "),
            if all_passed {
                "all passed"
            } else {
                "some failed"
            }
        );
        crate::report::update_doc(docs, &outcomes, &note)?;
    }
    Ok(all_passed)
}

/// One fault: start the system, load it, inject, settle, check.
async fn one(fault: Fault, args: &RunArgs, bins: &Path) -> anyhow::Result<Ledger> {
    let out = args.out.join(fault.name());
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let mut stack = Stack::start(fault.stack(args.orders), bins, &out).await?;
    let initial: HashMap<String, i32> = PRODUCTS
        .iter()
        .map(|s| ((*s).to_owned(), PLENTY))
        .chain([(HOT.to_owned(), stack.plan.hot_stock)])
        .collect();
    let plan = fault.load(args.orders, args.rate);
    let load_for = plan.duration();
    println!(
        "    {}: {} orders over {:.1} s",
        fault.name(),
        plan.orders,
        load_for.as_secs_f64()
    );
    let run_start = Instant::now();
    let load = tokio::spawn(crate::load::run(
        stack.http.clone(),
        stack.logic_url(),
        plan,
        run_start,
    ));
    let at = fault.start_at(&plan);
    let injected = faults::inject(fault, &mut stack, run_start, at, load_for).await;
    let records = load.await?;
    let injected = injected?;
    for n in &injected.notes {
        println!("    {}: {n}", fault.name());
    }
    let settle = ledger::settle(&stack.env.pool, Duration::from_secs(args.settle_secs)).await;
    // The ledger is read at the bound: an order still pending then is lost.
    let mut l = ledger::check(&stack.env.pool, &records, &initial, injected.window, settle).await?;
    let mut problems = injected.problems.clone();
    problems.extend(faults::after(&stack, &injected).await);
    if l.recover.is_none() {
        problems.push("no order was accepted and settled after the fault ended".to_owned());
    }
    l.problems.extend(problems);
    let csv = out.join("ledger.csv");
    std::fs::write(
        &csv,
        format!(
            "key,order_id,answer,attempts,status,class\n{}\n",
            l.rows.join("\n")
        ),
    )?;
    if !l.passed() {
        println!("    ledger: {}, logs: {}", csv.display(), out.display());
    }
    let grace = Duration::from_secs(35);
    if let Some(s) = stack.autoscaler.take() {
        s.stop(grace).await;
    }
    if let Some(s) = stack.logic.take() {
        s.stop(Duration::from_secs(10)).await;
    }
    Ok(l)
}
