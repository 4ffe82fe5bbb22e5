//! Placing orders (202 + outbox) and reading them.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use contracts::{AuditAction, ErrorBody, Order, PlaceOrder};
use data::store::audit::Caller;
use data::store::orders::{PlaceOrderError, Placement};
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::{AppState, audit};
use crate::telemetry::trace_context;
use crate::validation;

/// Place an order. It is accepted (202, status `pending`) and fulfilled asynchronously by a
/// worker; poll `Location` for the outcome. With an `Idempotency-Key`, a retry of the same
/// request returns the same order and creates nothing.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders",
    request_body = PlaceOrder,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false,
        min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "client-chosen key, 1 to 255 printable ASCII characters")),
    responses(
        (status = 202, description = "accepted; fulfilment follows", body = Order,
            headers(("Location" = String, description = "URL of the order"))),
        (status = 400, description = "malformed JSON or Idempotency-Key (`malformed_json`, `invalid_idempotency_key`)", body = ErrorBody),
        (status = 413, description = "body over 64 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "body is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "invalid order (`invalid_email`, `invalid_quantity`, `no_lines`, `too_many_lines`, `duplicate_sku`, `unknown_sku`, `idempotency_key_reused`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[post("/api/v1/orders")]
pub async fn place(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<web::Json<serde_json::Value>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let caller = audit::caller(&req, &state.admin);
    let result = accept(&req, &state, &caller, body).await;
    audit::settle(&state, &caller, AuditAction::OrderPlace, None, result).await
}

async fn accept(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    body: Result<web::Json<serde_json::Value>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let key = match req.headers().get("Idempotency-Key") {
        Some(v) => Some(validation::idempotency_key(v.to_str().map_err(|_| {
            ApiError::InvalidIdempotencyKey("Idempotency-Key must be ASCII".into())
        })?)?),
        None => None,
    };
    let order = validation::order(crate::extract::json_object::<PlaceOrder>(body)?)?;
    let traceparent = Some(trace_context(req).child().to_string());
    let (order, placement) =
        data::store::orders::place_recorded(&state.pool, &order, key, traceparent, caller)
            .await
            .map_err(|e| match e {
                PlaceOrderError::UnknownSku(sku) => ApiError::UnknownSku(sku),
                PlaceOrderError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
                PlaceOrderError::Database(err) => err.into(),
            })?;
    if placement == Placement::Created {
        metrics::counter!("strata_orders_placed_total").increment(1);
        tracing::info!(order.id = %order.id, lines = order.lines.len(), "order accepted");
    }
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/v1/orders/{}", order.id)))
        .insert_header((
            "Idempotent-Replayed",
            if placement == Placement::Replayed {
                "true"
            } else {
                "false"
            },
        ))
        .json(order))
}

/// One order with its status.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "the order's id (a UUID)")),
    responses(
        (status = 200, description = "the order", body = Order),
        (status = 400, description = "not a UUID (`invalid_order_id`)", body = ErrorBody),
        (status = 404, description = "no such order (`order_not_found`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[get("/api/v1/orders/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = id.into_inner();
    let id = Uuid::parse_str(&raw).map_err(|_| ApiError::InvalidOrderId(raw.clone()))?;
    let order: Order = data::store::orders::get(&state.pool, id)
        .await?
        .ok_or(ApiError::OrderNotFound(raw))?;
    Ok(HttpResponse::Ok().json(order))
}
