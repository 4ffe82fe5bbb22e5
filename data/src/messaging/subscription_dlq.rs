//! A subscription's dead-letter queue `sub.<id>.dlq`: look at its messages without
//! consuming them, and redrive them into `sub.<id>` with a fresh attempt count.

use std::collections::BTreeMap;

use contracts::{SubscriptionDeadLetter, dlq_name, queue_name};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, Connection};
use uuid::Uuid;

use crate::DataSettings;
use crate::messaging::broker;
use crate::messaging::dlq::DEATH_HEADERS;
use crate::messaging::subscriptions::{ATTEMPT_HEADER, LAST_ERROR_HEADER};

/// Whether a redrive drops a header: the attempt count, the last error and what the broker
/// adds when dead-lettering.
fn reset(header: &str) -> bool {
    header == ATTEMPT_HEADER || header == LAST_ERROR_HEADER || DEATH_HEADERS.contains(&header)
}

async fn open(settings: &DataSettings, name: &str) -> anyhow::Result<Connection> {
    Ok(broker::connect(settings.amqp_url(), name).await?)
}

fn text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn describe(
    properties: &BasicProperties,
    routing_key: &str,
    body: &[u8],
) -> SubscriptionDeadLetter {
    let headers: BTreeMap<String, String> = properties
        .headers()
        .as_ref()
        .map(|h| {
            h.inner()
                .iter()
                .filter(|(k, _)| k.as_str() != "x-death")
                .map(|(k, v)| (k.to_string(), text(v)))
                .collect()
        })
        .unwrap_or_default();
    let mut body = String::from_utf8_lossy(body).into_owned();
    if body.len() > 2048 {
        let mut cut = 2048;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    let kind = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/attributes/type")?.as_str().map(str::to_owned))
        .or_else(|| (!routing_key.is_empty()).then(|| routing_key.to_owned()));
    SubscriptionDeadLetter {
        message_id: properties.message_id().as_ref().map(|s| s.to_string()),
        kind,
        headers,
        body,
    }
}

/// The first `limit` messages of the subscription's DLQ and how many it holds. Fetched
/// unacknowledged and returned when the channel closes: nothing is consumed.
pub async fn peek(
    settings: &DataSettings,
    id: Uuid,
    limit: u32,
) -> anyhow::Result<(u32, Vec<SubscriptionDeadLetter>)> {
    let queue = dlq_name(id);
    let connection = open(settings, "strata-subscription-dlq-peek").await?;
    let channel = connection.create_channel().await?;
    let (total, _) = broker::queue_depth(&channel, &queue).await?;
    let mut items = Vec::new();
    while (items.len() as u32) < limit.min(total) {
        match channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        {
            Some(m) => items.push(describe(
                &m.delivery.properties,
                m.delivery.routing_key.as_str(),
                &m.delivery.data,
            )),
            None => break,
        }
    }
    let _ = channel.close(200, "peek done".into()).await;
    let _ = connection.close(200, "peek done".into()).await;
    Ok((total, items))
}

/// Moves up to `limit` of the messages the DLQ holds now back into `sub.<id>` (through the
/// default exchange), each acked in the DLQ only after the broker confirmed its copy.
/// Returns (moved, left).
pub async fn redrive(settings: &DataSettings, id: Uuid, limit: u32) -> anyhow::Result<(u32, u32)> {
    let (dlq, main) = (dlq_name(id), queue_name(id));
    let connection = open(settings, "strata-subscription-dlq-redrive").await?;
    let source = connection.create_channel().await?;
    let target = connection.create_channel().await?;
    target
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let (present, _) = broker::queue_depth(&source, &dlq).await?;
    let limit = limit.min(present);
    let mut moved = 0;
    while moved < limit {
        let Some(message) = source
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let mut headers = FieldTable::default();
        if let Some(old) = delivery.properties.headers() {
            for (k, v) in old.inner() {
                if !reset(k.as_str()) {
                    headers.insert(k.clone(), v.clone());
                }
            }
        }
        headers.insert("x-redriven".into(), AMQPValue::Boolean(true));
        let properties = delivery.properties.clone().with_headers(headers);
        let confirm = target
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
            anyhow::bail!("the broker did not accept the redriven message");
        }
    }
    let (left, _) = broker::queue_depth(&source, &dlq).await?;
    let _ = connection.close(200, "redrive done".into()).await;
    tracing::info!(subscription.id = %id, moved, left, "subscription dead letters redriven");
    Ok((moved, left))
}
