//! Checkout: field errors from presentation and from logic, one order per idempotency key,
//! and the order page following the status (and each step of the saga) to its end, or to a
//! stop of presentation.

use std::time::{Duration, Instant};

use presentation::{Application, Settings};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Page, Shop, spawn_shop};

async fn cart_with_lamps(shop: &Shop) -> Page {
    shop.product("LAMP-1", "Desk Lamp", "Lighting", 2500, 50)
        .await;
    shop.client.add_to_cart("LAMP-1", 2).await;
    let page = shop.client.get("/checkout").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

async fn submit(shop: &Shop, form: &Page, email: &str) -> Page {
    let token = form.input("csrf_token");
    let key = form.input("idempotency_key");
    shop.client
        .post(
            "/checkout",
            &[
                ("csrf_token", &token),
                ("idempotency_key", &key),
                ("email", email),
            ],
        )
        .await
}

fn assert_email_error(page: &Page, message: &str, kept: &str) {
    assert_eq!(page.status, 422, "{}", page.body);
    let field_start = page
        .body
        .find("<label for=\"email\">")
        .expect("email field");
    let field = &page.body[field_start..];
    let error_at = field
        .find("id=\"email-error\"")
        .expect("error next to the field");
    assert!(
        error_at < field.find("</div>").unwrap(),
        "error inside the field's block"
    );
    assert!(field.contains(message), "{message}: {}", page.body);
    assert!(field.contains(&format!("value=\"{kept}\"")), "input kept");
    assert!(field.contains("aria-invalid=\"true\" aria-describedby=\"email-error\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_page_lists_the_cart_and_an_empty_cart_goes_back_to_the_cart() {
    let shop = spawn_shop().await;
    let empty = shop.client.get("/checkout").await;
    assert_eq!(empty.status, 303);
    assert_eq!(empty.location(), "/cart");
    let page = cart_with_lamps(&shop).await;
    assert!(page.body.contains("Desk Lamp × 2"));
    assert!(
        page.body
            .contains("<strong id=\"checkout-total\">$50.00</strong>")
    );
    assert!(page.body.contains("<label for=\"email\">"));
    assert_eq!(page.input("idempotency_key").len(), 36);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_email_is_shown_next_to_the_field_with_the_input_kept() {
    let shop = spawn_shop().await;
    let form = cart_with_lamps(&shop).await;

    // Caught by presentation.
    let page = submit(&shop, &form, "not-an-email").await;
    assert_email_error(&page, "like name@example.com", "not-an-email");
    let page = submit(&shop, &form, "   ").await;
    assert_email_error(&page, "Enter your email address", "");

    // Passed by presentation, refused by logic (no dot in the domain).
    let page = submit(&shop, &form, "ada@localhost").await;
    assert_email_error(&page, "with a full domain", "ada@localhost");
    // The same key is offered again, so a corrected submit is still one order.
    assert_eq!(page.input("idempotency_key"), form.input("idempotency_key"));
    assert_eq!(shop.order_count().await, 0);
    // The cart is untouched.
    assert!(shop.client.get("/cart").await.body.contains("$50.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_submit_places_one_order() {
    let shop = spawn_shop().await;
    let form = cart_with_lamps(&shop).await;
    let token = form.input("csrf_token");
    let key = form.input("idempotency_key");
    // Both requests leave the browser with the same cookies, before either answer lands.
    let cookies = format!(
        "strata_cart={}; strata_csrf={}",
        shop.client.cookie("strata_cart").unwrap(),
        shop.client.cookie("strata_csrf").unwrap()
    );
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let send = || {
        bare.post(shop.client.url("/checkout"))
            .header("cookie", cookies.clone())
            .form(&[
                ("csrf_token", token.as_str()),
                ("idempotency_key", key.as_str()),
                ("email", "ada@example.com"),
            ])
            .send()
    };
    let (first, second) = tokio::join!(send(), send());
    let (first, second) = (first.unwrap(), second.unwrap());
    let third = send().await.unwrap();
    for res in [&first, &second, &third] {
        assert_eq!(res.status(), 303);
    }
    let location = |r: &reqwest::Response| r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location(&first).starts_with("/orders/"));
    assert_eq!(location(&first), location(&second));
    assert_eq!(location(&first), location(&third));
    assert_eq!(shop.order_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_page_follows_the_status_from_pending_to_fulfilled() {
    let mut shop = spawn_shop().await;
    let form = cart_with_lamps(&shop).await;
    let placed = submit(&shop, &form, "ada@example.com").await;
    assert_eq!(placed.status, 303, "{}", placed.body);
    let order_path = placed.location().to_owned();
    assert!(
        placed.headers["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("strata_cart=;"),
        "the cart is emptied"
    );
    assert!(
        shop.client
            .get("/cart")
            .await
            .body
            .contains("Your cart is empty")
    );

    // No worker yet: the order waits.
    let pending = shop.client.get(&order_path).await;
    assert_eq!(pending.status, 200);
    assert!(
        pending.body.contains("data-status=\"pending\""),
        "{}",
        pending.body
    );
    assert!(
        pending
            .body
            .contains(&format!("data-events=\"{order_path}/events\""))
    );
    assert!(
        pending
            .body
            .contains("<noscript><meta http-equiv=\"refresh\"")
    );
    assert!(pending.body.contains("Desk Lamp × 2") && pending.body.contains("$50.00"));

    // The event stream says pending first, then the final status, then ends.
    let stream = shop
        .client
        .http
        .get(shop.client.url(&format!("{order_path}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    shop.spawn_worker(200);
    let body = tokio::time::timeout(Duration::from_secs(30), stream.text())
        .await
        .expect("the stream ends once the order is final")
        .unwrap();
    let pending_at = body.find("\"status\":\"pending\"").expect("pending event");
    let fulfilled_at = body
        .find("\"status\":\"fulfilled\"")
        .expect("fulfilled event");
    assert!(pending_at < fulfilled_at, "{body}");
    assert!(body.contains("event: status"));

    let done = shop.client.get(&order_path).await;
    assert!(done.body.contains("data-status=\"fulfilled\""));
    assert!(
        !done.body.contains("data-events"),
        "no stream for a final order"
    );
    assert!(!done.body.contains("http-equiv=\"refresh\""));
}

/// Moves an order to `step` in Postgres, as the fulfilment saga does.
async fn set_step(shop: &Shop, order_path: &str, step: &str, reason: Option<&str>) {
    let id: uuid::Uuid = order_path
        .trim_start_matches("/orders/")
        .parse()
        .expect("an order id");
    let status = match step {
        "fulfilled" | "rejected" => step,
        _ => "pending",
    };
    sqlx::query(
        "UPDATE orders SET step = $2, status = $3, reason = $4, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(step)
    .bind(status)
    .bind(reason)
    .execute(&shop.env.pool)
    .await
    .expect("moving the order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_page_follows_every_step_of_the_saga_with_the_reason_in_words() {
    let shop = spawn_shop().await;
    let form = cart_with_lamps(&shop).await;
    let placed = submit(&shop, &form, "ada@example.com").await;
    assert_eq!(placed.status, 303, "{}", placed.body);
    let order_path = placed.location().to_owned();
    let pending = shop.client.get(&order_path).await;
    assert!(
        pending.body.contains("data-step=\"pending\""),
        "{}",
        pending.body
    );

    let stream = shop
        .client
        .http
        .get(shop.client.url(&format!("{order_path}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let body = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(30), stream.text())
            .await
            .expect("the stream ends once the order is final")
            .unwrap()
    });
    // Each step held for a few of the stream's polls (500 ms).
    let pause = Duration::from_millis(1200);
    tokio::time::sleep(pause).await;
    set_step(&shop, &order_path, "reserved", None).await;
    tokio::time::sleep(pause).await;
    let reserved = shop.client.get(&order_path).await;
    assert!(
        reserved.body.contains("data-step=\"reserved\"")
            && reserved.body.contains("data-status=\"pending\"")
            && reserved.body.contains("Your items are reserved for you"),
        "{}",
        reserved.body
    );
    set_step(&shop, &order_path, "paid", None).await;
    tokio::time::sleep(pause).await;
    set_step(&shop, &order_path, "rejected", Some("reservation_expired")).await;
    let body = body.await.unwrap();

    let events: Vec<serde_json::Value> = body
        .split("\n\n")
        .filter_map(|chunk| chunk.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).expect("event JSON"))
        .collect();
    let steps: Vec<&str> = events.iter().map(|e| e["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["pending", "reserved", "paid", "rejected"], "{body}");
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["pending", "pending", "pending", "rejected"]);
    assert_eq!(events[2]["label"], "Paid");
    let last = &events[3];
    assert_eq!(last["reason"], "reservation_expired");
    assert_eq!(last["final"], true);
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains("your reserved items were released"),
        "{last}"
    );

    let done = shop.client.get(&order_path).await;
    assert!(done.body.contains("data-step=\"rejected\""));
    assert!(done.body.contains("your reserved items were released"));
}

/// A stream of a pending order lasts until the order is final: a stop must end it rather
/// than wait out the drain's timeout (10 s). The token is the one `main` passes in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_live_order_streams_at_once() {
    let shop = spawn_shop().await;
    let form = cart_with_lamps(&shop).await;
    let placed = submit(&shop, &form, "ada@example.com").await;
    assert_eq!(placed.status, 303, "{}", placed.body);
    let events = format!("{}/events", placed.location());

    let stop = CancellationToken::new();
    let app = Application::build(Settings::for_logic(&shop.logic_base))
        .await
        .expect("building presentation")
        .with_stop_token(stop.clone());
    let base = format!("http://{}", app.address());
    let running = tokio::spawn(app.run_until_stopped());
    let stream = shop
        .client
        .http
        .get(format!("{base}{events}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    let start = Instant::now();
    stop.cancel();
    let body = tokio::time::timeout(Duration::from_secs(5), stream.text())
        .await
        .expect("the stream ends with the stop")
        .unwrap();
    assert!(body.contains("\"status\":\"pending\""), "{body}");
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("presentation stops without waiting for the stream")
        .unwrap()
        .expect("a clean stop");
    assert!(start.elapsed() < Duration::from_secs(5));
}
