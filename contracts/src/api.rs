//! Request and response bodies of the logic API (`/api/v1`).

use chrono::{DateTime, Utc};

use crate::integral;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The largest `per_page` a product listing accepts.
pub const MAX_PER_PAGE: u32 = 100;
/// Bounds on one order line's quantity.
pub const MIN_QUANTITY: i32 = 1;
pub const MAX_QUANTITY: i32 = 100;
/// Bounds on the number of lines in one order.
pub const MAX_LINES: usize = 50;
/// Highest price of one product, in cents (keeps every order total far from overflow).
pub const MAX_PRICE_CENTS: i64 = 100_000_000;
/// Highest stock of one product.
pub const MAX_STOCK: i32 = 1_000_000_000;
/// Header of a fresh product answer (`X-Stock: fresh`): for how many more milliseconds its
/// stock stays within logic's `STOCK_FRESHNESS_MS`, and so how long a copy may be served.
pub const STOCK_FRESH_FOR_HEADER: &str = "X-Stock-Fresh-For-Ms";

/// Whether a string has the shape of a sku (upper-case letters, digits, dashes).
pub fn is_valid_sku(sku: &str) -> bool {
    let bytes = sku.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'-')
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    /// Price in cents, always positive.
    pub price_cents: i64,
    /// Units available, never negative.
    pub stock: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProductPage {
    pub items: Vec<Product>,
    pub page: u32,
    pub per_page: u32,
    /// Number of products matching the filters, over all pages.
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Category {
    pub name: String,
    pub product_count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CategoryList {
    pub items: Vec<Category>,
}

/// Body of `PATCH /api/v1/products/{sku}`: the fields to change; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = r"\S")
    )]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 4000))]
    pub description: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral::option_i64"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100_000_000))]
    pub price_cents: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral::option_i32"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1_000_000_000))]
    pub stock: Option<i32>,
}

/// Body of `POST /api/v1/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlaceOrder {
    /// Where the confirmation goes: an address with a domain, like `ada@example.com`.
    #[cfg_attr(
        feature = "openapi",
        schema(
            format = "email",
            min_length = 3,
            max_length = 254,
            pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
        )
    )]
    pub email: String,
    /// One line per product (each sku at most once), 1 to 50 lines.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 50))]
    pub lines: Vec<OrderLineRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderLineRequest {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z0-9][A-Z0-9-]{0,63}$"))]
    pub sku: String,
    #[serde(deserialize_with = "integral::i32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub quantity: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Fulfilled,
    Rejected,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Fulfilled => "fulfilled",
            OrderStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(OrderStatus::Pending),
            "fulfilled" => Some(OrderStatus::Fulfilled),
            "rejected" => Some(OrderStatus::Rejected),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        self != OrderStatus::Pending
    }
}

/// The step of the fulfilment saga an order is at: `pending` (accepted, not yet worked
/// on), `reserved` (its stock is held), `paid` (the payment went through), then
/// `fulfilled`, or `rejected` with a reason. [`OrderStatus`] is the coarse view of it that
/// clients written before the saga know: every step before a final one is `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderStep {
    #[default]
    Pending,
    Reserved,
    Paid,
    Fulfilled,
    Rejected,
}

impl OrderStep {
    pub const ALL: [OrderStep; 5] = [
        OrderStep::Pending,
        OrderStep::Reserved,
        OrderStep::Paid,
        OrderStep::Fulfilled,
        OrderStep::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStep::Pending => "pending",
            OrderStep::Reserved => "reserved",
            OrderStep::Paid => "paid",
            OrderStep::Fulfilled => "fulfilled",
            OrderStep::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        OrderStep::ALL.into_iter().find(|step| step.as_str() == s)
    }

    /// The coarse status of this step.
    pub fn status(self) -> OrderStatus {
        match self {
            OrderStep::Pending | OrderStep::Reserved | OrderStep::Paid => OrderStatus::Pending,
            OrderStep::Fulfilled => OrderStatus::Fulfilled,
            OrderStep::Rejected => OrderStatus::Rejected,
        }
    }

    pub fn is_final(self) -> bool {
        self.status().is_final()
    }
}

/// Why an order was rejected, as `Order.reason` spells it. The field stays a string, so a
/// reason added later reaches older clients as text rather than as a decoding error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// A line's product had too little stock left to reserve.
    OutOfStock,
    /// The payment was declined; no stock is kept.
    PaymentDeclined,
    /// The stock was reserved but the payment did not come before the hold lapsed; the
    /// stock was released.
    ReservationExpired,
}

