//! `/ops`: the console's dashboard. The first reading is rendered on the server (it works
//! without JavaScript); `ops.js` then polls `/ops/stats.json` and draws the live charts.
//! `/ops/dlq/redrive` moves the dead letters back. Every call to logic carries logic's
//! admin token, which never reaches the browser.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use contracts::trace::TraceParent;
use secrecy::SecretString;
use serde::Deserialize;

use crate::cookies::CookieKeys;
use crate::csrf::{CsrfForm, CsrfToken};
use crate::error::PageError;
use crate::logic_client::LogicClient;
use crate::ops::auth::{OpsAuth, OpsSession};
use crate::ops::calls::{NO_TOKEN, json_error, json_gate, logged};
use crate::ops::view::{self, DeadLetterRow, DecisionRow, Tile};
use crate::telemetry::trace_context;
use crate::views;

/// Dead letters listed on the page.
const DLQ_LIMIT: u32 = 50;

#[derive(Template)]
#[template(path = "ops.html")]
struct ConsolePage {
    title: &'static str,
    user: Option<String>,
    csrf: String,
    notice: Option<(&'static str, String)>,
    at: String,
    stats_error: Option<&'static str>,
    tiles: Vec<Tile>,
    autoscaler_note: Option<&'static str>,
    decisions: Vec<DecisionRow>,
    dlq_error: Option<&'static str>,
    dlq_total: Option<u32>,
    dlq_shown: u32,
    dead_letters: Vec<DeadLetterRow>,
}

#[derive(Debug, Deserialize)]
pub struct ConsoleQuery {
    notice: Option<String>,
    moved: Option<u32>,
    left: Option<u32>,
}

fn notice(q: &ConsoleQuery) -> Option<(&'static str, String)> {
    match q.notice.as_deref()? {
        "redriven" => Some((
            "notice-ok",
            format!(
                "Redrive done: {} message(s) moved back to orders.fulfil, {} left in the \
                 dead-letter queue.",
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

#[get("/ops")]
pub async fn console(
    session: OpsSession,
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    auth: web::Data<OpsAuth>,
    csrf: CsrfToken,
    query: web::Query<ConsoleQuery>,
) -> Result<HttpResponse, PageError> {
    let ctx = trace_context(&req);
    let (stats, dlq) = match auth.logic_token() {
        Some(token) => {
            let (stats, dlq) = futures_util::join!(
                logic.ops_stats(&ctx, token),
                logic.dead_letters(&ctx, token, DLQ_LIMIT)
            );
            let (mut stats, dlq) = (logged("stats", stats), logged("dlq", dlq));
            // One reading of the DLQ on the page: the tile shows the table's total.
            if let (Ok(stats), Ok(list)) = (&mut stats, &dlq) {
                stats.dlq_depth = Some(u64::from(list.total));
            }
            (stats, dlq)
        }
        None => (Err(NO_TOKEN), Err(NO_TOKEN)),
    };
    let mut page = ConsolePage {
        title: "Operations console",
        user: Some(session.user),
        csrf: csrf.value,
        notice: notice(&query),
        at: view::MISSING.to_owned(),
        stats_error: None,
        tiles: Vec::new(),
        autoscaler_note: None,
        decisions: Vec::new(),
        dlq_error: None,
        dlq_total: None,
        dlq_shown: 0,
        dead_letters: Vec::new(),
    };
    match stats {
        Ok(stats) => {
            page.at = stats.at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
            page.tiles = view::tiles(&stats);
            page.decisions = view::decisions(stats.autoscaler.as_ref());
            if stats.autoscaler.is_none() {
                page.autoscaler_note = Some(
                    "No autoscaler status: logic has no AUTOSCALER_URL, or the autoscaler did \
                     not answer.",
                );
            }
        }
        Err(e) => page.stats_error = Some(e),
    }
    match dlq {
        Ok(list) => {
            page.dlq_total = Some(list.total);
            page.dlq_shown = list.items.len() as u32;
            page.dead_letters = list.items.iter().map(view::dead_letter).collect();
        }
        Err(e) => page.dlq_error = Some(e),
    }
    Ok(views::html(StatusCode::OK, &page))
}

/// The current `OpsStats` from logic, for the live charts. 401 without a session.
#[get("/ops/stats.json")]
pub async fn stats_json(
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    auth: web::Data<OpsAuth>,
    keys: web::Data<CookieKeys>,
) -> HttpResponse {
    let token = match json_gate(&req, &auth, &keys) {
        Ok(token) => token,
        Err(refused) => return *refused,
    };
    match logged("stats", logic.ops_stats(&trace_context(&req), token).await) {
        Ok(stats) => HttpResponse::Ok().json(stats),
        Err(message) => json_error(StatusCode::BAD_GATEWAY, "logic_failed", message),
    }
}

#[derive(Debug, Deserialize)]
pub struct RedriveForm {}

async fn redrive_all(
    logic: &LogicClient,
    ctx: &TraceParent,
    token: Option<&SecretString>,
) -> Option<(u32, u32)> {
    let result = logged("redrive", logic.redrive(ctx, token?).await).ok()?;
    Some((result.redriven, result.remaining))
}

/// Moves every dead letter back to `orders.fulfil` and says how many moved.
#[post("/ops/dlq/redrive")]
pub async fn redrive(
    session: OpsSession,
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    auth: web::Data<OpsAuth>,
    _form: CsrfForm<RedriveForm>,
) -> HttpResponse {
    let ctx = trace_context(&req);
    match redrive_all(&logic, &ctx, auth.logic_token()).await {
        Some((moved, left)) => {
            tracing::info!(user = %session.user, moved, left, "dead letters redriven");
            views::see_other(&format!(
                "/ops?notice=redriven&moved={moved}&left={left}#dlq"
            ))
            .finish()
        }
        None => views::see_other("/ops?notice=redrive_failed#dlq").finish(),
    }
}
