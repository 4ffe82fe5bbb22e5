//! `GET /api/v1/subscriptions/{id}/confirm`: the confirmation URL the worker sends to a
//! new http(s) or email subscriber (`<PUBLIC_API_URL>/api/v1/subscriptions/<id>/confirm?
//! token=...`). Logic serves it on the private network only, so the public tier passes
//! this one route through; nothing else of logic's API is exposed here. The answer is
//! logic's status, with logic's body on success and its error code otherwise, as JSON
//! (subscribers are programs as often as people clicking a link in a mail).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, web};
use contracts::{ErrorBody, ErrorDetail};
use serde::Deserialize;

use crate::logic_client::{LogicClient, LogicError};
use crate::telemetry::trace_context;

#[derive(Debug, Deserialize)]
pub struct ConfirmParams {
    /// Absent, logic refuses the request (`invalid_query`).
    token: Option<String>,
}

#[get("/api/v1/subscriptions/{id}/confirm")]
pub async fn confirm(
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    id: web::Path<String>,
    params: web::Query<ConfirmParams>,
) -> HttpResponse {
    let ctx = trace_context(&req);
    match logic
        .confirm_subscription(&ctx, &id, params.token.as_deref())
        .await
    {
        Ok(confirmed) => HttpResponse::Ok().json(serde_json::json!({
            "id": confirmed.id,
            "status": confirmed.status,
            "confirmed_at": confirmed.confirmed_at,
            "message": "The subscription is confirmed: its deliveries start with the next event.",
        })),
        Err(err) => refused(err),
    }
}

/// Logic's refusal as `{"error":{"code","message"}}` with logic's status; an outage as 503.
fn refused(err: LogicError) -> HttpResponse {
    let (status, code, message) = match err {
        LogicError::NotFound => (
            StatusCode::NOT_FOUND,
            "subscription_not_found".to_owned(),
            "There is no such subscription.",
        ),
        LogicError::Rejected { status, code } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            "The subscription could not be confirmed with this link.",
        ),
        LogicError::Unavailable(err) => {
            tracing::warn!(error = format!("{err:#}"), "logic unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable".to_owned(),
                "The service is unavailable; please try the link again in a moment.",
            )
        }
    };
    HttpResponse::build(status).json(ErrorBody {
        error: ErrorDetail {
            code,
            message: message.to_owned(),
        },
    })
}
