//! Reading the backlog of the scaled queue: ready + unacknowledged from the RabbitMQ
//! management API; where that cannot answer, the ready count from an AMQP passive declare
//! (a "ready-only" reading). Both failing is a missing metric, never a zero.

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
    /// `GET /api/queues/{vhost}/{queue}`: ready and unacked (sampled by the broker every
    /// few seconds, so a little behind).
    ManagementApi,
    /// AMQP `queue.declare` passive: the ready count only, exact.
    AmqpPassive,
    /// At zero workers: the management API's reading, its ready count raised to the exact
    /// AMQP one, which was higher (the sample had not caught up yet).
    ExactReadyAtZero,
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

    /// Reads the queue: management API first, AMQP fallback second; `None` when neither
    /// answered (each failure is logged and counted).
    pub async fn read(&mut self) -> Option<Reading> {
        match self.read_api().await {
            Ok(observation) => {
                if std::mem::take(&mut self.api_failing) {
                    tracing::info!("management API readings are back");
                }
                return Some(Reading {
                    observation,
                    source: Source::ManagementApi,
                });
            }
            Err(err) => {
                metrics::counter!("strata_autoscaler_metric_failures_total", "source" => "management_api")
                    .increment(1);
                let error = format!("{err:#}");
                let message =
                    "management API reading failed; falling back to a ready-only AMQP count";
                if std::mem::replace(&mut self.api_failing, true) {
                    tracing::debug!(%error, "{message}");
                } else {
                    tracing::warn!(%error, "{message}");
                }
            }
        }
        match tokio::time::timeout(READ_TIMEOUT, self.read_amqp()).await {
            Ok(Ok(ready)) => {
                self.amqp_failing = false;
                Some(Reading {
                    observation: Observation {
                        ready,
                        unacked: None,
                    },
                    source: Source::AmqpPassive,
                })
            }
            failed => {
                self.amqp = None;
                let error = match failed {
                    Ok(Err(err)) => format!("{err:#}"),
                    _ => "timed out".to_owned(),
                };
                metrics::counter!("strata_autoscaler_metric_failures_total", "source" => "amqp")
                    .increment(1);
                let message = "AMQP passive declare failed: no reading this tick";
                if std::mem::replace(&mut self.amqp_failing, true) {
                    tracing::debug!(%error, "{message}");
                } else {
                    tracing::warn!(%error, "{message}");
                }
                None
            }
        }
    }

    /// The reading that decides whether to start the first worker. At zero workers none of
    /// ours holds a message, so the exact ready count of an AMQP passive declare is the
    /// backlog that matters, with no sampling lag; the management API's figures are
    /// sampled every few seconds (`collect_statistics_interval`, 5 s by default) and would
    /// delay the activation by that much. The higher ready count of the two wins.
    pub async fn read_for_activation(&mut self) -> Option<Reading> {
        let mut reading = self.read().await?;
        if reading.source != Source::ManagementApi {
            return Some(reading);
        }
        match tokio::time::timeout(READ_TIMEOUT, self.read_amqp()).await {
            Ok(Ok(ready)) if ready > reading.observation.ready => {
                reading.observation.ready = ready;
                reading.source = Source::ExactReadyAtZero;
            }
            Ok(Ok(_)) => {}
            failed => {
                // The API's reading stands; the connection is opened again next time.
                self.amqp = None;
                if let Ok(Err(err)) = failed {
                    tracing::debug!(error = format!("{err:#}"), "exact ready count unavailable");
                }
            }
        }
        Some(reading)
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
