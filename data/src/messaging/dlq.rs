//! The dead-letter queue of `orders.fulfil`: look at its messages without consuming them,
//! and redrive them to the work queue.

use chrono::{DateTime, Utc};
use contracts::{COMMANDS_EXCHANGE, DeadLetter, FULFIL_DLQ, FULFIL_ROUTING_KEY};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Confirmation, Connection};
use uuid::Uuid;

use crate::DataSettings;
use crate::messaging::broker;

/// Headers the broker adds when dead-lettering; a redriven message starts clean.
pub(crate) const DEATH_HEADERS: &[&str] = &[
    "x-death",
    "x-first-death-reason",
    "x-first-death-queue",
    "x-first-death-exchange",
    "x-last-death-reason",
    "x-last-death-queue",
    "x-last-death-exchange",
    "x-delivery-count",
];

async fn open(settings: &DataSettings, name: &str) -> anyhow::Result<Connection> {
    let connection = broker::connect(settings.amqp_url(), name).await?;
    let channel = connection.create_channel().await?;
    broker::declare_topology(&channel, settings.delivery_limit).await?;
    let _ = channel.close(200, "declared".into()).await;
    Ok(connection)
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn describe(properties: &BasicProperties, body: &[u8]) -> DeadLetter {
    let headers = properties.headers().clone().unwrap_or_default();
    let headers = headers.inner();
    let reason = headers.get("x-first-death-reason").and_then(text);
    let queue = headers.get("x-first-death-queue").and_then(text);
    // x-death is a list of tables, newest first; its `time` is a timestamp in seconds.
    let dead_lettered_at = match headers.get("x-death") {
        Some(AMQPValue::FieldArray(deaths)) => deaths
            .as_slice()
            .last()
            .and_then(|d| match d {
                AMQPValue::FieldTable(t) => t.inner().get("time").cloned(),
                _ => None,
            })
            .and_then(|t| match t {
                AMQPValue::Timestamp(secs) => DateTime::<Utc>::from_timestamp(secs as i64, 0),
                _ => None,
            }),
        _ => None,
    };
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let order_id = json
        .as_ref()
        .and_then(|v| v.pointer("/payload/order_id"))
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::parse_str(s).ok());
    let mut text_body = String::from_utf8_lossy(body).into_owned();
    if text_body.len() > 2048 {
        let mut cut = 2048;
        while !text_body.is_char_boundary(cut) {
            cut -= 1;
        }
        text_body.truncate(cut);
    }
    DeadLetter {
        message_id: properties.message_id().as_ref().map(|s| s.to_string()),
        kind: properties
            .kind()
            .as_ref()
            .map(|s| s.to_string())
            .or_else(|| {
                json.as_ref()
                    .and_then(|v| v.get("type"))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            }),
        order_id,
        reason: reason.map(|r| match r.as_str() {
            "delivery_limit" => "delivery_limit".to_owned(),
            other => other.to_owned(),
        }),
        queue,
        dead_lettered_at,
        body: text_body,
    }
}

/// How many messages the DLQ holds (those a peek or redrive holds at the moment aside).
pub async fn depth(settings: &DataSettings) -> anyhow::Result<u32> {
    let connection = open(settings, "strata-dlq-depth").await?;
    let channel = connection.create_channel().await?;
    let depth = broker::queue_depth(&channel, FULFIL_DLQ).await;
    let _ = connection.close(200, "counted".into()).await;
    Ok(depth?.0)
}

/// The first `limit` messages of the DLQ and how many it holds. Messages are fetched
/// unacknowledged and returned when the channel closes: nothing is consumed.
pub async fn peek(settings: &DataSettings, limit: u32) -> anyhow::Result<(u32, Vec<DeadLetter>)> {
    let connection = open(settings, "strata-dlq-peek").await?;
    let channel = connection.create_channel().await?;
    let (total, _) = broker::queue_depth(&channel, FULFIL_DLQ).await?;
    let mut items = Vec::new();
    while (items.len() as u32) < limit.min(total) {
        match channel
            .basic_get(FULFIL_DLQ.into(), BasicGetOptions { no_ack: false })
            .await?
        {
            Some(message) => items.push(describe(
                &message.delivery.properties,
                &message.delivery.data,
            )),
            None => break,
        }
    }
    // Closing the channel puts every fetched message back, in order.
    let _ = channel.close(200, "peek done".into()).await;
    let _ = connection.close(200, "peek done".into()).await;
    Ok((total, items))
}

/// Moves up to `limit` messages from the DLQ back to `orders.fulfil`, each acked in the
/// DLQ only after the broker confirmed its copy in the work queue (nothing is lost; a crash
/// in between leaves a duplicate that the idempotent consumer ignores). Message ids are
/// kept. At most the messages the DLQ holds when the redrive starts are moved: one that
/// is dead-lettered again meanwhile stays for the next redrive. Returns (moved, left); a
/// failure says how many had moved before it.
pub async fn redrive(settings: &DataSettings, limit: u32) -> Result<(u32, u32), RedriveError> {
    let mut moved = 0;
    redrive_counting(settings, limit, &mut moved)
        .await
        .map_err(|source| RedriveError { moved, source })
}

/// A redrive that stopped part-way: `moved` messages are back in the work queue.
#[derive(Debug, thiserror::Error)]
#[error("the redrive stopped after {moved} message(s)")]
pub struct RedriveError {
    pub moved: u32,
    #[source]
    pub source: anyhow::Error,
}

async fn redrive_counting(
    settings: &DataSettings,
    limit: u32,
    moved: &mut u32,
) -> anyhow::Result<(u32, u32)> {
    let connection = open(settings, "strata-dlq-redrive").await?;
    let source = connection.create_channel().await?;
    let target = connection.create_channel().await?;
    target
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    // Only the messages there now: a redriven message that fails again (a poison message,
    // an order that does not exist) comes back to the DLQ's tail while this runs, and
    // taking it again would move the same messages round and round until `limit`.
    let (present, _) = broker::queue_depth(&source, FULFIL_DLQ).await?;
    let limit = limit.min(present);
    while *moved < limit {
        let Some(message) = source
            .basic_get(FULFIL_DLQ.into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let mut headers = FieldTable::default();
        if let Some(old) = delivery.properties.headers() {
            for (k, v) in old.inner() {
                if !DEATH_HEADERS.contains(&k.as_str()) {
                    headers.insert(k.clone(), v.clone());
                }
            }
        }
        headers.insert(ShortString::from("x-redriven"), AMQPValue::Boolean(true));
        let properties = delivery.properties.clone().with_headers(headers);
        let confirm = target
            .basic_publish(
                COMMANDS_EXCHANGE.into(),
                FULFIL_ROUTING_KEY.into(),
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
            *moved += 1;
        } else {
            delivery
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await?;
            anyhow::bail!("the broker did not accept the redriven message");
        }
    }
    let (left, _) = broker::queue_depth(&source, FULFIL_DLQ).await?;
    let _ = connection.close(200, "redrive done".into()).await;
    tracing::info!(moved = *moved, left, "dead letters redriven");
    Ok((*moved, left))
}
