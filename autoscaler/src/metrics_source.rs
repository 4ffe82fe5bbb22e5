//! Reading the backlog of the scaled queue: ready + unacknowledged from the RabbitMQ
//! management API; where that cannot answer, the ready count from an AMQP passive declare
//! (a "ready-only" reading). Both failing is a missing metric, never a zero.

use std::time::Duration;

use anyhow::Context;
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

/// The vhost named by an AMQP URL's path (URL-decoded; none means `/`).
pub fn vhost_of(amqp_url: &str) -> anyhow::Result<String> {
    let uri: lapin::uri::AMQPUri = amqp_url
        .parse()
        .map_err(|e: String| anyhow::anyhow!("unreadable AMQP URL: {e}"))?;
    Ok(if uri.vhost.is_empty() {
        "/".to_owned()
    } else {
        uri.vhost
    })
}

/// `{api}/api/queues/{vhost}/{queue}`, each segment percent-encoded (`/` is `%2F`).
pub fn queue_api_url(api: &str, vhost: &str, queue: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(api).with_context(|| format!("management API URL {api}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("management API URL {api} cannot take a path"))?
        .pop_if_empty()
        .extend(["api", "queues", vhost, queue]);
    Ok(url)
}

/// Ready and unacked counts out of a management API queue object; `None` while the broker
/// has not collected statistics for the queue yet.
pub fn parse_queue_stats(body: &serde_json::Value) -> Option<Observation> {
    Some(Observation {
        ready: body.get("messages_ready")?.as_u64()?,
        unacked: Some(body.get("messages_unacknowledged")?.as_u64()?),
    })
}

impl QueueMetrics {
    pub fn new(settings: &AutoscalerSettings) -> anyhow::Result<Self> {
        let vhost = vhost_of(settings.amqp_url.expose_secret())?;
        let queue_url = queue_api_url(&settings.rabbitmq_api_url, &vhost, &settings.queue)?;
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
        parse_queue_stats(&body).context("no message statistics for the queue yet")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vhost_comes_from_the_url_path_decoded() {
        assert_eq!(
            vhost_of("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap(),
            "/"
        );
        assert_eq!(
            vhost_of("amqp://h:5672/strata-test-1").unwrap(),
            "strata-test-1"
        );
        assert_eq!(vhost_of("amqp://h:5672/a%2Fb").unwrap(), "a/b");
        assert_eq!(vhost_of("amqp://h:5672").unwrap(), "/");
    }

    #[test]
    fn the_queue_url_encodes_vhost_and_queue() {
        let url = queue_api_url("http://127.0.0.1:15672", "/", "orders.fulfil").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:15672/api/queues/%2F/orders.fulfil"
        );
        let url = queue_api_url("http://mq:15672/rabbit/", "a b", "q").unwrap();
        assert_eq!(url.as_str(), "http://mq:15672/rabbit/api/queues/a%20b/q");
    }

    #[test]
    fn stats_need_both_counts() {
        let body = serde_json::json!({"messages_ready": 7, "messages_unacknowledged": 3});
        assert_eq!(
            parse_queue_stats(&body),
            Some(Observation {
                ready: 7,
                unacked: Some(3)
            })
        );
        // A queue declared a moment ago has no statistics yet: not a zero.
        assert_eq!(parse_queue_stats(&serde_json::json!({"name": "q"})), None);
    }
}
