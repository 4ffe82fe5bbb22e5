//! Catalog reads (cache-aside through Redis, with the stock laid over from the replica's
//! stock view, [`crate::stock`]) and the admin product update.

use actix_web::{HttpRequest, HttpResponse, get, patch, web};
use contracts::{
    AuditAction, CategoryList, ErrorBody, MAX_PER_PAGE, Product, ProductPage, ProductPatch,
};
use data::store::audit::{Caller, Record};
use data::store::products::ProductQuery;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::routes::{AppState, audit};
use crate::stock::Freshness;
use crate::telemetry::trace_context;
use crate::validation;

#[derive(Debug, Deserialize, Serialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only products of this category (exact name).
    #[param(pattern = "^[^\\u0000]*$")]
    pub category: Option<String>,
    /// Words to find in the name or description (case-insensitive).
    #[param(pattern = "^[^\\u0000]*$", max_length = 200)]
    pub q: Option<String>,
    /// 1-based page number.
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    /// Products per page, at most 100.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

impl ListParams {
    fn into_query(self) -> Result<ProductQuery, ApiError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(20);
        if !(1..=1_000_000).contains(&page) {
            return Err(ApiError::InvalidQuery(
                "page must be between 1 and 1000000".into(),
            ));
        }
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(ApiError::InvalidQuery(format!(
                "per_page must be between 1 and {MAX_PER_PAGE}"
            )));
        }
        if [&self.q, &self.category]
            .iter()
            .any(|s| s.as_ref().is_some_and(|s| s.contains('\0')))
        {
            return Err(ApiError::InvalidQuery(
                "q and category must not contain NUL".into(),
            ));
        }
        let non_empty =
            |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let q = non_empty(self.q);
        if q.as_ref().is_some_and(|q| q.chars().count() > 200) {
            return Err(ApiError::InvalidQuery(
                "q must be at most 200 characters".into(),
            ));
        }
        Ok(ProductQuery {
            category: non_empty(self.category),
            q,
            page,
            per_page,
        })
    }
}

/// List products, filtered and paginated.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalog", params(ListParams), responses(
    (status = 200, description = "a page of products", body = ProductPage),
    (status = 400, description = "invalid query (`invalid_query`)", body = ErrorBody),
    (status = 503, description = "Postgres unreachable", body = ErrorBody),
))]
#[get("")]
pub async fn list(
    state: web::Data<AppState>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let query = params.into_inner().into_query()?;
    let pool = state.pool.clone();
    let load = {
        let query = query.clone();
        || async move {
            data::store::products::list(&pool, &query)
                .await
                .map_err(ApiError::from)
        }
    };
    let name = format!(
        "products:{}",
        serde_json::to_string(&(&query.category, &query.q, query.page, query.per_page))
            .unwrap_or_default()
    );
    let mut page: ProductPage = state.cache.get_or_load_catalog(&name, load).await?;
    // The cached page's stock may be minutes old; each item gets the stock view's.
    let skus: Vec<&str> = page.items.iter().map(|p| p.sku.as_str()).collect();
    let (stocks, freshness) = state.stock.stocks(&skus).await;
    for item in &mut page.items {
        if let Some(stock) = stocks.get(&item.sku) {
            item.stock = *stock;
        }
    }
    let mut answer = HttpResponse::Ok();
    stock_headers(&mut answer, freshness);
    Ok(answer.json(page))
}

/// `X-Stock`: whether the stock in the answer is within `STOCK_FRESHNESS_MS` (`fresh`) or
/// the last known one because Postgres could not be asked (`stale`). A fresh answer also
/// says in `X-Stock-Fresh-For-Ms` how long it stays within that bound, so that a caller
/// keeping it (presentation's page cache) serves it no longer than that.
fn stock_headers(answer: &mut actix_web::HttpResponseBuilder, freshness: Freshness) {
    match freshness {
        Freshness::Fresh { for_ } => {
            answer.insert_header(("X-Stock", "fresh"));
            answer.insert_header((contracts::STOCK_FRESH_FOR_HEADER, for_.as_millis() as u64));
        }
        Freshness::Stale => {
            answer.insert_header(("X-Stock", "stale"));
        }
    }
}

/// Categories with the number of products in each.
#[utoipa::path(get, path = "/api/v1/categories", tag = "catalog", responses(
    (status = 200, description = "all categories", body = CategoryList),
    (status = 503, description = "Postgres unreachable", body = ErrorBody),
))]
#[get("/api/v1/categories")]
pub async fn categories(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pool = state.pool.clone();
    let load = || async move {
        data::store::products::categories(&pool)
            .await
            .map(|items| CategoryList { items })
            .map_err(ApiError::from)
    };
    let categories = state.cache.get_or_load_catalog("categories", load).await?;
    Ok(HttpResponse::Ok().json(categories))
}

