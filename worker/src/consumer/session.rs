//! One broker connection's life: open it (every step bounded), consume, watch the
//! connection itself, and end either by a drain (stop) or by giving the connection up.
//!
//! The consumer stream alone does not tell that a connection died: a path that drops
//! packets silently sends nothing, not even an error. So each session proposes a short
//! AMQP heartbeat (`WORKER_HEARTBEAT_SECS`; the client gives up after two silent
//! heartbeats), listens to the connection's error events, and checks the connection and
//! channel states four times a second. Whichever notices first ends the session.

use std::time::Duration;

use anyhow::Context;
use contracts::FULFIL_QUEUE;
use futures_lite::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionStatus, Event};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Consumer, bounded};
use crate::health::Phase;
use crate::telemetry::in_flight as in_flight_gauge;

/// How often the connection and channel states are looked at.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// After a stop, how long deliveries the broker sent before the cancel are waited for.
const LATE_DELIVERIES: Duration = Duration::from_millis(200);

/// How a session ended.
pub(super) enum Ended {
    /// The stop token fired; in-flight messages were drained.
    Stopped,
    /// The connection failed, ended or went silent after consuming had begun.
    Lost(String),
}

struct Opened {
    connection: Connection,
    channel: Channel,
    deliveries: lapin::Consumer,
}

async fn open(consumer: &Consumer) -> anyhow::Result<Opened> {
    let settings = &consumer.settings;
    let limit = settings.broker_timeout();
    let data = &settings.data;
    let connection = bounded(
        limit,
        "connecting to RabbitMQ",
        data::messaging::broker::connect_with_heartbeat(
            data.amqp_url(),
            "strata-worker",
            settings.heartbeat_secs,
        ),
    )
    .await?;
    let opened = async {
        let channel = bounded(limit, "opening a channel", connection.create_channel()).await?;
        bounded(
            limit,
            "declaring the topology",
            data::messaging::broker::declare_topology(&channel, data.delivery_limit),
        )
        .await?;
        bounded(
            limit,
            "basic.qos",
            channel.basic_qos(settings.prefetch.max(1), BasicQosOptions::default()),
        )
        .await?;
        let deliveries = bounded(
            limit,
            "basic.consume",
            channel.basic_consume(
                FULFIL_QUEUE.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        anyhow::Ok((channel, deliveries))
    }
    .await;
    match opened {
        Ok((channel, deliveries)) => Ok(Opened {
            connection,
            channel,
            deliveries,
        }),
        Err(err) => {
            close(&connection, limit).await;
            Err(err)
        }
    }
}

/// Resolves when the connection is no longer usable (an error event, a state other than
/// connected, a closed channel); returns why.
async fn watch(status: ConnectionStatus, channel: Channel, connection: &Connection) -> String {
    let mut events = connection.events_listener();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::Error(err)) => return format!("connection error: {err}"),
                Some(_) => {}
                None => return "the connection's events ended".to_owned(),
            },
            _ = tick.tick() => {
                if !status.connected() {
                    return "the connection is no longer open".to_owned();
                }
                if !channel.status().connected() {
                    return "the channel is no longer open".to_owned();
                }
            }
        }
    }
}

/// Closes politely within `limit`; a connection that does not answer is dropped.
async fn close(connection: &Connection, limit: Duration) {
    if connection.status().connected()
        && let Err(err) = bounded(
            limit,
            "closing the connection",
            connection.close(200, "worker stopping".into()),
        )
        .await
    {
        tracing::debug!(error = format!("{err:#}"), "connection not closed cleanly");
    }
}

