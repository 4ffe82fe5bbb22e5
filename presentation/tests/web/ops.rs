//! The ops console: admin login, session cookie, CSRF, the first reading, the JSON feed of
//! the live charts, and the dead-letter queue with its redrive button, against a real
//! logic (with an admin token) and real workers.

use std::time::Duration;

use contracts::{OpsStats, Order, OrderStatus};
use secrecy::{ExposeSecret, SecretString};
use testkit::apps;

use crate::helpers::{
    Client, LOGIC_ADMIN_TOKEN, OPS_PASSWORD, Page, Shop, assert_site_page, spawn_shop_with,
    with_ops,
};

fn set_cookie<'a>(page: &'a Page, name: &str) -> Option<&'a str> {
    page.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// The `name=value` part of the session cookie a login set.
fn session_pair(page: &Page) -> String {
    let header = set_cookie(page, "strata_ops").expect("a session cookie");
    header.split(';').next().unwrap().to_owned()
}

/// GETs `path` with exactly this Cookie header, no jar.
async fn get_with_cookie(base: &str, path: &str, cookie: &str) -> Page {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET");
    Page {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: res.text().await.unwrap(),
    }
}

/// Places an order through logic's API.
async fn place_order(shop: &Shop, sku: &str, quantity: i32) -> Order {
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/orders", shop.logic_base))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&serde_json::json!({
            "email": "ops@example.com",
            "lines": [{"sku": sku, "quantity": quantity}],
        }))
        .send()
        .await
        .expect("placing an order");
    assert_eq!(res.status(), 202);
    res.json().await.expect("order JSON")
}

