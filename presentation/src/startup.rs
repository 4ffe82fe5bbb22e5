//! Building and running the presentation app: the logic client, cookie keys, security
//! headers, routes, and a graceful stop when the stop token is cancelled.

use std::net::{SocketAddr, TcpListener};

use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;

use crate::Settings;
use crate::cookies::CookieKeys;
use crate::csrf::{self, FORM_LIMIT};
use crate::error::PageError;
use crate::logic_client::LogicClient;
use crate::ops::OpsAuth;
use crate::routes;
use crate::telemetry::{self, EdgeRootSpan};

/// Scripts, styles, fetches and forms only from this origin; no inline code; no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    logic: web::Data<LogicClient>,
    keys: web::Data<CookieKeys>,
    ops: web::Data<OpsAuth>,
    stop: CancellationToken,
}

fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "same-origin"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add((
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=(), payment=()",
        ))
        // Pages carry per-visitor tokens and carts; assets set their own caching.
        .add(("Cache-Control", "no-store"))
}

impl Application {
    /// Binds the listener (port 0 picks a free one). Logic need not be up yet: pages say
    /// so with a 503 until it is, and `/readyz` reports it.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.check_profile()?;
        let logic = web::Data::new(
            LogicClient::new(
                &settings.logic_url,
                settings.logic_timeout(),
                settings.logic_connect_timeout(),
            )?
            .keeping_products(settings.product_cache_entries),
        );
        let keys = web::Data::new(CookieKeys::from_settings(&settings)?);
        let ops = web::Data::new(OpsAuth::from_settings(&settings)?);
        telemetry::recorder();
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let address = listener.local_addr()?;
        Ok(Application {
            listener,
            address,
            logic,
            keys,
            ops,
            stop: CancellationToken::new(),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
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
    /// finish. The live order streams watch the same token, so they end first instead of
    /// holding the drain until its timeout.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            logic,
            keys,
            ops,
            stop,
            ..
        } = self;
        let ops_enabled = ops.enabled();
        // The server is made here, not in `build`, so that the streams get the token given
        // by `with_stop_token`.
        let stop_data = web::Data::new(stop.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(logic.clone())
                .app_data(keys.clone())
                .app_data(ops.clone())
                .app_data(stop_data.clone())
                .app_data(web::PayloadConfig::new(FORM_LIMIT))
                .app_data(
                    web::QueryConfig::default().error_handler(|_, _| PageError::BadRequest.into()),
                )
                .app_data(
                    web::PathConfig::default().error_handler(|_, _| PageError::NotFound.into()),
                )
                .wrap(from_fn(csrf::ensure_token))
                .wrap(security_headers())
                .wrap(from_fn(telemetry::record))
                .wrap(TracingLogger::<EdgeRootSpan>::new())
                .service(routes::health::healthz)
                .service(routes::health::readyz)
                .service(routes::health::metrics)
                .service(routes::assets::style)
                .service(routes::assets::script)
                .service(routes::assets::ops_style)
                .service(routes::assets::ops_script)
                .service(routes::assets::analytics_script)
                .service(routes::assets::charts_script)
                .service(routes::assets::uplot_script)
                .service(routes::assets::uplot_style)
                .service(routes::catalog::index)
                .service(routes::product::show)
                .service(routes::cart::show)
                .service(routes::cart::add)
                .service(routes::cart::update)
                .service(routes::cart::remove)
                .service(routes::checkout::show)
                .service(routes::checkout::place)
                .service(routes::orders::show)
                .service(routes::orders::events)
                .service(routes::subscriptions::confirm)
                // Without a password hash the console does not exist: /ops* is the 404.
                .configure(|cfg| {
                    if ops_enabled {
                        crate::ops::configure(cfg);
                    }
                })
                .default_service(web::to(routes::not_found))
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(10)
        .run();
        service::http::serve_until_stopped(server, &stop).await?;
        tracing::info!("presentation stopped");
        Ok(())
    }
}
