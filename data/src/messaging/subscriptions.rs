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
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Confirmation};
use uuid::Uuid;

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

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

/// Headers of a failed delivery that a redriven message starts without: the broker's
/// dead-lettering records, and the delivery's attempt count and last error.
const REDRIVE_DROPS: &[&str] = &[
    "x-death",
    "x-first-death-reason",
    "x-first-death-queue",
    "x-first-death-exchange",
    "x-last-death-reason",
    "x-last-death-queue",
    "x-last-death-exchange",
    "x-delivery-count",
    ATTEMPT_HEADER,
    LAST_ERROR_HEADER,
];

/// The attempt a delivery of `sub.<id>` is at (1 when absent), set on the copies the
/// consumer puts in the retry queues.
pub const ATTEMPT_HEADER: &str = "x-strata-attempt";
/// The error of the last attempt, on the messages of `sub.<id>.dlq`.
pub const LAST_ERROR_HEADER: &str = "x-strata-last-error";

/// Moves the messages of `sub.<id>.dlq` back into `sub.<id>`, as first attempts (the
/// attempt and error headers removed, the message id and body kept). Each is acked in the
/// DLQ only after the broker confirmed its copy (puts `channel` in confirm mode): a crash
/// in between leaves a duplicate, which receivers recognise by its event id. Only the
/// messages there when it starts are moved. Returns how many moved; it stops early, the
/// message left in the DLQ, when the broker refuses a copy.
pub async fn redrive(channel: &Channel, id: Uuid) -> lapin::Result<u64> {
    let main = queue_name(id);
    let dlq = dlq_name(id);
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let present = channel
        .queue_declare(
            dlq.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..DURABLE
            },
            FieldTable::default(),
        )
        .await?
        .message_count();
    let mut moved = 0;
    while moved < u64::from(present) {
        let Some(message) = channel
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let mut headers = FieldTable::default();
        if let Some(old) = delivery.properties.headers() {
            for (k, v) in old.inner() {
                if !REDRIVE_DROPS.contains(&k.as_str()) {
                    headers.insert(k.clone(), v.clone());
                }
            }
        }
        headers.insert(ShortString::from("x-redriven"), AMQPValue::Boolean(true));
        let properties = delivery.properties.clone().with_headers(headers);
        let confirm = channel
            .basic_publish(
                "".into(),
                main.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &delivery.data,
                properties,
            )
            .await?
            .await?;
        if matches!(confirm, Confirmation::Ack(None)) {
            delivery.ack(BasicAckOptions::default()).await?;
            moved += 1;
        } else {
            delivery
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await?;
            tracing::warn!(subscription.id = %id, moved, "the broker refused a redriven message; redrive stopped");
            break;
        }
    }
    Ok(moved)
}
