//! Operations endpoints (admin): the dead-letter queue and its redrive.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use contracts::{DeadLetterList, ErrorBody, RedriveRequest, RedriveResult};
use serde::Deserialize;

use crate::error::ApiError;
use crate::routes::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DlqParams {
    /// How many messages to show (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

fn broker_error(err: anyhow::Error) -> ApiError {
    ApiError::Unavailable(err.context("RabbitMQ"))
}

/// Messages in `orders.fulfil.dlq`, oldest first, without consuming them.
#[utoipa::path(get, path = "/api/v1/ops/dlq", tag = "ops", params(DlqParams),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "the dead letters", body = DeadLetterList),
        (status = 400, description = "invalid query (`invalid_query`)", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token (`unauthorized`)", body = ErrorBody),
        (status = 503, description = "RabbitMQ unreachable", body = ErrorBody),
    ))]
#[get("/api/v1/ops/dlq")]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: web::Query<DlqParams>,
) -> Result<HttpResponse, ApiError> {
    state.admin.check(&req)?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::InvalidQuery(
            "limit must be between 1 and 500".into(),
        ));
    }
    let (total, items) = data::dlq::peek(&state.data, limit)
        .await
        .map_err(broker_error)?;
    Ok(HttpResponse::Ok().json(DeadLetterList { total, items }))
}

/// Move dead letters back to `orders.fulfil` (message ids kept, so an order that was
/// fulfilled meanwhile is not fulfilled twice).
#[utoipa::path(post, path = "/api/v1/ops/dlq/redrive", tag = "ops",
    request_body(content = Option<RedriveRequest>, description = "optional; `{}` or no body moves all"),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "how many moved", body = RedriveResult),
        (status = 400, description = "malformed body (`malformed_json`)", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token (`unauthorized`)", body = ErrorBody),
        (status = 422, description = "limit out of range (`invalid_redrive`)", body = ErrorBody),
        (status = 503, description = "RabbitMQ unreachable", body = ErrorBody),
    ))]
#[post("/api/v1/ops/dlq/redrive")]
pub async fn redrive(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    state.admin.check(&req)?;
    let request: RedriveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RedriveRequest::default()
    } else {
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        match value {
            serde_json::Value::Null => RedriveRequest::default(),
            serde_json::Value::Object(_) => {
                serde_json::from_value(value).map_err(|e| ApiError::MalformedJson(e.to_string()))?
            }
            _ => {
                return Err(ApiError::MalformedJson(
                    "the body must be a JSON object".into(),
                ));
            }
        }
    };
    let limit = request.limit.unwrap_or(10_000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::InvalidRedrive(
            "limit must be between 1 and 10000".into(),
        ));
    }
    let (redriven, remaining) = data::dlq::redrive(&state.data, limit as u32)
        .await
        .map_err(broker_error)?;
    tracing::info!(redriven, remaining, "dead-letter queue redriven");
    Ok(HttpResponse::Ok().json(RedriveResult {
        redriven,
        remaining,
    }))
}