/// One product. The response says how its body was served in `X-Cache` (hit, miss, bypass),
/// and in `X-Stock` whether its stock is fresh (within `STOCK_FRESHNESS_MS`) or stale (the
/// last known, Postgres being unreachable).
#[utoipa::path(get, path = "/api/v1/products/{sku}", tag = "catalog",
    params(("sku" = String, Path, description = "the product's sku")),
    responses(
        (status = 200, description = "the product", body = Product, headers(
            ("X-Cache" = String, description = "how the body was served: hit, miss or bypass"),
            ("X-Stock" = String, description = "fresh, or stale when Postgres could not be asked and the stock is the last known"),
            ("X-Stock-Fresh-For-Ms" = u64, description = "with X-Stock fresh: how many more milliseconds the answer stays within STOCK_FRESHNESS_MS (a cache may keep it that long)"),
        )),
        (status = 404, description = "no such product (`product_not_found`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[get("/{sku}")]
pub async fn get(
    state: web::Data<AppState>,
    sku: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sku = sku.into_inner();
    if !contracts::is_valid_sku(&sku) {
        return Err(ApiError::ProductNotFound(sku));
    }
    let key = state.cache.key(&format!("product:{sku}"));
    let pool = state.pool.clone();
    let lookup = sku.clone();
    // The cached JSON text is sent as it is: a near-cache hit decodes and encodes nothing.
    let (json, source) = state
        .cache
        .get_or_load_json(&key, || async move {
            data::store::products::get(&pool, &lookup)
                .await
                .map_err(ApiError::from)
        })
        .await?;
    // An unknown sku is cached too, as JSON `null`.
    if &*json == "null" {
        return Err(ApiError::ProductNotFound(sku));
    }
    let source = match source {
        data::cache::Source::Hit => "hit",
        data::cache::Source::Miss => "miss",
        data::cache::Source::Bypass => "bypass",
    };
    // The body's stock is as old as the cached copy; the stock view's replaces it, in the
    // text itself (stock is the last field), so a hit still decodes nothing.
    let (stocks, freshness) = state.stock.stocks(&[&sku]).await;
    let body = match stocks.get(&sku) {
        Some(stock) => match crate::stock::with_stock(&json, *stock) {
            Some(body) => body,
            None => {
                let mut product: Product =
                    serde_json::from_str(&json).map_err(anyhow::Error::from)?;
                product.stock = *stock;
                serde_json::to_string(&product).map_err(anyhow::Error::from)?
            }
        },
        None => json.to_string(),
    };
    let mut answer = HttpResponse::Ok();
    answer.insert_header(("X-Cache", source));
    stock_headers(&mut answer, freshness);
    Ok(answer
        .insert_header(actix_web::http::header::ContentType::json())
        .body(body))
}

/// Update a product (admin). The cached copy is dropped after the commit.
#[utoipa::path(patch, path = "/api/v1/products/{sku}", tag = "catalog",
    params(("sku" = String, Path, description = "the product's sku")),
    request_body = ProductPatch,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "the updated product", body = Product),
        (status = 400, description = "malformed JSON (`malformed_json`)", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "no such product (`product_not_found`)", body = ErrorBody),
        (status = 413, description = "body over 64 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "body is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "invalid values (`invalid_product_patch`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[patch("/{sku}")]
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    sku: web::Path<String>,
    body: Result<web::Json<serde_json::Value>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let caller = audit::caller(&req, &state.admin);
    let sku = sku.into_inner();
    let target = contracts::is_valid_sku(&sku).then(|| format!("product:{sku}"));
    let result = apply_update(&req, &state, &caller, sku, body).await;
    audit::settle(&state, &caller, AuditAction::ProductUpdate, target, result).await
}

async fn apply_update(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    sku: String,
    body: Result<web::Json<serde_json::Value>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    // Authentication comes before any look at the body.
    state.admin.check(req)?;
    let patch: ProductPatch = crate::extract::json_object(body)?;
    validation::product_patch(&patch)?;
    if !contracts::is_valid_sku(&sku) {
        return Err(ApiError::ProductNotFound(sku));
    }
    if validation::is_empty_patch(&patch) {
        // Nothing to change: answer with the product as it is.
        let product = data::store::products::get(&state.pool, &sku)
            .await?
            .ok_or(ApiError::ProductNotFound(sku.clone()))?;
        let entry = Record::success(
            caller,
            AuditAction::ProductUpdate,
            Some(format!("product:{sku}")),
            serde_json::json!({ "changes": {} }),
        );
        data::store::audit::record_alone(&state.pool, &entry).await?;
        return Ok(HttpResponse::Ok().json(product));
    }
    let traceparent = Some(trace_context(req).child().to_string());
    let read_at = std::time::Instant::now();
    let product = data::store::products::update(&state.pool, &sku, &patch, traceparent, caller)
        .await?
        .ok_or_else(|| ApiError::ProductNotFound(sku.clone()))?;
    state.cache.invalidate_product(&sku).await;
    // This replica shows its own write at once; the others within their freshness.
    state.stock.observe(&sku, product.stock, read_at);
    tracing::info!(product.sku = %sku, "product updated");
    Ok(HttpResponse::Ok().json(product))
}
