//! The supplier inventory feed: accepting adjustments (202, outbox to the sku's FIFO
//! partition), a sku's applied history, and the partitions' view for the ops console.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use contracts::{
    AdjustmentAccepted, AdjustmentOp, AdjustmentPage, AdjustmentRequest, AuditAction, ErrorBody,
    FifoPartition, FifoView, INVENTORY_DLQ, MAX_PER_PAGE, MAX_STOCK_LEVEL, partition_queue,
};
use data::messaging::fifo;
use data::messaging::management::AmqpAccount;
use data::store::audit::Caller;
use data::store::inventory::{self as store, AcceptError};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::error::ApiError;
use crate::routes::{AppState, audit};
use crate::telemetry::trace_context;
use crate::validation;

/// Accept a stock adjustment (admin). It is applied asynchronously, strictly after every
/// adjustment of the same sku accepted before it. The deduplication id is the
/// `Idempotency-Key` header, or the SHA-256 of the body when there is none: the same id
/// within five minutes answers with the first adjustment (`duplicate: true`) and queues
/// nothing.
#[utoipa::path(post, path = "/api/v1/inventory/adjustments", tag = "inventory",
    request_body = AdjustmentRequest,
    security(("admin_token" = [])),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false,
        min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "deduplication id, 1 to 255 printable ASCII characters")),
    responses(
        (status = 202, description = "accepted (or a duplicate of one accepted in the last five minutes)", body = AdjustmentAccepted),
        (status = 400, description = "malformed JSON, unknown or missing field, bad Idempotency-Key (`malformed_json`, `invalid_idempotency_key`)", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token (`unauthorized`)", body = ErrorBody),
        (status = 413, description = "body over 64 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "body is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "unknown sku, quantity out of bounds, stock would leave 0..=1e9 (`unknown_sku`, `invalid_adjustment`, `stock_out_of_range`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[post("/api/v1/inventory/adjustments")]
pub async fn adjust(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<web::Json<serde_json::Value>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let caller = audit::caller(&req, &state.admin);
    let result = accept(&req, &state, &caller, body).await;
    audit::settle(&state, &caller, AuditAction::InventoryAdjust, None, result).await
}

fn check(request: &AdjustmentRequest) -> Result<(), ApiError> {
    if !contracts::is_valid_sku(&request.sku) {
        return Err(ApiError::UnknownSku(request.sku.clone()));
    }
    let bounds = match request.op {
        AdjustmentOp::Set => 0..=MAX_STOCK_LEVEL,
        AdjustmentOp::Add => -MAX_STOCK_LEVEL..=MAX_STOCK_LEVEL,
    };
    if !bounds.contains(&request.quantity) {
        return Err(ApiError::InvalidAdjustment(format!(
            "quantity of `{}` must be between {} and {}",
            request.op.as_str(),
            bounds.start(),
            bounds.end()
        )));
    }
    if request.op == AdjustmentOp::Add && request.quantity == 0 {
        return Err(ApiError::InvalidAdjustment(
            "adding 0 changes nothing".into(),
        ));
    }
    let text = |value: &Option<String>, name: &str, max: usize| match value {
        Some(v) if v.chars().count() > max || v.contains('\0') => Err(ApiError::InvalidAdjustment(
            format!("{name} must be at most {max} characters, without NUL"),
        )),
        _ => Ok(()),
    };
    text(&request.reason, "reason", 200)?;
    text(&request.supplier_ref, "supplier_ref", 100)
}

async fn accept(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    body: Result<web::Json<serde_json::Value>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    state.admin.check(req)?;
    let key = match req.headers().get("Idempotency-Key") {
        Some(v) => Some(
            validation::idempotency_key(v.to_str().map_err(|_| {
                ApiError::InvalidIdempotencyKey("Idempotency-Key must be ASCII".into())
            })?)?
            .to_owned(),
        ),
        None => None,
    };
    let value = body.map_err(crate::extract::json_error)?.into_inner();
    let dedup_id = key.unwrap_or_else(|| store::content_dedup_id(&value));
    let request: AdjustmentRequest = crate::extract::json_object(Ok(web::Json(value)))?;
    check(&request)?;
    let traceparent = Some(trace_context(req).child().to_string());
    let accepted = store::accept(
        &state.pool,
        &request,
        &dedup_id,
        state.data.fifo_partitions,
        traceparent,
        caller,
    )
    .await
    .map_err(|e| match e {
        AcceptError::UnknownSku(sku) => ApiError::UnknownSku(sku),
        AcceptError::StockOutOfRange { sku, result } => ApiError::StockOutOfRange(format!(
            "the stock of {sku} would become {result} once the adjustments accepted so far \
             are applied; it must stay between 0 and {MAX_STOCK_LEVEL}"
        )),
        AcceptError::Database(err) => err.into(),
    })?;
    if !accepted.duplicate {
        metrics::counter!("strata_inventory_adjustments_accepted_total").increment(1);
    }
    Ok(HttpResponse::Accepted().json(AdjustmentAccepted {
        id: accepted.id,
        duplicate: accepted.duplicate,
        sequence: accepted.sequence,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// 1-based page number.
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    /// Adjustments per page, at most 100.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

/// The applied (and refused) adjustments of a sku, oldest first, paged like the product
/// list; `pending` counts those accepted and not applied yet.
#[utoipa::path(get, path = "/api/v1/inventory/{sku}/adjustments", tag = "inventory",
    params(("sku" = String, Path, description = "the product's sku"), HistoryParams),
    responses(
        (status = 200, description = "a page of the history", body = AdjustmentPage),
        (status = 400, description = "invalid query (`invalid_query`)", body = ErrorBody),
        (status = 404, description = "no such product (`product_not_found`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[get("/api/v1/inventory/{sku}/adjustments")]
pub async fn history(
    state: web::Data<AppState>,
    sku: web::Path<String>,
    params: web::Query<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    let sku = sku.into_inner();
    let page = params.page.unwrap_or(1);
    let per_page = params.per_page.unwrap_or(20);
    if !(1..=1_000_000).contains(&page) {
        return Err(ApiError::InvalidQuery(
            "page must be between 1 and 1000000".into(),
        ));
    }
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(ApiError::InvalidQuery(format!(
            "per_page must be between 1 and {MAX_PER_PAGE}"
        )));
    }
    if !contracts::is_valid_sku(&sku) {
        return Err(ApiError::ProductNotFound(sku));
    }
    let (items, total, pending) = store::history(&state.pool, &sku, page, per_page)
        .await?
        .ok_or_else(|| ApiError::ProductNotFound(sku.clone()))?;
    Ok(HttpResponse::Ok().json(AdjustmentPage {
        items,
        page,
        per_page,
        total,
        pending,
    }))
}

/// The FIFO partitions of the inventory feed (admin): depth, in flight, consumers, the
/// active consumer of each (its tag names the worker), and the dead-letter queue's depth,
/// from the RabbitMQ management API.
#[utoipa::path(get, path = "/api/v1/ops/fifo", tag = "ops",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "the partitions", body = FifoView),
        (status = 401, description = "missing or wrong admin token (`unauthorized`)", body = ErrorBody),
    ))]
#[get("/api/v1/ops/fifo")]
pub async fn partitions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.admin.check(&req)?;
    let account = AmqpAccount::of(state.data.amqp_url.expose_secret()).map_err(ApiError::from)?;
    let api = state.rabbitmq_api_url.as_str();
    let queues: Vec<String> = (0..state.data.fifo_partitions)
        .map(partition_queue)
        .chain([INVENTORY_DLQ.to_owned()])
        .collect();
    // Side by side: an unreachable API costs one timeout, not one per queue.
    let mut reads = tokio::task::JoinSet::new();
    for (i, queue) in queues.into_iter().enumerate() {
        let (http, api, account) = (state.http.clone(), api.to_owned(), account.clone());
        reads.spawn(async move { (i, fifo::read_queue(&http, &api, &account, &queue).await) });
    }
    let mut readings = vec![None; usize::from(state.data.fifo_partitions) + 1];
    while let Some(Ok((i, reading))) = reads.join_next().await {
        readings[i] = reading;
    }
    let broker_reachable = readings.iter().any(Option::is_some);
    let mut readings = readings.into_iter();
    let partitions = (0..state.data.fifo_partitions)
        .zip(readings.by_ref())
        .map(|(index, r)| {
            let r = r.unwrap_or_default();
            FifoPartition {
                index,
                queue: partition_queue(index),
                ready: r.ready,
                in_flight: r.in_flight,
                consumers: r.consumers,
                active_consumer: r.active_consumer,
            }
        })
        .collect();
    let dlq_depth = readings
        .next()
        .flatten()
        .and_then(|r| Some(r.ready? + r.in_flight.unwrap_or(0)));
    Ok(HttpResponse::Ok().json(FifoView {
        partitions,
        dlq_depth,
        broker_reachable,
    }))
}
