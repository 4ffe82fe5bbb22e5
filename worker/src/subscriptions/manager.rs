//! The subscription manager: one broker connection, and on it one consumer per confirmed
//! subscription, started and stopped as the `subscriptions` table says; and the loop that
//! sends the confirmation requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use contracts::{Protocol, SubscriptionStatus};
use lapin::Connection;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::store::{self, Subscription};
use super::{Shared, Subscriptions, consumer};
use crate::consumer::bounded;

/// Longest wait before a consumer that failed to start (its queue missing, say) is
/// started again.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// Runs the consumers until the stop token fires, reconnecting with backoff whenever the
/// broker connection is lost.
pub async fn run(subs: &Subscriptions) {
    let stop = &subs.stop;
    let builder = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times();
    let mut backoff = builder.build();
    while !stop.is_cancelled() {
        match session(subs).await {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "subscriptions: broker connection lost or refused; reconnecting"
                );
            }
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(5));
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        if stop.is_cancelled() {
            break;
        }
        // A session that ran a while starts the backoff over.
        backoff = builder.build();
    }
}

/// A consumer running for a subscription.
struct Running {
    /// The subscription's row, as the consumer should see it.
    row: watch::Sender<Subscription>,
    stop: CancellationToken,
    generation: u64,
}

/// The consumers of one connection.
#[derive(Default)]
struct Consumers {
    running: HashMap<Uuid, Running>,
    tasks: JoinSet<(Uuid, u64, anyhow::Result<()>)>,
    /// Consumers that failed: how often in a row, and when to try again.
    failed: HashMap<Uuid, (u32, Instant)>,
    generation: u64,
}

impl Consumers {
    fn start(&mut self, shared: &Arc<Shared>, connection: &Arc<Connection>, row: Subscription) {
        let id = row.id;
        let (tx, rx) = watch::channel(row);
        let stop = CancellationToken::new();
        self.generation += 1;
        let generation = self.generation;
        let run = consumer::run(shared.clone(), connection.clone(), rx, stop.clone());
        self.tasks.spawn(async move { (id, generation, run.await) });
        self.running.insert(
            id,
            Running {
                row: tx,
                stop,
                generation,
            },
        );
    }

    /// Starts, updates and stops consumers to match the confirmed subscriptions.
    fn sync(
        &mut self,
        shared: &Arc<Shared>,
        connection: &Arc<Connection>,
        rows: Vec<Subscription>,
    ) {
        let confirmed: HashMap<Uuid, Subscription> = rows
            .into_iter()
            .filter(|s| s.status == SubscriptionStatus::Confirmed)
            .map(|s| (s.id, s))
            .collect();
        self.failed.retain(|id, _| confirmed.contains_key(id));
        for (id, running) in &self.running {
            if !confirmed.contains_key(id) {
                tracing::info!(subscription.id = %id, "subscription no longer confirmed; stopping its consumer");
                running.stop.cancel();
            }
        }
        let now = Instant::now();
        for (id, row) in confirmed {
            match self.running.get(&id) {
                Some(running) => {
                    running.row.send_if_modified(|current| {
                        let changed = *current != row;
                        if changed {
                            *current = row;
                        }
                        changed
                    });
                }
                None if self.failed.get(&id).is_none_or(|(_, at)| *at <= now) => {
                    self.start(shared, connection, row);
                }
                None => {}
            }
        }
    }

    /// Forgets a consumer that ended; a failed one is started again after a delay.
    fn ended(&mut self, id: Uuid, generation: u64, result: anyhow::Result<()>, poll: Duration) {
        if self
            .running
            .get(&id)
            .is_some_and(|r| r.generation == generation)
        {
            self.running.remove(&id);
        }
        match result {
            Ok(()) => {
                self.failed.remove(&id);
            }
            Err(err) => {
                let count = self.failed.get(&id).map_or(1, |(n, _)| n + 1);
                let delay = poll
                    .saturating_mul(1 << count.min(10))
                    .min(MAX_RESTART_DELAY);
                tracing::warn!(subscription.id = %id, error = format!("{err:#}"), failures = count, ?delay,
                    "subscription consumer ended; starting it again later");
                self.failed.insert(id, (count, Instant::now() + delay));
            }
        }
    }

    /// Stops every consumer and waits for them to finish what is in flight.
    async fn stop_all(mut self) {
        for running in self.running.values() {
            running.stop.cancel();
        }
        while self.tasks.join_next().await.is_some() {}
    }
}

