//! `GET /api/v1/ops/analytics` (admin): the last minutes of the windows `worker analytics`
//! keeps in Postgres, with the shards' watermarks.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, TimeDelta, Utc};
use contracts::{
    AnalyticsCategory, AnalyticsProduct, AnalyticsShard, AnalyticsView, AnalyticsWindow, ErrorBody,
};
use serde::Deserialize;

use crate::error::ApiError;
use crate::routes::AppState;

/// Minutes shown at most.
pub const MAX_MINUTES: i64 = 1440;
/// Products listed per window.
const TOP_PRODUCTS: usize = 5;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsParams {
    /// How many one-minute windows (default 15). Read as text so that anything but a
    /// whole number in range gets this route's own `invalid_query` message.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1440)]
    pub minutes: Option<String>,
    /// The stream application (default `analytics`).
    #[param(min_length = 1, max_length = 100)]
    pub application: Option<String>,
}

type WindowRow = (DateTime<Utc>, i64, i64, i64, i64, i64, i64, DateTime<Utc>);

/// shard, max_event_time, watermark.
type ShardRow = (i32, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The windows, oldest first, with the shards' watermarks.
#[utoipa::path(get, path = "/api/v1/ops/analytics", tag = "ops", params(AnalyticsParams),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "the windows", body = AnalyticsView),
        (status = 400, description = "minutes not between 1 and 1440, or a bad application name (`invalid_query`)", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token (`unauthorized`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[get("/api/v1/ops/analytics")]
pub async fn analytics(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: web::Query<AnalyticsParams>,
) -> Result<HttpResponse, ApiError> {
    state.admin.check(&req)?;
    let minutes = match params.minutes.as_deref() {
        None => 15,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|m| (1..=MAX_MINUTES).contains(m))
            .ok_or_else(|| {
                ApiError::InvalidQuery(format!(
                    "minutes must be a whole number between 1 and {MAX_MINUTES}, not '{text}'"
                ))
            })?,
    };
    let application = params.application.as_deref().unwrap_or("analytics");
    if application.is_empty() || application.len() > 100 {
        return Err(ApiError::InvalidQuery(
            "application must be 1 to 100 characters".to_owned(),
        ));
    }
    let pool = &state.pool;
    let now = Utc::now();
    let newest: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT max(window_start) FROM analytics_windows WHERE application = $1",
    )
    .bind(application)
    .fetch_one(pool)
    .await?;
    let current = DateTime::from_timestamp(now.timestamp().div_euclid(60) * 60, 0).unwrap_or(now);
    let last = newest.map_or(current, |n| n.max(current));
    let first = last - TimeDelta::minutes(minutes - 1);
    let rows: Vec<WindowRow> = sqlx::query_as(
        "SELECT window_start, placed, placed_cents, fulfilled, revenue_cents, rejected, \
             late_events, updated_at FROM analytics_windows \
         WHERE application = $1 AND window_start BETWEEN $2 AND $3",
    )
    .bind(application)
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?;
    let categories: Vec<(DateTime<Utc>, String, i64, i64)> = sqlx::query_as(
        "SELECT window_start, category, placed, revenue_cents FROM analytics_window_categories \
         WHERE application = $1 AND window_start BETWEEN $2 AND $3 \
         ORDER BY window_start, revenue_cents DESC, placed DESC, category",
    )
    .bind(application)
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?;
    let products: Vec<(DateTime<Utc>, String, i64, i64)> = sqlx::query_as(
        "SELECT window_start, sku, units, revenue_cents FROM ( \
             SELECT window_start, sku, units, revenue_cents, row_number() OVER ( \
                 PARTITION BY window_start ORDER BY revenue_cents DESC, units DESC, sku) AS n \
             FROM analytics_window_products \
             WHERE application = $1 AND window_start BETWEEN $2 AND $3) p \
         WHERE n <= $4 ORDER BY window_start, n",
    )
    .bind(application)
    .bind(first)
    .bind(last)
    .bind(TOP_PRODUCTS as i64)
    .fetch_all(pool)
    .await?;
    let shards: Vec<ShardRow> = sqlx::query_as(
        "SELECT shard, max_event_time, watermark FROM analytics_shards \
         WHERE application = $1 ORDER BY shard",
    )
    .bind(application)
    .fetch_all(pool)
    .await?;

    let mut by_start: BTreeMap<DateTime<Utc>, AnalyticsWindow> = (0..minutes)
        .map(|i| {
            let start = first + TimeDelta::minutes(i);
            (start, empty(start))
        })
        .collect();
    for (start, placed, placed_cents, fulfilled, revenue, rejected, late, updated) in rows {
        if let Some(w) = by_start.get_mut(&start) {
            w.placed = placed;
            w.placed_cents = placed_cents;
            w.fulfilled = fulfilled;
            w.revenue_cents = revenue;
            w.rejected = rejected;
            w.rejection_rate = rate(rejected, fulfilled);
            w.late_events = late;
            w.updated_at = Some(updated);
        }
    }
    for (start, category, placed, revenue_cents) in categories {
        if let Some(w) = by_start.get_mut(&start) {
            w.categories.push(AnalyticsCategory {
                category,
                placed,
                revenue_cents,
            });
        }
    }
    for (start, sku, units, revenue_cents) in products {
        if let Some(w) = by_start.get_mut(&start) {
            w.top_products.push(AnalyticsProduct {
                sku,
                units,
                revenue_cents,
            });
        }
    }
    let windows: Vec<AnalyticsWindow> = by_start.into_values().collect();
    let shards: Vec<AnalyticsShard> = shards
        .into_iter()
        .map(|(shard, max_event_time, watermark)| AnalyticsShard {
            shard: shard.clamp(0, i32::from(u16::MAX)) as u16,
            max_event_time,
            watermark,
        })
        .collect();
    // A shard that read nothing yet holds every window open.
    let watermark = if shards.len() < usize::from(state.data.stream.stream_shards) {
        None
    } else {
        shards
            .iter()
            .map(|s| s.watermark)
            .collect::<Option<Vec<_>>>()
            .and_then(|w| w.into_iter().min())
    };
    Ok(HttpResponse::Ok().json(AnalyticsView {
        application: application.to_owned(),
        at: now,
        late_events: windows.iter().map(|w| w.late_events).sum(),
        windows,
        watermark,
        shards,
    }))
}

fn empty(start: DateTime<Utc>) -> AnalyticsWindow {
    AnalyticsWindow {
        start,
        end: start + TimeDelta::minutes(1),
        placed: 0,
        placed_cents: 0,
        fulfilled: 0,
        revenue_cents: 0,
        rejected: 0,
        rejection_rate: None,
        late_events: 0,
        categories: Vec::new(),
        top_products: Vec::new(),
        updated_at: None,
    }
}

fn rate(rejected: i64, fulfilled: i64) -> Option<f64> {
    let done = rejected + fulfilled;
    (done > 0).then(|| rejected as f64 / done as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rejection_rate_is_of_the_orders_that_ended() {
        assert_eq!(rate(1, 3), Some(0.25));
        assert_eq!(rate(0, 0), None);
        assert_eq!(rate(2, 0), Some(1.0));
    }
}
