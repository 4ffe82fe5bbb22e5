//! `/ops/analytics`: the stream's one-minute windows (`worker analytics`). The page is
//! rendered with a table of the last windows (it works without JavaScript);
//! `ops_analytics.js` then polls `/ops/analytics.json`, which passes logic's
//! `GET /api/v1/ops/analytics` through, and redraws the charts and the table. Logic's
//! admin token never reaches the browser.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, web};
use askama::Template;
use contracts::{AnalyticsView, AnalyticsWindow, money};
use serde::Deserialize;

use crate::cookies::CookieKeys;
use crate::csrf::CsrfToken;
use crate::error::PageError;
use crate::logic_client::LogicClient;
use crate::ops::auth::{OpsAuth, OpsSession};
use crate::ops::calls::{NO_TOKEN, json_error, json_gate, logged};
use crate::telemetry::trace_context;
use crate::views;

/// Minutes the page shows, and the most the JSON route passes on.
const MINUTES: u32 = 15;
const MAX_MINUTES: u32 = 1440;

/// One row of the table, as text.
pub struct WindowRow {
    pub minute: String,
    pub placed: i64,
    pub fulfilled: i64,
    pub revenue: String,
    pub rejected: i64,
    pub rejection_rate: String,
    pub late: i64,
    pub top_product: String,
    pub top_category: String,
}

pub fn row(w: &AnalyticsWindow) -> WindowRow {
    WindowRow {
        minute: w.start.format("%H:%M").to_string(),
        placed: w.placed,
        fulfilled: w.fulfilled,
        revenue: money(w.revenue_cents),
        rejected: w.rejected,
        rejection_rate: w
            .rejection_rate
            .map_or_else(|| "\u{2013}".to_owned(), |r| format!("{:.1}%", r * 100.0)),
        late: w.late_events,
        top_product: w.top_products.first().map_or_else(String::new, |p| {
            format!("{} ({} units, {})", p.sku, p.units, money(p.revenue_cents))
        }),
        top_category: w.categories.first().map_or_else(String::new, |c| {
            format!("{} ({})", c.category, money(c.revenue_cents))
        }),
    }
}

#[derive(Template)]
#[template(path = "ops_analytics.html")]
struct AnalyticsPage {
    title: &'static str,
    user: Option<String>,
    csrf: String,
    problem: Option<&'static str>,
    minutes: u32,
    rows: Vec<WindowRow>,
    watermark: String,
    late_events: i64,
}

fn watermark(view: &AnalyticsView) -> String {
    view.watermark.map_or_else(
        || "none yet".to_owned(),
        |w| w.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

#[get("/ops/analytics")]
pub async fn show(
    session: OpsSession,
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    auth: web::Data<OpsAuth>,
    csrf: CsrfToken,
) -> Result<HttpResponse, PageError> {
    let mut page = AnalyticsPage {
        title: "Stream analytics",
        user: Some(session.user),
        csrf: csrf.value,
        problem: None,
        minutes: MINUTES,
        rows: Vec::new(),
        watermark: "\u{2013}".to_owned(),
        late_events: 0,
    };
    match auth.logic_token() {
        None => page.problem = Some(NO_TOKEN),
        Some(token) => {
            let view = logic.analytics(&trace_context(&req), token, MINUTES).await;
            match logged("analytics", view) {
                Ok(view) => {
                    page.rows = view.windows.iter().rev().map(row).collect();
                    page.watermark = watermark(&view);
                    page.late_events = view.late_events;
                }
                Err(problem) => page.problem = Some(problem),
            }
        }
    }
    Ok(views::html(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct JsonQuery {
    minutes: Option<u32>,
}

/// Logic's `AnalyticsView`, for the live charts. 401 without a session.
#[get("/ops/analytics.json")]
pub async fn json(
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    auth: web::Data<OpsAuth>,
    keys: web::Data<CookieKeys>,
    query: Option<web::Query<JsonQuery>>,
) -> HttpResponse {
    let token = match json_gate(&req, &auth, &keys) {
        Ok(token) => token,
        Err(refused) => return *refused,
    };
    let minutes = match query.map(|q| q.minutes) {
        None => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "minutes must be a whole number between 1 and 1440",
            );
        }
        Some(m) => m.unwrap_or(MINUTES),
    };
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "minutes must be a whole number between 1 and 1440",
        );
    }
    let view = logic.analytics(&trace_context(&req), token, minutes).await;
    match logged("analytics", view) {
        Ok(view) => HttpResponse::Ok().json(view),
        Err(message) => json_error(StatusCode::BAD_GATEWAY, "logic_failed", message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, Utc};
    use contracts::AnalyticsProduct;

    #[test]
    fn a_row_shows_money_and_the_rate() {
        let start = Utc::now();
        let w = AnalyticsWindow {
            start,
            end: start + TimeDelta::minutes(1),
            placed: 4,
            placed_cents: 4000,
            fulfilled: 3,
            revenue_cents: 123_456,
            rejected: 1,
            rejection_rate: Some(0.25),
            late_events: 2,
            categories: Vec::new(),
            top_products: vec![AnalyticsProduct {
                sku: "KIT-1".into(),
                units: 3,
                revenue_cents: 4500,
            }],
            updated_at: None,
        };
        let r = row(&w);
        assert_eq!(r.rejection_rate, "25.0%");
        assert_eq!(r.revenue, money(123_456));
        assert!(r.top_product.starts_with("KIT-1 (3 units"));
        assert_eq!(r.top_category, "");
    }
}
