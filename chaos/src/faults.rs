//! The faults, one per run, each injected while the load flows; and what each run starts.

use std::time::{Duration, Instant};

use clap::ValueEnum;
use nix::sys::signal::Signal;

use crate::ledger::Window;
use crate::load::{LoadPlan, Shape};
use crate::procs::group_members;
use crate::services::{Outage, Service};
use crate::stack::{ScalerPlan, Stack, StackPlan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// A worker is SIGKILLed while payments (200 ms each) are in progress.
    WorkerKill,
    /// A worker gets SIGTERM in the middle of a burst and must drain and exit.
    WorkerTerm,
    /// RabbitMQ's application is stopped and started again.
    RabbitmqRestart,
    /// Postgres is stopped (fast shutdown) and started again.
    PostgresRestart,
    /// Redis is shut down and started again.
    RedisRestart,
    /// The workers' connections to RabbitMQ are cut and refused for a while.
    WorkerBrokerCut,
    /// Logic's connections to Postgres are cut and refused for a while.
    LogicDbCut,
    /// Logic is SIGKILLed and started again; clients retry with the same key.
    LogicKill,
    /// The autoscaler scales in (SIGTERM to workers) between bursts of orders.
    ScaleIn,
    /// The autoscaler is SIGKILLed and started again.
    AutoscalerKill,
    /// Twenty short cuts of the workers' broker connections, about a second apart.
    BrokerCuts,
}

/// Every fault, in the order the suite runs them.
pub const ALL: [Fault; 11] = [
    Fault::WorkerKill,
    Fault::WorkerTerm,
    Fault::RabbitmqRestart,
    Fault::PostgresRestart,
    Fault::RedisRestart,
    Fault::WorkerBrokerCut,
    Fault::LogicDbCut,
    Fault::LogicKill,
    Fault::ScaleIn,
    Fault::AutoscalerKill,
    Fault::BrokerCuts,
];

/// How long a service stays down, and a proxy stays cut.
const OUTAGE: Duration = Duration::from_secs(5);
/// How long a worker has to exit after SIGTERM.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
const CUTS: usize = 20;

impl Fault {
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    /// What the run starts. `orders` sets the hot product's stock (a tenth of the orders,
    /// so that many of its orders are rejected out of stock).
    pub fn stack(self, orders: usize) -> StackPlan {
        let fixed = ScalerPlan {
            min: 2,
            max: 2,
            target_backlog: 20,
            poll: "1s",
            scale_down_window: "60s",
        };
        StackPlan {
            workers: 0,
            autoscaler: Some(match self {
                Fault::ScaleIn => ScalerPlan {
                    min: 1,
                    max: 4,
                    target_backlog: 5,
                    poll: "1s",
                    scale_down_window: "2s",
                },
                _ => fixed,
            }),
            worker_amqp_proxy: matches!(self, Fault::WorkerBrokerCut | Fault::BrokerCuts),
            logic_db_proxy: self == Fault::LogicDbCut,
            payment_latency_ms: match self {
                Fault::WorkerKill => 200,
                Fault::ScaleIn => 200,
                _ => 100,
            },
            hot_stock: i32::try_from(orders / 10).unwrap_or(i32::MAX),
        }
    }

    /// The load of the run: `orders` at `rate` a second (bursts for the faults that need them).
    pub fn load(self, orders: usize, rate: f64) -> LoadPlan {
        let shape = match self {
            Fault::WorkerTerm => Shape::Bursts {
                size: 50,
                every: Duration::from_secs_f64(50.0 / rate),
            },
            // Quiet gaps long enough for the backlog to fall and the scale-down window
            // to pass, so that the autoscaler scales in while a burst's tail is processed.
            Fault::ScaleIn => Shape::Bursts {
                size: (orders / 4).clamp(50, 200),
                every: Duration::from_secs(8),
            },
            // The load must last well beyond the fault: twenty cuts a second apart, and a
            // service's stop and start (RabbitMQ's commands take about 15 s together,
            // Postgres' about 10 s).
            Fault::BrokerCuts | Fault::PostgresRestart => Shape::Steady {
                rate: rate.min(orders as f64 / 30.0),
            },
            Fault::RabbitmqRestart => Shape::Steady {
                rate: rate.min(orders as f64 / 40.0),
            },
            _ => Shape::Steady { rate },
        };
        LoadPlan {
            orders,
            shape,
            hot_share: 0.25,
            give_up_after: Duration::from_secs(30),
        }
    }

