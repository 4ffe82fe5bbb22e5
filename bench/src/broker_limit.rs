//! The broker's own limit for the worker's traffic: persistent messages published with
//! confirms into a quorum queue declared like `orders.fulfil`, then consumed with the
//! worker's prefetch and acked one by one; and the round trip of a single message.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use contracts::{Envelope, FulfilOrder};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use uuid::Uuid;

use crate::wait::amqp_channel;

/// Queue the measurement uses; deleted afterwards.
pub const QUEUE: &str = "bench.broker-limit";
/// Messages in flight between two waits for confirms (the outbox relay's batch size).
const CONFIRM_WINDOW: usize = 200;

#[derive(Debug)]
pub struct BrokerFigures {
    pub published_per_sec: f64,
    pub consumed_per_sec: f64,
    pub round_trip_p50: Duration,
    pub round_trip_p99: Duration,
}

fn queue_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args.insert(
        ShortString::from("x-delivery-limit"),
        AMQPValue::LongLongInt(5),
    );
    args.insert(
        ShortString::from("x-overflow"),
        AMQPValue::LongString(LongString::from("reject-publish")),
    );
    args
}

/// A message shaped like the relay's: a `FulfilOrder` envelope, persistent, with an id.
fn message() -> anyhow::Result<(Vec<u8>, BasicProperties)> {
    let envelope = Envelope::new(
        FulfilOrder {
            order_id: Uuid::now_v7(),
        },
        None,
    );
    let properties = BasicProperties::default()
        .with_message_id(ShortString::from(envelope.message_id.to_string()))
        .with_type(ShortString::from(envelope.kind.as_str()))
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2);
    Ok((serde_json::to_vec(&envelope)?, properties))
}

async fn publish(channel: &Channel, count: usize) -> anyhow::Result<()> {
    let mut pending = Vec::with_capacity(CONFIRM_WINDOW);
    for i in 0..count {
        let (body, properties) = message()?;
        let confirm = channel
            .basic_publish(
                "".into(),
                QUEUE.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                properties,
            )
            .await?;
        pending.push(confirm);
        if pending.len() == CONFIRM_WINDOW || i + 1 == count {
            for confirm in pending.drain(..) {
                match confirm.await? {
                    Confirmation::Ack(None) => {}
                    other => bail!("the broker did not take a message: {other:?}"),
                }
            }
        }
    }
    Ok(())
}

pub async fn run(
    amqp_url: &str,
    messages: usize,
    prefetch: u16,
    round_trips: usize,
) -> anyhow::Result<BrokerFigures> {
    let (connection, publisher) = amqp_channel(amqp_url).await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    publisher
        .queue_declare(
            QUEUE.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            queue_arguments(),
        )
        .await
        .context("declaring the measurement queue")?;

    let start = Instant::now();
    publish(&publisher, messages).await?;
    let published_per_sec = messages as f64 / start.elapsed().as_secs_f64();

    let consumer_channel = connection.create_channel().await?;
    consumer_channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = consumer_channel
        .basic_consume(
            QUEUE.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let start = Instant::now();
    for _ in 0..messages {
        let delivery = consumer.next().await.context("the consumer ended")??;
        delivery.ack(BasicAckOptions::default()).await?;
    }
    let consumed_per_sec = messages as f64 / start.elapsed().as_secs_f64();

    let mut round_trips_taken = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let start = Instant::now();
        publish(&publisher, 1).await?;
        let delivery = consumer.next().await.context("the consumer ended")??;
        delivery.ack(BasicAckOptions::default()).await?;
        round_trips_taken.push(start.elapsed());
    }
    round_trips_taken.sort();

    publisher
        .queue_delete(QUEUE.into(), QueueDeleteOptions::default())
        .await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(BrokerFigures {
        published_per_sec,
        consumed_per_sec,
        round_trip_p50: crate::quantile(&round_trips_taken, 0.5).unwrap_or_default(),
        round_trip_p99: crate::quantile(&round_trips_taken, 0.99).unwrap_or_default(),
    })
}
