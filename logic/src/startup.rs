//! Building and running the logic application: pools, routes, the outbox relay, the
//! near cache's invalidation subscription, and a graceful stop on SIGINT/SIGTERM.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use data::cache::Cache;
use data::messaging::relay;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::LogicSettings;
use crate::auth::AdminToken;
use crate::error::ApiError;
use crate::extract::{BODY_LIMIT, query_error};
use crate::routes::{self, AppState};
use crate::stock::StockView;
use crate::telemetry::{self, Telemetry};

pub struct Application {
    server: Server,
    address: SocketAddr,
    stop: CancellationToken,
    /// Stops the relay and the near cache's subscription, after the server has drained.
    background: CancellationToken,
    relay: Option<JoinHandle<()>>,
    near_cache: JoinHandle<()>,
    pool: sqlx::PgPool,
    cache: Arc<Cache>,
    stock: Arc<StockView>,
}

impl Application {
    /// Migrates the database (waiting for Postgres for a while), binds the listener and
    /// starts the relay. Port 0 picks a free port (tests).
    pub async fn build(settings: LogicSettings) -> anyhow::Result<Self> {
        let stock_freshness = settings.stock.freshness()?;
        let data_settings = settings.data.clone().resolve_files()?;
        let admin = service::secrets::value_or_file(
            "ADMIN_TOKEN",
            settings.admin_token.as_ref(),
            settings.admin_token_file.as_deref(),
        )?;
        if admin.is_none() {
            tracing::warn!("no ADMIN_TOKEN configured: admin endpoints answer 401");
        }
        let pool = (|| data::store::db::migrate(&data_settings))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(8),
            )
            .notify(|err, wait| {
                tracing::warn!(
                    error = format!("{err:#}"),
                    ?wait,
                    "cannot migrate the database yet; retrying"
                )
            })
            .await
            .context("migrating the database")?;
        let cache = Arc::new(Cache::with_near_cache(&data_settings, &settings.near_cache));
        telemetry::prometheus();
        data::cache::near::describe_metrics();
        crate::stock::describe_metrics();
        let stock = Arc::new(StockView::new(pool.clone(), stock_freshness));
        let topic_policy = Arc::new(crate::topic_policy::TopicPolicy::load(
            settings.topic_policy_file.as_deref(),
        )?);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the HTTP client")?;
        let background = CancellationToken::new();
        apply_topic_permissions(
            &topic_policy,
            &http,
            &settings.rabbitmq_api_url,
            &data_settings,
            &background,
        )
        .await?;

        let state = web::Data::new(AppState {
            pool: pool.clone(),
            cache: cache.clone(),
            stock: stock.clone(),
            admin: AdminToken(admin),
            data: data_settings.clone(),
            rabbitmq_api_url: settings.rabbitmq_api_url.clone(),
            autoscaler_url: settings.autoscaler_url.clone(),
            http,
            dlq: tokio::sync::Mutex::new(()),
            topic_policy,
            subscription_retry_tiers: settings.subscription_max_attempts.saturating_sub(1) as usize,
            stream_waits: data::stream::reader::Waits {
                first: Duration::from_millis(settings.stream_read_wait_ms),
                idle: Duration::from_millis(settings.stream_read_idle_ms),
            },
        });
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let address = listener.local_addr()?;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                // Handlers take `Result<Json<_>>` and map failures with `json_error`.
                .app_data(web::JsonConfig::default().limit(BODY_LIMIT))
                .app_data(
                    web::QueryConfig::default().error_handler(|err, _| query_error(err).into()),
                )
                .app_data(
                    web::PathConfig::default()
                        .error_handler(|err, _| ApiError::InvalidQuery(err.to_string()).into()),
                )
                .wrap(Telemetry)
                .service(routes::health::healthz)
                .service(routes::health::readyz)
                .service(routes::health::metrics)
                .service(crate::openapi::openapi_json)
                .service(routes::products::categories)
                // One scope for the product routes: the router compares its prefix as a
                // string and runs a pattern's regex only on the rest (`/{sku}`), which
                // makes the busiest route's match several times cheaper.
                .service(
                    web::scope("/api/v1/products")
                        .service(routes::products::list)
                        .service(routes::products::get)
                        .service(routes::products::update),
                )
                .service(routes::orders::place)
                .service(routes::orders::get)
                .service(routes::ops::list)
                .service(routes::ops::redrive)
                .service(routes::ops::stats)
                .service(routes::analytics::analytics)
                .service(routes::stream_status::status)
                .service(routes::audit::list)
                .service(routes::inventory::adjust)
                .service(routes::inventory::history)
                .service(routes::inventory::partitions)
                .service(routes::subscriptions::create)
                .service(routes::subscriptions::list)
                .service(routes::subscriptions::get)
                .service(routes::subscriptions::remove)
                .service(routes::subscriptions::confirm)
                .service(routes::subscriptions::dead_letters)
                .service(routes::subscriptions::redrive)
                .service(routes::topics::publish)
                .service(routes::streams::shards)
                .service(routes::streams::records)
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        .workers(settings.http_workers.max(1))
        // Idle keep-alive connections are kept longer than presentation's client keeps
        // them in its pool (30 s), so the client never sends a request on a connection
        // this side is closing at that moment (actix's default is 5 s).
        .keep_alive(Duration::from_secs(75))
        .disable_signals()
        .shutdown_timeout(10)
        .run();

