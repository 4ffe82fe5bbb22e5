//! The audit trail in Postgres: who called which mutating operation on what, how it ended,
//! under which request and trace. A successful change writes its entry inside its own
//! transaction ([`record`]), so the entry and the change commit or vanish together; a call
//! that was refused or failed is written on its own afterwards ([`record_alone`]).

use chrono::{DateTime, Utc};
use contracts::{AuditAction, AuditEntry, AuditOutcome, AuditPage};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// Who made a call and under which request: taken once per request by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `admin` or `anonymous`.
    pub actor: String,
    pub request_id: Option<Uuid>,
    /// 32 lower-case hex digits.
    pub trace_id: Option<String>,
}

/// One entry to write.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub caller: &'a Caller,
    pub action: AuditAction,
    pub target: Option<String>,
    pub outcome: AuditOutcome,
    /// The API error code; must be `None` exactly when the outcome is a success.
    pub error_code: Option<&'a str>,
    /// A JSON object saying what changed.
    pub detail: serde_json::Value,
}

impl<'a> Record<'a> {
    /// A successful call with its detail.
    pub fn success(
        caller: &'a Caller,
        action: AuditAction,
        target: Option<String>,
        detail: serde_json::Value,
    ) -> Self {
        Record {
            caller,
            action,
            target,
            outcome: AuditOutcome::Success,
            error_code: None,
            detail,
        }
    }
}

/// Writes an entry inside the caller's transaction.
pub async fn record(conn: &mut PgConnection, entry: &Record<'_>) -> sqlx::Result<i64> {
    let detail = if entry.detail.is_object() {
        entry.detail.clone()
    } else {
        serde_json::json!({})
    };
    sqlx::query_scalar(
        "INSERT INTO audit_log \
           (actor, action, target, outcome, error_code, request_id, trace_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(&entry.caller.actor)
    .bind(entry.action.as_str())
    .bind(&entry.target)
    .bind(entry.outcome.as_str())
    .bind(entry.error_code)
    .bind(entry.caller.request_id)
    .bind(&entry.caller.trace_id)
    .bind(detail)
    .fetch_one(&mut *conn)
    .await
}

/// Writes an entry in a transaction of its own (a single statement commits by itself).
/// Repeated on a fresh connection when the server ended the session before it committed.
pub async fn record_alone(pool: &PgPool, entry: &Record<'_>) -> sqlx::Result<i64> {
    crate::store::retry::once_more(
        pool,
        "audit.record",
        crate::store::retry::session_ended_by_server,
        move |mut conn| async move { record(&mut conn, entry).await },
    )
    .await
}

/// Filters of a listing (each `None` matches everything); page is 1-based.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub action: Option<AuditAction>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub outcome: Option<AuditOutcome>,
    pub request_id: Option<Uuid>,
    pub trace_id: Option<String>,
    /// Entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time.
    pub until: Option<DateTime<Utc>>,
    pub page: u32,
    pub per_page: u32,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    target: Option<String>,
    outcome: String,
    error_code: Option<String>,
    request_id: Option<Uuid>,
    trace_id: Option<String>,
    detail: serde_json::Value,
}

impl TryFrom<Row> for AuditEntry {
    type Error = sqlx::Error;

    fn try_from(r: Row) -> Result<Self, Self::Error> {
        let outcome = AuditOutcome::parse(&r.outcome).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown audit outcome {}", r.outcome).into())
        })?;
        Ok(AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome,
            error_code: r.error_code,
            request_id: r.request_id,
            trace_id: r.trace_id,
            detail: r.detail,
        })
    }
}

/// `select` followed by a WHERE clause of the filters that are set, and only those: a
/// statement per combination, so that a plan cached for one combination (Postgres switches
/// a prepared statement to a generic plan after five executions) never serves another.
fn filtered<'a>(select: &str, query: &'a AuditQuery) -> QueryBuilder<'a, Postgres> {
    let mut builder = QueryBuilder::new(select);
    let mut separator = " WHERE ";
    macro_rules! filter {
        ($value:expr, $condition:literal) => {
            if let Some(value) = $value {
                builder.push(separator).push($condition).push_bind(value);
                separator = " AND ";
            }
        };
    }
    filter!(query.action.map(AuditAction::as_str), "action = ");
    filter!(&query.actor, "actor = ");
    filter!(&query.target, "target = ");
    filter!(query.outcome.map(AuditOutcome::as_str), "outcome = ");
    filter!(query.request_id, "request_id = ");
    filter!(&query.trace_id, "trace_id = ");
    filter!(query.since, "at >= ");
    filter!(query.until, "at < ");
    let _ = separator;
    builder
}

/// A page of entries matching the filters, newest first, and how many match in all.
#[tracing::instrument(skip(pool))]
pub async fn list(pool: &PgPool, query: &AuditQuery) -> sqlx::Result<AuditPage> {
    crate::store::retry::read(pool, "audit.list", move |mut conn| async move {
        list_on(&mut conn, query).await
    })
    .await
}

async fn list_on(conn: &mut PgConnection, query: &AuditQuery) -> sqlx::Result<AuditPage> {
    let total: i64 = filtered("SELECT count(*) FROM audit_log", query)
        .build_query_scalar()
        .fetch_one(&mut *conn)
        .await?;
    let offset = i64::from(query.page.saturating_sub(1)) * i64::from(query.per_page);
    let mut select = filtered(
        "SELECT id, at, actor, action, target, outcome, error_code, request_id, trace_id, \
                detail FROM audit_log",
        query,
    );
    select
        .push(" ORDER BY at DESC, id DESC LIMIT ")
        .push_bind(i64::from(query.per_page))
        .push(" OFFSET ")
        .push_bind(offset);
    let rows: Vec<Row> = select.build_query_as().fetch_all(&mut *conn).await?;
    Ok(AuditPage {
        items: rows
            .into_iter()
            .map(AuditEntry::try_from)
            .collect::<Result<_, _>>()?,
        page: query.page,
        per_page: query.per_page,
        total,
    })
}
