//! The FIFO consumers of the inventory feed. Each worker registers one consumer on every
//! partition queue (`inventory.fifo.p{k}`); the broker's single-active-consumer makes one
//! of them active per partition, the others stand by and take over when it goes. Within a
//! worker every partition runs on a channel and task of its own with a prefetch of 1, so a
//! partition's messages are handled one at a time, in queue order, while partitions run
//! side by side. [`balance`] spreads the active consumers across workers.

mod balance;
mod partition;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::WorkerSettings;

/// The inventory feed's consumers of one worker process.
pub struct FifoConsumers {
    pub(crate) settings: Arc<WorkerSettings>,
    pub(crate) pool: PgPool,
    pub(crate) stop: CancellationToken,
    /// Names this worker in its consumer tags (`{id}.p{k}`), which the management API and
    /// the ops console show as the active consumer.
    pub(crate) id: String,
}

impl FifoConsumers {
    pub fn new(settings: Arc<WorkerSettings>, pool: PgPool, stop: CancellationToken) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        FifoConsumers {
            settings,
            pool,
            stop,
            id: format!("{host}-{}-{}", std::process::id(), &suffix[..6]),
        }
    }

    /// Consumes until the stop token is cancelled, reconnecting with backoff; returns once
    /// every partition finished its message in flight.
    pub async fn run(&self) {
        if !self.settings.fifo_consumers {
            return;
        }
        let builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times();
        let mut backoff = builder.build();
        while !self.stop.is_cancelled() {
            match self.session(&mut backoff, &builder).await {
                Ok(()) => break,
                Err(err) => tracing::warn!(
                    error = format!("{err:#}"),
                    "FIFO consumers' session ended; reconnecting"
                ),
            }
            let delay = backoff.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                _ = self.stop.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(
        &self,
        backoff: &mut backon::ExponentialBackoff,
        builder: &ExponentialBuilder,
    ) -> anyhow::Result<()> {
        let data = &self.settings.data;
        // The same heartbeat and bounds as the orders' consumer: a silent connection is
        // declared dead within two heartbeats, which ends every partition's stream and so
        // this session.
        let limit = self.settings.broker_timeout();
        let connection = tokio::time::timeout(
            limit,
            data::messaging::broker::connect_with_heartbeat(
                data.amqp_url(),
                &format!("strata-worker-fifo {}", self.id),
                self.settings.heartbeat_secs,
            ),
        )
        .await
        .context("connecting to RabbitMQ: timed out")?
        .context("connecting to RabbitMQ")?;
        let channel = tokio::time::timeout(limit, connection.create_channel())
            .await
            .context("opening a channel: timed out")??;
        tokio::time::timeout(
            limit,
            data::messaging::fifo::declare_partitions(
                &channel,
                data.delivery_limit,
                data.fifo_partitions,
            ),
        )
        .await
        .context("declaring the FIFO partitions: timed out")?
        .context("declaring the FIFO partitions")?;
        let _ = tokio::time::timeout(limit, channel.close(200, "declared".into())).await;
        *backoff = builder.build();

        let session = self.stop.child_token();
        let hand_backs: Vec<Arc<Notify>> = (0..data.fifo_partitions)
            .map(|_| Arc::new(Notify::new()))
            .collect();
        let mut tasks = JoinSet::new();
        for (index, hand_back) in hand_backs.iter().enumerate() {
            let partition = partition::Partition {
                index: index as u16,
                tag: format!("{}.p{index}", self.id),
                pool: self.pool.clone(),
                settings: self.settings.clone(),
                hand_back: hand_back.clone(),
                stop: session.clone(),
            };
            let channel = tokio::time::timeout(limit, connection.create_channel())
                .await
                .context("opening a channel: timed out")??;
            tasks.spawn(async move { partition.run(channel).await });
        }
        tracing::info!(
            worker = %self.id,
            partitions = data.fifo_partitions,
            "consuming the FIFO partitions"
        );
        let balancer = tokio::spawn(
            balance::Balancer {
                id: self.id.clone(),
                settings: self.settings.clone(),
                pool: self.pool.clone(),
                hand_backs,
            }
            .run(session.clone()),
        );
        // Any partition ending before the stop means the connection failed: end them all.
        let mut outcome = Ok(());
        while let Some(done) = tasks.join_next().await {
            let result = done.map_err(anyhow::Error::new).and_then(|r| r);
            if let Err(err) = result
                && !session.is_cancelled()
            {
                outcome = Err(err);
                session.cancel();
            }
            if !self.stop.is_cancelled() && outcome.is_ok() && !session.is_cancelled() {
                outcome = Err(anyhow::anyhow!("a partition consumer ended"));
                session.cancel();
            }
        }
        session.cancel();
        let _ = balancer.await;
        let _ = tokio::time::timeout(limit, connection.close(200, "stopping".into())).await;
        outcome
    }
}
