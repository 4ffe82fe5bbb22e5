//! `/products/{sku}`: details, quantity, add to cart.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, web};
use askama::Template;
use contracts::MAX_QUANTITY;

use crate::cart::{Cart, valid_sku};
use crate::csrf::CsrfToken;
use crate::error::PageError;
use crate::logic_client::LogicClient;
use crate::routes::catalog::{CardView, catalog_href};
use crate::telemetry::trace_context;
use crate::views;

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    title: String,
    cart_units: i32,
    p: CardView,
    description: String,
    category_href: String,
    max_quantity: i32,
    csrf: String,
}

#[get("/products/{sku}")]
pub async fn show(
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    sku: web::Path<String>,
    cart: Cart,
    csrf: CsrfToken,
) -> Result<HttpResponse, PageError> {
    let (product, from_copy) = logic.product_and_source(&trace_context(&req), &sku).await?;
    // Skus the cart cannot store are shown but not sold here.
    let max_quantity = if valid_sku(&product.sku) {
        product.stock.clamp(0, MAX_QUANTITY)
    } else {
        0
    };
    let view = ProductPage {
        title: product.name.clone(),
        cart_units: cart.units(),
        p: CardView::from(&*product),
        description: product.description.clone(),
        category_href: catalog_href(None, Some(&product.category), 1),
        max_quantity,
        csrf: csrf.value,
    };
    // As logic's X-Cache: whether the product came from this tier's copy.
    let mut page = views::html(StatusCode::OK, &view);
    page.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("x-cache"),
        actix_web::http::header::HeaderValue::from_static(if from_copy { "hit" } else { "miss" }),
    );
    Ok(page)
}
