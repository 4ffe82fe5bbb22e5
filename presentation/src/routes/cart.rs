//! `/cart`: lines with editable quantities, remove, totals. Every change is a POST with a
//! CSRF token, answered by 303 to the cart page with a fixed notice code.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use contracts::trace::TraceParent;
use futures_util::future::join_all;
use serde::Deserialize;

use crate::cart::{Cart, CartError};
use crate::cookies::CookieKeys;
use crate::csrf::{CsrfForm, CsrfToken};
use crate::error::PageError;
use crate::logic_client::{LogicClient, LogicError};
use crate::telemetry::trace_context;
use crate::views;

pub struct LineView {
    pub sku: String,
    pub name: String,
    pub href: String,
    pub unit_price: String,
    pub quantity: i32,
    pub total: String,
    pub warning: Option<String>,
}

/// The cart's lines with current names and prices from logic.
pub struct Priced {
    pub lines: Vec<LineView>,
    pub total_cents: i64,
    /// Skus logic no longer knows.
    pub missing: Vec<String>,
}

pub async fn price(
    logic: &LogicClient,
    ctx: &TraceParent,
    cart: &Cart,
) -> Result<Priced, LogicError> {
    let lookups = join_all(cart.lines().iter().map(|(sku, _)| logic.product(ctx, sku))).await;
    let mut priced = Priced {
        lines: Vec::new(),
        total_cents: 0,
        missing: Vec::new(),
    };
    for ((sku, quantity), found) in cart.lines().iter().zip(lookups) {
        let product = match found {
            Ok(p) => p,
            Err(LogicError::NotFound) => {
                priced.missing.push(sku.clone());
                continue;
            }
            Err(e) => return Err(e),
        };
        let line_total = product.price_cents * i64::from(*quantity);
        priced.total_cents += line_total;
        priced.lines.push(LineView {
            sku: sku.clone(),
            href: views::product_href(sku),
            unit_price: views::money(product.price_cents),
            quantity: *quantity,
            total: views::money(line_total),
            warning: match product.stock {
                0 => Some("Sold out".to_owned()),
                s if s < *quantity => Some(format!("Only {s} in stock")),
                _ => None,
            },
            name: product.name.clone(),
        });
    }
    Ok(priced)
}

#[derive(Template)]
#[template(path = "cart.html")]
struct CartPage {
    title: &'static str,
    cart_units: i32,
    notice: Option<(&'static str, &'static str)>,
    lines: Vec<LineView>,
    total: String,
    csrf: String,
}

fn notice(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "added" => ("notice-ok", "Added to your cart."),
        "updated" => ("notice-ok", "Your cart was updated."),
        "removed" => ("notice-ok", "Removed from your cart."),
        "invalid_quantity" => (
            "notice-error",
            "Quantities are whole numbers from 1 to 100.",
        ),
        "full" => (
            "notice-error",
            "Your cart is full: it holds at most 50 different products.",
        ),
        "sold_out" => ("notice-error", "Sorry, that product is sold out."),
        "dropped" => (
            "notice-error",
            "Some items are no longer sold and were removed from your cart.",
        ),
        _ => return None,
    })
}

#[derive(Debug, Deserialize)]
pub struct NoticeParams {
    notice: Option<String>,
}

#[get("/cart")]
pub async fn show(
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    keys: web::Data<CookieKeys>,
    params: web::Query<NoticeParams>,
    mut cart: Cart,
    csrf: CsrfToken,
) -> Result<HttpResponse, PageError> {
    let priced = price(&logic, &trace_context(&req), &cart).await?;
    let mut code = params.notice.clone().unwrap_or_default();
    if !priced.missing.is_empty() {
        for sku in &priced.missing {
            cart.remove(sku);
        }
        code = "dropped".to_owned();
    }
    let view = CartPage {
        title: "Your cart",
        cart_units: cart.units(),
        notice: notice(&code),
        lines: priced.lines,
        total: views::money(priced.total_cents),
        csrf: csrf.value,
    };
    let mut res = views::html(StatusCode::OK, &view);
    if !priced.missing.is_empty() {
        res.add_cookie(&cart.cookie(&keys))
            .map_err(|e| PageError::Internal(e.into()))?;
    }
    Ok(res)
}

#[derive(Debug, Deserialize)]
pub struct LineForm {
    sku: String,
    #[serde(default)]
    quantity: String,
}

fn redirect(keys: &CookieKeys, cart: &Cart, code: &str) -> HttpResponse {
    views::see_other(&format!("/cart?notice={code}"))
        .cookie(cart.cookie(keys))
        .finish()
}

#[post("/cart/add")]
pub async fn add(
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    keys: web::Data<CookieKeys>,
    mut cart: Cart,
    form: CsrfForm<LineForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.0;
    let Ok(quantity) = form.quantity.trim().parse::<i32>() else {
        return Ok(views::see_other("/cart?notice=invalid_quantity").finish());
    };
    let product = logic.product(&trace_context(&req), &form.sku).await?;
    if product.stock <= 0 {
        return Ok(views::see_other("/cart?notice=sold_out").finish());
    }
    let code = match cart.add(&product.sku, quantity) {
        Ok(()) => "added",
        Err(CartError::Full) => return Ok(views::see_other("/cart?notice=full").finish()),
        Err(CartError::BadQuantity) => "invalid_quantity",
        Err(CartError::BadSku) => return Err(PageError::NotFound),
    };
    if code != "added" {
        return Ok(views::see_other(&format!("/cart?notice={code}")).finish());
    }
    tracing::info!(product.sku = %product.sku, quantity, "added to cart");
    Ok(redirect(&keys, &cart, code))
}

#[post("/cart/update")]
pub async fn update(
    keys: web::Data<CookieKeys>,
    mut cart: Cart,
    form: CsrfForm<LineForm>,
) -> HttpResponse {
    let form = form.0;
    let result = form
        .quantity
        .trim()
        .parse::<i32>()
        .map_err(|_| CartError::BadQuantity)
        .and_then(|q| cart.set(&form.sku, q));
    match result {
        Ok(()) => redirect(&keys, &cart, "updated"),
        Err(_) => views::see_other("/cart?notice=invalid_quantity").finish(),
    }
}

#[post("/cart/remove")]
pub async fn remove(
    keys: web::Data<CookieKeys>,
    mut cart: Cart,
    form: CsrfForm<LineForm>,
) -> HttpResponse {
    cart.remove(&form.0.sku);
    redirect(&keys, &cart, "removed")
}
