//! Every page renders from logic's data: status, key content, escaping, 404s.

use crate::helpers::{Shop, assert_site_page, spawn_shop};

/// The card of one product on a catalog page.
fn card<'a>(html: &'a str, sku: &str) -> &'a str {
    let start = html
        .find(&format!("data-sku=\"{sku}\""))
        .unwrap_or_else(|| panic!("no card for {sku}"));
    let end = html[start..].find("</li>").expect("card end") + start;
    &html[start..end]
}

async fn stock_catalog(shop: &Shop) {
    shop.product("LAMP-1", "Desk Lamp", "Lighting", 2500, 50)
        .await;
    shop.product("LAMP-2", "Floor Lamp", "Lighting", 9900, 3)
        .await;
    shop.product("TABLE-1", "Oak Table", "Furniture", 150_000, 0)
        .await;
    for i in 1..=13 {
        shop.product(
            &format!("MUG-{i}"),
            &format!("Mug no. {i}"),
            "Kitchen",
            900,
            20,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_shows_categories_with_counts_search_and_pagination() {
    let shop = spawn_shop().await;
    stock_catalog(&shop).await;
    let c = &shop.client;

    let home = c.get("/").await;
    assert_eq!(home.status, 200);
    assert_site_page(&home);
    for (name, count) in [("Lighting", 2), ("Furniture", 1), ("Kitchen", 13)] {
        assert!(
            home.body
                .contains(&format!("{name} <span class=\"count\">{count}</span>")),
            "{name} {count}: {}",
            home.body
        );
    }
    assert!(home.body.contains("16 products"));
    assert!(home.body.contains("Page 1 of 2"));
    assert!(home.body.contains("href=\"/?page=2\""));
    assert_eq!(home.body.matches("class=\"card\"").count(), 12);
    assert!(home.body.contains("role=\"search\""));

    let second = c.get("/?page=2").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body.matches("class=\"card\"").count(), 4);
    assert!(second.body.contains("rel=\"prev\""));

    let search = c.get("/?q=lamp").await;
    assert!(search.body.contains("2 products"), "{}", search.body);
    assert!(search.body.contains("Desk Lamp") && search.body.contains("Floor Lamp"));
    assert!(!search.body.contains("Oak Table"));
    assert!(
        search.body.contains("value=\"lamp\""),
        "search keeps the query"
    );

    let kitchen = c.get("/?category=Kitchen&page=2").await;
    assert!(kitchen.body.contains("13 products"));
    assert_eq!(kitchen.body.matches("class=\"card\"").count(), 1);
    assert!(kitchen.body.contains("aria-current=\"page\">Kitchen"));

    // Nonsense page numbers fall back to the first page rather than failing.
    assert_eq!(c.get("/?page=abc").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_show_price_and_stock_state() {
    let shop = spawn_shop().await;
    stock_catalog(&shop).await;
    let page = shop.client.get("/?category=Lighting").await;
    let desk = card(&page.body, "LAMP-1");
    assert!(
        desk.contains("$25.00") && desk.contains("In stock"),
        "{desk}"
    );
    let floor = card(&page.body, "LAMP-2");
    assert!(
        floor.contains("$99.00") && floor.contains("only 3 left"),
        "{floor}"
    );
    let page = shop.client.get("/?category=Furniture").await;
    let table = card(&page.body, "TABLE-1");
    assert!(
        table.contains("$1,500.00") && table.contains("Sold out"),
        "{table}"
    );
    assert!(table.contains("href=\"/products/TABLE-1\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_page_shows_details_and_an_add_to_cart_form() {
    let shop = spawn_shop().await;
    stock_catalog(&shop).await;
    let page = shop.client.get("/products/LAMP-2").await;
    assert_eq!(page.status, 200);
    assert_site_page(&page);
    for needle in [
        "<h1>Floor Lamp</h1>",
        "$99.00",
        "Description of Floor Lamp.",
        "only 3 left",
        "action=\"/cart/add\"",
        "<label for=\"quantity\">Quantity</label>",
        "max=\"3\"",
    ] {
        assert!(page.body.contains(needle), "{needle}: {}", page.body);
    }
    assert_eq!(page.input("sku"), "LAMP-2");
    assert_eq!(page.input("csrf_token").len(), 64);

    let sold_out = shop.client.get("/products/TABLE-1").await;
    assert_eq!(sold_out.status, 200);
    assert!(!sold_out.body.contains("action=\"/cart/add\""));
    assert!(sold_out.body.contains("Sold out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pages_products_and_orders_are_404_pages_in_the_site_look() {
    let shop = spawn_shop().await;
    for path in [
        "/no/such/page",
        "/products/NOPE-1",
        "/orders/not-a-uuid",
        "/orders/3f1d9a3e-0000-4000-8000-000000000000",
        "/orders/3f1d9a3e-0000-4000-8000-000000000000/events",
    ] {
        let page = shop.client.get(path).await;
        assert_eq!(page.status, 404, "{path}");
        assert_site_page(&page);
        assert!(
            page.body.contains("We couldn&#39;t find that page"),
            "{path}: {}",
            page.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_product_data_and_queries_renders_as_text() {
    let shop = spawn_shop().await;
    shop.product(
        "XSS-1",
        "<script>alert(1)</script> Lamp",
        "<b>Evil</b>",
        100,
        5,
    )
    .await;
    let home = shop.client.get("/").await;
    let product = shop.client.get("/products/XSS-1").await;
    let search = shop
        .client
        .get("/?q=%3Cscript%3Ealert(2)%3C/script%3E")
        .await;
    for page in [&home, &product, &search] {
        assert_eq!(page.status, 200);
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(!page.body.contains("<b>Evil"), "{}", page.body);
    }
    // askama escapes with numeric entities.
    assert!(
        home.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62; Lamp"),
        "{}",
        home.body
    );
    assert!(product.body.contains("&#60;b&#62;Evil&#60;/b&#62;"));
    assert!(search.body.contains("&#60;script&#62;alert(2)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_health_readiness_and_metrics() {
    let shop = spawn_shop().await;
    let c = &shop.client;
    let css = c.get("/static/style.css").await;
    assert_eq!(css.status, 200);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let js = c.get("/static/app.js").await;
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.body.contains("EventSource"));
    for asset in [&css, &js] {
        assert!(
            asset.headers.get("set-cookie").is_none(),
            "cacheable assets set no cookie"
        );
    }

    // Nothing is loaded from another origin.
    let home = c.get("/").await;
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!home.body.contains(external), "{external}");
    }
    assert!(!home.body.contains(" style=\""), "no inline styles");
    assert!(!home.body.contains("<script>"), "no inline scripts");

    assert_eq!(c.get("/healthz").await.status, 200);
    let ready = c.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let metrics = c.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("strata_http_requests_total"),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("route=\"/\""), "{}", metrics.body);
    assert!(
        metrics.body.contains("strata_logic_calls_total"),
        "{}",
        metrics.body
    );
}
