//! `/`: categories with counts, search, product cards, pagination.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, web};
use askama::Template;
use contracts::Product;
use serde::Deserialize;

use crate::cart::Cart;
use crate::error::PageError;
use crate::logic_client::{LogicClient, ProductQuery};
use crate::telemetry::trace_context;
use crate::views;

pub const PER_PAGE: u32 = 12;

#[derive(Debug, Deserialize)]
pub struct CatalogParams {
    q: Option<String>,
    category: Option<String>,
    page: Option<String>,
}

pub struct CardView {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub href: String,
    pub price: String,
    pub stock_class: &'static str,
    pub stock_label: String,
}

impl From<&Product> for CardView {
    fn from(p: &Product) -> Self {
        let (stock_class, stock_label) = views::stock_state(p.stock);
        CardView {
            sku: p.sku.clone(),
            name: p.name.clone(),
            category: p.category.clone(),
            href: views::product_href(&p.sku),
            price: views::money(p.price_cents),
            stock_class,
            stock_label,
        }
    }
}

pub struct CategoryView {
    name: String,
    count: i64,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct CatalogPage {
    title: String,
    cart_units: i32,
    q: String,
    category: Option<String>,
    categories: Vec<CategoryView>,
    heading: String,
    summary: String,
    products: Vec<CardView>,
    page: u32,
    pages: u32,
    prev: Option<String>,
    next: Option<String>,
}

/// A catalog link; the query is percent-encoded.
pub fn catalog_href(q: Option<&str>, category: Option<&str>, page: u32) -> String {
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(q) = q {
        params.push(("q", q.to_owned()));
    }
    if let Some(c) = category {
        params.push(("category", c.to_owned()));
    }
    if page > 1 {
        params.push(("page", page.to_string()));
    }
    if params.is_empty() {
        return "/".to_owned();
    }
    format!(
        "/?{}",
        serde_urlencoded::to_string(params).unwrap_or_default()
    )
}

fn clean(value: Option<String>, max_chars: usize) -> Option<String> {
    value
        .map(|v| v.trim().chars().take(max_chars).collect::<String>())
        .filter(|v| !v.is_empty())
}

#[get("/")]
pub async fn index(
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    params: web::Query<CatalogParams>,
    cart: Cart,
) -> Result<HttpResponse, PageError> {
    let params = params.into_inner();
    let q = clean(params.q, 200);
    let category = clean(params.category, 100);
    let page = params
        .page
        .and_then(|p| p.trim().parse::<u32>().ok())
        .filter(|p| (1..=100_000).contains(p))
        .unwrap_or(1);
    let ctx = trace_context(&req);
    let query = ProductQuery {
        q: q.clone(),
        category: category.clone(),
        page,
        per_page: PER_PAGE,
    };
    let (categories, products) = tokio::join!(logic.categories(&ctx), logic.products(&ctx, &query));
    let (categories, products) = (categories?, products?);

    let total = products.total.max(0) as u64;
    let pages = total.div_ceil(u64::from(PER_PAGE)).max(1) as u32;
    let heading = match (&q, &category) {
        (Some(q), _) => format!("Results for “{q}”"),
        (None, Some(c)) => c.clone(),
        (None, None) => "All products".to_owned(),
    };
    let summary = match total {
        0 => "No products found".to_owned(),
        1 => "1 product".to_owned(),
        n => format!("{n} products"),
    };
    let link = |p: u32| catalog_href(q.as_deref(), category.as_deref(), p);
    let view = CatalogPage {
        title: heading.clone(),
        cart_units: cart.units(),
        categories: categories
            .items
            .iter()
            .map(|c| CategoryView {
                name: c.name.clone(),
                count: c.product_count,
                href: catalog_href(None, Some(&c.name), 1),
                current: category.as_deref() == Some(c.name.as_str()),
            })
            .collect(),
        heading,
        summary,
        products: products.items.iter().map(CardView::from).collect(),
        page,
        pages,
        prev: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
        q: q.clone().unwrap_or_default(),
        category: category.clone(),
    };
    Ok(views::html(StatusCode::OK, &view))
}
