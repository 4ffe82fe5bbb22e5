//! RabbitMQ: connecting, and the ONE place that declares every exchange and queue. Every
//! declaration is idempotent, so each process declares the topology at start-up.

use contracts::{
    COMMANDS_EXCHANGE, EVENTS_EXCHANGE, FULFIL_DLQ, FULFIL_DLX, FULFIL_QUEUE, FULFIL_ROUTING_KEY,
};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

/// Largest AMQP frame this side proposes unless the URL sets `frame_max`. The client keeps
/// 32 frames of buffer in each direction, so RabbitMQ's default of 128 KiB would pin 8 MiB
/// per connection; Strata's messages are far below 8 KiB, and larger ones are split into
/// several frames anyway.
pub const FRAME_MAX: u32 = 8 * 1024;

/// Opens a connection named after the process, so the management UI shows who is who.
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    connect_with_heartbeat(url, name, 0).await
}

/// [`connect`], proposing an AMQP heartbeat of `heartbeat_secs` (unless the URL sets
/// `heartbeat`; 0 takes the broker's). Both sides then send a frame at least every half
/// of it, and the client takes the connection for dead after twice the heartbeat without
/// a frame from the broker: the only way to notice a silently dead network path.
pub async fn connect_with_heartbeat(
    url: &str,
    name: &str,
    heartbeat_secs: u16,
) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    match url.parse::<AMQPUri>() {
        Ok(mut uri) => {
            uri.query.frame_max.get_or_insert(FRAME_MAX);
            if heartbeat_secs > 0 {
                uri.query.heartbeat.get_or_insert(heartbeat_secs);
            }
            Connection::connect_uri(uri, props).await
        }
        // Let the client report what is wrong with the URL.
        Err(_) => Connection::connect(url, props).await,
    }
}

/// An AMQP arguments or headers table from name/value pairs.
pub(crate) fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// A string as an AMQP argument or header value.
pub(crate) fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Declares the whole topology:
/// - `commands` (direct) -> `orders.fulfil`: quorum queue, delivery limit, dead-lettering
///   at-least-once through `orders.fulfil.dlx` into `orders.fulfil.dlq`;
/// - `events` (topic) -> `events.shards` (headers): the event stream's shards route on it
///   ([`crate::stream::topology`]);
/// - `inventory.fifo` and its dead-lettering ([`super::fifo`]).
pub async fn declare_topology(channel: &Channel, delivery_limit: u32) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            COMMANDS_EXCHANGE.into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            EVENTS_EXCHANGE.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            FULFIL_DLX.into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;

    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(
            FULFIL_DLQ.into(),
            durable_queue,
            table(&[("x-queue-type", text("quorum"))]),
        )
        .await?;
    channel
        .queue_bind(
            FULFIL_DLQ.into(),
            FULFIL_DLX.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    channel
        .queue_declare(
            FULFIL_QUEUE.into(),
            durable_queue,
            table(&[
                ("x-queue-type", text("quorum")),
                (
                    "x-delivery-limit",
                    AMQPValue::LongLongInt(i64::from(delivery_limit)),
                ),
                ("x-dead-letter-exchange", text(FULFIL_DLX)),
                // Dead-lettered messages are kept until the DLQ confirms them.
                ("x-dead-letter-strategy", text("at-least-once")),
                ("x-overflow", text("reject-publish")),
            ]),
        )
        .await?;
    channel
        .queue_bind(
            FULFIL_QUEUE.into(),
            COMMANDS_EXCHANGE.into(),
            FULFIL_ROUTING_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    // Every event also goes to one shard of the event stream; the shard queues need the
    // stream's settings and are declared by `crate::stream::topology::declare_shards`.
    crate::stream::topology::declare_exchange(channel).await?;
    // The inventory feed's exchanges; its partition queues need the partition count.
    super::fifo::declare_exchanges(channel).await?;
    Ok(())
}

/// Declares a queue private to this connection (server-named, exclusive, deleted with the
/// connection) bound to `routing_key` on the `events` exchange; returns its name. For
/// subscribers that only care about events while they run, such as cache invalidation.
pub async fn declare_private_subscription(
    channel: &Channel,
    routing_key: &str,
) -> lapin::Result<String> {
    channel
        .exchange_declare(
            EVENTS_EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let name = queue.name().as_str().to_owned();
    channel
        .queue_bind(
            name.as_str().into(),
            EVENTS_EXCHANGE.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(name)
}

/// Ready and unacknowledged counts are not both available over AMQP: a passive declare
/// returns the ready count and the number of consumers.
pub async fn queue_depth(channel: &Channel, queue: &str) -> lapin::Result<(u32, u32)> {
    let q = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((q.message_count(), q.consumer_count()))
}
