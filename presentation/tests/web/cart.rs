//! The cart: add, change, remove, totals; a signed cookie that survives reloads and
//! replicas sharing the key, and is ignored when edited or forged.

use secrecy::SecretString;

use crate::helpers::{Client, Shop, spawn_shop, spawn_shop_with};

async fn two_products(shop: &Shop) {
    shop.product("LAMP-1", "Desk Lamp", "Lighting", 2500, 50)
        .await;
    shop.product("MUG-1", "Blue Mug", "Kitchen", 900, 20).await;
}

fn line<'a>(html: &'a str, sku: &str) -> Option<&'a str> {
    let start = html.find(&format!("class=\"line\" data-sku=\"{sku}\""))?;
    let end = html[start..].find("</li>")? + start;
    Some(&html[start..end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_two_products_change_a_quantity_remove_one_with_totals() {
    let shop = spawn_shop().await;
    two_products(&shop).await;
    let c = &shop.client;

    let added = c.add_to_cart("LAMP-1", 2).await;
    assert_eq!(added.status, 303);
    assert_eq!(added.location(), "/cart?notice=added");
    let set_cookie = added.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("strata_cart="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    assert_eq!(c.add_to_cart("MUG-1", 1).await.status, 303);

    let cart = c.get("/cart?notice=added").await;
    assert_eq!(cart.status, 200);
    assert!(cart.body.contains("Added to your cart."));
    let lamp = line(&cart.body, "LAMP-1").expect("lamp line");
    assert!(lamp.contains("Desk Lamp") && lamp.contains("value=\"2\"") && lamp.contains("$50.00"));
    assert!(
        line(&cart.body, "MUG-1")
            .expect("mug line")
            .contains("$9.00")
    );
    assert!(
        cart.body
            .contains("<strong id=\"cart-total\">$59.00</strong>")
    );
    assert!(cart.body.contains(">3</span>"), "header shows 3 units");

    let token = cart.input("csrf_token");
    let updated = c
        .post(
            "/cart/update",
            &[("csrf_token", &token), ("sku", "MUG-1"), ("quantity", "3")],
        )
        .await;
    assert_eq!(updated.status, 303);
    let cart = c.get("/cart").await;
    assert!(
        cart.body
            .contains("<strong id=\"cart-total\">$77.00</strong>"),
        "{}",
        cart.body
    );

    // Adding more of a product already in the cart adds to its line.
    c.add_to_cart("MUG-1", 2).await;
    let cart = c.get("/cart").await;
    assert!(line(&cart.body, "MUG-1").unwrap().contains("value=\"5\""));

    let removed = c
        .post("/cart/remove", &[("csrf_token", &token), ("sku", "LAMP-1")])
        .await;
    assert_eq!(removed.location(), "/cart?notice=removed");
    // A reload (a new request with the stored cookie) shows the same cart.
    for _ in 0..2 {
        let cart = c.get("/cart").await;
        assert!(line(&cart.body, "LAMP-1").is_none());
        assert!(
            cart.body
                .contains("<strong id=\"cart-total\">$45.00</strong>")
        );
    }
    // Quantity 0 removes the line; the cart is then empty.
    c.post(
        "/cart/update",
        &[("csrf_token", &token), ("sku", "MUG-1"), ("quantity", "0")],
    )
    .await;
    assert!(c.get("/cart").await.body.contains("Your cart is empty"));
    // Another visitor has a cart of their own.
    assert!(
        Client::new(&shop.base)
            .get("/cart")
            .await
            .body
            .contains("Your cart is empty")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_quantities_and_unknown_products_are_refused() {
    let shop = spawn_shop().await;
    two_products(&shop).await;
    shop.product("GONE-1", "Sold Out Thing", "Kitchen", 100, 0)
        .await;
    let c = &shop.client;
    c.add_to_cart("LAMP-1", 1).await;
    let token = c.token("LAMP-1").await;
    for quantity in ["101", "-1", "abc", ""] {
        let res = c
            .post(
                "/cart/update",
                &[
                    ("csrf_token", &token),
                    ("sku", "LAMP-1"),
                    ("quantity", quantity),
                ],
            )
            .await;
        assert_eq!(
            res.location(),
            "/cart?notice=invalid_quantity",
            "{quantity}"
        );
    }
    let add0 = c
        .post(
            "/cart/add",
            &[("csrf_token", &token), ("sku", "LAMP-1"), ("quantity", "0")],
        )
        .await;
    assert_eq!(add0.location(), "/cart?notice=invalid_quantity");
    let unknown = c
        .post(
            "/cart/add",
            &[("csrf_token", &token), ("sku", "NOPE"), ("quantity", "1")],
        )
        .await;
    assert_eq!(unknown.status, 404);
    let sold_out = c
        .post(
            "/cart/add",
            &[("csrf_token", &token), ("sku", "GONE-1"), ("quantity", "1")],
        )
        .await;
    assert_eq!(sold_out.location(), "/cart?notice=sold_out");
    let cart = c.get("/cart").await;
    assert!(line(&cart.body, "LAMP-1").unwrap().contains("value=\"1\""));
    assert!(line(&cart.body, "GONE-1").is_none() && line(&cart.body, "NOPE").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_or_forged_cart_cookie_is_ignored() {
    let shop = spawn_shop().await;
    two_products(&shop).await;
    let c = &shop.client;
    c.add_to_cart("LAMP-1", 2).await;
    let genuine = c.cookie("strata_cart").expect("cart cookie");
    assert!(genuine.contains("LAMP-1"), "{genuine}");
    assert!(c.get("/cart").await.body.contains("$50.00"));

    // Same signature, more lamps: the signature no longer matches.
    let edited = genuine.replace("LAMP-1:2", "LAMP-1:9");
    assert_ne!(edited, genuine);
    c.set_cookie("strata_cart", &edited);
    let cart = c.get("/cart").await;
    assert_eq!(cart.status, 200);
    assert!(cart.body.contains("Your cart is empty"), "{}", cart.body);

    // No signature at all.
    c.set_cookie("strata_cart", "LAMP-1:5");
    assert!(c.get("/cart").await.body.contains("Your cart is empty"));
    // Garbage.
    c.set_cookie("strata_cart", "%%%not-a-cart");
    assert_eq!(c.get("/cart").await.status, 200);

    // The genuine value still works.
    c.set_cookie("strata_cart", &genuine);
    assert!(c.get("/cart").await.body.contains("$50.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_carts_only_when_they_share_the_cookie_key() {
    let key = "a-test-cookie-key-that-is-long-enough-0123456789";
    let mut shop = spawn_shop_with(|s| s.cookie_key = Some(SecretString::from(key))).await;
    two_products(&shop).await;
    shop.client.add_to_cart("MUG-1", 4).await;

    let same_key = shop
        .spawn_presentation(|s| s.cookie_key = Some(SecretString::from(key)))
        .await;
    let other_key = shop.spawn_presentation(|_| {}).await;

    // Cookies are per host, not per port: the same jar goes to every replica.
    let replica = shop.client.for_base(&same_key).get("/cart").await;
    assert!(replica.body.contains("$36.00"), "{}", replica.body);
    let stranger = shop.client.for_base(&other_key).get("/cart").await;
    assert!(
        stranger.body.contains("Your cart is empty"),
        "{}",
        stranger.body
    );
}
