//! HTTP and HTTPS deliveries and confirmation requests: a signed JSON POST, answered
//! with a 2xx to count as delivered. Redirects are not followed (a 3xx is a failure), no
//! proxy from the environment is used, and under the production profile no private
//! address is reached ([`super::guard`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use contracts::SIGNATURE_HEADER;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use uuid::Uuid;

use super::guard;
use super::signature;
use super::store::Subscription;

/// Header naming the event, the key receivers deduplicate on.
pub const EVENT_ID_HEADER: &str = "Strata-Event-Id";
/// Header naming the event type (`subscription_confirmation` for a confirmation request).
pub const EVENT_TYPE_HEADER: &str = "Strata-Event-Type";
/// Header naming the subscription.
pub const SUBSCRIPTION_ID_HEADER: &str = "Strata-Subscription-Id";

/// The HTTP client of the deliveries, shared by every consumer of the process.
#[derive(Clone)]
pub struct HttpDelivery {
    client: reqwest::Client,
    production: bool,
    timeout: Duration,
}

/// What one POST sends besides its body.
pub struct Post<'a> {
    pub subscription: &'a Subscription,
    pub event_id: Uuid,
    pub event_type: &'a str,
}

impl HttpDelivery {
    /// A client whose every request is bounded by `timeout`; `production` turns the
    /// address guard on.
    pub fn new(timeout: Duration, production: bool) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("Strata-Subscriptions/", env!("CARGO_PKG_VERSION")));
        if production {
            builder = builder.dns_resolver(Arc::new(guard::GuardedResolver));
        }
        Ok(HttpDelivery {
            client: builder.build()?,
            production,
            timeout,
        })
    }

    /// POSTs `body` signed with the subscription's secret; Ok on a 2xx.
    pub async fn post(&self, post: Post<'_>, body: Vec<u8>) -> Result<(), String> {
        let url = reqwest::Url::parse(&post.subscription.endpoint)
            .map_err(|e| format!("invalid endpoint: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("invalid endpoint: scheme {}", url.scheme()));
        }
        if self.production {
            guard::check_host(&url)?;
        }
        let signature = signature::sign(&post.subscription.secret, Utc::now().timestamp(), &body);
        let response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, post.event_id.to_string())
            .header(EVENT_TYPE_HEADER, post.event_type)
            .header(SUBSCRIPTION_ID_HEADER, post.subscription.id.to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| self.describe(e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }

    /// The confirmation request: a signed POST of `{"type": "subscription_confirmation",
    /// "subscription_id", "topic", "confirm_url", "timestamp"}`.
    pub async fn confirm(
        &self,
        subscription: &Subscription,
        confirm_url: &str,
    ) -> Result<(), String> {
        let body = json!({
            "type": "subscription_confirmation",
            "subscription_id": subscription.id,
            "topic": subscription.topic.as_str(),
            "confirm_url": confirm_url,
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        let post = Post {
            subscription,
            event_id: Uuid::now_v7(),
            event_type: "subscription_confirmation",
        };
        self.post(
            post,
            serde_json::to_vec(&body).expect("JSON values serialise"),
        )
        .await
    }

    /// The failure and its causes in a line, without the URL (it may carry a token).
    fn describe(&self, err: reqwest::Error) -> String {
        if err.is_timeout() {
            return format!("no answer within {:?}", self.timeout);
        }
        let err = err.without_url();
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}
