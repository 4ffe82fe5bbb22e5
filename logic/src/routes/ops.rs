//! Operations endpoints (admin): the dead-letter queue and its redrive, the statistics of
//! the ops console.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use contracts::{
    AuditAction, CacheCounts, DeadLetterList, ErrorBody, FunctionScale, OpsStats, OrderCounts,
    QueueStats, RedriveRequest, RedriveResult,
};
use data::store::audit::Record;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::routes::{AppState, audit};

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
    let _dlq = state.dlq.lock().await;
    let (total, items) = data::messaging::dlq::peek(&state.data, limit)
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
    let caller = audit::caller(&req, &state.admin);
    let action = AuditAction::DlqRedrive;
    let target = Some(format!("queue:{}", contracts::FULFIL_DLQ));
    let limit = match redrive_limit(&req, &state, &body) {
        Ok(limit) => limit,
        Err(err) => return audit::settle(&state, &caller, action, target, Err(err)).await,
    };
    // The redrive touches only the broker: its entry is written right after, with how
    // many messages moved, whether it finished or not.
    let dlq = state.dlq.lock().await;
    let redriven = data::messaging::dlq::redrive(&state.data, limit).await;
    drop(dlq);
    match redriven {
        Ok((redriven, remaining)) => {
            tracing::info!(redriven, remaining, "dead-letter queue redriven");
            let detail = json!({"limit": limit, "redriven": redriven, "remaining": remaining});
            let entry = Record::success(&caller, action, target, detail);
            if let Err(e) = data::store::audit::record_alone(&state.pool, &entry).await {
                // The messages moved; answering an error would invite a second redrive.
                tracing::warn!(error = %e, redriven, "the audit entry of a redrive could not be written");
            }
            Ok(HttpResponse::Ok().json(RedriveResult {
                redriven,
                remaining,
            }))
        }
        Err(failed) => {
            let detail = json!({"limit": limit, "redriven": failed.moved});
            let err = broker_error(failed.source);
            audit::record_failure(&state, &caller, action, target, &err, detail).await;
            Err(err)
        }
    }
}

/// Checks the token and reads the optional body: how many messages to move.
fn redrive_limit(req: &HttpRequest, state: &AppState, body: &[u8]) -> Result<u32, ApiError> {
    state.admin.check(req)?;
    let request: RedriveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RedriveRequest::default()
    } else {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
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
    Ok(limit as u32)
}

/// One reading of the system for the ops console: work queue (ready and unacked), DLQ
/// depth, orders by status, this process's cache hits and misses, outbox backlog, and the
/// autoscaler's status when `AUTOSCALER_URL` is set. Parts that cannot be read are null.
#[utoipa::path(get, path = "/api/v1/ops/stats", tag = "ops",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "the reading", body = OpsStats),
        (status = 401, description = "missing or wrong admin token (`unauthorized`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[get("/api/v1/ops/stats")]
pub async fn stats(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.admin.check(&req)?;
    let api = state.rabbitmq_api_url.as_str();
    let queue = async {
        data::messaging::management::queue_reading(&state.data, api, contracts::FULFIL_QUEUE)
            .await
            .ok()
            .map(|r| QueueStats {
                ready: r.ready,
                unacked: r.unacked,
                consumers: r.consumers,
            })
    };
    // Counted over AMQP, not read from the management API: its figures are up to a
    // statistics interval old, and the DLQ has no consumer whose unacked messages the
    // passive declare would miss (peeks and redrives hold the lock).
    let dlq = async {
        let _dlq = state.dlq.lock().await;
        data::messaging::dlq::depth(&state.data)
            .await
            .ok()
            .map(u64::from)
    };
    let autoscaler = async {
        let base = state.autoscaler_url.as_deref()?;
        let res = state
            .http
            .get(format!("{}/status", base.trim_end_matches('/')))
            .send()
            .await
            .ok()?;
        res.json::<serde_json::Value>().await.ok()
    };
    let orders = async {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT step, count(*) FROM orders GROUP BY step")
                .fetch_all(&state.pool)
                .await?;
        let count = |s: &str| rows.iter().find(|r| r.0 == s).map_or(0, |r| r.1);
        // `pending` keeps its meaning for older readers: every order not final yet.
        Ok::<_, sqlx::Error>(OrderCounts {
            pending: count("pending") + count("reserved") + count("paid"),
            reserved: count("reserved"),
            paid: count("paid"),
            fulfilled: count("fulfilled"),
            rejected: count("rejected"),
        })
    };
    let functions = futures_util::future::join_all(contracts::FUNCTIONS.iter().map(|name| async {
        let queue = contracts::function_queue_name(name);
        let reading = data::messaging::management::queue_reading(&state.data, api, &queue)
            .await
            .ok();
        FunctionScale {
            name: (*name).to_owned(),
            consumers: reading.as_ref().map(|r| r.consumers),
            ready: reading.map(|r| r.ready),
            queue,
        }
    }));
    let (queue, dlq_depth, autoscaler, orders, backlog, functions) = tokio::join!(
        queue,
        dlq,
        autoscaler,
        orders,
        data::messaging::outbox::backlog(&state.pool),
        functions
    );
    let (hits, misses) = state.cache.counts();
    Ok(HttpResponse::Ok().json(OpsStats {
        at: chrono::Utc::now(),
        queue,
        dlq_depth,
        orders: orders?,
        cache: CacheCounts { hits, misses },
        outbox_backlog: backlog?,
        autoscaler,
        functions,
    }))
}
