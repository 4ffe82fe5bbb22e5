//! Declares the inventory feed's partition queues at start, so the relay can route the
//! first adjustments before any worker ran. Retried with backoff while the broker is
//! unreachable; until it succeeds, adjustments wait in the outbox (the relay's messages
//! to an undeclared partition come back unroutable and are published again later).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use data::DataSettings;
use tokio_util::sync::CancellationToken;

async fn declare(settings: &DataSettings) -> anyhow::Result<()> {
    let connection =
        data::messaging::broker::connect(settings.amqp_url(), "strata-logic-fifo").await?;
    let channel = connection.create_channel().await?;
    let declared = data::messaging::fifo::declare_partitions(
        &channel,
        settings.delivery_limit,
        settings.fifo_partitions,
    )
    .await;
    let _ = connection.close(200, "declared".into()).await;
    Ok(declared?)
}

/// Declares the partitions, retrying until it worked or `cancel` fires.
pub async fn declare_partitions(settings: DataSettings, cancel: CancellationToken) {
    let attempt = (|| declare(&settings))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .without_max_times(),
        )
        .notify(|err, wait| {
            tracing::warn!(
                error = format!("{err:#}"),
                ?wait,
                "cannot declare the FIFO partitions yet"
            )
        });
    tokio::select! {
        _ = cancel.cancelled() => {}
        result = attempt => if let Err(err) = result {
            tracing::warn!(error = format!("{err:#}"), "FIFO partitions not declared");
        }
    }
}
