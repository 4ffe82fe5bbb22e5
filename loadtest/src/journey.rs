//! The shopper's journey, as one Goose transaction: browse, view products chosen by
//! popularity, add to cart, and (for some shoppers) check out and follow the order page
//! until the status is final. Requests are named by page, so the report has one line
//! per page.

use std::time::{Duration, Instant};

use goose::prelude::*;

use crate::shared;

/// The value of the first `attr="…"` after `marker` in an HTML page.
fn attribute_after<'a>(html: &'a str, marker: &str, attr: &str) -> Option<&'a str> {
    let rest = &html[html.find(marker)? + marker.len()..];
    let key = format!("{attr}=\"");
    let start = rest.find(&key)? + key.len();
    let end = rest[start..].find('"')?;
    Some(&rest[start..start + end])
}

/// Every product link (`href="/products/SKU"`) of a page.
pub fn product_links(html: &str) -> Vec<String> {
    html.split("href=\"/products/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|s| contracts::is_valid_sku(s))
        .map(str::to_owned)
        .collect()
}

/// Reads the first catalog pages and returns their products, in catalog order (which
/// becomes the popularity order).
pub async fn discover_skus(target: &str, pages: usize) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut skus = Vec::new();
    for page in 1..=pages.max(1) {
        let html = http
            .get(format!("{target}/?page={page}"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let found = product_links(&html);
        if found.is_empty() {
            break;
        }
        for sku in found {
            if !skus.contains(&sku) {
                skus.push(sku);
            }
        }
    }
    Ok(skus)
}

pub fn scenario() -> Scenario {
    scenario!("Shopper").register_transaction(transaction!(shop).set_name("journey"))
}

/// The flash sale's buyer: at each arrival slot, a shopper opens a product page, puts it
/// in the cart and checks out (a placed order empties the cart); the order page is not
/// followed here.
pub fn flash_sale_scenario() -> Scenario {
    scenario!("Buyer").register_transaction(transaction!(flash_buy).set_name("flash sale"))
}

struct Page {
    status: u16,
    url: String,
    body: String,
}

async fn send(
    user: &mut GooseUser,
    name: &str,
    request: GooseRequest<'_>,
) -> Result<Option<Page>, Box<TransactionError>> {
    let shared = shared::get();
    let mut goose = user.request(request).await?;
    let page = match goose.response {
        Ok(response) => {
            let status = response.status().as_u16();
            let url = response.url().to_string();
            match response.text().await {
                Ok(body) => Some(Page { status, url, body }),
                Err(err) => {
                    let tag = format!("{name}: body: {err}");
                    let _ = user.set_failure(&tag, &mut goose.request, None, None);
                    None
                }
            }
        }
        Err(_) => None,
    };
    let ok = page.as_ref().is_some_and(|p| p.status < 400);
    shared.count_request(ok);
    Ok(page.filter(|p| p.status < 400))
}

async fn get(
    user: &mut GooseUser,
    name: &str,
    path: &str,
) -> Result<Option<Page>, Box<TransactionError>> {
    let request = GooseRequest::builder().path(path).name(name).build();
    send(user, name, request).await
}

async fn post_form(
    user: &mut GooseUser,
    name: &str,
    path: &str,
    form: &[(&str, &str)],
) -> Result<Option<Page>, Box<TransactionError>> {
    let builder = user
        .get_request_builder(&GooseMethod::Post, path)?
        .form(form);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path(path)
        .name(name)
        .set_request_builder(builder)
        .build();
    send(user, name, request).await
}

/// Fills in and sends the checkout form of the cart in the session: the answer is the
/// order's page (or the cart again, when an item sold out meanwhile); `None` when the form
/// did not come (an empty cart redirects away from it) or the post failed. With the page
/// comes the moment the order was sent.
async fn check_out(
    user: &mut GooseUser,
    email_prefix: &str,
) -> Result<Option<(Page, Instant)>, Box<TransactionError>> {
    let Some(form) = get(user, "checkout form", "/checkout").await? else {
        return Ok(None);
    };
    if !form.url.contains("/checkout") {
        return Ok(None);
    }
    let (Some(csrf), Some(key)) = (
        attribute_after(&form.body, "name=\"csrf_token\"", "value").map(str::to_owned),
        attribute_after(&form.body, "name=\"idempotency_key\"", "value").map(str::to_owned),
    ) else {
        return Ok(None);
    };
    let n = shared::get()
        .orders_placed
        .load(std::sync::atomic::Ordering::Relaxed);
    let email = format!("{email_prefix}{n}@example.com");
    let placed_at = Instant::now();
    let page = post_form(
        user,
        "place order",
        "/checkout",
        &[
            ("csrf_token", &csrf),
            ("idempotency_key", &key),
            ("email", &email),
        ],
    )
    .await?;
    Ok(page.map(|page| (page, placed_at)))
}

async fn shop(user: &mut GooseUser) -> TransactionResult {
    let shared = shared::get();
    // Browse: the catalog, a popular page more often than a far one, sometimes a search.
    let page = 1 + (shared.pick_sku().len() % 3);
    get(user, "catalog", &format!("/?page={page}")).await?;
    tokio::time::sleep(shared.think()).await;

    // View one to three products by popularity; put the ones in stock in the cart.
    let views = 1 + rand::random_range(0..3usize);
    let mut in_cart = 0;
    for _ in 0..views {
        let sku = shared.pick_sku().to_owned();
        let Some(product) = get(user, "product", &format!("/products/{sku}")).await? else {
            continue;
        };
        tokio::time::sleep(shared.think()).await;
        let Some(csrf) = attribute_after(&product.body, "name=\"csrf_token\"", "value") else {
            // No form: the product is sold out.
            shared
                .sold_out_skips
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        let csrf = csrf.to_owned();
        if post_form(
            user,
            "add to cart",
            "/cart/add",
            &[("csrf_token", &csrf), ("sku", &sku), ("quantity", "1")],
        )
        .await?
        .is_some()
        {
            in_cart += 1;
        }
    }
    if in_cart == 0 || !shared.checks_out() {
        return Ok(());
    }

    // Check out.
    let Some((order_page, placed_at)) = check_out(user, "shopper").await? else {
        return Ok(());
    };
    let Some(path) = order_page
        .url
        .find("/orders/")
        .map(|i| order_page.url[i..].to_owned())
    else {
        // Back on the cart (an item sold out meanwhile): no order.
        return Ok(());
    };
    shared
        .orders_placed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    // Follow the order page until the status is final.
    let mut body = order_page.body;
    let deadline = Duration::from_secs(shared.args.order_timeout_secs);
    loop {
        match attribute_after(&body, "id=\"order-status\"", "data-status") {
            Some("fulfilled") => {
                shared.record_final(true, placed_at.elapsed());
                break;
            }
            Some("rejected") => {
                shared.record_final(false, placed_at.elapsed());
                break;
            }
            _ => {}
        }
        if placed_at.elapsed() > deadline {
            shared
                .orders_timed_out
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        body = match get(user, "order page", &path).await? {
            Some(page) => page.body,
            None => String::new(),
        };
    }
    Ok(())
}

async fn flash_buy(user: &mut GooseUser) -> TransactionResult {
    let shared = shared::get();
    shared.next_arrival().await;
    let sku = shared.pick_sku().to_owned();
    let Some(product) = get(user, "product", &format!("/products/{sku}")).await? else {
        return Ok(());
    };
    let Some(csrf) = attribute_after(&product.body, "name=\"csrf_token\"", "value") else {
        shared
            .sold_out_skips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(());
    };
    let csrf = csrf.to_owned();
    if post_form(
        user,
        "add to cart",
        "/cart/add",
        &[("csrf_token", &csrf), ("sku", &sku), ("quantity", "1")],
    )
    .await?
    .is_none()
    {
        return Ok(());
    }
    let Some((order_page, _)) = check_out(user, "buyer").await? else {
        return Ok(());
    };
    if let Some(i) = order_page.url.find("/orders/") {
        shared.record_placed(order_page.url[i..].to_owned());
    }
    Ok(())
}

/// After a flash sale: reads every placed order's page until its status is final or
/// `--order-timeout-secs` passed since the sale ended.
pub async fn follow_placed_orders(target: &str) -> anyhow::Result<()> {
    let shared = shared::get();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut pending: Vec<(String, Instant)> =
        std::mem::take(&mut *shared.placed.lock().unwrap_or_else(|p| p.into_inner()));
    let deadline = Instant::now() + Duration::from_secs(shared.args.order_timeout_secs);
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (path, placed_at) in pending {
            let status = match http.get(format!("{target}{path}")).send().await {
                Ok(response) if response.status().is_success() => {
                    let body = response.text().await.unwrap_or_default();
                    attribute_after(&body, "id=\"order-status\"", "data-status").map(str::to_owned)
                }
                _ => None,
            };
            match status.as_deref() {
                Some("fulfilled") => shared.record_final(true, placed_at.elapsed()),
                Some("rejected") => shared.record_final(false, placed_at.elapsed()),
                _ => still.push((path, placed_at)),
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            shared
                .orders_timed_out
                .fetch_add(pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_forms_and_links() {
        let html = r#"<a href="/products/KIT-00001">x</a><a href="/products/BAD sku">y</a>
            <input type="hidden" name="csrf_token" value="tok123">
            <strong id="order-status" class="status" data-status="pending">"#;
        assert_eq!(product_links(html), vec!["KIT-00001".to_owned()]);
        assert_eq!(
            attribute_after(html, "name=\"csrf_token\"", "value"),
            Some("tok123")
        );
        assert_eq!(
            attribute_after(html, "id=\"order-status\"", "data-status"),
            Some("pending")
        );
        assert_eq!(attribute_after(html, "name=\"nothing\"", "value"), None);
    }
}
