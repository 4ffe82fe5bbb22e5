//! The system under test for one run: a [`TestEnv`] (database, vhost, key prefix of its own),
//! the products, and the real binaries started over it, optionally through cuttable proxies.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::ExposeSecret;
use testkit::TestEnv;
use testkit::proxy::Proxy;

use crate::procs::Proc;

/// Products of every run: several with plenty of stock, and one hot product. A worker holds
/// a product's row lock for the length of a payment, so orders for one product are
/// fulfilled one at a time: twelve products keep each one's share of the `--long` rate
/// (50 orders a second) below what one product can take.
pub const PRODUCTS: [&str; 12] = [
    "CHAOS-A", "CHAOS-B", "CHAOS-C", "CHAOS-D", "CHAOS-E", "CHAOS-F", "CHAOS-G", "CHAOS-H",
    "CHAOS-I", "CHAOS-J", "CHAOS-K", "CHAOS-L",
];
pub const HOT: &str = "CHAOS-HOT";
pub const PLENTY: i32 = 1_000_000;
pub const PRICE_CENTS: i64 = 1_250;

const RABBITMQ_API: &str = "http://127.0.0.1:15672";

/// How the autoscaler runs in a run that has one.
#[derive(Debug, Clone)]
pub struct ScalerPlan {
    pub min: u32,
    pub max: u32,
    pub target_backlog: u32,
    pub poll: &'static str,
    pub scale_down_window: &'static str,
}

/// What a run starts.
#[derive(Debug, Clone)]
pub struct StackPlan {
    /// Workers started directly (none when the autoscaler runs them).
    pub workers: usize,
    pub autoscaler: Option<ScalerPlan>,
    /// Workers reach RabbitMQ through a proxy that the fault cuts.
    pub worker_amqp_proxy: bool,
    /// Logic reaches Postgres through a proxy that the fault cuts.
    pub logic_db_proxy: bool,
    pub payment_latency_ms: u64,
    /// Stock of the hot product.
    pub hot_stock: i32,
}

pub struct Stack {
    // Fields drop in order: the processes go before the proxies and the services.
    pub logic: Option<Proc>,
    pub workers: Vec<Proc>,
    pub autoscaler: Option<Proc>,
    /// Processes a fault stopped or killed, kept so that their groups are killed at the end.
    pub retired: Vec<Proc>,
    pub worker_proxy: Option<Proxy>,
    pub db_proxy: Option<Proxy>,
    pub env: TestEnv,
    pub plan: StackPlan,
    pub bins: PathBuf,
    pub log_dir: PathBuf,
    pub logic_port: u16,
    pub scaler_port: u16,
    pub http: reqwest::Client,
    started: usize,
}

