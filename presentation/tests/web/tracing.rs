//! One trace spans both tiers: logic joins the trace presentation started.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use contracts::trace::TraceParent;
use testkit::apps;

use crate::helpers::{Client, LOGIC_ADMIN_TOKEN};

/// What the recording proxy saw: the `traceparent` presentation sent and the
/// `traceresponse` logic answered with.
#[derive(Default)]
struct Seen {
    calls: Vec<(String, Option<TraceParent>, Option<TraceParent>)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logic_sees_the_trace_id_presentation_started() {
    let env = testkit::TestEnv::new().await;
    let logic = apps::logic(&env, Some(LOGIC_ADMIN_TOKEN), |_| {}).await;
    let logic_url = logic.base.clone();
    let seen = Arc::new(Mutex::new(Seen::default()));

    // A proxy between the tiers that forwards everything and writes down trace headers.
    let state = web::Data::new((seen.clone(), logic_url.clone(), reqwest::Client::new()));
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).default_service(web::to(
            |req: HttpRequest,
             body: web::Bytes,
             state: web::Data<(Arc<Mutex<Seen>>, String, reqwest::Client)>| async move {
                let (seen, logic, http) = state.get_ref();
                let sent = req
                    .headers()
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .and_then(TraceParent::parse);
                let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
                let mut forward = http.request(method, format!("{logic}{}", req.uri()));
                for (name, value) in req.headers() {
                    if name != "host" {
                        forward = forward.header(name.as_str(), value.as_bytes());
                    }
                }
                let res = forward
                    .body(body.to_vec())
                    .send()
                    .await
                    .expect("forwarding");
                let joined = res
                    .headers()
                    .get("traceresponse")
                    .and_then(|v| v.to_str().ok())
                    .and_then(TraceParent::parse);
                seen.lock()
                    .unwrap()
                    .calls
                    .push((req.path().to_owned(), sent, joined));
                let status = res.status().as_u16();
                let ctype = res.headers().get("content-type").cloned();
                let bytes = res.bytes().await.unwrap_or_default();
                let mut out =
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
                if let Some(ctype) = ctype {
                    out.insert_header(("content-type", ctype.to_str().unwrap_or("").to_owned()));
                }
                out.body(bytes)
            },
        ))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let proxy_url = format!("http://{}", server.addrs()[0]);
    let running = server.run();
    let proxy = running.handle();
    tokio::spawn(running);

    sqlx::query(
        "INSERT INTO products (sku, name, description, category, price_cents, stock) \
         VALUES ('LAMP-1', 'Desk Lamp', 'A lamp.', 'Lighting', 2500, 5)",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    let presentation = apps::presentation(&proxy_url, |_| {}).await;
    let client = Client::new(&presentation.base);
    let page = client.get("/products/LAMP-1").await;
    assert_eq!(page.status, 200);
    let started = TraceParent::parse(page.headers["traceresponse"].to_str().unwrap())
        .expect("presentation names its trace");

    let calls = std::mem::take(&mut seen.lock().unwrap().calls);
    assert_eq!(calls.len(), 1, "one call to logic");
    let (path, sent, joined) = &calls[0];
    assert_eq!(path, "/api/v1/products/LAMP-1");
    let sent = sent.expect("presentation sent a traceparent");
    let joined = joined.expect("logic answered with traceresponse");
    assert_eq!(
        sent.trace_id_hex(),
        started.trace_id_hex(),
        "same trace in the call"
    );
    assert_ne!(
        sent.parent_id, started.parent_id,
        "the call is a child span"
    );
    assert_eq!(
        joined.trace_id_hex(),
        started.trace_id_hex(),
        "logic joined that trace"
    );

    // A client cannot choose the trace of the public tier.
    let forced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = client
        .http
        .get(client.url("/"))
        .header("traceparent", forced)
        .send()
        .await
        .unwrap();
    let own = res.headers()["traceresponse"].to_str().unwrap();
    assert!(!own.contains("4bf92f3577b34da6a3ce929d0e0e4736"));

    drop(presentation);
    proxy.stop(false).await;
    drop(logic);
}
