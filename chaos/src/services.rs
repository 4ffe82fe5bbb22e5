//! Stopping and starting the shared services (Postgres, RabbitMQ, Redis) on this machine,
//! as a Debian host without systemd runs them (see scripts/services). An [`Outage`] that is
//! dropped before it was ended starts its service again, and runs `scripts/services`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Postgres,
    RabbitMq,
    Redis,
}

/// A service stopped on purpose; [`Outage::end`] starts it again and waits until it answers.
pub struct Outage {
    service: Service,
    ended: bool,
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The newest Postgres cluster version under /etc/postgresql (as scripts/services picks it).
fn pg_version() -> anyhow::Result<String> {
    let mut versions: Vec<(u32, String)> = std::fs::read_dir("/etc/postgresql")
        .context("reading /etc/postgresql")?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let major = name.split('.').next()?.parse().ok()?;
            std::path::Path::new(&format!("/etc/postgresql/{name}/main"))
                .is_dir()
                .then_some((major, name))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, v)| v)
        .context("no Postgres cluster in /etc/postgresql")
}

fn stop(service: Service) -> anyhow::Result<()> {
    match service {
        Service::Postgres => run(
            "pg_ctlcluster",
            &[
                "--skip-systemctl-redirect",
                &pg_version()?,
                "main",
                "stop",
                "-m",
                "fast",
            ],
        ),
        Service::RabbitMq => run("rabbitmqctl", &["-q", "stop_app"]),
        Service::Redis => run("redis-cli", &["-p", "6379", "shutdown", "nosave"]),
    }
}

fn start(service: Service) -> anyhow::Result<()> {
    match service {
        Service::Postgres => run(
            "pg_ctlcluster",
            &["--skip-systemctl-redirect", &pg_version()?, "main", "start"],
        ),
        Service::RabbitMq => run("rabbitmqctl", &["-q", "start_app"]),
        Service::Redis => {
            std::fs::create_dir_all("/var/lib/redis")?;
            std::fs::create_dir_all("/var/log/redis")?;
            run(
                "redis-server",
                &[
                    "--daemonize",
                    "yes",
                    "--bind",
                    "127.0.0.1",
                    "-::1",
                    "--port",
                    "6379",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    "/var/lib/redis",
                    "--logfile",
                    "/var/log/redis/ci.log",
                ],
            )
        }
    }
}

fn answers(service: Service) -> bool {
    let ok = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    match service {
        Service::Postgres => ok("pg_isready", &["-q", "-h", "127.0.0.1", "-p", "5432"]),
        Service::RabbitMq => ok("rabbitmq-diagnostics", &["-q", "check_port_connectivity"]),
        Service::Redis => Command::new("redis-cli")
            .args(["-p", "6379", "ping"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG"),
    }
}

impl Outage {
    /// Stops the service.
    pub async fn begin(service: Service) -> anyhow::Result<Outage> {
        let outage = Outage {
            service,
            ended: false,
        };
        tokio::task::spawn_blocking(move || stop(service)).await??;
        Ok(outage)
    }

    /// Starts the service and waits (up to 60 s) until it answers.
    pub async fn end(mut self) -> anyhow::Result<()> {
        let service = self.service;
        self.ended = true;
        tokio::task::spawn_blocking(move || {
            start(service)?;
            let started = Instant::now();
            while !answers(service) {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "{service:?} did not answer within 60 s of its start"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        })
        .await?
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.ended {
            eprintln!("restoring {:?} after an interrupted run", self.service);
            let _ = start(self.service);
            restore_all();
        }
    }
}

/// Runs `scripts/services`: every service installed, started and answering.
pub fn restore_all() {
    let script = crate::bins::repo_root().join("scripts/services");
    let _ = Command::new("bash").arg(script).status();
}
