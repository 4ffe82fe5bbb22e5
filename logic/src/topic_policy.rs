//! The topic policy (SNS's topic access policy): which credentials may publish to which
//! topic and which may subscribe to it. The admin token may do everything; the principals
//! of `TOPIC_POLICY_FILE` what the file grants them:
//!
//! ```json
//! {"principals": [{"name": "catalog-feed", "token_sha256": "<hex SHA-256 of its token>",
//!                  "publish": ["catalog"], "subscribe": [], "broker_user": "catalog-feed"}]}
//! ```
//!
//! The API enforces it (403 `topic_forbidden`, audited). On the broker, each principal
//! with a `broker_user` gets topic permissions on the `events` exchange at start
//! ([`apply_broker_permissions`]): that user can then publish only its topics' routing keys
//! and bind only to its subscribed topics', whatever client it uses.

use std::path::Path;
use std::time::Duration;

use actix_web::HttpRequest;
use anyhow::Context;
use contracts::{EVENTS_EXCHANGE, Topic};
use data::messaging::management::{self, AmqpAccount};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::auth::{ADMIN, AdminToken};
use crate::error::ApiError;

/// One principal of the policy file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// Its name in the audit trail and as a subscription's owner.
    pub name: String,
    /// Hex SHA-256 of its bearer token: the file holds no token.
    pub token_sha256: String,
    #[serde(default)]
    pub publish: Vec<Topic>,
    #[serde(default)]
    pub subscribe: Vec<Topic>,
    /// A RabbitMQ user of the vhost limited to the same topics on `events`.
    #[serde(default)]
    pub broker_user: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicPolicy {
    #[serde(default)]
    pub principals: Vec<Principal>,
}

/// What the caller of a request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    pub admin: bool,
    pub publish: Vec<Topic>,
    pub subscribe: Vec<Topic>,
}

impl Grant {
    pub fn may_publish(&self, topic: Topic) -> Result<(), ApiError> {
        if self.admin || self.publish.contains(&topic) {
            Ok(())
        } else {
            Err(ApiError::TopicForbidden(format!(
                "{} may not publish to the topic {}",
                self.name,
                topic.as_str()
            )))
        }
    }

    pub fn may_subscribe(&self, topic: Topic) -> Result<(), ApiError> {
        if self.admin || self.subscribe.contains(&topic) {
            Ok(())
        } else {
            Err(ApiError::TopicForbidden(format!(
                "{} may not subscribe to the topic {}",
                self.name,
                topic.as_str()
            )))
        }
    }

    /// Whether the caller may see and change a subscription of `owner`.
    pub fn owns(&self, owner: &str) -> bool {
        self.admin || self.name == owner
    }
}

impl TopicPolicy {
    /// Reads the policy file; no file, no principals (the admin token alone).
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(TopicPolicy::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading TOPIC_POLICY_FILE {}", path.display()))?;
        let policy: TopicPolicy = serde_json::from_str(&text).with_context(|| {
            format!("TOPIC_POLICY_FILE {} is not a topic policy", path.display())
        })?;
        for p in &policy.principals {
            anyhow::ensure!(
                p.token_sha256.len() == 64 && p.token_sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "principal {}: token_sha256 must be 64 hex digits",
                p.name
            );
            anyhow::ensure!(
                (1..=100).contains(&p.name.len()) && p.name != ADMIN,
                "principal {}: a name of 1 to 100 characters, not `admin`",
                p.name
            );
        }
        Ok(policy)
    }

    /// Who the request's bearer token is: the admin, a principal, or 401.
    pub fn authenticate(&self, req: &HttpRequest, admin: &AdminToken) -> Result<Grant, ApiError> {
        if admin.check(req).is_ok() {
            return Ok(Grant {
                name: ADMIN.to_owned(),
                admin: true,
                publish: Topic::ALL.to_vec(),
                subscribe: Topic::ALL.to_vec(),
            });
        }
        let token = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let digest = hex::encode(Sha256::digest(token.as_bytes()));
        self.principals
            .iter()
            .find(|p| {
                bool::from(
                    p.token_sha256
                        .to_ascii_lowercase()
                        .as_bytes()
                        .ct_eq(digest.as_bytes()),
                )
            })
            .map(|p| Grant {
                name: p.name.clone(),
                admin: false,
                publish: p.publish.clone(),
                subscribe: p.subscribe.clone(),
            })
            .ok_or(ApiError::Unauthorized)
    }
}

/// The routing-key regex of a set of topics; `^$` (no event type) for none.
pub fn topics_regex(topics: &[Topic]) -> String {
    if topics.is_empty() {
        return "^$".to_owned();
    }
    topics
        .iter()
        .map(|t| t.routing_key_regex())
        .collect::<Vec<_>>()
        .join("|")
}

/// Sets every broker user's topic permissions on `events`. One failure stops nothing:
/// each user is tried, and the error names those that failed.
pub async fn apply_broker_permissions(
    policy: &TopicPolicy,
    http: &reqwest::Client,
    api: &str,
    account: &AmqpAccount,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for p in &policy.principals {
        let Some(user) = &p.broker_user else { continue };
        let (write, read) = (topics_regex(&p.publish), topics_regex(&p.subscribe));
        match management::set_topic_permissions(
            http,
            api,
            account,
            user,
            EVENTS_EXCHANGE,
            &write,
            &read,
        )
        .await
        {
            Ok(()) => tracing::info!(user, write, read, "broker topic permissions set"),
            Err(err) => failed.push(format!("{user}: {err:#}")),
        }
    }
    anyhow::ensure!(failed.is_empty(), "{}", failed.join("; "));
    Ok(())
}

/// [`apply_broker_permissions`] until it succeeds (every 5 s) or `stop` fires.
pub async fn keep_applying(
    policy: std::sync::Arc<TopicPolicy>,
    http: reqwest::Client,
    api: String,
    account: AmqpAccount,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        match apply_broker_permissions(&policy, &http, &api, &account).await {
            Ok(()) => return,
            Err(err) => tracing::warn!(
                error = format!("{err:#}"),
                "broker topic permissions not set yet"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_of_topics() {
        assert_eq!(topics_regex(&[]), "^$");
        assert_eq!(topics_regex(&[Topic::Orders]), r"^order\.");
        assert_eq!(
            topics_regex(&[Topic::Orders, Topic::Catalog]),
            r"^order\.|^(product|inventory)\."
        );
    }
}
