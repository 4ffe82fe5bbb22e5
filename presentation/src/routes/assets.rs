//! The stylesheets and scripts (the shop's, the ops console's and the vendored uPlot),
//! embedded at compile time and served from here (never from a CDN), so the CSP can say
//! `'self'` and nothing else.

use actix_web::{HttpResponse, get};

const STYLE: &str = include_str!("../../static/style.css");
const SCRIPT: &str = include_str!("../../static/app.js");
const OPS_STYLE: &str = include_str!("../../static/ops.css");
const OPS_SCRIPT: &str = include_str!("../../static/ops.js");
const ANALYTICS_SCRIPT: &str = include_str!("../../static/ops_analytics.js");
const CHARTS_SCRIPT: &str = include_str!("../../static/ops_charts.js");
/// uPlot 1.6.32 (MIT, `static/vendor/uPlot.LICENSE`), copied from its npm package.
const UPLOT_SCRIPT: &str = include_str!("../../static/vendor/uPlot.iife.min.js");
const UPLOT_STYLE: &str = include_str!("../../static/vendor/uPlot.min.css");

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(body)
}

#[get("/static/style.css")]
pub async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

#[get("/static/app.js")]
pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

#[get("/static/ops.css")]
pub async fn ops_style() -> HttpResponse {
    asset("text/css; charset=utf-8", OPS_STYLE)
}

#[get("/static/ops.js")]
pub async fn ops_script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", OPS_SCRIPT)
}

#[get("/static/ops_charts.js")]
pub async fn charts_script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", CHARTS_SCRIPT)
}

#[get("/static/ops_analytics.js")]
pub async fn analytics_script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", ANALYTICS_SCRIPT)
}

#[get("/static/vendor/uPlot.iife.min.js")]
pub async fn uplot_script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", UPLOT_SCRIPT)
}

#[get("/static/vendor/uPlot.min.css")]
pub async fn uplot_style() -> HttpResponse {
    asset("text/css; charset=utf-8", UPLOT_STYLE)
}