    /// When the fault is injected, from the start of the load: a quarter of the way in,
    /// or, for a SIGTERM during a burst, just after the second burst began.
    pub fn start_at(self, plan: &LoadPlan) -> Duration {
        match (self, plan.shape) {
            (Fault::WorkerTerm, Shape::Bursts { size, .. }) => {
                plan.send_at(size) + Duration::from_millis(200)
            }
            _ => plan.duration().mul_f64(0.25),
        }
    }
}

/// What the injection saw: the fault's window and anything it found wrong.
pub struct Injected {
    pub window: Window,
    pub problems: Vec<String>,
    /// What happened, for the record (not a failure).
    pub notes: Vec<String>,
    /// Process groups the fault left behind, to look at after the run settled.
    pub orphan_group: Option<i32>,
}

async fn sleep_until(run_start: Instant, at: Duration) {
    tokio::time::sleep_until((run_start + at).into()).await;
}

fn mark(run_start: Instant) -> (Duration, chrono::DateTime<chrono::Utc>) {
    (run_start.elapsed(), chrono::Utc::now())
}

/// The workers the autoscaler runs now: its process group without itself.
pub fn scaler_workers(stack: &Stack) -> Vec<i32> {
    let Some(scaler) = stack.autoscaler.as_ref() else {
        return Vec::new();
    };
    let own = scaler.pid();
    group_members(own)
        .into_iter()
        .filter(|p| *p != own)
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

fn signal_pid(pid: i32, signal: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
}

/// Injects the fault at `at` (from the run's start) while the load runs for `load_for`.
pub async fn inject(
    fault: Fault,
    stack: &mut Stack,
    run_start: Instant,
    at: Duration,
    load_for: Duration,
) -> anyhow::Result<Injected> {
    sleep_until(run_start, at).await;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut orphan_group = None;
    let (mut start, _) = mark(run_start);
    let mut scaled_in_at = None;
    match fault {
        Fault::WorkerKill => {
            let workers = scaler_workers(stack);
            anyhow::ensure!(!workers.is_empty(), "no worker to kill");
            signal_pid(workers[0], Signal::SIGKILL);
            notes.push(format!("SIGKILL to worker pid {}", workers[0]));
        }
        Fault::WorkerTerm => {
            let workers = scaler_workers(stack);
            anyhow::ensure!(!workers.is_empty(), "no worker to stop");
            let pid = workers[0];
            signal_pid(pid, Signal::SIGTERM);
            let signalled = Instant::now();
            while alive(pid) && signalled.elapsed() < DRAIN_LIMIT {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            notes.push(format!(
                "worker pid {pid} ran {:.1} s after its SIGTERM",
                signalled.elapsed().as_secs_f64()
            ));
            if alive(pid) {
                problems.push(format!(
                    "the worker (pid {pid}) was still running {} s after its SIGTERM",
                    DRAIN_LIMIT.as_secs()
                ));
                signal_pid(pid, Signal::SIGKILL);
            }
        }
        Fault::RabbitmqRestart | Fault::PostgresRestart | Fault::RedisRestart => {
            let service = match fault {
                Fault::RabbitmqRestart => Service::RabbitMq,
                Fault::PostgresRestart => Service::Postgres,
                _ => Service::Redis,
            };
            let outage = Outage::begin(service).await?;
            tokio::time::sleep(OUTAGE).await;
            outage.end().await?;
        }
        Fault::WorkerBrokerCut | Fault::LogicDbCut => {
            let proxy = if fault == Fault::WorkerBrokerCut {
                stack.worker_proxy.as_ref()
            } else {
                stack.db_proxy.as_ref()
            };
            let proxy = proxy.ok_or_else(|| anyhow::anyhow!("no proxy in this run"))?;
            proxy.cut();
            tokio::time::sleep(OUTAGE).await;
            proxy.restore();
            notes.push(format!("cut for {} s", OUTAGE.as_secs()));
        }
        Fault::BrokerCuts => {
            let proxy = stack
                .worker_proxy
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no proxy in this run"))?;
            for _ in 0..CUTS {
                proxy.cut();
                tokio::time::sleep(Duration::from_millis(200)).await;
                proxy.restore();
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
        }
        Fault::LogicKill => {
            if let Some(logic) = stack.logic.as_ref() {
                logic.signal(Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            stack.start_logic().await?;
        }
        Fault::AutoscalerKill => {
            let scaler = stack
                .autoscaler
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no autoscaler in this run"))?;
            scaler.signal(Signal::SIGKILL);
            orphan_group = Some(scaler.pid());
            tokio::time::sleep(Duration::from_secs(1)).await;
            stack.start_autoscaler().await?;
        }
        Fault::ScaleIn => {
            // The autoscaler acts by itself; watch its worker count until the load ends.
            let mut last = None;
            let mut ins = 0;
            let mut most = 0;
            while run_start.elapsed() < load_for {
                if let Some(current) = stack
                    .scaler_status()
                    .await
                    .and_then(|s| s.get("current")?.as_u64())
                {
                    if last.is_some_and(|l| current < l) {
                        ins += 1;
                        scaled_in_at.get_or_insert_with(|| mark(run_start));
                    }
                    most = most.max(current);
                    last = Some(current);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            notes.push(format!("{ins} scale-ins seen, at most {most} workers"));
            if ins == 0 {
                problems.push(format!(
                    "the autoscaler did not scale in while the load flowed (at most {most} workers): the fault was not exercised"
                ));
            }
        }
    }
    let (end, end_wall) = match scaled_in_at {
        // The fault is the first scale-in; the run recovers from it.
        Some((at, wall)) => {
            start = at;
            (at, wall)
        }
        None => mark(run_start),
    };
    if end >= load_for {
        problems.push(format!(
            "the fault ended at {:.1} s, after the load ({:.1} s): recovery is not measured under load",
            end.as_secs_f64(),
            load_for.as_secs_f64()
        ));
    }
    Ok(Injected {
        window: Window {
            start,
            end,
            end_wall,
        },
        problems,
        notes,
        orphan_group,
    })
}

/// Checks after the run settled: the queue has as many consumers as the autoscaler runs
/// workers (none stopped consuming unseen), and a killed autoscaler left no worker behind.
pub async fn after(stack: &Stack, injected: &Injected) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(group) = injected.orphan_group {
        let start = Instant::now();
        let mut left = group_members(group);
        while !left.is_empty() && start.elapsed() < DRAIN_LIMIT {
            tokio::time::sleep(Duration::from_millis(200)).await;
            left = group_members(group);
        }
        if !left.is_empty() {
            problems.push(format!(
                "{} workers of the killed autoscaler still running {} s later (orphans)",
                left.len(),
                DRAIN_LIMIT.as_secs()
            ));
        }
    }
    // The management API samples every few seconds: give it time to agree.
    let start = Instant::now();
    loop {
        let workers = scaler_workers(stack).len() as u64;
        let consumers = stack.consumers().await;
        if consumers == Some(workers) && workers > 0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let seen = consumers.map_or_else(|| "no figure of".to_owned(), |c| c.to_string());
            problems.push(format!(
                "{seen} consumers on the queue for {workers} running workers"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    problems
}
