//! Local `worker` processes, children of the autoscaler. Scale-in sends SIGTERM to the
//! newest workers: each stops consuming, finishes and acks what it holds, and exits (see
//! worker/src/consumer.rs), so nothing is lost or processed twice. A worker that does not
//! exit within the drain timeout is killed (its unacked messages go back to the queue).
//! Workers watch their parent: if the autoscaler dies without stopping them (SIGKILL), each
//! notices within a second and drains and exits the same way.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::{Backend, BackendStatus};

/// The variable through which a worker learns which process it must outlive no longer
/// (the worker's `parent` module reads it).
pub const PARENT_PID_ENV: &str = "STRATA_PARENT_PID";

#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub worker_bin: PathBuf,
    /// Set on top of the inherited environment.
    pub worker_env: Vec<(String, String)>,
    pub drain_timeout: Duration,
}

struct WorkerProc {
    id: u64,
    pid: u32,
    child: Child,
    started: Instant,
}

struct Draining {
    worker: WorkerProc,
    /// When SIGTERM was sent; none while the worker is too young to have its handler.
    since: Option<Instant>,
    killed: bool,
}

/// A worker installs its SIGTERM handler as it starts; a SIGTERM before that would kill it
/// outright. Safe (its messages would return to the queue), but not a drain: a worker
/// this young is signalled once it is this old.
const STARTUP_GRACE: Duration = Duration::from_secs(1);

pub struct ProcessBackend {
    config: ProcessConfig,
    target: u32,
    running: Vec<WorkerProc>,
    draining: Vec<Draining>,
    next_id: u64,
    replaced: u64,
    drained: u64,
    killed: u64,
}

