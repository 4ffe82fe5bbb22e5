//! Strata's apps started in-process on free ports, over a test's services. Each start
//! takes the settings a test asks for and a tweak applied last; each handle stops its app
//! when dropped, or through [`stop_token`](Logic::stop_token), or with `stop`, which also
//! waits for the app to finish.
//!
//! Every start sets up error-level logging first, unless a test did it another way before.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use data::cache::Cache;
use data::messaging::relay::RelayConfig;
use logic::LogicSettings;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::TestEnv;

/// A spawned task and the token that stops it; dropping it cancels the token.
struct Task<T> {
    stop: CancellationToken,
    running: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Task<T> {
    fn spawn(stop: CancellationToken, run: impl Future<Output = T> + Send + 'static) -> Self {
        Task {
            stop,
            running: Some(tokio::spawn(run)),
        }
    }

    async fn stop(mut self) -> T {
        self.stop.cancel();
        let running = self.running.take().expect("awaited only here");
        running.await.expect("the task ends without panicking")
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn logging() {
    service::logging::init("error");
}

/// A logic app.
pub struct Logic {
    /// `http://` and its address.
    pub base: String,
    /// Its read cache (Redis and the near cache in front of it).
    pub cache: Arc<Cache>,
    /// Its stock view, laid over the cached products.
    pub stock: Arc<logic::stock::StockView>,
    task: Task<anyhow::Result<()>>,
}

/// Starts logic on the test's services with `admin_token`, settings adjusted by `tweak`.
pub async fn logic(
    env: &TestEnv,
    admin_token: Option<&str>,
    tweak: impl FnOnce(&mut LogicSettings),
) -> Logic {
    logging();
    let mut settings = LogicSettings::with_data(env.data.clone());
    settings.admin_token = admin_token.map(|t| SecretString::from(t.to_owned()));
    tweak(&mut settings);
    let app = logic::Application::build(settings)
        .await
        .expect("building logic");
    Logic {
        base: format!("http://{}", app.address()),
        cache: app.cache(),
        stock: app.stock(),
        task: Task::spawn(app.stop_token(), app.run_until_stopped()),
    }
}

impl Logic {
    pub fn stop_token(&self) -> CancellationToken {
        self.task.stop.clone()
    }

    /// Stops it and waits until it has drained and stopped.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.task.stop().await
    }
}

/// An outbox relay, as logic runs it.
pub struct Relay {
    task: Task<()>,
}

/// Starts an outbox relay on the test's database. It polls every 100 ms, so a commit it
/// was not woken for is still published at once; `tweak` may change that.
pub fn relay(env: &TestEnv, tweak: impl FnOnce(&mut RelayConfig)) -> Relay {
    relay_on(env.pool.clone(), env, tweak)
}

/// [`relay`] given another pool of the test's database.
pub fn relay_on(pool: PgPool, env: &TestEnv, tweak: impl FnOnce(&mut RelayConfig)) -> Relay {
    logging();
    let mut config = RelayConfig {
        poll_interval: Duration::from_millis(100),
        ..RelayConfig::default()
    };
    tweak(&mut config);
    let stop = CancellationToken::new();
    Relay {
        task: Task::spawn(
            stop.clone(),
            data::messaging::relay::run(pool, env.data.clone(), config, stop),
        ),
    }
}

impl Relay {
    pub fn stop_token(&self) -> CancellationToken {
        self.task.stop.clone()
    }

    /// Stops it and waits until it has returned.
    pub async fn stop(self) {
        self.task.stop().await
    }
}

/// A fulfilment worker.
pub struct Worker {
    /// Where `/healthz`, `/readyz` and `/metrics` listen, when `health_listen` was set.
    pub health_addr: Option<SocketAddr>,
    /// What its `/readyz` answers.
    pub readiness: Arc<worker::health::Readiness>,
    task: Task<anyhow::Result<()>>,
}

/// Starts a worker on the test's services, settings adjusted by `tweak`.
pub fn worker(env: &TestEnv, tweak: impl FnOnce(&mut worker::WorkerSettings)) -> Worker {
    logging();
    let mut settings = worker::WorkerSettings::with_data(env.data.clone());
    tweak(&mut settings);
    let app = worker::Application::build(settings).expect("building a worker");
    Worker {
        health_addr: app.health_addr(),
        readiness: app.readiness(),
        task: Task::spawn(app.stop_token(), app.run_until_stopped()),
    }
}

impl Worker {
    pub fn stop_token(&self) -> CancellationToken {
        self.task.stop.clone()
    }

    /// Stops it and waits until it has finished what was in flight.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.task.stop().await
    }
}

/// An instance of the stream's analytics application (`worker analytics`).
pub struct Analytics {
    task: Task<anyhow::Result<()>>,
}

/// Starts an analytics instance on the test's services, reading every shard from the
/// oldest record kept, with a one-minute lateness and a short lease.
pub fn analytics(env: &TestEnv) -> Analytics {
    use worker::streams::analytics::{APPLICATION, Analytics as Handler};
    logging();
    let config = data::stream::consumer::ConsumerConfig {
        lease_duration: Duration::from_secs(3),
        renew_interval: Duration::from_millis(500),
        ..data::stream::consumer::ConsumerConfig::new(APPLICATION, env.data.stream.stream_shards)
    };
    let stop = CancellationToken::new();
    Analytics {
        task: Task::spawn(
            stop.clone(),
            data::stream::consumer::run(
                env.pool.clone(),
                env.data.amqp_url().to_owned(),
                config,
                Arc::new(Handler::new(APPLICATION, Duration::from_secs(60))),
                stop,
            ),
        ),
    }
}

impl Analytics {
    /// Stops it and waits until it has given its leases back.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.task.stop().await
    }
}

/// A presentation app.
pub struct Presentation {
    /// `http://` and its address.
    pub base: String,
    task: Task<anyhow::Result<()>>,
}

/// Starts presentation in front of `logic_url`, settings adjusted by `tweak`.
pub async fn presentation(
    logic_url: &str,
    tweak: impl FnOnce(&mut presentation::Settings),
) -> Presentation {
    logging();
    let mut settings = presentation::Settings::for_logic(logic_url);
    tweak(&mut settings);
    let app = presentation::Application::build(settings)
        .await
        .expect("building presentation");
    Presentation {
        base: format!("http://{}", app.address()),
        task: Task::spawn(app.stop_token(), app.run_until_stopped()),
    }
}

impl Presentation {
    pub fn stop_token(&self) -> CancellationToken {
        self.task.stop.clone()
    }

    /// Stops it and waits until it has drained and stopped.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.task.stop().await
    }
}
