//! `/ops/subscriptions`: the topics' subscriptions (SNS's role) with their delivery
//! counters, each subscription's dead-letter queue with a redrive button, and the scale of
//! the function handlers (their workers run from zero: 0 or 1 consumer on `fn.<name>`).
//! Every call to logic carries logic's admin token, which never reaches the browser.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use contracts::Subscription;
use serde::Deserialize;
use uuid::Uuid;

use crate::csrf::{CsrfForm, CsrfToken};
use crate::error::PageError;
use crate::logic_client::{FunctionScale, LogicClient};
use crate::ops::auth::{OpsAuth, OpsSession};
use crate::ops::calls::{NO_TOKEN, logged};
use crate::telemetry::trace_context;
use crate::views;

/// One subscription, every figure as text (`?` when the broker gave none).
pub struct SubscriptionRow {
    pub id: String,
    pub topic: &'static str,
    pub protocol: &'static str,
    pub endpoint: String,
    pub status: &'static str,
    pub delivered: i64,
    pub retried: i64,
    pub failed: i64,
    pub dead_lettered: i64,
    pub filtered: i64,
    pub last_error: String,
    pub last_delivery_at: String,
    pub dlq_depth: String,
    /// The redrive button is shown when the DLQ holds something (or its depth is unknown).
    pub redrivable: bool,
}

pub fn row(s: &Subscription) -> SubscriptionRow {
    SubscriptionRow {
        id: s.id.to_string(),
        topic: s.topic.as_str(),
        protocol: s.protocol.as_str(),
        endpoint: s.endpoint.clone(),
        status: s.status.as_str(),
        delivered: s.delivered,
        retried: s.retried,
        failed: s.failed,
        dead_lettered: s.dead_lettered,
        filtered: s.filtered,
        last_error: s.last_error.clone().unwrap_or_default(),
        last_delivery_at: s
            .last_delivery_at
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "never".to_owned()),
        dlq_depth: s
            .dlq_depth
            .map_or_else(|| "?".to_owned(), |d| d.to_string()),
        redrivable: s.dlq_depth != Some(0),
    }
}

/// One function handler: its queue, backlog and running workers.
pub struct FunctionRow {
    pub name: String,
    pub queue: String,
    pub ready: String,
    pub consumers: String,
    /// "running" with a consumer, "scaled to zero" without, "unknown" when not read.
    pub state: &'static str,
}

pub fn function_row(f: &FunctionScale) -> FunctionRow {
    FunctionRow {
        name: f.name.clone(),
        queue: f.queue.clone(),
        ready: f.ready.map_or_else(|| "?".to_owned(), |r| r.to_string()),
        consumers: f
            .consumers
            .map_or_else(|| "?".to_owned(), |c| c.to_string()),
        state: match f.consumers {
            Some(0) => "scaled to zero",
            Some(_) => "running",
            None => "unknown",
        },
    }
}

#[derive(Template)]
#[template(path = "ops_subscriptions.html")]
struct SubscriptionsPage {
    title: &'static str,
    user: Option<String>,
    csrf: String,
    notice: Option<(&'static str, String)>,
    problem: Option<&'static str>,
    rows: Vec<SubscriptionRow>,
    functions_problem: Option<&'static str>,
    functions: Vec<FunctionRow>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    notice: Option<String>,
    moved: Option<u32>,
    left: Option<u32>,
}

fn notice(q: &PageQuery) -> Option<(&'static str, String)> {
    match q.notice.as_deref()? {
        "redriven" => Some((
            "notice-ok",
            format!(
                "Redrive done: {} message(s) moved back to the subscription's queue, {} left \
                 in its dead-letter queue.",
                q.moved.unwrap_or(0),
                q.left.unwrap_or(0)
            ),
        )),
        "redrive_failed" => Some((
            "notice-error",
            "The redrive failed; nothing was acknowledged twice. Try again.".to_owned(),
        )),
        _ => None,
    }
}

#[get("/ops/subscriptions")]
pub async fn show(
    session: OpsSession,
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    auth: web::Data<OpsAuth>,
    csrf: CsrfToken,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, PageError> {
    let mut page = SubscriptionsPage {
        title: "Subscriptions",
        user: Some(session.user),
        csrf: csrf.value,
        notice: notice(&query),
        problem: None,
        rows: Vec::new(),
        functions_problem: None,
        functions: Vec::new(),
    };
    let ctx = trace_context(&req);
    match auth.logic_token() {
        None => page.problem = Some(NO_TOKEN),
        Some(token) => {
            let (list, functions) = futures_util::join!(
                logic.subscriptions(&ctx, token),
                logic.function_scales(&ctx, token)
            );
            match logged("subscriptions", list) {
                Ok(list) => page.rows = list.items.iter().map(row).collect(),
                Err(problem) => page.problem = Some(problem),
            }
            match logged("function_scales", functions) {
                Ok(functions) => page.functions = functions.iter().map(function_row).collect(),
                Err(problem) => page.functions_problem = Some(problem),
            }
        }
    }
    Ok(views::html(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct RedriveForm {}

/// Moves one subscription's dead letters back to its queue and says how many moved.
#[post("/ops/subscriptions/{id}/redrive")]
pub async fn redrive(
    session: OpsSession,
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    auth: web::Data<OpsAuth>,
    id: web::Path<Uuid>,
    _form: CsrfForm<RedriveForm>,
) -> HttpResponse {
    let ctx = trace_context(&req);
    let id = id.into_inner();
    let result = match auth.logic_token() {
        Some(token) => logged(
            "subscription_redrive",
            logic.subscription_redrive(&ctx, token, id).await,
        )
        .ok(),
        None => None,
    };
    match result {
        Some(done) => {
            tracing::info!(user = %session.user, subscription.id = %id, moved = done.redriven,
                left = done.remaining, "subscription dead letters redriven");
            views::see_other(&format!(
                "/ops/subscriptions?notice=redriven&moved={}&left={}",
                done.redriven, done.remaining
            ))
            .finish()
        }
        None => views::see_other("/ops/subscriptions?notice=redrive_failed").finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_without_consumers_is_scaled_to_zero() {
        let f = |consumers| FunctionScale {
            name: "loyalty-points".into(),
            queue: "fn.loyalty-points".into(),
            consumers,
            ready: None,
        };
        assert_eq!(function_row(&f(Some(0))).state, "scaled to zero");
        assert_eq!(function_row(&f(Some(1))).state, "running");
        let unknown = function_row(&f(None));
        assert_eq!((unknown.state, unknown.ready.as_str()), ("unknown", "?"));
    }
}
