//! The delivery loop of `orders.fulfil`: sessions of one broker connection each, replaced
//! with backoff whenever the connection fails, ends or goes silent ([`session`]); one task
//! per delivery, which waits out database outages while holding its message and settles
//! it after the commit ([`delivery`]). Every broker call is bounded
//! (`WORKER_BROKER_TIMEOUT_MS`); the whole stop is bounded by the caller
//! ([`crate::Application`], `WORKER_DRAIN_TIMEOUT_MS`).

mod delivery;
mod session;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::WorkerSettings;
use crate::fulfilment::PaymentGateway;
use crate::health::Readiness;

/// The consumer of one worker process.
pub struct Consumer {
    pub(crate) settings: Arc<WorkerSettings>,
    pub(crate) pool: PgPool,
    pub(crate) gateway: PaymentGateway,
    /// One permit per pooled connection: how many messages are processed at once.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) readiness: Arc<Readiness>,
    pub(crate) stop: CancellationToken,
}

/// A broker call bounded by `limit`: no answer in time is an error like any other, and
/// the caller treats the connection as lost.
pub(crate) async fn bounded<T, E>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(anyhow::Error::new(err).context(what.to_owned())),
        Err(_) => Err(anyhow::anyhow!(
            "{what}: no answer from the broker within {limit:?}"
        )),
    }
}

impl Consumer {
    /// Consumes until the stop token is cancelled, opening a new session with backoff
    /// whenever the broker connection fails, ends or goes silent; returns after the drain.
    pub async fn run(&self) {
        let stop = &self.stop;
        let backoff_builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times();
        let mut backoff = backoff_builder.build();
        while !stop.is_cancelled() {
            match session::consume(self).await {
                Ok(session::Ended::Stopped) => break,
                Ok(session::Ended::Lost(reason)) => {
                    // It had consumed: the backoff starts over.
                    backoff = backoff_builder.build();
                    tracing::warn!(error = %reason, "broker connection lost; reconnecting");
                }
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "could not start consuming; retrying"
                    );
                }
            }
            if stop.is_cancelled() {
                break;
            }
            let delay = backoff.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}
