//! Logic down, slow or failing: polite 503 pages, never an upstream error.

use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use testkit::apps;
use tokio::net::TcpListener;

use crate::helpers::{Client, assert_site_page};

const PAGES: [&str; 4] = [
    "/",
    "/products/LAMP-1",
    "/orders/3f1d9a3e-0000-4000-8000-000000000000",
    "/?q=lamp",
];

async fn assert_polite_503(client: &Client, path: &str) -> Duration {
    let start = Instant::now();
    let page = client.get(path).await;
    let took = start.elapsed();
    assert_eq!(page.status, 503, "{path}: {}", page.body);
    assert_site_page(&page);
    assert!(
        page.body.contains("The shop is taking a short break"),
        "{}",
        page.body
    );
    assert_eq!(page.headers["retry-after"], "5");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_logic_gives_a_friendly_503() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let presentation = apps::presentation(&url, |_| {}).await;
    let client = Client::new(&presentation.base);
    // A cart cookie from before the outage does not change the answer.
    client.set_cookie("strata_cart", "forged");
    for path in PAGES {
        let page = client.get(path).await;
        assert!(!page.body.contains(&url[7..]), "no upstream address shown");
        assert_polite_503(&client, path).await;
    }
    // An empty cart needs nothing from logic and still shows.
    assert_eq!(client.get("/cart").await.status, 200);
    assert_eq!(client.get("/healthz").await.status, 200);
    assert_eq!(client.get("/readyz").await.status, 503);
    drop(presentation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_logic_times_out_into_a_503() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let presentation = apps::presentation(&url, |s| s.logic_timeout_ms = 300).await;
    let client = Client::new(&presentation.base);
    let took = assert_polite_503(&client, "/products/LAMP-1").await;
    assert!(took < Duration::from_secs(3), "timed out after {took:?}");
    let took = assert_polite_503(&client, "/").await;
    assert!(took < Duration::from_secs(3), "timed out after {took:?}");
    drop(presentation);
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_logic_body_is_never_shown() {
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|| async {
            HttpResponse::InternalServerError()
                .content_type("application/json")
                .body(r#"{"error":{"code":"internal_error","message":"SELECT secret FROM vault"}}"#)
        }))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    let running = server.run();
    let handle = running.handle();
    tokio::spawn(running);
    let presentation = apps::presentation(&url, |_| {}).await;
    let client = Client::new(&presentation.base);
    for path in PAGES {
        assert_polite_503(&client, path).await;
        assert!(!client.get(path).await.body.contains("SELECT secret"));
    }
    drop(presentation);
    handle.stop(false).await;
}