        let relay = settings.relay.outbox_relay.then(|| {
            tokio::spawn(relay::run(
                pool.clone(),
                data_settings.clone(),
                settings.relay.config("strata-logic-relay"),
                background.child_token(),
            ))
        });
        tokio::spawn(crate::fifo::declare_partitions(
            data_settings.clone(),
            background.child_token(),
        ));
        let near_cache = tokio::spawn(data::cache::invalidation::subscribe(
            cache.clone(),
            data_settings.clone(),
            background.child_token(),
        ));
        Ok(Application {
            server,
            address,
            stop: CancellationToken::new(),
            background,
            relay,
            near_cache,
            pool,
            cache,
            stock,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The read cache (Redis and the near cache in front of it).
    pub fn cache(&self) -> Arc<Cache> {
        self.cache.clone()
    }

    /// The stock view laid over cached products.
    pub fn stock(&self) -> Arc<StockView> {
        self.stock.clone()
    }

    /// Uses `stop` as the stop token (the one `main` wired to the signals).
    pub fn with_stop_token(mut self, stop: CancellationToken) -> Self {
        self.stop = stop;
        self
    }

    /// Cancelling this token stops the application as a signal would.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves until the stop token is cancelled: stops accepting, lets in-flight requests
    /// finish, then stops the relay (so the last orders' messages are published) and
    /// closes the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = service::http::serve_until_stopped(self.server, &self.stop).await;
        self.background.cancel();
        if let Some(relay) = self.relay {
            let _ = relay.await;
        }
        let _ = self.near_cache.await;
        self.pool.close().await;
        tracing::info!("logic stopped");
        served
    }
}

/// Sets the broker users' topic permissions before serving (the policy is enforced on the
/// broker from the first request); when the management API does not answer, a task keeps
/// trying in the background.
async fn apply_topic_permissions(
    policy: &Arc<crate::topic_policy::TopicPolicy>,
    http: &reqwest::Client,
    api: &str,
    data: &data::DataSettings,
    background: &CancellationToken,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    if !policy.principals.iter().any(|p| p.broker_user.is_some()) {
        return Ok(());
    }
    let account = data::messaging::management::AmqpAccount::of(data.amqp_url.expose_secret())?;
    if let Err(err) =
        crate::topic_policy::apply_broker_permissions(policy, http, api, &account).await
    {
        tracing::warn!(
            error = format!("{err:#}"),
            "broker topic permissions not set; retrying in the background"
        );
        tokio::spawn(crate::topic_policy::keep_applying(
            policy.clone(),
            http.clone(),
            api.to_owned(),
            account,
            background.child_token(),
        ));
    }
    Ok(())
}

async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    // A known path with another method is 405 with `Allow`; anything else is 404.
    let path = req.path();
    let allow = match path {
        "/healthz" | "/readyz" | "/metrics" | "/api/v1/openapi.json" | "/api/v1/categories" => {
            Some("GET")
        }
        "/api/v1/products" => Some("GET"),
        "/api/v1/orders" | "/api/v1/ops/dlq/redrive" | "/api/v1/inventory/adjustments" => {
            Some("POST")
        }
        "/api/v1/ops/dlq" | "/api/v1/ops/stats" | "/api/v1/audit" | "/api/v1/ops/fifo" => {
            Some("GET")
        }
        "/api/v1/ops/analytics" | "/api/v1/ops/stream" => Some("GET"),
        "/api/v1/streams/events/shards" | "/api/v1/streams/events/records" => Some("GET"),
        "/api/v1/subscriptions" => Some("GET, POST"),
        p if p.starts_with("/api/v1/subscriptions/") => {
            let rest: Vec<&str> = p["/api/v1/subscriptions/".len()..].split('/').collect();
            match rest[..] {
                [_] => Some("GET, DELETE"),
                [_, "confirm"] | [_, "dlq"] => Some("GET"),
                [_, "dlq", "redrive"] => Some("POST"),
                _ => None,
            }
        }
        p if p.starts_with("/api/v1/topics/")
            && p.ends_with("/messages")
            && p.matches('/').count() == 5 =>
        {
            Some("POST")
        }
        p if p.starts_with("/api/v1/products/")
            && !p["/api/v1/products/".len()..].contains('/') =>
        {
            Some("GET, PATCH")
        }
        p if p.starts_with("/api/v1/orders/") && !p["/api/v1/orders/".len()..].contains('/') => {
            Some("GET")
        }
        p if p.starts_with("/api/v1/inventory/")
            && p.ends_with("/adjustments")
            && p["/api/v1/inventory/".len()..p.len() - "/adjustments".len()]
                .split('/')
                .count()
                == 1 =>
        {
            Some("GET")
        }
        _ => None,
    };
    match allow {
        Some(allow) => {
            let mut res = ApiError::MethodNotAllowed.error_response();
            res.headers_mut().insert(
                actix_web::http::header::ALLOW,
                actix_web::http::header::HeaderValue::from_static(allow),
            );
            res
        }
        None => ApiError::NotFound.error_response(),
    }
}
