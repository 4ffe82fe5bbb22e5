//! The audit trail over HTTP: who the caller of a mutating call is, recording the calls that
//! did not succeed (successful changes record themselves inside their own transaction), and
//! `GET /api/v1/audit` (admin) to read the trail.

use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, Utc};
use contracts::{AuditAction, AuditOutcome, AuditPage, ErrorBody, MAX_PER_PAGE};
use data::store::audit::{AuditQuery, Caller, Record};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::AdminToken;
use crate::error::ApiError;
use crate::routes::AppState;
use crate::telemetry::{request_id, trace_context};

/// The caller of this request as the audit trail names it.
pub fn caller(req: &HttpRequest, admin: &AdminToken) -> Caller {
    Caller {
        actor: admin.actor(req).to_owned(),
        request_id: request_id(req),
        trace_id: Some(trace_context(req).trace_id_hex()),
    }
}

/// Records a call that ended with `err`, in a transaction of its own (the change's own
/// transaction, if any, was rolled back). Losing this entry is logged, not answered: the
/// caller's error stands.
pub async fn record_failure(
    state: &AppState,
    caller: &Caller,
    action: AuditAction,
    target: Option<String>,
    err: &ApiError,
    detail: serde_json::Value,
) {
    let entry = Record {
        caller,
        action,
        target,
        outcome: err.audit_outcome(),
        error_code: Some(err.code()),
        detail,
    };
    if let Err(e) = data::store::audit::record_alone(&state.pool, &entry).await {
        tracing::warn!(
            error = %e,
            action = action.as_str(),
            "the audit entry of a call that did not succeed could not be written"
        );
    }
}

/// Passes a handler's result through, recording it first when it is an error.
pub async fn settle(
    state: &AppState,
    caller: &Caller,
    action: AuditAction,
    target: Option<String>,
    result: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    if let Err(err) = &result {
        record_failure(state, caller, action, target, err, serde_json::json!({})).await;
    }
    result
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only calls of this kind.
    #[param(value_type = Option<AuditAction>)]
    pub action: Option<String>,
    /// Only calls by this actor (`admin`, `anonymous`).
    #[param(pattern = "^[^\\u0000]*$", max_length = 100)]
    pub actor: Option<String>,
    /// Only calls on this target, exactly (e.g. `product:KIT-00001`).
    #[param(pattern = "^[^\\u0000]*$", max_length = 200)]
    pub target: Option<String>,
    /// Only calls that ended this way.
    #[param(value_type = Option<AuditOutcome>)]
    pub outcome: Option<String>,
    /// Only the call with this request id (`X-Request-Id`).
    #[param(value_type = Option<Uuid>, format = Uuid)]
    pub request_id: Option<String>,
    /// Only calls of this trace (32 lower-case hex digits).
    #[param(pattern = "^[0-9a-f]{32}$")]
    pub trace_id: Option<String>,
    /// Entries at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Entries before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// 1-based page number.
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    /// Entries per page, at most 100.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidQuery(message.into())
}

/// An RFC 3339 date-time, exactly (chrono would also take a space for the `T`).
fn time(name: &str, raw: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|raw| {
        let bad = || {
            invalid(format!(
                "{name} must be an RFC 3339 date-time like 2026-01-31T12:00:00Z"
            ))
        };
        if !matches!(raw.as_bytes().get(10), Some(b'T' | b't')) {
            return Err(bad());
        }
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| bad())
    })
    .transpose()
}

/// Free-text filters: trimmed, empty means absent, no NUL, at most `max` characters. The
/// other filters have a fixed shape and are taken exactly as given.
fn text(name: &str, raw: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.contains('\0') {
        return Err(invalid(format!("{name} must not contain NUL")));
    }
    if raw.chars().count() > max {
        return Err(invalid(format!("{name} must be at most {max} characters")));
    }
    let trimmed = raw.trim();
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

impl AuditParams {
    fn into_query(self) -> Result<AuditQuery, ApiError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(50);
        if !(1..=1_000_000).contains(&page) {
            return Err(invalid("page must be between 1 and 1000000"));
        }
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(invalid(format!(
                "per_page must be between 1 and {MAX_PER_PAGE}"
            )));
        }
        let action = match self.action {
            Some(a) => Some(AuditAction::parse(&a).ok_or_else(|| {
                let known: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
                invalid(format!("action must be one of {}", known.join(", ")))
            })?),
            None => None,
        };
        let outcome = match self.outcome {
            Some(o) => Some(AuditOutcome::parse(&o).ok_or_else(|| {
                let known: Vec<&str> = AuditOutcome::ALL.iter().map(|o| o.as_str()).collect();
                invalid(format!("outcome must be one of {}", known.join(", ")))
            })?),
            None => None,
        };
        // The hyphenated form only: the uuid crate would also read braces, URNs and bare hex.
        let request_id = match self.request_id {
            Some(id) => Some(
                Uuid::try_parse(&id)
                    .ok()
                    .filter(|_| id.len() == 36)
                    .ok_or_else(|| {
                        invalid(
                            "request_id must be a UUID like 01234567-89ab-cdef-0123-456789abcdef",
                        )
                    })?,
            ),
            None => None,
        };
        let trace_id = self.trace_id;
        if let Some(t) = &trace_id
            && !(t.len() == 32 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err(invalid("trace_id must be 32 lower-case hex digits"));
        }
        Ok(AuditQuery {
            action,
            actor: text("actor", self.actor, 100)?,
            target: text("target", self.target, 200)?,
            outcome,
            request_id,
            trace_id,
            since: time("since", self.since)?,
            until: time("until", self.until)?,
            page,
            per_page,
        })
    }
}

/// The audit trail, newest first: every product change, order placement and dead-letter
/// redrive, whether it succeeded or not, with its actor, target, outcome, request id and
/// trace id. Filters combine (all must match).
#[utoipa::path(get, path = "/api/v1/audit", tag = "ops", params(AuditParams),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "a page of entries, newest first", body = AuditPage),
        (status = 400, description = "invalid filter or page (`invalid_query`)", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token (`unauthorized`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[get("/api/v1/audit")]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    state.admin.check(&req)?;
    let query = params.into_inner().into_query()?;
    let page = data::store::audit::list(&state.pool, &query).await?;
    Ok(HttpResponse::Ok().json(page))
}
