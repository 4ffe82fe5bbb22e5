//! The RabbitMQ management API: queue figures the AMQP protocol does not give (the count
//! of delivered-but-unacknowledged messages). Falls back to AMQP (ready count only) when
//! the management plugin is not there.

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::DataSettings;
use crate::messaging::broker;

/// One reading of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueReading {
    pub ready: u64,
    /// None when only the AMQP count was available.
    pub unacked: Option<u64>,
    pub consumers: u64,
}

/// The user, password and vhost of an AMQP URL, read by the client's own parser, so that
/// the management API is asked about the account and vhost the connection really uses (no
/// credentials means `guest:guest`, no path the vhost `/`, `amqp://host/` the vhost `""`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpAccount {
    pub user: String,
    pub password: String,
    pub vhost: String,
}

impl AmqpAccount {
    pub fn of(amqp_url: &str) -> anyhow::Result<Self> {
        let uri: lapin::uri::AMQPUri = amqp_url
            .parse()
            .map_err(|e: String| anyhow::anyhow!("unreadable AMQP URL: {e}"))?;
        Ok(AmqpAccount {
            user: uri.authority.userinfo.username,
            password: uri.authority.userinfo.password,
            vhost: uri.vhost,
        })
    }
}

/// `{api}/api/queues/{vhost}/{queue}`, each segment percent-encoded (`/` is `%2F`).
pub fn queue_url(api: &str, vhost: &str, queue: &str) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(api).with_context(|| format!("management API URL {api}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("management API URL {api} cannot take a path"))?
        .pop_if_empty()
        .extend(["api", "queues", vhost, queue]);
    Ok(url)
}

/// Ready and unacknowledged counts out of a management API queue object; `None` while the
/// broker has not collected statistics for the queue yet (not a zero).
pub fn queue_counts(body: &serde_json::Value) -> Option<(u64, u64)> {
    Some((
        body.get("messages_ready")?.as_u64()?,
        body.get("messages_unacknowledged")?.as_u64()?,
    ))
}

/// Reads a queue of the settings' vhost: from the management API at `api_base` when it
/// answers, else by a passive declare over AMQP.
pub async fn queue_reading(
    settings: &DataSettings,
    api_base: &str,
    queue: &str,
) -> anyhow::Result<QueueReading> {
    let account = AmqpAccount::of(settings.amqp_url.expose_secret())?;
    let url = queue_url(api_base, &account.vhost, queue)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let from_api = async {
        let body: serde_json::Value = http
            .get(url)
            .basic_auth(account.user, Some(account.password))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .json()
            .await
            .ok()?;
        let (ready, unacked) = queue_counts(&body)?;
        Some(QueueReading {
            ready,
            unacked: Some(unacked),
            consumers: body.get("consumers").and_then(|v| v.as_u64()).unwrap_or(0),
        })
    };
    if let Some(reading) = from_api.await {
        return Ok(reading);
    }
    let connection = broker::connect(settings.amqp_url(), "strata-queue-reading").await?;
    let channel = connection.create_channel().await?;
    let depth = broker::queue_depth(&channel, queue).await;
    let _ = connection.close(200, "read".into()).await;
    let (ready, consumers) = depth?;
    Ok(QueueReading {
        ready: u64::from(ready),
        unacked: None,
        consumers: u64::from(consumers),
    })
}

/// `{api}/api/{segments...}`, each segment percent-encoded.
pub fn api_url(api: &str, segments: &[&str]) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(api).with_context(|| format!("management API URL {api}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("management API URL {api} cannot take a path"))?
        .pop_if_empty()
        .push("api")
        .extend(segments);
    Ok(url)
}

/// Sets a user's topic permissions on one exchange of a vhost, as `rabbitmqctl
/// set_topic_permissions -p VHOST USER EXCHANGE WRITE READ` does: `write` limits the
/// routing keys the user may publish with, `read` those it may bind a queue with.
pub async fn set_topic_permissions(
    http: &reqwest::Client,
    api: &str,
    account: &AmqpAccount,
    user: &str,
    exchange: &str,
    write: &str,
    read: &str,
) -> anyhow::Result<()> {
    let url = api_url(api, &["topic-permissions", &account.vhost, user])?;
    http.put(url)
        .basic_auth(&account.user, Some(&account.password))
        .json(&serde_json::json!({"exchange": exchange, "write": write, "read": read}))
        .send()
        .await
        .context("calling the management API")?
        .error_for_status()
        .with_context(|| format!("setting the topic permissions of {user}"))?;
    Ok(())
}

/// Messages (ready and unacknowledged) of every queue of the account's vhost whose name
/// starts with `prefix`, in one call. Queues without statistics yet count 0.
pub async fn queue_depths(
    http: &reqwest::Client,
    api: &str,
    account: &AmqpAccount,
    prefix: &str,
) -> anyhow::Result<std::collections::HashMap<String, u64>> {
    let mut url = api_url(api, &["queues", &account.vhost])?;
    url.query_pairs_mut().append_pair(
        "columns",
        "name,messages,messages_ready,messages_unacknowledged",
    );
    let queues: Vec<serde_json::Value> = http
        .get(url)
        .basic_auth(&account.user, Some(&account.password))
        .send()
        .await
        .context("calling the management API")?
        .error_for_status()?
        .json()
        .await?;
    Ok(queues
        .iter()
        .filter_map(|q| {
            let name = q.get("name")?.as_str()?;
            name.starts_with(prefix).then(|| {
                let depth = q
                    .get("messages")
                    .and_then(|v| v.as_u64())
                    .unwrap_or_else(|| {
                        queue_counts(q).map_or(0, |(ready, unacked)| ready + unacked)
                    });
                (name.to_owned(), depth)
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(url: &str) -> (String, String, String) {
        let a = AmqpAccount::of(url).expect("readable");
        (a.user, a.password, a.vhost)
    }

    #[test]
    fn accounts_of_amqp_urls() {
        assert_eq!(
            account("amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("guest".into(), "guest".into(), "/".into())
        );
        assert_eq!(
            account("amqp://u%40x:p%3Aw@h:5672/strata-test-1"),
            ("u@x".into(), "p:w".into(), "strata-test-1".into())
        );
        assert_eq!(account("amqp://h:5672").2, "/");
        assert_eq!(account("amqp://h:5672/a%2Fb").2, "a/b");
        // No credentials: the client logs in as guest.
        assert_eq!(account("amqp://h:5672/v").0, "guest");
        assert!(AmqpAccount::of("http://h/").is_err());
    }

    #[test]
    fn the_queue_url_encodes_vhost_and_queue() {
        let url = queue_url("http://127.0.0.1:15672", "/", "orders.fulfil").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:15672/api/queues/%2F/orders.fulfil"
        );
        let url = queue_url("http://mq:15672/rabbit/", "a b", "q").unwrap();
        assert_eq!(url.as_str(), "http://mq:15672/rabbit/api/queues/a%20b/q");
    }

    #[test]
    fn counts_need_both_figures() {
        let body = serde_json::json!({"messages_ready": 7, "messages_unacknowledged": 3});
        assert_eq!(queue_counts(&body), Some((7, 3)));
        // A queue declared a moment ago has no statistics yet.
        assert_eq!(queue_counts(&serde_json::json!({"name": "q"})), None);
    }
}
