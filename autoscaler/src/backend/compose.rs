//! The replicas of the `worker` service of a docker compose project:
//! `docker compose [-f FILE].. [-p PROJECT] up -d --no-recreate --scale worker=N worker`.
//! Compose stops surplus containers with SIGTERM and waits the service's
//! `stop_grace_period` (set it above the worst drain) before it kills them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::Command;

use super::{Backend, BackendStatus};

#[derive(Debug, Clone)]
pub struct ComposeConfig {
    /// The docker executable (`docker`), or a stand-in.
    pub bin: PathBuf,
    pub files: Vec<PathBuf>,
    pub project: Option<String>,
    pub service: String,
    /// Longest a compose command may take (scale-in waits for the drains).
    pub command_timeout: Duration,
}

pub struct ComposeBackend {
    config: ComposeConfig,
    /// The replica count last set (or found running at start).
    replicas: u32,
    /// Running containers at the last look.
    running: u32,
    known: bool,
    replaced: u64,
}

impl ComposeBackend {
    pub fn new(config: ComposeConfig) -> Self {
        ComposeBackend {
            config,
            replicas: 0,
            running: 0,
            known: false,
            replaced: 0,
        }
    }

    fn base_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["compose".into()];
        for file in &self.config.files {
            args.push("-f".into());
            args.push(file.into());
        }
        if let Some(project) = &self.config.project {
            args.push("-p".into());
            args.push(project.into());
        }
        args
    }

    /// The command line (after the executable) that sets the replica count.
    pub fn scale_args(&self, n: u32) -> Vec<OsString> {
        let service = &self.config.service;
        let mut args = self.base_args();
        args.extend(
            [
                "up".to_owned(),
                "-d".to_owned(),
                "--no-recreate".to_owned(),
                "--scale".to_owned(),
                format!("{service}={n}"),
                service.clone(),
            ]
            .map(OsString::from),
        );
        args
    }

    /// The command line that lists the running containers of the service, one id a line.
    pub fn ps_args(&self) -> Vec<OsString> {
        let mut args = self.base_args();
        args.extend(
            ["ps", "--status", "running", "--quiet", &self.config.service].map(OsString::from),
        );
        args
    }

    async fn run(&self, args: Vec<OsString>) -> anyhow::Result<String> {
        let bin = &self.config.bin;
        let shown = args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let output = Command::new(bin)
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(self.config.command_timeout, output)
            .await
            .with_context(|| format!("`{} {shown}` timed out", bin.display()))?
            .with_context(|| format!("running `{} {shown}`", bin.display()))?;
        if !output.status.success() {
            anyhow::bail!(
                "`{} {shown}` failed ({}): {}",
                bin.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The command line that runs `worker check-budget` in a one-off container of the
    /// service: its own environment and secrets, no dependencies started, removed after.
    pub fn budget_args(&self, replicas: u32, reserve: u32) -> Vec<OsString> {
        let mut args = self.base_args();
        args.extend(
            [
                "run",
                "--rm",
                "--no-deps",
                "-T",
                &self.config.service,
                "worker",
            ]
            .map(OsString::from),
        );
        args.extend(crate::budget::worker_args(replicas, reserve));
        args
    }

    /// Runs the Postgres connection budget check in a container of the worker service.
    pub async fn check_budget(&self, replicas: u32, reserve: u32) -> anyhow::Result<String> {
        crate::budget::run_check(&self.config.bin, &self.budget_args(replicas, reserve), &[]).await
    }

    /// Running containers of the service.
    pub async fn count_running(&self) -> anyhow::Result<u32> {
        let out = self.run(self.ps_args()).await?;
        let n = out.lines().filter(|l| !l.trim().is_empty()).count();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

impl Backend for ComposeBackend {
    fn current(&self) -> u32 {
        self.replicas
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            running: self.running,
            draining: 0,
            replaced: self.replaced,
            ..BackendStatus::default()
        }
    }

    async fn scale_to(&mut self, n: u32) -> anyhow::Result<()> {
        let args = self.scale_args(n);
        self.run(args).await?;
        tracing::info!(replicas = n, service = %self.config.service, "compose service scaled");
        self.replicas = n;
        self.known = true;
        Ok(())
    }

    async fn reconcile(&mut self) -> anyhow::Result<()> {
        let running = self.count_running().await?;
        self.running = running;
        if !self.known {
            // Adopt what runs: the project may have been started with some replicas.
            self.replicas = running;
            self.known = true;
            tracing::info!(running, service = %self.config.service, "found the compose service");
        } else if running < self.replicas {
            // Exited containers (crash, OOM): `up --no-recreate` starts them again.
            tracing::warn!(
                running,
                replicas = self.replicas,
                "compose workers exited; starting them again"
            );
            self.run(self.scale_args(self.replicas)).await?;
            self.replaced += u64::from(self.replicas - running);
            metrics::counter!("strata_autoscaler_workers_replaced_total")
                .increment(u64::from(self.replicas - running));
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> anyhow::Result<()> {
        // The containers belong to the compose project and keep running without us.
        tracing::info!(
            replicas = self.replicas,
            "leaving the compose workers as they are"
        );
        Ok(())
    }
}
