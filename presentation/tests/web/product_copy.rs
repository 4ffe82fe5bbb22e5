//! Presentation's copy of the products it showed: a product page seen again within
//! logic's stock freshness costs no call to logic, and a stock change still shows on the
//! page within the bound logic promises (a second), since a copy is kept only as long as
//! logic says its answer stays fresh.

use std::time::{Duration, Instant};

use crate::helpers::{Page, Shop, spawn_shop_with};

/// What logic promises every reader, and so every page: a stock change shows this long
/// after its commit at the latest.
const BOUND: Duration = Duration::from_secs(1);

/// The `max` of the page's quantity input: the stock, for stocks under 100.
fn shown_stock(html: &str) -> i32 {
    let at = html.find("name=\"quantity\"").expect("a quantity input");
    let rest = &html[at..];
    let start = rest.find("max=\"").expect("a max") + 5;
    let end = rest[start..].find('"').expect("the max's end");
    rest[start..start + end].parse().expect("a number")
}

/// Whether the page's product came from presentation's copy (`X-Cache: hit`) or from
/// logic (`miss`).
fn source(page: &Page) -> &str {
    page.headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn take_stock(shop: &Shop, sku: &str, units: i32) {
    sqlx::query("UPDATE products SET stock = stock - $2 WHERE sku = $1")
        .bind(sku)
        .bind(units)
        .execute(&shop.env.pool)
        .await
        .expect("taking stock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_seen_again_is_served_from_the_copy_and_still_follows_the_stock_within_a_second() {
    let shop = spawn_shop_with(|_| {}).await;
    shop.product("COPY-1", "Copper Kettle", "Kitchen", 4500, 50)
        .await;

    let mut sources = Vec::new();
    for _ in 0..20 {
        let page = shop.client.get("/products/COPY-1").await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(shown_stock(&page.body), 50);
        sources.push(source(&page).to_owned());
    }
    assert_eq!(sources[0], "miss", "the first page asks logic");
    let copies = sources.iter().filter(|s| *s == "hit").count();
    assert!(
        sources.iter().all(|s| s == "hit" || s == "miss"),
        "{sources:?}"
    );
    // Logic's default freshness is 500 ms: twenty pages in a row take far less, so most of
    // them come from the copy.
    assert!(
        copies >= 10,
        "{copies} of 20 pages from the copy: {sources:?}"
    );

    // As fulfilment takes stock: no event reaches presentation, yet the page follows.
    take_stock(&shop, "COPY-1", 10).await;
    let committed = Instant::now();
    loop {
        let page = shop.client.get("/products/COPY-1").await;
        let shown = shown_stock(&page.body);
        if shown == 40 {
            break;
        }
        assert!(
            committed.elapsed() < BOUND,
            "stock 40 not shown within {BOUND:?}: the page still shows {shown}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        committed.elapsed() < BOUND,
        "took {:?}",
        committed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_entries_every_page_asks_logic() {
    let shop = spawn_shop_with(|s| s.product_cache_entries = 0).await;
    shop.product("COPY-2", "Tin Kettle", "Kitchen", 1500, 30)
        .await;
    for _ in 0..5 {
        let page = shop.client.get("/products/COPY-2").await;
        assert_eq!(shown_stock(&page.body), 30);
        assert_eq!(source(&page), "miss");
    }
}