impl RejectReason {
    pub const ALL: [RejectReason; 3] = [
        RejectReason::OutOfStock,
        RejectReason::PaymentDeclined,
        RejectReason::ReservationExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfStock => "out_of_stock",
            RejectReason::PaymentDeclined => "payment_declined",
            RejectReason::ReservationExpired => "reservation_expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Order {
    pub id: Uuid,
    /// `pending` until the order is final, then `fulfilled` or `rejected`.
    pub status: OrderStatus,
    /// The saga's live step (`pending`, `reserved`, `paid`, `fulfilled`, `rejected`); a
    /// document without it (written before the saga) reads as `pending`.
    #[serde(default)]
    pub step: OrderStep,
    /// Why an order was rejected: `out_of_stock`, `payment_declined` or
    /// `reservation_expired` (the payment did not come before the hold on the stock lapsed);
    /// null otherwise.
    pub reason: Option<String>,
    pub email: String,
    pub lines: Vec<OrderLine>,
    pub total_cents: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Every error the API returns has this shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, machine-readable code, e.g. `unknown_sku`.
    pub code: String,
    /// Human-readable explanation; wording may change.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// Body of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: String,
    /// One entry per dependency: `ok` or what failed.
    pub checks: std::collections::BTreeMap<String, String>,
}

/// One message in the dead-letter queue, as `GET /api/v1/ops/dlq` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetter {
    pub message_id: Option<String>,
    /// Message type, e.g. `FulfilOrder`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The order the message is about, when it names one.
    pub order_id: Option<Uuid>,
    /// Why the broker dead-lettered it: `delivery_limit` (failed too often) or `rejected`
    /// (a consumer refused it as unprocessable).
    pub reason: Option<String>,
    /// The queue it was dead-lettered from.
    pub queue: Option<String>,
    /// When it was dead-lettered first.
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// The body as text (cut at 2 KiB).
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetterList {
    /// Messages waiting in the dead-letter queue.
    pub total: u32,
    /// The first of them, oldest first (at most `limit`).
    pub items: Vec<DeadLetter>,
}

/// Body of `POST /api/v1/ops/dlq/redrive` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Move at most this many messages (default: all, up to 10000).
    #[serde(default, deserialize_with = "integral::option_i32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub limit: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedriveResult {
    /// Messages moved back to their work queue.
    pub redriven: u32,
    /// Messages left in the dead-letter queue.
    pub remaining: u32,
}

/// Body of `GET /api/v1/ops/stats` (admin): one reading of the system, for the ops console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OpsStats {
    /// When this reading was taken.
    pub at: DateTime<Utc>,
    /// The work queue `orders.fulfil`; null when RabbitMQ could not be asked.
    pub queue: Option<QueueStats>,
    /// Messages in the dead-letter queue; null when RabbitMQ could not be asked.
    pub dlq_depth: Option<u64>,
    /// Orders by status since the start (counters: the console derives rates).
    pub orders: OrderCounts,
    /// Read-cache lookups of this logic process since it started.
    pub cache: CacheCounts,
    /// Outbox messages not yet confirmed by the broker.
    pub outbox_backlog: i64,
    /// The autoscaler's `/status` document as it answered; null when not configured or
    /// unreachable.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub autoscaler: Option<serde_json::Value>,
    /// The function handlers' queues: the scale of each (consumers: 0 while no handler
    /// process runs, 1 when the autoscaler started one).
    #[serde(default)]
    pub functions: Vec<FunctionScale>,
}