fn pairs(list: &[(&str, String)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

impl Stack {
    /// Creates the services and products, starts logic and the workers (or the autoscaler)
    /// and waits until they serve and consume.
    pub async fn start(plan: StackPlan, bins: &Path, log_dir: &Path) -> anyhow::Result<Stack> {
        let env = TestEnv::new().await;
        for sku in PRODUCTS {
            env.product(sku, PRICE_CENTS, PLENTY).await;
        }
        env.product(HOT, PRICE_CENTS, plan.hot_stock).await;
        let worker_proxy = if plan.worker_amqp_proxy {
            Some(Proxy::start(([127, 0, 0, 1], 5672).into()).await)
        } else {
            None
        };
        let db_proxy = if plan.logic_db_proxy {
            Some(Proxy::start(([127, 0, 0, 1], 5432).into()).await)
        } else {
            None
        };
        let mut stack = Stack {
            logic: None,
            workers: Vec::new(),
            autoscaler: None,
            retired: Vec::new(),
            worker_proxy,
            db_proxy,
            env,
            plan: plan.clone(),
            bins: bins.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            logic_port: testkit::leaks::free_port(),
            scaler_port: testkit::leaks::free_port(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            started: 0,
        };
        stack.start_logic().await?;
        for _ in 0..plan.workers {
            stack.start_worker()?;
        }
        if plan.autoscaler.is_some() {
            stack.start_autoscaler().await?;
        }
        let expected = plan
            .autoscaler
            .as_ref()
            .map_or(plan.workers, |s| s.min as usize);
        stack
            .wait_consumers(expected, Duration::from_secs(60))
            .await?;
        Ok(stack)
    }

    pub fn logic_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.logic_port)
    }

    pub fn scaler_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.scaler_port)
    }

    fn database_url(&self, proxy: Option<&Proxy>) -> String {
        match proxy {
            Some(p) => format!("postgres://postgres@{}/{}", p.addr(), self.env.database),
            None => self.env.data.database_url.expose_secret().to_owned(),
        }
    }

    fn amqp_url(&self, proxy: Option<&Proxy>) -> String {
        match proxy {
            Some(p) => format!("amqp://guest:guest@{}/{}", p.addr(), self.env.vhost),
            None => self.env.data.amqp_url.expose_secret().to_owned(),
        }
    }

    fn common_env(&self) -> Vec<(&'static str, String)> {
        let d = &self.env.data;
        vec![
            ("REDIS_URL", d.redis_url.expose_secret().to_owned()),
            ("REDIS_KEY_PREFIX", d.redis_key_prefix.clone()),
            ("AMQP_DELIVERY_LIMIT", d.delivery_limit.to_string()),
            ("RABBITMQ_API_URL", RABBITMQ_API.to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
    }

    fn worker_env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.common_env();
        env.extend([
            ("DATABASE_URL", self.database_url(None)),
            ("DATABASE_MAX_CONNECTIONS", "5".to_owned()),
            ("AMQP_URL", self.amqp_url(self.worker_proxy.as_ref())),
            (
                "PAYMENT_LATENCY_MS",
                self.plan.payment_latency_ms.to_string(),
            ),
            (
                "PAYMENT_TIMEOUT_MS",
                (self.plan.payment_latency_ms + 5000).to_string(),
            ),
            ("PAYMENT_DECLINE_RATE", "0".to_owned()),
        ]);
        env
    }

    /// Starts logic (API and outbox relay) on its port and waits until it is ready.
    pub async fn start_logic(&mut self) -> anyhow::Result<()> {
        let mut env = self.common_env();
        env.extend([
            ("LISTEN_ADDR", format!("127.0.0.1:{}", self.logic_port)),
            ("DATABASE_URL", self.database_url(self.db_proxy.as_ref())),
            ("DATABASE_MAX_CONNECTIONS", "10".to_owned()),
            ("AMQP_URL", self.amqp_url(None)),
        ]);
        self.started += 1;
        let name = format!("logic-{}", self.started);
        let proc = Proc::start(
            &crate::bins::path(&self.bins, "logic")?,
            &name,
            &pairs(&env),
            &[],
            &self.log_dir,
        )?;
        if let Some(old) = self.logic.replace(proc) {
            self.retired.push(old);
        }
        let url = format!("{}/readyz", self.logic_url());
        let start = Instant::now();
        loop {
            if let Ok(res) = self.http.get(&url).send().await
                && res.status().is_success()
            {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(60),
                "logic was not ready within 60 s (log: {})",
                self.log_dir.join(&name).display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts one more worker process.
    pub fn start_worker(&mut self) -> anyhow::Result<()> {
        self.started += 1;
        let proc = Proc::start(
            &crate::bins::path(&self.bins, "worker")?,
            &format!("worker-{}", self.started),
            &pairs(&self.worker_env()),
            &[],
            &self.log_dir,
        )?;
        self.workers.push(proc);
        Ok(())
    }

    /// Starts the autoscaler (process backend); its workers inherit the worker settings.
    pub async fn start_autoscaler(&mut self) -> anyhow::Result<()> {
        let s = self
            .plan
            .autoscaler
            .clone()
            .context("this run has no autoscaler")?;
        let mut env = self.worker_env();
        env.extend([
            (
                "AUTOSCALER_LISTEN",
                format!("127.0.0.1:{}", self.scaler_port),
            ),
            (
                "WORKER_BIN",
                crate::bins::path(&self.bins, "worker")?
                    .display()
                    .to_string(),
            ),
            ("AUTOSCALER_MIN", s.min.to_string()),
            ("AUTOSCALER_MAX", s.max.to_string()),
            ("TARGET_BACKLOG", s.target_backlog.to_string()),
            ("POLL_INTERVAL", s.poll.to_owned()),
            ("SCALE_DOWN_WINDOW", s.scale_down_window.to_owned()),
            ("DRAIN_TIMEOUT", "30s".to_owned()),
        ]);
        self.started += 1;
        let proc = Proc::start(
            &crate::bins::path(&self.bins, "autoscaler")?,
            &format!("autoscaler-{}", self.started),
            &pairs(&env),
            &[],
            &self.log_dir,
        )?;
        if let Some(old) = self.autoscaler.replace(proc) {
            self.retired.push(old);
        }
        let start = Instant::now();
        while self.scaler_status().await.is_none() {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(60),
                "the autoscaler did not answer /status within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// The autoscaler's `/status`, when it answers.
    pub async fn scaler_status(&self) -> Option<serde_json::Value> {
        let res = self
            .http
            .get(format!("{}/status", self.scaler_url()))
            .send()
            .await
            .ok()?;
        res.error_for_status().ok()?.json().await.ok()
    }

    /// Consumers on the fulfilment queue, from the management API.
    pub async fn consumers(&self) -> Option<u64> {
        let res = self
            .http
            .get(format!(
                "{RABBITMQ_API}/api/queues/{}/{}",
                self.env.vhost,
                contracts::FULFIL_QUEUE
            ))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = res.error_for_status().ok()?.json().await.ok()?;
        body.get("consumers")?.as_u64()
    }

    /// Waits until the queue has exactly `n` consumers.
    pub async fn wait_consumers(&self, n: usize, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let seen = self.consumers().await;
            if seen == Some(n as u64) {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < limit,
                "the fulfilment queue had {seen:?} consumers after {limit:?}, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Takes worker `i` out of the running set (after a fault signalled it).
    pub fn retire_worker(&mut self, i: usize) -> Proc {
        self.workers.remove(i)
    }
}

impl Stack {
    /// Inserts the demo catalog (`logic seed`), for the load test's shoppers.
    pub async fn seed(&self, products: u64) -> anyhow::Result<()> {
        let env = pairs(&[("DATABASE_URL", self.database_url(None))]);
        let mut proc = Proc::start(
            &crate::bins::path(&self.bins, "logic")?,
            "seed",
            &env,
            &["seed", "--products", &products.to_string()],
            &self.log_dir,
        )?;
        let status = proc
            .exited_within(Duration::from_secs(120))
            .await
            .context("logic seed did not finish within 120 s")?;
        anyhow::ensure!(status.success(), "logic seed failed: {status}");
        Ok(())
    }

    /// Starts presentation in front of logic on `port` and waits until it is ready.
    pub async fn start_presentation(&mut self, port: u16) -> anyhow::Result<Proc> {
        let mut env = self.common_env();
        env.extend([
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("LOGIC_URL", self.logic_url()),
            (
                "COOKIE_KEY",
                format!("soak-cookie-key-{}-0123456789abcdef", self.env.id),
            ),
        ]);
        let proc = Proc::start(
            &crate::bins::path(&self.bins, "presentation")?,
            "presentation",
            &pairs(&env),
            &[],
            &self.log_dir,
        )?;
        let url = format!("http://127.0.0.1:{port}/readyz");
        let start = Instant::now();
        loop {
            if let Ok(res) = self.http.get(&url).send().await
                && res.status().is_success()
            {
                return Ok(proc);
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(60),
                "presentation was not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Messages ready and unacknowledged in a queue of this run's vhost (management API).
    pub async fn queue_depth(&self, queue: &str) -> Option<(u64, u64)> {
        let res = self
            .http
            .get(format!(
                "{RABBITMQ_API}/api/queues/{}/{queue}",
                self.env.vhost
            ))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = res.error_for_status().ok()?.json().await.ok()?;
        Some((
            body.get("messages_ready")?.as_u64()?,
            body.get("messages_unacknowledged")?.as_u64()?,
        ))
    }
}
