//! The ops console: its pages ([`dashboard`], [`audit_page`], [`fifo_page`],
//! [`subscriptions_page`], [`analytics_page`], [`stream_page`], [`login`]) and their
//! building blocks, the admin login ([`auth`]), the figures shown ([`view`]), the audit
//! trail's filters and rows ([`audit`]) and what the pages share about calling logic
//! ([`calls`]).

use actix_web::{HttpResponse, get, web};

use crate::error::PageError;

pub mod analytics_page;
pub mod audit;
pub mod audit_page;
pub mod auth;
pub mod calls;
pub mod dashboard;
pub mod fifo_page;
pub mod login;
pub mod stream_page;
pub mod subscriptions_page;
pub mod view;

pub use auth::{OpsAuth, OpsSession, hash_password};

/// The console's routes. The catch-all comes last, or it would answer for the others.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(dashboard::console)
        .service(dashboard::stats_json)
        .service(dashboard::redrive)
        .service(audit_page::show)
        .service(fifo_page::show)
        .service(subscriptions_page::show)
        .service(subscriptions_page::redrive)
        .service(analytics_page::show)
        .service(analytics_page::json)
        .service(stream_page::show)
        .service(login::show)
        .service(login::login)
        .service(login::logout)
        .service(other);
}

/// Any other `/ops/...` path: login first, then the 404 page.
#[get("/ops/{tail:.*}")]
pub async fn other(_session: OpsSession) -> Result<HttpResponse, PageError> {
    Err(PageError::NotFound)
}
