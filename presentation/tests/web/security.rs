//! CSRF on every form, security headers on every page, request body limits.

use crate::helpers::{Client, assert_site_page, spawn_shop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_rejects_a_post_without_a_valid_csrf_token() {
    let shop = spawn_shop().await;
    shop.product("LAMP-1", "Desk Lamp", "Lighting", 2500, 50)
        .await;
    let c = &shop.client;
    c.add_to_cart("LAMP-1", 1).await;
    let token = c.token("LAMP-1").await;
    let key = uuid::Uuid::new_v4().to_string();
    let forms: [(&str, Vec<(&str, &str)>); 4] = [
        ("/cart/add", vec![("sku", "LAMP-1"), ("quantity", "5")]),
        ("/cart/update", vec![("sku", "LAMP-1"), ("quantity", "7")]),
        ("/cart/remove", vec![("sku", "LAMP-1")]),
        (
            "/checkout",
            vec![("email", "ada@example.com"), ("idempotency_key", &key)],
        ),
    ];
    let stranger = Client::new(&shop.base);
    let mut wrong = token.clone();
    wrong.replace_range(0..1, if token.starts_with('a') { "b" } else { "a" });
    for (path, fields) in &forms {
        // No token.
        let page = c.post(path, fields).await;
        assert_eq!(page.status, 403, "{path} without a token");
        assert_site_page(&page);
        assert!(page.body.contains("This form has expired"));
        // A wrong token.
        let mut with_wrong = fields.clone();
        with_wrong.push(("csrf_token", &wrong));
        assert_eq!(
            c.post(path, &with_wrong).await.status,
            403,
            "{path} wrong token"
        );
        // A real token, but from someone else's session (no matching cookie).
        let mut stolen = fields.clone();
        stolen.push(("csrf_token", &token));
        assert_eq!(
            stranger.post(path, &stolen).await.status,
            403,
            "{path} stolen token"
        );
        // Not even a form.
        let res = c
            .http
            .post(c.url(path))
            .header("content-type", "application/json")
            .body(r#"{"csrf_token": "x"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path} JSON");
    }
    // Nothing changed: one lamp, no order.
    assert!(c.get("/cart").await.body.contains("value=\"1\""));
    assert_eq!(shop.order_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_error_pages_carry_security_headers() {
    let shop = spawn_shop().await;
    shop.product("LAMP-1", "Desk Lamp", "Lighting", 2500, 50)
        .await;
    let c = &shop.client;
    let pages = [
        c.get("/").await,
        c.get("/products/LAMP-1").await,
        c.get("/cart").await,
        c.get("/nope").await,
        c.post("/cart/add", &[]).await,
    ];
    for page in &pages {
        let h = |name: &str| {
            page.headers
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing on a {} page", page.status))
                .to_str()
                .unwrap()
                .to_owned()
        };
        let csp = h("content-security-policy");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("x-frame-options"), "DENY");
        assert_eq!(h("referrer-policy"), "same-origin");
        assert!(h("content-type").starts_with("text/html"));
    }
    // The CSRF cookie is HttpOnly.
    let fresh = Client::new(&shop.base).get("/").await;
    let cookie = fresh.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("strata_csrf=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_form_is_refused_with_413() {
    let shop = spawn_shop().await;
    shop.product("LAMP-1", "Desk Lamp", "Lighting", 2500, 50)
        .await;
    let c = &shop.client;
    let token = c.token("LAMP-1").await;
    let padding = "x".repeat(64 * 1024);
    let page = c
        .post(
            "/cart/add",
            &[
                ("csrf_token", &token),
                ("sku", "LAMP-1"),
                ("quantity", "1"),
                ("pad", &padding),
            ],
        )
        .await;
    assert_eq!(page.status, 413);
    assert_site_page(&page);
}
