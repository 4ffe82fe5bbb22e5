//! Keeps every process's near cache fresh: a subscription to `ProductChanged` on the
//! `events` exchange, through a queue private to the process, that drops the changed
//! product's entries in the near cache and in Redis. While the subscription is down the
//! near cache is bypassed, since an event missed in between would leave a stale copy.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use contracts::{Envelope, ProductChanged};
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::DataSettings;
use crate::cache::Cache;
use crate::messaging::broker;

/// Routing key of `ProductChanged` events on the `events` exchange.
pub const PRODUCT_CHANGED_KEY: &str = "product.changed";

/// How often the subscription checks that its channel still answers: a broker that went
/// away without closing the connection is noticed within about this long.
const LIVENESS_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps the near cache of `cache` subscribed to product changes until `cancel` fires:
/// connects, declares a private queue bound to `ProductChanged`, consumes, and on any loss
/// bypasses the near cache and reconnects with backoff. Does nothing when the near cache is
/// turned off.
pub async fn subscribe(cache: Arc<Cache>, settings: DataSettings, cancel: CancellationToken) {
    if !cache.near().is_enabled() {
        return;
    }
    let backoff_builder = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times();
    let mut backoff = backoff_builder.build();
    while !cancel.is_cancelled() {
        if let Err(err) = consume(&cache, &settings, &cancel).await {
            tracing::warn!(
                error = format!("{err:#}"),
                "near cache bypassed: no product-change subscription"
            );
        }
        if cache.near().usable() {
            // It was up: the next attempt starts from the shortest delay again.
            backoff = backoff_builder.build();
        }
        cache.near().set_live(false);
        let delay = backoff.next().unwrap_or(Duration::from_secs(5));
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    cache.near().set_live(false);
}

/// One subscription, until it is lost (error) or `cancel` fires (Ok).
async fn consume(
    cache: &Cache,
    settings: &DataSettings,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    // Stopping abandons a connection attempt that hangs.
    let connection = tokio::select! {
        connection = broker::connect(settings.amqp_url(), "strata-logic-near-cache") => {
            connection.context("connecting to RabbitMQ")?
        }
        _ = cancel.cancelled() => return Ok(()),
    };
    let result = async {
        let channel = connection.create_channel().await?;
        let queue = broker::declare_private_subscription(&channel, PRODUCT_CHANGED_KEY)
            .await
            .context("declaring the product-change queue")?;
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    // Invalidations are idempotent and die with the process: no acks needed.
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        cache.near().set_live(true);
        tracing::info!("near cache subscribed to product changes");
        let mut liveness = tokio::time::interval(LIVENESS_INTERVAL);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                delivery = consumer.next() => {
                    let delivery = delivery
                        .context("the product-change consumer ended")?
                        .context("the product-change consumer failed")?;
                    match serde_json::from_slice::<Envelope<ProductChanged>>(&delivery.data) {
                        Ok(event) => cache.invalidate_product(&event.payload.sku).await,
                        Err(err) => {
                            // Unreadable: drop everything rather than guess what changed.
                            tracing::warn!(error = %err, "unreadable product-change event");
                            cache.near().clear();
                        }
                    }
                }
                _ = liveness.tick() => {
                    let check = channel.queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                        FieldTable::default(),
                    );
                    match tokio::time::timeout(LIVENESS_INTERVAL, check).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(err)) => return Err(err).context("the broker stopped answering"),
                        Err(_) => anyhow::bail!("the broker stopped answering"),
                    }
                }
            }
        }
    }
    .await;
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        connection.close(200, "near cache stopping".into()),
    )
    .await;
    result
}
