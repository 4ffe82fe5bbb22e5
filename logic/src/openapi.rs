//! The OpenAPI description of the API, generated from the handlers and the contracts.

use actix_web::{HttpResponse, get};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata logic API",
        description = "Private JSON API of Strata's logic tier: catalog reads through a read \
            cache, orders accepted into a transactional outbox and fulfilled by workers. Every \
            error is `{\"error\":{\"code\",\"message\"}}` with a stable code.",
        version = "1"
    ),
    paths(
        routes::health::healthz,
        routes::health::readyz,
        routes::health::metrics,
        routes::products::list,
        routes::products::categories,
        routes::products::get,
        routes::products::update,
        routes::orders::place,
        routes::orders::get,
        routes::ops::list,
        routes::ops::redrive,
        routes::ops::stats,
        routes::analytics::analytics,
        routes::stream_status::status,
        routes::audit::list,
        routes::inventory::adjust,
        routes::inventory::history,
        routes::inventory::partitions,
        routes::subscriptions::create,
        routes::subscriptions::list,
        routes::subscriptions::get,
        routes::subscriptions::remove,
        routes::subscriptions::confirm,
        routes::subscriptions::dead_letters,
        routes::subscriptions::redrive,
        routes::topics::publish,
        routes::streams::shards,
        routes::streams::records,
        openapi_json,
    ),
    // Schemas only named by a query parameter (or, for the reasons, only in words: `reason`
    // stays a string) are not collected from the paths.
    components(schemas(contracts::AuditAction, contracts::OrderStep, contracts::RejectReason)),
    modifiers(&AdminAuth),
    tags(
        (name = "catalog", description = "products and categories"),
        (name = "orders", description = "placing and following orders"),
        (name = "subscriptions", description = "SNS-style topics: subscriptions with filter policies, confirmation, their dead letters, publishing"),
        (name = "inventory", description = "the supplier inventory feed: adjustments applied in order per sku"),
        (name = "streams", description = "the event stream (Kinesis): its shards and their records, read from a position (admin)"),
        (name = "health", description = "probes and metrics"),
        (name = "ops", description = "operations (admin): the dead-letter queue, statistics, the audit trail, the stream's analytics windows and consumer applications"),
    )
)]
pub struct ApiDoc;

struct AdminAuth;

impl Modify for AdminAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", responses(
    (status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object),
))]
#[get("/api/v1/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
