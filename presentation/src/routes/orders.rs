//! `/orders/{id}`: the order and its step (pending → reserved → paid → fulfilled, or rejected
//! with a reason), kept live by server-sent events from `/orders/{id}/events`. Presentation
//! has no broker access, so the stream polls logic on the private network every 500 ms and
//! pushes one `status` event per step change (carrying the coarse status too, for pages
//! written before the steps); it ends once the order is final. Without JavaScript a
//! `<noscript>` refresh does the same job.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, get, web};
use askama::Template;
use contracts::trace::TraceParent;
use contracts::{Order, OrderStep};
use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cart::Cart;
use crate::error::PageError;
use crate::logic_client::LogicClient;
use crate::telemetry::trace_context;
use crate::views;

const POLL: Duration = Duration::from_millis(500);
/// A stream ends after this long; the browser's EventSource reconnects by itself.
const MAX_STREAM: Duration = Duration::from_secs(120);
/// A comment every this many polls, so a closed connection is noticed.
const KEEPALIVE_TICKS: u32 = 20;

pub struct OrderLineView {
    name: String,
    quantity: i32,
    total: String,
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    title: String,
    cart_units: i32,
    short_id: String,
    status: &'static str,
    step: &'static str,
    status_label: &'static str,
    detail: &'static str,
    is_final: bool,
    events_url: String,
    self_href: String,
    lines: Vec<OrderLineView>,
    total: String,
    placed_at: String,
}

/// Label and explanation of an order's step (and, rejected, of its reason).
pub fn describe(order: &Order) -> (&'static str, &'static str) {
    match (order.step, order.reason.as_deref()) {
        (OrderStep::Pending, _) => (
            "Pending",
            "We're confirming payment and reserving your items.",
        ),
        (OrderStep::Reserved, _) => (
            "Reserved",
            "Your items are reserved for you. We're confirming payment.",
        ),
        (OrderStep::Paid, _) => ("Paid", "Payment confirmed. We're completing your order."),
        (OrderStep::Fulfilled, _) => (
            "Fulfilled",
            "Payment confirmed and your items are reserved. Thank you!",
        ),
        (OrderStep::Rejected, Some("out_of_stock")) => (
            "Rejected",
            "Sorry, an item sold out before we could reserve it. You have not been charged.",
        ),
        (OrderStep::Rejected, Some("payment_declined")) => (
            "Rejected",
            "Your payment was declined. You have not been charged.",
        ),
        (OrderStep::Rejected, Some("reservation_expired")) => (
            "Rejected",
            "Payment was not confirmed in time, so your reserved items were released. \
             You have not been charged.",
        ),
        (OrderStep::Rejected, _) => (
            "Rejected",
            "We could not complete this order. You have not been charged.",
        ),
    }
}

fn parse_id(raw: &str) -> Result<Uuid, PageError> {
    Uuid::parse_str(raw).map_err(|_| PageError::NotFound)
}

#[get("/orders/{id}")]
pub async fn show(
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    id: web::Path<String>,
    cart: Cart,
) -> Result<HttpResponse, PageError> {
    let id = parse_id(&id)?;
    let ctx = trace_context(&req);
    let order = logic.order(&ctx, id).await?;
    // Names are a nicety: a line falls back to its sku.
    let names = join_all(order.lines.iter().map(|l| logic.product(&ctx, &l.sku))).await;
    let (status_label, detail) = describe(&order);
    let short_id = order.id.simple().to_string()[..8].to_uppercase();
    let view = OrderPage {
        title: format!("Order {short_id}"),
        cart_units: cart.units(),
        short_id,
        status: order.status.as_str(),
        step: order.step.as_str(),
        status_label,
        detail,
        is_final: order.status.is_final(),
        events_url: format!("/orders/{id}/events"),
        self_href: format!("/orders/{id}"),
        lines: order
            .lines
            .iter()
            .zip(names)
            .map(|(l, p)| OrderLineView {
                name: p.map(|p| p.name.clone()).unwrap_or_else(|_| l.sku.clone()),
                quantity: l.quantity,
                total: views::money(l.unit_price_cents * i64::from(l.quantity)),
            })
            .collect(),
        total: views::money(order.total_cents),
        placed_at: order.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
    };
    Ok(views::html(StatusCode::OK, &view))
}

struct Watch {
    logic: Arc<LogicClient>,
    ctx: TraceParent,
    id: Uuid,
    first: Option<Order>,
    /// The step of the last event sent.
    last: Option<OrderStep>,
    done: bool,
    ticks: u32,
    started: Instant,
    stop: CancellationToken,
}

fn event(order: &Order) -> Bytes {
    let (label, detail) = describe(order);
    let data = serde_json::json!({
        "status": order.status.as_str(),
        "step": order.step.as_str(),
        "reason": order.reason,
        "label": label,
        "detail": detail,
        "final": order.status.is_final(),
    });
    Bytes::from(format!("retry: 3000\nevent: status\ndata: {data}\n\n"))
}

impl Watch {
    /// The next chunk of the stream, or `None` when it ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            let order = match self.first.take() {
                Some(order) => Some(order),
                None => {
                    tokio::select! {
                        _ = self.stop.cancelled() => return None,
                        _ = tokio::time::sleep(POLL) => {}
                    }
                    if self.started.elapsed() > MAX_STREAM {
                        return None;
                    }
                    self.ticks += 1;
                    // A failed poll is retried on the next tick.
                    self.logic.order(&self.ctx, self.id).await.ok()
                }
            };
            match order {
                Some(order) if Some(order.step) != self.last => {
                    self.last = Some(order.step);
                    self.done = order.status.is_final();
                    return Some(event(&order));
                }
                _ if self.ticks.is_multiple_of(KEEPALIVE_TICKS) && self.ticks > 0 => {
                    return Some(Bytes::from_static(b": keepalive\n\n"));
                }
                _ => {}
            }
        }
    }
}

#[get("/orders/{id}/events")]
pub async fn events(
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    stop: web::Data<CancellationToken>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let id = parse_id(&id)?;
    let ctx = trace_context(&req);
    let order = logic.order(&ctx, id).await?;
    let watch = Watch {
        logic: logic.into_inner(),
        ctx,
        id,
        first: Some(order),
        last: None,
        done: false,
        ticks: 0,
        started: Instant::now(),
        stop: stop.get_ref().clone(),
    };
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        let chunk = watch.next().await?;
        Some((Ok::<_, Infallible>(chunk), watch))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}
