//! Liveness, readiness and metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use contracts::Readiness;

use crate::routes::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: Postgres and RabbitMQ answer. Redis is not required (reads fall back).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready", body = Readiness),
    (status = 503, description = "a dependency failed; `checks` names it", body = Readiness),
))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let timeout = Duration::from_secs(2);
    let postgres = async {
        match tokio::time::timeout(timeout, data::store::db::ping(&state.pool)).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(_)) => "unreachable".to_owned(),
            Err(_) => "timeout".to_owned(),
        }
    };
    let rabbitmq = async {
        let connect =
            data::messaging::broker::connect(state.data.amqp_url(), "strata-logic-readyz");
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(conn)) => {
                let _ = conn.close(200, "readiness probe".into()).await;
                "ok".to_owned()
            }
            Ok(Err(_)) => "unreachable".to_owned(),
            Err(_) => "timeout".to_owned(),
        }
    };
    let (postgres, rabbitmq) = tokio::join!(postgres, rabbitmq);
    let redis = if state.cache.ping().await {
        "ok"
    } else {
        "unreachable (reads served from Postgres)"
    };
    let ready = postgres == "ok" && rabbitmq == "ok";
    let checks = BTreeMap::from([
        ("postgres".to_owned(), postgres),
        ("rabbitmq".to_owned(), rabbitmq),
        ("redis".to_owned(), redis.to_owned()),
    ]);
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" }.to_owned(),
        checks,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
))]
#[get("/metrics")]
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::prometheus().render())
}
