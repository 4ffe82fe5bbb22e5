//! End-to-end in a real headless browser: Debian's chromium driven over WebDriver by
//! chromedriver. logic, a worker and presentation run in-process on free ports; the test
//! browses, searches, fills a cart, checks out and watches the order page turn to
//! fulfilled by itself. A screenshot per step goes to `target/artifacts/browser/`.
//!
//! chromedriver must be installed (`.ci/run` installs it). `STRATA_SKIP_BROWSER=1` skips
//! the test on machines without it; without that variable a missing driver fails the test.

mod driver;

use std::time::Duration;

use fantoccini::{Client, Locator};
use presentation::Settings;
use secrecy::SecretString;
use testkit::TestEnv;
use testkit::apps;

use crate::driver::{Browser, Shots};

struct Stack {
    // Fields drop in order: the apps stop before their services are removed.
    _apps: (apps::Logic, apps::Worker, apps::Presentation),
    env: TestEnv,
    base: String,
    logic_url: String,
}

const LOGIC_ADMIN_TOKEN: &str = "browser-test-admin-token";
const OPS_PASSWORD: &str = "browser test password";

/// Settings tweak: the ops console on, with the test password and logic's token.
fn with_ops(settings: &mut Settings) {
    let hash = presentation::ops::hash_password(OPS_PASSWORD).expect("hashing");
    settings.ops_password_hash = Some(SecretString::from(hash));
    settings.logic_admin_token = Some(SecretString::from(LOGIC_ADMIN_TOKEN.to_owned()));
}