fn exit_text(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

impl ProcessBackend {
    pub fn new(config: ProcessConfig) -> Self {
        ProcessBackend {
            config,
            target: 0,
            running: Vec::new(),
            draining: Vec::new(),
            next_id: 1,
            replaced: 0,
            drained: 0,
            killed: 0,
        }
    }

    /// Runs `worker check-budget` with the workers' environment: fails with the figures
    /// when `replicas` workers and `reserve` other connections exceed Postgres' limit.
    pub async fn check_budget(&self, replicas: u32, reserve: u32) -> anyhow::Result<String> {
        crate::budget::run_check(
            &self.config.worker_bin,
            &crate::budget::worker_args(replicas, reserve),
            &self.config.worker_env,
        )
        .await
    }

    /// Process ids of the running (not draining) workers, oldest first.
    pub fn pids(&self) -> Vec<u32> {
        self.running.iter().map(|w| w.pid).collect()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = &self.config.worker_bin;
        let child = Command::new(bin)
            .envs(self.config.worker_env.iter().map(|(k, v)| (k, v)))
            // A worker drains and exits once this process is no longer its parent: the
            // autoscaler killed outright (SIGKILL, OOM) leaves no orphan that keeps
            // consuming while a restarted autoscaler starts new workers (worker/src/parent.rs).
            .env(PARENT_PID_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            // Dropping the handle (a panic unwinding, a test ending) kills the worker. This
            // needs a running autoscaler: it does nothing when the autoscaler is killed.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the new worker has no pid")?;
        let id = self.next_id;
        self.next_id += 1;
        tracing::info!(worker.id = id, pid, "worker started");
        metrics::counter!("strata_autoscaler_worker_starts_total").increment(1);
        self.running.push(WorkerProc {
            id,
            pid,
            child,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Sends SIGTERM: the worker drains and exits on its own.
    fn terminate(worker: &WorkerProc) {
        let Ok(pid) = i32::try_from(worker.pid) else {
            return;
        };
        match kill(Pid::from_raw(pid), Signal::SIGTERM) {
            Ok(()) => tracing::info!(worker.id = worker.id, pid, "worker told to drain (SIGTERM)"),
            // Already gone; the next reap notices.
            Err(nix::errno::Errno::ESRCH) => {}
            Err(err) => tracing::error!(worker.id = worker.id, pid, error = %err, "SIGTERM failed"),
        }
    }

    fn start_draining(&mut self, worker: WorkerProc) {
        let mut d = Draining {
            worker,
            since: None,
            killed: false,
        };
        d.signal_when_ready();
        self.draining.push(d);
    }

    /// Forgets workers that exited; kills drains that overran the timeout.
    fn reap(&mut self) {
        self.running.retain_mut(|w| match w.child.try_wait() {
            Ok(Some(status)) => {
                tracing::warn!(
                    worker.id = w.id,
                    pid = w.pid,
                    status = exit_text(status),
                    uptime = ?w.started.elapsed(),
                    "worker exited on its own; it will be replaced"
                );
                metrics::counter!("strata_autoscaler_worker_exits_total", "kind" => "unexpected")
                    .increment(1);
                false
            }
            Ok(None) => true,
            Err(err) => {
                tracing::warn!(worker.id = w.id, error = %err, "cannot poll a worker");
                true
            }
        });
        let drain_timeout = self.config.drain_timeout;
        let mut exits = Vec::new();
        self.draining.retain_mut(|d| match d.worker.child.try_wait() {
            Ok(Some(status)) => {
                exits.push((d.worker.id, d.worker.pid, status, d.killed, d.since));
                false
            }
            Ok(None) => {
                d.signal_when_ready();
                if !d.killed && d.since.is_some_and(|t| t.elapsed() > drain_timeout) {
                    tracing::error!(
                        worker.id = d.worker.id,
                        pid = d.worker.pid,
                        ?drain_timeout,
                        "worker did not drain in time: KILLING it (its unacked messages return to the queue)"
                    );
                    let _ = d.worker.child.start_kill();
                    d.killed = true;
                }
                true
            }
            Err(err) => {
                tracing::warn!(worker.id = d.worker.id, error = %err, "cannot poll a worker");
                true
            }
        });
        for (id, pid, status, killed, since) in exits {
            self.record_stop(id, pid, status, killed, since);
        }
    }

    /// Logs and counts the end of a worker that was told to stop.
    fn record_stop(
        &mut self,
        id: u64,
        pid: u32,
        status: ExitStatus,
        killed: bool,
        since: Option<Instant>,
    ) {
        let drain = since.map(|t| t.elapsed());
        let kind = if killed {
            self.killed += 1;
            "killed"
        } else if status.success() {
            self.drained += 1;
            "drained"
        } else {
            "failed_drain"
        };
        if kind == "drained" {
            tracing::info!(
                worker.id = id,
                pid,
                status = exit_text(status),
                ?drain,
                "worker drained"
            );
        } else {
            tracing::warn!(
                worker.id = id,
                pid,
                status = exit_text(status),
                ?drain,
                "worker stopped without a clean drain ({kind})"
            );
        }
        metrics::counter!("strata_autoscaler_worker_exits_total", "kind" => kind).increment(1);
    }

    /// Waits for every draining worker, killing the ones past the drain timeout.
    async fn wait_drained(&mut self) {
        let timeout = self.config.drain_timeout;
        let mut exits = Vec::new();
        for d in &mut self.draining {
            if d.since.is_none() {
                tokio::time::sleep_until((d.worker.started + STARTUP_GRACE).into()).await;
                d.signal_when_ready();
            }
            let since = d.since.unwrap_or_else(Instant::now);
            let deadline = (since + timeout).max(Instant::now());
            let status = match tokio::time::timeout_at(deadline.into(), d.worker.child.wait()).await
            {
                Ok(status) => status,
                Err(_) => {
                    tracing::error!(
                        worker.id = d.worker.id,
                        pid = d.worker.pid,
                        "worker did not drain in time: KILLING it"
                    );
                    d.killed = true;
                    let _ = d.worker.child.start_kill();
                    d.worker.child.wait().await
                }
            };
            match status {
                Ok(status) => exits.push((d.worker.id, d.worker.pid, status, d.killed, d.since)),
                Err(err) => {
                    tracing::error!(worker.id = d.worker.id, error = %err, "cannot wait for a worker")
                }
            }
        }
        self.draining.clear();
        for (id, pid, status, killed, since) in exits {
            self.record_stop(id, pid, status, killed, since);
        }
    }
}

impl Draining {
    fn signal_when_ready(&mut self) {
        if self.since.is_none() && self.worker.started.elapsed() >= STARTUP_GRACE {
            ProcessBackend::terminate(&self.worker);
            self.since = Some(Instant::now());
        }
    }
}

impl Backend for ProcessBackend {
    fn current(&self) -> u32 {
        u32::try_from(self.running.len()).unwrap_or(u32::MAX)
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            running: self.current(),
            draining: u32::try_from(self.draining.len()).unwrap_or(u32::MAX),
            replaced: self.replaced,
            drained: self.drained,
            killed: self.killed,
        }
    }

    async fn scale_to(&mut self, n: u32) -> anyhow::Result<()> {
        self.target = n;
        while self.current() < n {
            self.spawn()?;
        }
        while self.current() > n {
            // The newest first: the oldest keep their warm connections and pools.
            let worker = self.running.pop().expect("running is not empty");
            self.start_draining(worker);
        }
        Ok(())
    }

    async fn reconcile(&mut self) -> anyhow::Result<()> {
        self.reap();
        while self.current() < self.target {
            self.spawn()?;
            self.replaced += 1;
            metrics::counter!("strata_autoscaler_workers_replaced_total").increment(1);
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> anyhow::Result<()> {
        self.target = 0;
        tracing::info!(
            running = self.running.len(),
            draining = self.draining.len(),
            "stopping every worker"
        );
        while let Some(worker) = self.running.pop() {
            self.start_draining(worker);
        }
        self.wait_drained().await;
        Ok(())
    }
}
