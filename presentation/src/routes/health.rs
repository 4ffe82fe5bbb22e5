//! Liveness, readiness (logic answers) and metrics.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, get, web};
use contracts::Readiness;

use crate::logic_client::LogicClient;
use crate::telemetry::{recorder, trace_context};

#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Ready when logic's own `/readyz` answers 200.
#[get("/readyz")]
pub async fn readyz(req: HttpRequest, logic: web::Data<LogicClient>) -> HttpResponse {
    let ready = logic.ready(&trace_context(&req)).await;
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" }.to_owned(),
        checks: BTreeMap::from([(
            "logic".to_owned(),
            if ready { "ok" } else { "unavailable" }.to_owned(),
        )]),
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[get("/metrics")]
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(service::metrics::CONTENT_TYPE)
        .body(recorder().handle().render())
}