/// One connection's life; Ok when stopped, Err when the connection failed or was lost.
async fn session(subs: &Subscriptions) -> anyhow::Result<()> {
    let shared = &subs.shared;
    let limit = shared.broker_timeout;
    let connection = tokio::select! {
        _ = subs.stop.cancelled() => return Ok(()),
        connection = bounded(
            limit,
            "connecting to RabbitMQ",
            data::messaging::broker::connect_with_heartbeat(
                subs.amqp_url(),
                "strata-worker-subscriptions",
                subs.heartbeat_secs,
            ),
        ) => Arc::new(connection?),
    };
    let poll = shared.settings.poll();
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut consumers = Consumers::default();
    let lost = loop {
        tokio::select! {
            _ = subs.stop.cancelled() => break None,
            Some(done) = consumers.tasks.join_next(), if !consumers.tasks.is_empty() => {
                match done {
                    Ok((id, generation, result)) => consumers.ended(id, generation, result, poll),
                    Err(err) => tracing::error!(error = %err, "subscription consumer panicked"),
                }
            }
            _ = tick.tick() => {
                if !connection.status().connected() {
                    break Some("the connection is no longer open");
                }
                match store::live(&subs.pool).await {
                    Ok(rows) => consumers.sync(shared, &connection, rows),
                    Err(err) => tracing::warn!(error = %err, "could not read the subscriptions; keeping the consumers as they are"),
                }
            }
        }
    };
    consumers.stop_all().await;
    if connection.status().connected() {
        let _ = bounded(
            limit,
            "closing the connection",
            connection.close(200, "worker stopping".into()),
        )
        .await;
    }
    match lost {
        None => Ok(()),
        Some(reason) => Err(anyhow::anyhow!(reason)),
    }
}

/// `<PUBLIC_API_URL>/api/v1/subscriptions/<id>/confirm?token=<token>`.
pub fn confirm_url(public_api_url: &str, subscription: &Subscription) -> Result<String, String> {
    let mut url = reqwest::Url::parse(public_api_url)
        .map_err(|e| format!("PUBLIC_API_URL is not a URL: {e}"))?;
    url.path_segments_mut()
        .map_err(|()| "PUBLIC_API_URL cannot be a base".to_owned())?
        .pop_if_empty()
        .extend([
            "api",
            "v1",
            "subscriptions",
            &subscription.id.to_string(),
            "confirm",
        ]);
    url.query_pairs_mut()
        .append_pair("token", &subscription.confirm_token);
    Ok(url.into())
}

/// Sends the confirmation requests that are due, every poll, until `stop`: each claimed
/// by one worker, sent within the attempt timeout; a failure is recorded in `last_error`
/// and the request is sent again after `SUBSCRIPTION_CONFIRMATION_RESEND_SECS`.
pub async fn confirmations(shared: &Arc<Shared>, pool: &PgPool, stop: &CancellationToken) {
    let mut tick = tokio::time::interval(shared.settings.poll());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sending = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = sending.join_next(), if !sending.is_empty() => {}
            _ = tick.tick() => {
                let resend = shared.settings.confirmation_resend().as_secs_f64();
                match store::claim_confirmations(pool, resend).await {
                    Ok(due) => for subscription in due {
                        sending.spawn(send_confirmation(shared.clone(), pool.clone(), subscription));
                    },
                    Err(err) => tracing::warn!(error = %err, "could not claim the due confirmation requests"),
                }
            }
        }
    }
    // Those under way finish (each bounded by the timeout).
    while sending.join_next().await.is_some() {}
}

async fn send_confirmation(shared: Arc<Shared>, pool: PgPool, subscription: Subscription) {
    let timeout = shared.settings.timeout();
    let sent = async {
        let url = confirm_url(&shared.settings.public_api_url, &subscription)?;
        match subscription.protocol {
            Protocol::Http | Protocol::Https => shared.http.confirm(&subscription, &url).await,
            Protocol::Email => shared.mailer.confirm(&subscription, &url).await,
            Protocol::Queue | Protocol::Function => Ok(()),
        }
    };
    let sent = tokio::time::timeout(timeout, sent)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
    match sent {
        Ok(()) => tracing::info!(subscription.id = %subscription.id, "confirmation request sent"),
        Err(error) => {
            tracing::warn!(subscription.id = %subscription.id, %error, "confirmation request failed; sent again later");
            if let Err(err) = store::confirmation_failed(&pool, subscription.id, &error).await {
                tracing::warn!(error = %err, "could not record the failed confirmation request");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use contracts::{Protocol, SubscriptionStatus, Topic};
    use uuid::Uuid;

    use super::*;

    #[test]
    fn the_confirm_url_is_on_logics_api() {
        let subscription = Subscription {
            id: Uuid::nil(),
            topic: Topic::Orders,
            protocol: Protocol::Http,
            endpoint: "http://127.0.0.1/hook".to_owned(),
            filter_policy: None,
            raw_delivery: false,
            status: SubscriptionStatus::PendingConfirmation,
            secret: Arc::from("s"),
            confirm_token: "a b&c".to_owned(),
            confirmed_at: None,
        };
        for base in ["http://logic:8081", "http://logic:8081/"] {
            assert_eq!(
                confirm_url(base, &subscription).expect("url"),
                "http://logic:8081/api/v1/subscriptions/00000000-0000-0000-0000-000000000000/confirm?token=a+b%26c"
            );
        }
    }
}
