//! HTTP routes, one module per area.

pub mod analytics;
pub mod audit;
pub mod health;
pub mod inventory;
pub mod ops;
pub mod orders;
pub mod products;
pub mod stream_status;
pub mod streams;
pub mod subscriptions;
pub mod topics;

use std::sync::Arc;

use data::cache::Cache;
use sqlx::PgPool;

use crate::auth::AdminToken;

/// Shared state of the handlers, built once in [`crate::Application::build`].
pub struct AppState {
    pub pool: PgPool,
    pub cache: Arc<Cache>,
    /// The stock laid over cached products ([`crate::stock`]).
    pub stock: Arc<crate::stock::StockView>,
    pub admin: AdminToken,
    pub data: data::DataSettings,
    pub rabbitmq_api_url: String,
    pub autoscaler_url: Option<String>,
    pub http: reqwest::Client,
    /// Held while the dead-letter queue is peeked, redriven or counted: a peek holds the
    /// messages it shows unacknowledged, so a count or a redrive running beside it would
    /// miss them.
    pub dlq: tokio::sync::Mutex<()>,
    /// Who may publish to and subscribe to which topic ([`crate::topic_policy`]).
    pub topic_policy: Arc<crate::topic_policy::TopicPolicy>,
    /// Retry tiers declared for each new subscription (`SUBSCRIPTION_MAX_ATTEMPTS - 1`).
    pub subscription_retry_tiers: usize,
    /// How long reads of the event stream wait for records.
    pub stream_waits: data::stream::reader::Waits,
}
