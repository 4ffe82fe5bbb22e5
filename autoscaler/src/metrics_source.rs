//! Reading the backlog of the scaled queue: the exact ready count from an AMQP passive
//! declare, with the unacknowledged count from the RabbitMQ management API (which samples
//! its figures every few seconds, so its ready count lags a spike by that much). Where the
//! API cannot answer, the AMQP count alone is a "ready-only" reading; where the declare
//! fails, the API's two (lagging) figures are used. Both failing is a missing metric,
//! never a zero.

use std::time::Duration;

use anyhow::Context;
use data::messaging::management::{self, AmqpAccount};
use lapin::{Channel, Connection};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::AutoscalerSettings;
use crate::decision::Observation;

/// Where a reading came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Ready from an AMQP passive declare (exact, current), unacked from the management
    /// API (sampled by the broker every few seconds): the usual reading.
    ExactReady,
    /// `GET /api/queues/{vhost}/{queue}` alone (the declare failed): ready and unacked as
    /// the broker last sampled them, a little behind.
    ManagementApi,
    /// AMQP `queue.declare` passive alone (the API failed): the ready count only, exact.
    AmqpPassive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reading {
    pub observation: Observation,
    pub source: Source,
}

/// Timeout of one management API call or AMQP fallback.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub struct QueueMetrics {
    http: reqwest::Client,
    queue_url: Url,
    api_user: String,
    api_password: SecretString,
    amqp_url: SecretString,
    queue: String,
    amqp: Option<(Connection, Channel)>,
    /// Failing since the last success: failures are logged as warnings once, then at
    /// debug level, so an absent plugin does not fill the log.
    api_failing: bool,
    amqp_failing: bool,
}

impl QueueMetrics {
    pub fn new(settings: &AutoscalerSettings) -> anyhow::Result<Self> {
        let vhost = AmqpAccount::of(settings.amqp_url.expose_secret())?.vhost;
        let queue_url = management::queue_url(&settings.rabbitmq_api_url, &vhost, &settings.queue)?;
        let http = reqwest::Client::builder()
            .timeout(READ_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(QueueMetrics {
            http,
            queue_url,
            api_user: settings.rabbitmq_api_user.clone(),
            api_password: settings.rabbitmq_api_password.clone(),
            amqp_url: settings.amqp_url.clone(),
            queue: settings.queue.clone(),
            amqp: None,
            api_failing: false,
            amqp_failing: false,
        })
    }

    /// Reads the queue: the management API for the unacked count, an AMQP passive declare
    /// for the exact ready count; `None` when neither answered (each failure is logged and
    /// counted). The exact count matters most at a spike: the API's ready figure is up to
    /// `collect_statistics_interval` (5 s by default) old, which would delay the scale-up
    /// (and a cold start from zero workers) by that much.
    pub async fn read(&mut self) -> Option<Reading> {
        let api = match self.read_api().await {
            Ok(observation) => {
                if std::mem::take(&mut self.api_failing) {
                    tracing::info!("management API readings are back");
                }
                Some(observation)
            }
            Err(err) => {
                metrics::counter!("strata_autoscaler_metric_failures_total", "source" => "management_api")
                    .increment(1);
                let error = format!("{err:#}");
                let message = "management API reading failed; the AMQP count is ready-only";
                if std::mem::replace(&mut self.api_failing, true) {
                    tracing::debug!(%error, "{message}");
                } else {
                    tracing::warn!(%error, "{message}");
                }
                None
            }
        };
        let exact = match tokio::time::timeout(READ_TIMEOUT, self.read_amqp()).await {
            Ok(Ok(ready)) => {
                self.amqp_failing = false;
                Some(ready)
            }
            failed => {
                self.amqp = None;
                let error = match failed {
                    Ok(Err(err)) => format!("{err:#}"),
                    _ => "timed out".to_owned(),
                };
                metrics::counter!("strata_autoscaler_metric_failures_total", "source" => "amqp")
                    .increment(1);
                let message = "AMQP passive declare failed: no exact ready count this tick";
                if std::mem::replace(&mut self.amqp_failing, true) {
                    tracing::debug!(%error, "{message}");
                } else {
                    tracing::warn!(%error, "{message}");
                }
                None
            }
        };
        let (observation, source) = match (api, exact) {
            (Some(api), Some(ready)) => (
                Observation {
                    ready,
                    unacked: api.unacked,
                },
                Source::ExactReady,
            ),
            (Some(api), None) => (api, Source::ManagementApi),
            (None, Some(ready)) => (
                Observation {
                    ready,
                    unacked: None,
                },
                Source::AmqpPassive,
            ),
            (None, None) => return None,
        };
        Some(Reading {
            observation,
            source,
        })
    }

    async fn read_api(&self) -> anyhow::Result<Observation> {
        let body: serde_json::Value = self
            .http
            .get(self.queue_url.clone())
            .basic_auth(&self.api_user, Some(self.api_password.expose_secret()))
            .send()
            .await
            .context("calling the management API")?
            .error_for_status()
            .context("management API answer")?
            .json()
            .await
            .context("reading the management API answer")?;
        let (ready, unacked) =
            management::queue_counts(&body).context("no message statistics for the queue yet")?;
        Ok(Observation {
            ready,
            unacked: Some(unacked),
        })
    }

    async fn read_amqp(&mut self) -> anyhow::Result<u64> {
        let usable = self
            .amqp
            .as_ref()
            .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
        if !usable {
            let connection = data::messaging::broker::connect(
                self.amqp_url.expose_secret(),
                "strata-autoscaler",
            )
            .await
            .context("connecting to RabbitMQ")?;
            let channel = connection.create_channel().await?;
            self.amqp = Some((connection, channel));
        }
        let (_, channel) = self.amqp.as_ref().context("no AMQP channel")?;
        // A passive declare of a missing queue closes the channel; it is reopened next time.
        let (ready, _consumers) = data::messaging::broker::queue_depth(channel, &self.queue)
            .await
            .with_context(|| format!("passive declare of {}", self.queue))?;
        Ok(u64::from(ready))
    }
}