async fn stats_json(c: &Client) -> (u16, serde_json::Value) {
    let res = c.http.get(c.url("/ops/stats.json")).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ops_path_requires_a_login() {
    let shop = spawn_shop_with(with_ops).await;
    let c = &shop.client;
    for path in ["/ops", "/ops/", "/ops/anything/else"] {
        let page = c.get(path).await;
        assert_eq!(page.status, 303, "{path}");
        assert_eq!(page.location(), "/ops/login", "{path}");
    }
    let token = c.get("/ops/login").await.input("csrf_token");
    let page = c.post("/ops/dlq/redrive", &[("csrf_token", &token)]).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "/ops/login");
    let (status, body) = stats_json(c).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let login = c.get("/ops/login").await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("type=\"password\""));
    assert!(
        login
            .headers
            .get("content-security-policy")
            .is_some_and(|v| !v.to_str().unwrap().contains("unsafe-inline"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_gets_401_and_the_right_one_a_session_that_shows_the_numbers() {
    let mut shop = spawn_shop_with(with_ops).await;
    shop.spawn_worker(0);
    shop.product("OPS-1", "Ops Mug", "Kitchen", 900, 10).await;
    let order = place_order(&shop, "OPS-1", 2).await;
    let c = &shop.client;

    for (user, password) in [
        ("admin", "wrong"),
        ("root", OPS_PASSWORD),
        ("admin", ""),
        ("admin ", "correct horse battery stapl"),
    ] {
        let page = c.ops_login(user, password).await;
        assert_eq!(page.status, 401, "{user}/{password}");
        assert!(page.body.contains("Wrong user name or password."));
        assert!(!page.body.contains(OPS_PASSWORD));
        assert!(set_cookie(&page, "strata_ops").is_none(), "no session");
        assert_eq!(c.get("/ops").await.status, 303);
    }

    let page = c.ops_login("admin", OPS_PASSWORD).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location(), "/ops");
    let cookie = set_cookie(&page, "strata_ops").unwrap().to_lowercase();
    for attribute in ["httponly", "samesite=strict", "path=/ops", "max-age=28800"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    // Logged in, the login page sends you on.
    assert_eq!(c.get("/ops/login").await.location(), "/ops");

    testkit::eventually(Duration::from_secs(30), "the order fulfilled", || async {
        let (status, _) = shop.env.order_status(order.id).await;
        (status == "fulfilled").then_some(())
    })
    .await;
    let page = c.get("/ops").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_site_page(&page);
    assert!(
        page.body.contains("data-stat=\"fulfilled\">1</dd>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-stat=\"pending\">0</dd>"));
    assert!(page.body.contains("data-stat=\"reserved\">0</dd>"));
    assert!(page.body.contains("data-stat=\"paid\">0</dd>"));
    assert!(
        page.body.contains("data-stat=\"dlq\">0</dd>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("No dead letters."));
    assert!(page.body.contains("/static/vendor/uPlot.iife.min.js"));
    assert!(
        !page.body.contains(LOGIC_ADMIN_TOKEN),
        "logic's token stays on the server"
    );

    let (status, body) = stats_json(c).await;
    assert_eq!(status, 200, "{body}");
    let stats: OpsStats = serde_json::from_value(body).expect("OpsStats");
    assert_eq!(stats.orders.fulfilled, 1);
    // The broker's figures lag a few seconds behind (management statistics interval).
    testkit::eventually(
        Duration::from_secs(20),
        "the worker seen as a consumer",
        || async {
            let (_, body) = stats_json(c).await;
            let stats: OpsStats = serde_json::from_value(body).ok()?;
            stats.queue.filter(|q| q.consumers >= 1).map(|_| ())
        },
    )
    .await;

    // Assets of the console are served by presentation itself.
    for path in [
        "/static/vendor/uPlot.iife.min.js",
        "/static/vendor/uPlot.min.css",
        "/static/ops.js",
        "/static/ops_charts.js",
        "/static/ops.css",
    ] {
        let asset = c.get(path).await;
        assert_eq!(asset.status, 200, "{path}");
        assert!(asset.body.len() > 500, "{path}");
    }

    // Logging out ends the session in this browser.
    let token = page.input("csrf_token");
    let out = c.post("/ops/logout", &[("csrf_token", &token)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), "/ops/login");
    assert_eq!(c.get("/ops").await.status, 303);
    let (status, _) = stats_json(c).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_edited_and_foreign_session_cookies_are_ignored() {
    let key = "k".repeat(40);
    let shop = spawn_shop_with(|s| {
        with_ops(s);
        s.cookie_key = Some(SecretString::from(key.clone()));
    })
    .await;
    let login = shop.client.ops_login("admin", OPS_PASSWORD).await;
    assert_eq!(login.status, 303);
    let pair = session_pair(&login);
    assert_eq!(get_with_cookie(&shop.base, "/ops", &pair).await.status, 200);

    // Its value is `<signature><expiry>|<salt>|<user>`: push the expiry out, change the user.
    let (name, value) = pair.split_once('=').unwrap();
    let decoded = value.replace("%7C", "|");
    let pipe = decoded.find('|').unwrap();
    let edited = [
        format!("{name}={}9{}", &decoded[..pipe], &decoded[pipe..]),
        format!("{name}={}", decoded.replace("|admin", "|root")),
        format!("{name}=9999999999|x|admin"),
        format!("{name}="),
    ];
    for cookie in &edited {
        let page = get_with_cookie(&shop.base, "/ops", cookie).await;
        assert_eq!(page.status, 303, "{cookie}");
        let page = get_with_cookie(&shop.base, "/ops/stats.json", cookie).await;
        assert_eq!(page.status, 401, "{cookie}");
    }

    // Signed by another key: ignored.
    let other = apps::presentation(&shop.logic_base, |s| {
        with_ops(s);
        s.cookie_key = Some(SecretString::from("z".repeat(40)));
    })
    .await;
    let foreign = Client::new(&other.base)
        .ops_login("admin", OPS_PASSWORD)
        .await;
    let foreign = session_pair(&foreign);
    assert_eq!(
        get_with_cookie(&other.base, "/ops", &foreign).await.status,
        200
    );
    assert_eq!(
        get_with_cookie(&shop.base, "/ops", &foreign).await.status,
        303
    );
    drop(other);

    // Same key, but the password has changed since: the old session is over.
    let new_hash = presentation::ops::hash_password("a new password").unwrap();
    let changed = apps::presentation(&shop.logic_base, |s| {
        with_ops(s);
        s.cookie_key = Some(SecretString::from(key.clone()));
        s.ops_password_hash = Some(SecretString::from(new_hash));
    })
    .await;
    assert_eq!(
        get_with_cookie(&changed.base, "/ops", &pair).await.status,
        303
    );
    let same_hash = apps::presentation(&shop.logic_base, |s| {
        with_ops(s);
        s.cookie_key = Some(SecretString::from(key.clone()));
    })
    .await;
    assert_eq!(
        get_with_cookie(&same_hash.base, "/ops", &pair).await.status,
        200,
        "another replica with the same key and hash accepts it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_forms_reject_posts_without_a_valid_csrf_token() {
    let shop = spawn_shop_with(with_ops).await;
    let c = &shop.client;
    assert_eq!(c.ops_login("admin", OPS_PASSWORD).await.status, 303);
    for path in ["/ops/dlq/redrive", "/ops/logout"] {
        let page = c.post(path, &[]).await;
        assert_eq!(page.status, 403, "{path}");
        let page = c.post(path, &[("csrf_token", &"0".repeat(64))]).await;
        assert_eq!(page.status, 403, "{path} wrong token");
    }
    // Still logged in: the logout above did not happen.
    assert_eq!(c.get("/ops").await.status, 200);
    // A login form without a token is refused before the password is even looked at.
    let stranger = Client::new(&shop.base);
    let page = stranger
        .post(
            "/ops/login",
            &[("user", "admin"), ("password", OPS_PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(set_cookie(&page, "strata_ops").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dlq_table_lists_a_real_dead_letter_and_redrive_moves_it_back() {
    let mut shop = spawn_shop_with(with_ops).await;
    shop.product("DLQ-1", "Dead Mug", "Kitchen", 800, 5).await;

    // A worker whose database is gone fails every attempt until the delivery limit.
    let url = shop.env.data.database_url.expose_secret().to_owned();
    let broken = apps::worker(&shop.env, |s| {
        s.data.database_url = SecretString::from(format!("{url}_gone"));
        s.data.database_acquire_timeout_ms = 300;
        s.retry_delay_ms = 20;
    });

    let order = place_order(&shop, "DLQ-1", 2).await;
    let c = &shop.client.for_base(&shop.base);
    assert_eq!(c.ops_login("admin", OPS_PASSWORD).await.status, 303);
    let page = testkit::eventually(Duration::from_secs(60), "a dead letter on /ops", || async {
        let page = c.get("/ops").await;
        page.body.contains(&order.id.to_string()).then_some(page)
    })
    .await;
    drop(broken);
    assert!(page.body.contains("delivery_limit"), "{}", page.body);
    assert!(page.body.contains("FulfilOrder"));
    assert!(page.body.contains("id=\"dlq-total\">1<"), "{}", page.body);
    assert!(
        page.body.contains("data-stat=\"dlq\">1</dd>"),
        "{}",
        page.body
    );

    shop.spawn_worker(0);
    let token = page.input("csrf_token");
    let done = c.post("/ops/dlq/redrive", &[("csrf_token", &token)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/ops?notice=redriven&moved=1&left=0#dlq");
    let page = c.get("/ops?notice=redriven&moved=1&left=0").await;
    assert!(
        page.body.contains("1 message(s) moved back"),
        "{}",
        page.body
    );

    testkit::eventually(Duration::from_secs(30), "the order fulfilled", || async {
        let (status, _) = shop.env.order_status(order.id).await;
        (status == OrderStatus::Fulfilled.as_str()).then_some(())
    })
    .await;
    assert_eq!(shop.env.stock("DLQ-1").await, 3);
    let page = c.get("/ops").await;
    assert!(page.body.contains("No dead letters."), "{}", page.body);
    assert!(!page.body.contains(&order.id.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_disabled_without_a_password_hash() {
    let shop = spawn_shop_with(|s| {
        s.logic_admin_token = Some(SecretString::from(LOGIC_ADMIN_TOKEN.to_owned()));
    })
    .await;
    let c = &shop.client;
    for path in ["/ops", "/ops/login", "/ops/stats.json", "/ops/x"] {
        assert_eq!(c.get(path).await.status, 404, "{path}");
    }
    shop.product("X-1", "Mug", "Kitchen", 900, 10).await;
    let token = c.token("X-1").await;
    for path in ["/ops/login", "/ops/logout", "/ops/dlq/redrive"] {
        let page = c
            .post(
                path,
                &[("csrf_token", &token), ("user", "admin"), ("password", "")],
            )
            .await;
        assert_eq!(page.status, 404, "{path}");
        assert_site_page(&page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_logic_token_is_explained_on_the_page_not_hidden() {
    let shop = spawn_shop_with(|s| {
        with_ops(s);
        s.logic_admin_token = Some(SecretString::from("not-the-token".to_owned()));
    })
    .await;
    let c = &shop.client;
    assert_eq!(c.ops_login("admin", OPS_PASSWORD).await.status, 303);
    let page = c.get("/ops").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"stats-error\""), "{}", page.body);
    assert!(
        page.body.contains("Logic refused the console"),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"dlq-error\""));
    let (status, body) = stats_json(c).await;
    assert_eq!(status, 502, "{body}");
}