/// Opens a session, consumes until stopped or until the connection is lost, and ends it.
pub(super) async fn consume(consumer: &Consumer) -> anyhow::Result<Ended> {
    let stop = &consumer.stop;
    let limit = consumer.settings.broker_timeout();
    let opened = tokio::select! {
        _ = stop.cancelled() => return Ok(Ended::Stopped),
        opened = open(consumer) => opened,
    };
    let Opened {
        connection,
        channel,
        mut deliveries,
    } = opened?;
    consumer.readiness.set(Phase::Consuming);
    tracing::info!(
        prefetch = consumer.settings.prefetch,
        heartbeat = ?connection.configuration().heartbeat(),
        "consuming {FULFIL_QUEUE}"
    );

    // Cancelled when the session ends for good: in-flight messages stop waiting for the
    // database (their delivery can no longer be settled on this channel).
    let lost = CancellationToken::new();
    let mut in_flight = JoinSet::new();
    let watcher = watch(connection.status().clone(), channel.clone(), &connection);
    tokio::pin!(watcher);
    let lost_because: Option<String> = loop {
        tokio::select! {
            _ = stop.cancelled() => break None,
            reason = &mut watcher => break Some(reason),
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                in_flight_gauge(in_flight.len());
                if let Err(err) = done {
                    tracing::error!(error = %err, "message task panicked");
                }
            }
            next = deliveries.next() => match next {
                Some(Ok(delivery)) => {
                    in_flight.spawn(consumer.process(delivery, lost.clone()));
                    in_flight_gauge(in_flight.len());
                }
                Some(Err(err)) => break Some(format!("consumer failed: {err}")),
                None => break Some("the broker ended the consumer".to_owned()),
            }
        }
    };

    let Some(reason) = lost_because else {
        let answering = drain(consumer, &channel, deliveries, &mut in_flight, &lost).await;
        // A broker that did not answer the cancel is not waited for again: dropping the
        // connection closes it.
        if answering {
            if let Err(err) = bounded(
                limit,
                "closing the channel",
                channel.close(200, "worker stopping".into()),
            )
            .await
            {
                tracing::debug!(error = format!("{err:#}"), "channel not closed cleanly");
            }
            close(&connection, limit).await;
        }
        return Ok(Ended::Stopped);
    };

    // Lost: whatever is in flight can no longer be acked on this channel and the broker
    // gives it to a consumer again. Tasks finishing a transaction get a moment (their work
    // is then a duplicate the next delivery recognises at once); the rest are abandoned.
    consumer.readiness.set(Phase::Reconnecting);
    lost.cancel();
    let _ = tokio::time::timeout(limit, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    in_flight.abort_all();
    in_flight_gauge(0);
    close(&connection, limit).await;
    Ok(Ended::Lost(reason))
}

/// Stops the consumer, takes what the broker had already sent, and waits for every
/// in-flight message to be settled. Bounded as a whole by the caller's drain timeout.
/// Returns whether the broker answered the cancel.
async fn drain(
    consumer: &Consumer,
    channel: &Channel,
    mut deliveries: lapin::Consumer,
    in_flight: &mut JoinSet<()>,
    lost: &CancellationToken,
) -> bool {
    consumer.readiness.set(Phase::Draining);
    let cancelled = bounded(
        consumer.settings.broker_timeout(),
        "basic.cancel",
        channel.basic_cancel(deliveries.tag(), BasicCancelOptions::default()),
    )
    .await
    .context("cancelling the consumer");
    let answering = match cancelled {
        Ok(()) => {
            while let Ok(Some(Ok(delivery))) =
                tokio::time::timeout(LATE_DELIVERIES, deliveries.next()).await
            {
                in_flight.spawn(consumer.process(delivery, lost.clone()));
            }
            true
        }
        // A channel that does not answer cannot take acks either: what is in flight
        // finishes its transaction and the broker redelivers it (a duplicate, recognised).
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "consumer not cancelled");
            false
        }
    };
    tracing::info!(in_flight = in_flight.len(), "draining in-flight messages");
    while let Some(done) = in_flight.join_next().await {
        in_flight_gauge(in_flight.len());
        if let Err(err) = done {
            tracing::error!(error = %err, "message task panicked");
        }
    }
    answering
}