async fn start_stack() -> Stack {
    let env = TestEnv::new().await;
    let logic = apps::logic(&env, Some(LOGIC_ADMIN_TOKEN), |_| {}).await;
    // Slow enough payments that the page is seen pending before it turns fulfilled.
    let worker = apps::worker(&env, |s| s.payment_latency_ms = 2000);
    let presentation = apps::presentation(&logic.base, with_ops).await;
    let products = [
        ("LAMP-1", "Desk Lamp", "Lighting", 2500, 40),
        ("LAMP-2", "Floor Lamp", "Lighting", 9900, 3),
        ("MUG-1", "Blue Mug", "Kitchen", 900, 25),
        ("MUG-2", "Green Mug", "Kitchen", 950, 25),
        ("BOWL-1", "Stoneware Bowl", "Kitchen", 1800, 12),
        ("TABLE-1", "Oak Table", "Furniture", 150_000, 0),
        ("CHAIR-1", "Ash Chair", "Furniture", 24_000, 4),
        ("RUG-1", "Wool Rug", "Textiles", 12_000, 9),
    ];
    for (sku, name, category, price, stock) in products {
        sqlx::query(
            "INSERT INTO products (sku, name, description, category, price_cents, stock) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(sku)
        .bind(name)
        .bind(format!(
            "{name}, made to last. Simple lines that suit any room."
        ))
        .bind(category)
        .bind(price)
        .bind(stock)
        .execute(&env.pool)
        .await
        .expect("inserting a product");
    }
    Stack {
        env,
        base: presentation.base.clone(),
        logic_url: logic.base.clone(),
        _apps: (logic, worker, presentation),
    }
}

/// Places `n` one-mug orders through logic's API, a few hundred milliseconds apart.
async fn place_orders(logic_url: String, n: usize) {
    let http = reqwest::Client::new();
    for _ in 0..n {
        let res = http
            .post(format!("{logic_url}/api/v1/orders"))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&serde_json::json!({
                "email": "ops@example.com",
                "lines": [{"sku": "MUG-1", "quantity": 1}],
            }))
            .send()
            .await
            .expect("placing an order");
        assert_eq!(res.status(), 202);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("element text")
}

/// Polls `css`'s text until it satisfies `ok`.
async fn wait_text(c: &Client, css: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
    let start = std::time::Instant::now();
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await
            && let Ok(t) = el.text().await
            && ok(&t)
        {
            return t;
        }
        assert!(start.elapsed() < timeout, "timed out waiting on {css}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_attr(c: &Client, css: &str, attr: &str, want: &str, timeout: Duration) {
    let start = std::time::Instant::now();
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await
            && let Ok(Some(v)) = el.attr(attr).await
            && v == want
        {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {css}[{attr}={want}]"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(c: &Client, css: &str, value: &str) {
    let input = c.find(Locator::Css(css)).await.expect(css);
    input.clear().await.expect("clear");
    input.send_keys(value).await.expect("typing");
}

async fn click(c: &Client, locator: Locator<'_>) {
    c.find(locator)
        .await
        .expect("element to click")
        .click()
        .await
        .expect("click");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shopper_browses_fills_a_cart_checks_out_and_sees_the_order_fulfilled() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let stack = start_stack().await;
    let shots = Shots::new();
    let c = &browser.client;
    let url = |path: &str| format!("{}{path}", stack.base);

    // Browse.
    c.goto(&url("/")).await.unwrap();
    assert_eq!(text(c, "h1").await, "All products");
    let kitchen = text(c, ".categories a[href='/?category=Kitchen'] .count").await;
    assert_eq!(kitchen, "3", "category counts");
    shots.take(c, "01-catalog").await;

    // Search.
    fill(c, "#q", "mug").await;
    click(c, Locator::Css("form.search button")).await;
    wait_text(c, "#results-summary", Duration::from_secs(5), |t| {
        t == "2 products"
    })
    .await;
    let results = text(c, ".grid").await;
    assert!(results.contains("Blue Mug") && !results.contains("Desk Lamp"));
    shots.take(c, "02-search").await;

    // Add two products.
    click(c, Locator::LinkText("Blue Mug")).await;
    wait_text(c, "h1", Duration::from_secs(5), |t| t == "Blue Mug").await;
    fill(c, "#quantity", "2").await;
    shots.take(c, "03-product").await;
    click(c, Locator::Css(".add-form button")).await;
    wait_text(c, "[role=status]", Duration::from_secs(5), |t| {
        t.contains("Added")
    })
    .await;

    click(c, Locator::LinkText("Catalog")).await;
    click(c, Locator::Css(".categories a[href='/?category=Lighting']")).await;
    wait_text(c, "h1", Duration::from_secs(5), |t| t == "Lighting").await;
    click(c, Locator::LinkText("Desk Lamp")).await;
    wait_text(c, "h1", Duration::from_secs(5), |t| t == "Desk Lamp").await;
    click(c, Locator::Css(".add-form button")).await;
    wait_text(c, "#cart-total", Duration::from_secs(5), |t| t == "$43.00").await;

    // Change a quantity.
    fill(c, "li[data-sku='LAMP-1'] input[name=quantity]", "3").await;
    click(c, Locator::Css("li[data-sku='LAMP-1'] .qty-form button")).await;
    wait_text(c, "#cart-total", Duration::from_secs(5), |t| t == "$93.00").await;
    assert!(
        text(c, ".cart-link").await.contains('5'),
        "header counts 5 units"
    );
    shots.take(c, "04-cart").await;
    c.refresh().await.unwrap();
    assert_eq!(
        text(c, "#cart-total").await,
        "$93.00",
        "the cart survives a reload"
    );

    // A bad email is shown next to the field.
    click(c, Locator::LinkText("Check out")).await;
    wait_text(c, "h1", Duration::from_secs(5), |t| t == "Checkout").await;
    fill(c, "#email", "not-an-email").await;
    click(c, Locator::Css(".checkout-form button")).await;
    let error = wait_text(c, "#email-error", Duration::from_secs(5), |t| !t.is_empty()).await;
    assert!(error.contains("name@example.com"), "{error}");
    let kept = c
        .find(Locator::Css("#email"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("not-an-email"));
    shots.take(c, "05-checkout-error").await;

    // Check out and watch the order turn fulfilled without a reload.
    fill(c, "#email", "ada@example.com").await;
    click(c, Locator::Css(".checkout-form button")).await;
    wait_attr(
        c,
        "#order-status",
        "data-status",
        "pending",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/orders/")
    );
    c.execute("window.stillTheSamePage = true; return true;", vec![])
        .await
        .unwrap();
    shots.take(c, "06-order-pending").await;
    wait_attr(
        c,
        "#order-status",
        "data-status",
        "fulfilled",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(text(c, "#order-status").await, "Fulfilled");
    let same = c
        .execute("return window.stillTheSamePage === true;", vec![])
        .await
        .unwrap();
    assert_eq!(
        same,
        serde_json::Value::Bool(true),
        "the page was not reloaded"
    );
    shots.take(c, "07-order-fulfilled").await;
    stack.env.wait_all_final(Duration::from_secs(5)).await;
    assert_eq!(stack.env.stock("LAMP-1").await, 37);

    // The cart is empty after the order; a 404 keeps the site's look.
    c.goto(&url("/cart")).await.unwrap();
    assert!(text(c, "main").await.contains("Your cart is empty"));
    c.goto(&url("/no/such/page")).await.unwrap();
    assert_eq!(text(c, "h1").await, "We couldn't find that page");
    shots.take(c, "08-not-found").await;

    // A phone-sized window.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&url("/")).await.unwrap();
    shots.take(c, "09-catalog-phone").await;
    c.set_window_size(1280, 900).await.unwrap();

    // The ops console: log in, let the charts draw a few readings while orders come in.
    c.goto(&url("/ops")).await.unwrap();
    wait_text(c, "h1", Duration::from_secs(5), |t| {
        t == "Operations console"
    })
    .await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/ops/login")
    );
    fill(c, "#user", "admin").await;
    fill(c, "#password", "not the password").await;
    click(c, Locator::Css(".login-form button")).await;
    wait_text(c, "#login-error", Duration::from_secs(10), |t| {
        t.contains("Wrong")
    })
    .await;
    fill(c, "#user", "admin").await;
    fill(c, "#password", OPS_PASSWORD).await;
    click(c, Locator::Css(".login-form button")).await;
    wait_text(c, "#decisions-heading", Duration::from_secs(10), |t| {
        !t.is_empty()
    })
    .await;
    let shoppers = tokio::spawn(place_orders(stack.logic_url.clone(), 12));
    tokio::time::sleep(Duration::from_secs(7)).await;
    shoppers.await.expect("placing orders");
    let readings = c
        .execute(
            "return Number(document.body.getAttribute('data-readings') || 0);",
            vec![],
        )
        .await
        .unwrap();
    assert!(readings.as_u64().unwrap_or(0) >= 3, "readings: {readings}");
    // uPlot drew (its script ran under the CSP) and the charts are shown.
    let canvases = c.find_all(Locator::Css("#charts canvas")).await.unwrap();
    assert_eq!(canvases.len(), 5, "one canvas per chart");
    let hidden = c
        .execute("return document.getElementById('charts').hidden;", vec![])
        .await
        .unwrap();
    assert_eq!(hidden, serde_json::Value::Bool(false));
    assert!(text(c, "#ops-status").await.starts_with("Live"));
    c.set_window_size(1280, 1500).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    shots.take(c, "11-ops-console").await;
    c.set_window_size(1280, 900).await.unwrap();

    // The stream's analytics: the orders above are in the event stream; an analytics
    // instance reads them into one-minute windows and the page's charts and table follow
    // without a reload.
    let analytics = apps::analytics(&stack.env);
    c.goto(&url("/ops/analytics")).await.unwrap();
    c.execute("window.stillTheSamePage = true; return true;", vec![])
        .await
        .unwrap();
    let placed = || async {
        c.execute(
            "var n = 0; document.querySelectorAll('#analytics-windows tbody tr').forEach(\
             function (r) { var c = r.querySelectorAll('td'); if (c.length > 1) \
             n += Number(c[1].textContent) || 0; }); return n;",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(0)
    };
    let start = std::time::Instant::now();
    while placed().await < 12 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the 12 orders never reached the analytics table"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    place_orders(stack.logic_url.clone(), 3).await;
    let start = std::time::Instant::now();
    while placed().await < 15 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "three more orders never reached the analytics table"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let same = c
        .execute("return window.stillTheSamePage === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, serde_json::Value::Bool(true), "the page was reloaded");
    let canvases = c
        .find_all(Locator::Css("#analytics-charts canvas"))
        .await
        .unwrap();
    assert_eq!(canvases.len(), 3, "one canvas per analytics chart");
    assert!(text(c, "#analytics-status").await.starts_with("Live"));
    shots.take(c, "12-ops-analytics").await;
    // The stream's shards, with the analytics application's checkpoint and lease.
    c.goto(&url("/ops/stream")).await.unwrap();
    let shards = text(c, "main").await;
    assert!(shards.contains("events.shard.0"), "{shards}");
    assert!(shards.contains("analytics"), "{shards}");
    shots.take(c, "13-ops-stream").await;
    analytics.stop().await.expect("analytics stopped");

    // Logic unreachable: the polite 503 page.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = apps::presentation(&dead, with_ops).await;
    c.goto(&format!("{}/", down.base)).await.unwrap();
    assert_eq!(text(c, "h1").await, "The shop is taking a short break");
    shots.take(c, "10-unavailable").await;
    drop(down);

    browser.close().await;
    eprintln!("screenshots in {}", shots.dir.display());
}
