use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use autoscaler::AutoscalerSettings;
use autoscaler::config::BackendKind;
use contracts::{OrderLineRequest, PlaceOrder};
use secrecy::ExposeSecret;
use testkit::TestEnv;
use testkit::apps;
use uuid::Uuid;

/// A test's services plus an outbox relay, so placed orders reach the broker.
pub struct Rig {
    // Fields drop in order: the relay stops before the services are removed.
    relay: Option<apps::Relay>,
    pub env: TestEnv,
}

pub fn rabbitmq_api() -> String {
    std::env::var("TEST_RABBITMQ_API").unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned())
}

impl Rig {
    /// Services and a running relay.
    pub async fn new() -> Rig {
        let mut rig = Rig::without_relay().await;
        rig.start_relay();
        rig
    }

    /// Services only: placed orders wait in the outbox until `start_relay` (a burst).
    pub async fn without_relay() -> Rig {
        service::logging::init("warn,autoscaler=info");
        let env = TestEnv::new().await;
        Rig { relay: None, env }
    }

    pub fn start_relay(&mut self) {
        self.relay = Some(apps::relay(&self.env, |_| {}));
    }

    /// Places `n` one-unit orders of `sku` through the data tier (order + outbox row).
    pub async fn place_many(&self, sku: &str, n: usize) -> Vec<Uuid> {
        self.place_each(&vec![sku.to_owned(); n]).await
    }

    /// Places a one-unit order of each sku (order + outbox row), eight at a time.
    pub async fn place_each(&self, skus: &[String]) -> Vec<Uuid> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut ids = Vec::with_capacity(skus.len());
        for (i, sku) in skus.iter().enumerate() {
            if i >= 8
                && let Some(done) = tasks.join_next().await
            {
                ids.push(done.expect("placing an order"));
            }
            let pool = self.env.pool.clone();
            let sku = sku.clone();
            tasks.spawn(async move {
                let order = PlaceOrder {
                    email: "scale@example.com".to_owned(),
                    lines: vec![OrderLineRequest { sku, quantity: 1 }],
                };
                let (order, _) = data::store::orders::place(&pool, &order, None, None)
                    .await
                    .expect("placing an order");
                order.id
            });
        }
        while let Some(done) = tasks.join_next().await {
            ids.push(done.expect("placing an order"));
        }
        ids
    }

    /// Autoscaler settings pointed at this test's vhost, on a free port.
    pub fn settings(&self, backend: BackendKind) -> AutoscalerSettings {
        let mut s = AutoscalerSettings::defaults();
        s.backend = backend;
        s.listen = "127.0.0.1:0".parse().expect("address");
        s.amqp_url = self.env.data.amqp_url.clone();
        s.amqp_url_file = None;
        s.rabbitmq_api_url = rabbitmq_api();
        s.queue = contracts::FULFIL_QUEUE.to_owned();
        s
    }

    /// The environment a worker process needs to work in this test's database and vhost.
    pub fn worker_env(&self, payment_latency_ms: u64) -> Vec<(String, String)> {
        let d = &self.env.data;
        [
            ("DATABASE_URL", d.database_url.expose_secret().to_owned()),
            ("DATABASE_MAX_CONNECTIONS", "3".to_owned()),
            ("AMQP_URL", d.amqp_url.expose_secret().to_owned()),
            ("AMQP_DELIVERY_LIMIT", d.delivery_limit.to_string()),
            ("REDIS_URL", d.redis_url.expose_secret().to_owned()),
            ("REDIS_KEY_PREFIX", d.redis_key_prefix.clone()),
            ("PAYMENT_LATENCY_MS", payment_latency_ms.to_string()),
            // A payment call is cut at this bound: keep it well above the latency.
            (
                "PAYMENT_TIMEOUT_MS",
                (payment_latency_ms + 5000).max(5000).to_string(),
            ),
            ("PAYMENT_DECLINE_RATE", "0".to_owned()),
            ("WORKER_PREFETCH", "1".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.env.pool)
            .await
            .expect("counting")
    }
}

/// The real `worker` binary, beside this test's directory (`target/<profile>/worker`).
/// `cargo test --workspace` builds it before any test runs (the worker crate's own
/// integration tests need it); `cargo test -p autoscaler` does not, so a missing binary
/// is built here.
pub fn worker_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps/<test>");
        let bin = profile_dir.join("worker");
        if !bin.is_file() {
            let mut cargo = std::process::Command::new(env!("CARGO"));
            cargo
                .args(["build", "-p", "worker", "--bin", "worker"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => {}
                Some("release") => {
                    cargo.arg("--release");
                }
                Some(other) => {
                    cargo.args(["--profile", other]);
                }
            }
            let status = cargo.status().expect("running cargo build -p worker");
            assert!(status.success(), "cargo build -p worker failed");
        }
        assert!(bin.is_file(), "no worker binary at {}", bin.display());
        bin
    })
    .clone()
}

/// A fresh directory for files of one test.
pub fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("autoscaler")
        .join(Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Writes an executable shell script.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("writing a script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// GET a JSON document.
pub async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url)
        .await
        .expect("GET")
        .error_for_status()
        .expect("2xx")
        .json()
        .await
        .expect("JSON")
}

/// The management API's object for a queue of the rig's vhost (statistics included).
pub async fn queue_stats(rig: &Rig, queue: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!(
            "{}/api/queues/{}/{queue}",
            rabbitmq_api(),
            rig.env.vhost
        ))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}
