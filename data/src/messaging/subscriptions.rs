//! The queues of one subscription (SNS's role), declared when it is created and deleted
//! with it:
//! - `sub.<id>`: quorum queue bound to the topic's keys on `events`; its consumer applies
//!   the filter policy and delivers. A message that crashes its consumers
//!   `delivery_limit` times is dead-lettered into `sub.<id>.dlq`.
//! - `sub.<id>.retry.<k>`, one per backoff tier: a failed delivery is published there with
//!   a per-message expiration (the tier's delay with jitter); when it expires the broker
//!   dead-letters it back into `sub.<id>` through the default exchange. The broker has no
//!   delayed-message plugin; this is the usual way round it.
//! - `sub.<id>.dlq`: deliveries that failed every attempt, kept until [`redrive`]n.
//!
//! A function handler's queue `fn.<name>` (quorum, delivery limit, dead-lettered into
//! `fn.<name>.dlq`) is shared by every subscription naming the function.

use contracts::{
    EVENTS_EXCHANGE, Topic, dlq_name, function_dlq_name, function_queue_name, queue_name,
    retry_queue_name,
};
use lapin::Channel;
use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::messaging::broker::{table, text};
use uuid::Uuid;

const DURABLE: QueueDeclareOptions = QueueDeclareOptions {
    passive: false,
    durable: true,
    exclusive: false,
    auto_delete: false,
    nowait: false,
};

/// Declares a subscription's main queue (bound to `topic`), its `retry_tiers` retry
/// queues and its DLQ. Idempotent.
pub async fn declare(
    channel: &Channel,
    id: Uuid,
    topic: Topic,
    retry_tiers: usize,
    delivery_limit: u32,
) -> lapin::Result<()> {
    let main = queue_name(id);
    let dlq = dlq_name(id);
    channel
        .queue_declare(
            dlq.as_str().into(),
            DURABLE,
            table(&[("x-queue-type", text("quorum"))]),
        )
        .await?;
    channel
        .queue_declare(
            main.as_str().into(),
            DURABLE,
            table(&[
                ("x-queue-type", text("quorum")),
                (
                    "x-delivery-limit",
                    AMQPValue::LongLongInt(i64::from(delivery_limit)),
                ),
                ("x-dead-letter-exchange", text("")),
                ("x-dead-letter-routing-key", text(&dlq)),
                ("x-dead-letter-strategy", text("at-least-once")),
                ("x-overflow", text("reject-publish")),
            ]),
        )
        .await?;
    for tier in 0..retry_tiers {
        // Classic queues: per-message expiration, dead-lettered at the head when it passes.
        channel
            .queue_declare(
                retry_queue_name(id, tier).as_str().into(),
                DURABLE,
                table(&[
                    ("x-queue-type", text("classic")),
                    ("x-dead-letter-exchange", text("")),
                    ("x-dead-letter-routing-key", text(&main)),
                ]),
            )
            .await?;
    }
    for key in topic.binding_keys() {
        channel
            .queue_bind(
                main.as_str().into(),
                EVENTS_EXCHANGE.into(),
                (*key).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Deletes every queue of a subscription (messages in them are dropped). Queues that do
/// not exist are skipped.
pub async fn delete(channel: &Channel, id: Uuid, retry_tiers: usize) -> lapin::Result<()> {
    let mut names = vec![queue_name(id), dlq_name(id)];
    names.extend((0..retry_tiers).map(|tier| retry_queue_name(id, tier)));
    for name in names {
        channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    Ok(())
}

/// Declares a function handler's queue and its DLQ. Idempotent.
pub async fn declare_function(
    channel: &Channel,
    function: &str,
    delivery_limit: u32,
) -> lapin::Result<()> {
    let dlq = function_dlq_name(function);
    channel
        .queue_declare(
            dlq.as_str().into(),
            DURABLE,
            table(&[("x-queue-type", text("quorum"))]),
        )
        .await?;
    channel
        .queue_declare(
            function_queue_name(function).as_str().into(),
            DURABLE,
            table(&[
                ("x-queue-type", text("quorum")),
                (
                    "x-delivery-limit",
                    AMQPValue::LongLongInt(i64::from(delivery_limit)),
                ),
                ("x-dead-letter-exchange", text("")),
                ("x-dead-letter-routing-key", text(&dlq)),
                ("x-dead-letter-strategy", text("at-least-once")),
                ("x-overflow", text("reject-publish")),
            ]),
        )
        .await?;
    Ok(())
}

/// The attempt a delivery of `sub.<id>` is at (1 when absent), set on the copies the
/// consumer puts in the retry queues.
pub const ATTEMPT_HEADER: &str = "x-strata-attempt";
/// The error of the last attempt, on the messages of `sub.<id>.dlq`.
pub const LAST_ERROR_HEADER: &str = "x-strata-last-error";
