//! The FIFO topology of the inventory feed, declared next to the rest of the topology:
//!
//! - `inventory.fifo` (direct) routes an adjustment to the queue of its sku's partition,
//!   `inventory.fifo.p{k}` with `k = fnv1a(sku) % partitions` (chosen by the writer, so no
//!   broker plugin is needed);
//! - each partition is a quorum queue with `x-single-active-consumer` (one consumer gets
//!   its messages, in order; the others stand by and take over when it goes), a delivery
//!   limit and at-least-once dead-lettering through `inventory.fifo.dlx` (fanout) into
//!   `inventory.fifo.dlq`.
//!
//! [`declare_exchanges`] needs no partition count, so [`super::broker::declare_topology`]
//! calls it; the partition queues are declared by the processes that know the count
//! ([`declare_partitions`]): logic at start, every worker, the test harness. A message for
//! a partition nobody declared yet is returned to the relay (mandatory flag) and stays in
//! the outbox until the queue exists.

use contracts::{INVENTORY_DLQ, INVENTORY_DLX, INVENTORY_EXCHANGE, partition_queue};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::messaging::broker::{table, text};
use lapin::{Channel, ExchangeKind};

/// The exchange, the dead-letter exchange and the dead-letter queue.
pub async fn declare_exchanges(channel: &Channel) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            INVENTORY_EXCHANGE.into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            INVENTORY_DLX.into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            INVENTORY_DLQ.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            table(&[("x-queue-type", text("quorum"))]),
        )
        .await?;
    channel
        .queue_bind(
            INVENTORY_DLQ.into(),
            INVENTORY_DLX.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// The arguments of a partition queue. A queue's arguments cannot change once it exists:
/// RabbitMQ refuses a redeclaration with others.
pub fn partition_arguments(delivery_limit: u32) -> FieldTable {
    table(&[
        ("x-queue-type", text("quorum")),
        ("x-single-active-consumer", AMQPValue::Boolean(true)),
        (
            "x-delivery-limit",
            AMQPValue::LongLongInt(i64::from(delivery_limit)),
        ),
        ("x-dead-letter-exchange", text(INVENTORY_DLX)),
        ("x-dead-letter-strategy", text("at-least-once")),
        ("x-overflow", text("reject-publish")),
    ])
}

/// Declares the exchanges and partitions `0..partitions`, each bound to `inventory.fifo`
/// with its own name as the routing key.
pub async fn declare_partitions(
    channel: &Channel,
    delivery_limit: u32,
    partitions: u16,
) -> lapin::Result<()> {
    declare_exchanges(channel).await?;
    for index in 0..partitions {
        let queue = partition_queue(index);
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                partition_arguments(delivery_limit),
            )
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                INVENTORY_EXCHANGE.into(),
                queue.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// One partition as the management API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionReading {
    pub ready: Option<u64>,
    pub in_flight: Option<u64>,
    pub consumers: Option<u64>,
    /// The tag of the consumer that gets the messages (`single_active_consumer_ctag` in
    /// RabbitMQ 3.10's answer, else the active entry of `consumer_details`).
    pub active_consumer: Option<String>,
}

/// Reads a queue object of the management API (`GET /api/queues/{vhost}/{name}`).
pub fn partition_reading(body: &serde_json::Value) -> PartitionReading {
    PartitionReading {
        ready: body.get("messages_ready").and_then(|v| v.as_u64()),
        in_flight: body.get("messages_unacknowledged").and_then(|v| v.as_u64()),
        consumers: body.get("consumers").and_then(|v| v.as_u64()),
        active_consumer: ["single_active_consumer_ctag", "single_active_consumer_tag"]
            .iter()
            .find_map(|k| body.get(*k).and_then(|v| v.as_str()))
            .or_else(|| {
                body.get("consumer_details")?
                    .as_array()?
                    .iter()
                    .find(|c| {
                        c.get("activity_status").and_then(|v| v.as_str()) == Some("single_active")
                    })?
                    .get("consumer_tag")?
                    .as_str()
            })
            .map(str::to_owned),
    }
}

/// Reads `queue` of `account`'s vhost from the management API at `api`; `None` when the
/// API did not answer or does not know the queue.
pub async fn read_queue(
    http: &reqwest::Client,
    api: &str,
    account: &super::management::AmqpAccount,
    queue: &str,
) -> Option<PartitionReading> {
    let url = super::management::queue_url(api, &account.vhost, queue).ok()?;
    let body: serde_json::Value = http
        .get(url)
        .basic_auth(&account.user, Some(&account.password))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .json()
        .await
        .ok()?;
    Some(partition_reading(&body))
}

/// Reads `queues` of the vhost of `amqp_url` one after the other, with a client of its
/// own (2 s timeout per call); `None` for each the API did not answer about.
pub async fn read_queues(
    amqp_url: &str,
    api: &str,
    queues: &[String],
) -> anyhow::Result<Vec<Option<PartitionReading>>> {
    let account = super::management::AmqpAccount::of(amqp_url)?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()?;
    let mut readings = Vec::with_capacity(queues.len());
    for queue in queues {
        readings.push(read_queue(&http, api, &account, queue).await);
    }
    Ok(readings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_takes_what_the_api_gives() {
        let body = serde_json::json!({
            "messages_ready": 4, "messages_unacknowledged": 1, "consumers": 2,
            "single_active_consumer_ctag": "w-1.p3",
        });
        assert_eq!(
            partition_reading(&body),
            PartitionReading {
                ready: Some(4),
                in_flight: Some(1),
                consumers: Some(2),
                active_consumer: Some("w-1.p3".into()),
            }
        );
        assert_eq!(
            partition_reading(&serde_json::json!({})),
            PartitionReading::default()
        );
        let details = serde_json::json!({"consumer_details": [
            {"consumer_tag": "w-2.p1", "activity_status": "waiting"},
            {"consumer_tag": "w-1.p1", "activity_status": "single_active"},
        ]});
        assert_eq!(
            partition_reading(&details).active_consumer.as_deref(),
            Some("w-1.p1")
        );
    }
}