/// One function handler's queue `fn.<name>`: its consumers (the processes running the
/// handler) and ready messages; both null when the queue does not exist yet or RabbitMQ
/// could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunctionScale {
    pub name: String,
    pub queue: String,
    pub consumers: Option<u64>,
    pub ready: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStats {
    pub ready: u64,
    /// Delivered to a worker and not acknowledged yet (being worked on); null when only
    /// the AMQP count was available.
    pub unacked: Option<u64>,
    pub consumers: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderCounts {
    /// Orders not final yet (status `pending`), whatever their step.
    pub pending: i64,
    /// Of the pending ones, those holding their stock (step `reserved`).
    #[serde(default)]
    pub reserved: i64,
    /// Of the pending ones, those paid and not yet settled (step `paid`).
    #[serde(default)]
    pub paid: i64,
    pub fulfilled: i64,
    pub rejected: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
}

/// Kinds of mutating calls the audit trail records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AuditAction {
    /// `PATCH /api/v1/products/{sku}`.
    #[serde(rename = "product.update")]
    ProductUpdate,
    /// `POST /api/v1/orders`.
    #[serde(rename = "order.place")]
    OrderPlace,
    /// `POST /api/v1/ops/dlq/redrive`.
    #[serde(rename = "dlq.redrive")]
    DlqRedrive,
    /// `POST /api/v1/inventory/adjustments`.
    #[serde(rename = "inventory.adjust")]
    InventoryAdjust,
    /// `POST /api/v1/subscriptions`.
    #[serde(rename = "subscription.create")]
    SubscriptionCreate,
    /// `DELETE /api/v1/subscriptions/{id}`.
    #[serde(rename = "subscription.delete")]
    SubscriptionDelete,
    /// `GET /api/v1/subscriptions/{id}/confirm`.
    #[serde(rename = "subscription.confirm")]
    SubscriptionConfirm,
    /// `POST /api/v1/subscriptions/{id}/dlq/redrive`.
    #[serde(rename = "subscription.redrive")]
    SubscriptionRedrive,
    /// `POST /api/v1/topics/{topic}/messages`.
    #[serde(rename = "topic.publish")]
    TopicPublish,
}

impl AuditAction {
    pub const ALL: &'static [AuditAction] = &[
        AuditAction::ProductUpdate,
        AuditAction::OrderPlace,
        AuditAction::DlqRedrive,
        AuditAction::InventoryAdjust,
        AuditAction::SubscriptionCreate,
        AuditAction::SubscriptionDelete,
        AuditAction::SubscriptionConfirm,
        AuditAction::SubscriptionRedrive,
        AuditAction::TopicPublish,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::ProductUpdate => "product.update",
            AuditAction::OrderPlace => "order.place",
            AuditAction::DlqRedrive => "dlq.redrive",
            AuditAction::InventoryAdjust => "inventory.adjust",
            AuditAction::SubscriptionCreate => "subscription.create",
            AuditAction::SubscriptionDelete => "subscription.delete",
            AuditAction::SubscriptionConfirm => "subscription.confirm",
            AuditAction::SubscriptionRedrive => "subscription.redrive",
            AuditAction::TopicPublish => "topic.publish",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

/// How a recorded call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// The change was made.
    Success,
    /// Refused as invalid (4xx other than 401); nothing changed.
    Rejected,
    /// Refused for a missing or wrong admin token (401); nothing changed.
    Denied,
    /// A dependency failed (5xx); nothing changed, or for a redrive, possibly part of it.
    Failed,
}

impl AuditOutcome {
    pub const ALL: &'static [AuditOutcome] = &[
        AuditOutcome::Success,
        AuditOutcome::Rejected,
        AuditOutcome::Denied,
        AuditOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Rejected => "rejected",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|o| o.as_str() == s)
    }
}

/// One entry of the audit trail (`GET /api/v1/audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    /// When the call was recorded.
    pub at: DateTime<Utc>,
    /// Who made the call: `admin` (the admin bearer token) or `anonymous` (no or a wrong
    /// token; order placement needs none).
    pub actor: String,
    /// What was called: `product.update`, `order.place`, `dlq.redrive` (more may follow;
    /// read unknown values as text).
    pub action: String,
    /// What it acted on, e.g. `product:KIT-00001`, `order:<id>`, `queue:orders.fulfil.dlq`;
    /// null when the request never named a valid one.
    pub target: Option<String>,
    pub outcome: AuditOutcome,
    /// The API error code when the call did not succeed, e.g. `invalid_product_patch`.
    pub error_code: Option<String>,
    /// The request's id (the `X-Request-Id` response header, `request_id` in the logs).
    pub request_id: Option<Uuid>,
    /// The W3C trace id the request belonged to (32 hex digits).
    pub trace_id: Option<String>,
    /// What changed: the patched fields of a product, an order's total and line count, how
    /// many dead letters moved.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

/// A page of the audit trail, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub page: u32,
    pub per_page: u32,
    /// Entries matching the filters, over all pages.
    pub total: i64,
}
