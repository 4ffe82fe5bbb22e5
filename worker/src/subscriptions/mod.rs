//! Delivery of the topics' events to their subscriptions (SNS's role). Each subscription
//! has its own queues on the broker (`sub.<id>`, retry tiers, `sub.<id>.dlq`, declared by
//! logic when it is created) and, in every worker, its own consumer, so a slow or failing
//! subscriber delays no other:
//! - [`manager`] reads the `subscriptions` table every `SUBSCRIPTION_POLL_MS`, runs one
//!   [`consumer`] per confirmed subscription over one broker connection and stops the
//!   consumer of a subscription that is deleted; it also sends the confirmation requests
//!   of pending http/https/email subscriptions ([`manager::confirmations`]).
//! - [`consumer`] applies the filter policy and delivers by protocol: [`http`] (signed
//!   with [`signature`], checked by [`guard`] under the production profile), [`email`],
//!   queue and function ([`publish`]); failed attempts go through the retry queues with
//!   exponential backoff and jitter, then to the DLQ.
//! - [`counters`] adds up the outcomes and writes them to the table.

pub mod consumer;
pub mod counters;
pub mod email;
pub mod event;
pub mod guard;
pub mod http;
pub mod manager;
pub mod publish;
pub mod settings;
pub mod signature;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use service::Profile;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use settings::SubscriptionSettings;

use crate::WorkerSettings;

/// What every consumer of the process shares.
pub struct Shared {
    pub settings: SubscriptionSettings,
    /// `AMQP_DELIVERY_LIMIT`, for declaring a function's queue as logic does.
    pub delivery_limit: u32,
    pub broker_timeout: Duration,
    pub http: http::HttpDelivery,
    pub mailer: email::Mailer,
    pub counters: counters::Counters,
}

/// The delivery of the process: the manager, the confirmation requests and the counters.
pub struct Subscriptions {
    pub(crate) shared: Arc<Shared>,
    pub(crate) pool: PgPool,
    pub(crate) amqp_url: SecretString,
    pub(crate) heartbeat_secs: u16,
    pub(crate) stop: CancellationToken,
}

impl Subscriptions {
    /// Builds the delivery from the worker's settings (their data settings resolved);
    /// None when `SUBSCRIPTIONS_DELIVERY` is off.
    pub fn new(
        settings: &WorkerSettings,
        pool: PgPool,
        stop: CancellationToken,
    ) -> anyhow::Result<Option<Self>> {
        let subscriptions = &settings.subscriptions;
        if !subscriptions.delivery {
            return Ok(None);
        }
        let production = settings.data.profile == Profile::Production;
        let shared = Shared {
            settings: subscriptions.clone(),
            delivery_limit: settings.data.delivery_limit,
            broker_timeout: settings.broker_timeout(),
            http: http::HttpDelivery::new(subscriptions.timeout(), production)?,
            mailer: email::Mailer::new(subscriptions)?,
            counters: counters::Counters::default(),
        };
        Ok(Some(Subscriptions {
            shared: Arc::new(shared),
            pool,
            amqp_url: SecretString::from(settings.data.amqp_url().to_owned()),
            heartbeat_secs: settings.heartbeat_secs,
            stop,
        }))
    }

    /// Delivers until the stop token fires, then finishes what is in flight and writes
    /// the last counts.
    pub async fn run(self) {
        let counters_stop = CancellationToken::new();
        let counters = tokio::spawn(
            self.shared
                .counters
                .clone()
                .run(self.pool.clone(), counters_stop.clone()),
        );
        tokio::join!(
            manager::run(&self),
            manager::confirmations(&self.shared, &self.pool, &self.stop),
        );
        counters_stop.cancel();
        let _ = counters.await;
    }

    pub(crate) fn amqp_url(&self) -> &str {
        self.amqp_url.expose_secret()
    }
}
