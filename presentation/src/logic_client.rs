//! Typed client of the logic API: timeouts on every call, a child `traceparent` of the
//! page request's trace, and logic's `{"error":{"code","message"}}` mapped to [`LogicError`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use contracts::trace::TraceParent;
use contracts::{
    AuditPage, CategoryList, DeadLetterList, ErrorBody, OpsStats, Order, PlaceOrder, Product,
    ProductPage, RedriveResult,
};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::product_cache::ProductCache;
use crate::telemetry::with_metrics;

#[derive(Debug, thiserror::Error)]
pub enum LogicError {
    /// Logic could not be reached, timed out, or failed on its side (5xx).
    #[error("the logic API is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("not found")]
    NotFound,
    /// Logic refused the request (4xx) with a stable code such as `invalid_email`.
    #[error("rejected by logic: {code}")]
    Rejected { status: u16, code: String },
}

/// Filters of a product listing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProductQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub page: u32,
    pub per_page: u32,
}

/// Filters and page of an audit trail listing (`GET /api/v1/audit`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    pub page: u32,
    pub per_page: u32,
}

/// One function handler's queue in logic's ops statistics: its consumers are the
/// function's running workers (0 or 1 when scaled from zero).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct FunctionScale {
    pub name: String,
    pub queue: String,
    #[serde(default)]
    pub consumers: Option<u64>,
    #[serde(default)]
    pub ready: Option<u64>,
}

#[derive(Clone)]
pub struct LogicClient {
    http: reqwest::Client,
    base: Url,
    /// Products kept while logic's freshness promise for them lasts (None: turned off).
    products: Option<ProductCache>,
}

impl LogicClient {
    /// A client that keeps no products; [`LogicClient::keeping_products`] adds the copy.
    pub fn new(base: &str, timeout: Duration, connect_timeout: Duration) -> anyhow::Result<Self> {
        let base = Url::parse(base).with_context(|| format!("LOGIC_URL {base:?} is not a URL"))?;
        anyhow::ensure!(
            matches!(base.scheme(), "http" | "https"),
            "LOGIC_URL must be http or https"
        );
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent("strata-presentation")
            .build()
            .context("building the logic HTTP client")?;
        Ok(LogicClient {
            http,
            base,
            products: None,
        })
    }

    /// Keeps up to `entries` products while they are fresh ([`crate::product_cache`]);
    /// 0 keeps none.
    pub fn keeping_products(mut self, entries: u64) -> Self {
        self.products = ProductCache::new(entries);
        self
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    pub async fn products(
        &self,
        ctx: &TraceParent,
        query: &ProductQuery,
    ) -> Result<ProductPage, LogicError> {
        let mut url = self.url(&["api", "v1", "products"]);
        url.set_query(Some(
            &serde_urlencoded::to_string(query).unwrap_or_default(),
        ));
        self.call("products", ctx, self.http.get(url)).await
    }

    pub async fn categories(&self, ctx: &TraceParent) -> Result<CategoryList, LogicError> {
        let url = self.url(&["api", "v1", "categories"]);
        self.call("categories", ctx, self.http.get(url)).await
    }

    /// One product: the kept copy while it is fresh, else logic's answer (kept when
    /// logic says for how long it stays fresh).
    pub async fn product(&self, ctx: &TraceParent, sku: &str) -> Result<Arc<Product>, LogicError> {
        self.product_and_source(ctx, sku)
            .await
            .map(|(product, _)| product)
    }

    /// [`LogicClient::product`], and whether it came from the kept copy (true) or from
    /// logic (false).
    pub async fn product_and_source(
        &self,
        ctx: &TraceParent,
        sku: &str,
    ) -> Result<(Arc<Product>, bool), LogicError> {
        if let Some(kept) = self.products.as_ref().and_then(|c| c.get(sku)) {
            with_metrics(|| metrics::counter!("strata_product_copies_served_total").increment(1));
            return Ok((kept, true));
        }
        let url = self.url(&["api", "v1", "products", sku]);
        let asked_at = Instant::now();
        let (product, fresh_for) = self.call_fresh("product", ctx, self.http.get(url)).await?;
        let product = Arc::new(product);
        if let (Some(cache), Some(fresh_for)) = (&self.products, fresh_for) {
            cache.keep(Arc::clone(&product), asked_at, fresh_for);
        }
        Ok((product, false))
    }

    pub async fn order(&self, ctx: &TraceParent, id: Uuid) -> Result<Order, LogicError> {
        let url = self.url(&["api", "v1", "orders", &id.to_string()]);
        self.call("order", ctx, self.http.get(url)).await
    }

    /// Places an order; the same `idempotency_key` returns the same order.
    pub async fn place_order(
        &self,
        ctx: &TraceParent,
        order: &PlaceOrder,
        idempotency_key: Uuid,
    ) -> Result<Order, LogicError> {
        let url = self.url(&["api", "v1", "orders"]);
        let req = self
            .http
            .request(Method::POST, url)
            .header("Idempotency-Key", idempotency_key.to_string())
            .json(order);
        self.call("place_order", ctx, req).await
    }

    /// One reading of the system (admin: `GET /api/v1/ops/stats`).
    pub async fn ops_stats(
        &self,
        ctx: &TraceParent,
        token: &SecretString,
    ) -> Result<OpsStats, LogicError> {
        let url = self.url(&["api", "v1", "ops", "stats"]);
        let req = self.http.get(url).bearer_auth(token.expose_secret());
        self.call("ops_stats", ctx, req).await
    }

    /// The first `limit` dead letters, without consuming them (admin).
    pub async fn dead_letters(
        &self,
        ctx: &TraceParent,
        token: &SecretString,
        limit: u32,
    ) -> Result<DeadLetterList, LogicError> {
        let mut url = self.url(&["api", "v1", "ops", "dlq"]);
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        let req = self.http.get(url).bearer_auth(token.expose_secret());
        self.call("dead_letters", ctx, req).await
    }

    /// Moves every dead letter back to its work queue (admin).
    pub async fn redrive(
        &self,
        ctx: &TraceParent,
        token: &SecretString,
    ) -> Result<RedriveResult, LogicError> {
        let url = self.url(&["api", "v1", "ops", "dlq", "redrive"]);
        let req = self
            .http
            .post(url)
            .bearer_auth(token.expose_secret())
            .json(&serde_json::json!({}));
        self.call("redrive", ctx, req).await
    }

    /// A page of the audit trail, newest first (admin).
    pub async fn audit(
        &self,
        ctx: &TraceParent,
        token: &SecretString,
        query: &AuditQuery,
    ) -> Result<AuditPage, LogicError> {
        let mut url = self.url(&["api", "v1", "audit"]);
        url.set_query(Some(
            &serde_urlencoded::to_string(query).unwrap_or_default(),
        ));
        let req = self.http.get(url).bearer_auth(token.expose_secret());
        self.call("audit", ctx, req).await
    }

    /// The inventory feed's FIFO partitions (admin).
    pub async fn fifo(
        &self,
        ctx: &TraceParent,
        token: &SecretString,
    ) -> Result<contracts::FifoView, LogicError> {
        let url = self.url(&["api", "v1", "ops", "fifo"]);
        let req = self.http.get(url).bearer_auth(token.expose_secret());
        self.call("fifo", ctx, req).await
    }

    /// The last `minutes` one-minute windows of the stream's analytics (admin).
    pub async fn analytics(
        &self,
        ctx: &TraceParent,
        token: &SecretString,
        minutes: u32,
    ) -> Result<contracts::AnalyticsView, LogicError> {
        let mut url = self.url(&["api", "v1", "ops", "analytics"]);
        url.query_pairs_mut()
            .append_pair("minutes", &minutes.to_string());
        let req = self.http.get(url).bearer_auth(token.expose_secret());
        self.call("analytics", ctx, req).await
    }

    /// The event stream's shards and the applications reading them (admin).
    pub async fn stream_status(
        &self,
        ctx: &TraceParent,
        token: &SecretString,
    ) -> Result<contracts::StreamStatus, LogicError> {
        let url = self.url(&["api", "v1", "ops", "stream"]);
        let req = self.http.get(url).bearer_auth(token.expose_secret());
        self.call("stream_status", ctx, req).await
    }

    /// Every subscription with its counters and DLQ depth (admin).
    pub async fn subscriptions(
        &self,
        ctx: &TraceParent,
        token: &SecretString,
    ) -> Result<contracts::SubscriptionList, LogicError> {
        let url = self.url(&["api", "v1", "subscriptions"]);
        let req = self.http.get(url).bearer_auth(token.expose_secret());
        self.call("subscriptions", ctx, req).await
    }

    /// Moves a subscription's dead letters back to its queue (admin).
    pub async fn subscription_redrive(
        &self,
        ctx: &TraceParent,
        token: &SecretString,
        id: Uuid,
    ) -> Result<RedriveResult, LogicError> {
        let id = id.to_string();
        let url = self.url(&["api", "v1", "subscriptions", &id, "dlq", "redrive"]);
        let req = self
            .http
            .post(url)
            .bearer_auth(token.expose_secret())
            .json(&serde_json::json!({}));
        self.call("subscription_redrive", ctx, req).await
    }

    /// Confirms a subscription with the token of its confirmation URL (no bearer token:
    /// the confirmation token is the credential). `id` and `token` go to logic as given,
    /// so logic judges them and its error codes reach the caller.
    pub async fn confirm_subscription(
        &self,
        ctx: &TraceParent,
        id: &str,
        token: Option<&str>,
    ) -> Result<contracts::subscriptions::Confirmed, LogicError> {
        let mut url = self.url(&["api", "v1", "subscriptions", id, "confirm"]);
        if let Some(token) = token {
            url.query_pairs_mut().append_pair("token", token);
        }
        self.call("confirm_subscription", ctx, self.http.get(url))
            .await
    }

    /// The function handlers' queues as the ops statistics give them (`functions`; empty
    /// when this logic version has none).
    pub async fn function_scales(
        &self,
        ctx: &TraceParent,
        token: &SecretString,
    ) -> Result<Vec<FunctionScale>, LogicError> {
        #[derive(serde::Deserialize)]
        struct Functions {
            #[serde(default)]
            functions: Vec<FunctionScale>,
        }
        let url = self.url(&["api", "v1", "ops", "stats"]);
        let req = self.http.get(url).bearer_auth(token.expose_secret());
        let stats: Functions = self.call("function_scales", ctx, req).await?;
        Ok(stats.functions)
    }

    /// Logic's own readiness (`GET /readyz` answers 200).
    pub async fn ready(&self, ctx: &TraceParent) -> bool {
        let req = self
            .http
            .get(self.url(&["readyz"]))
            .timeout(Duration::from_secs(2))
            .header("traceparent", ctx.child().to_string());
        matches!(req.send().await, Ok(res) if res.status().is_success())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        op: &'static str,
        ctx: &TraceParent,
        req: reqwest::RequestBuilder,
    ) -> Result<T, LogicError> {
        self.call_fresh(op, ctx, req)
            .await
            .map(|(answer, _)| answer)
    }

    /// A call, its answer, and for how long logic says the answer stays fresh
    /// ([`contracts::STOCK_FRESH_FOR_HEADER`]; None when it says nothing).
    #[tracing::instrument(name = "logic call", skip(self, ctx, req), fields(logic.trace = tracing::field::Empty, status = tracing::field::Empty))]
    async fn call_fresh<T: DeserializeOwned>(
        &self,
        op: &'static str,
        ctx: &TraceParent,
        req: reqwest::RequestBuilder,
    ) -> Result<(T, Option<Duration>), LogicError> {
        let result = self.send(ctx, req).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(LogicError::Unavailable(_)) => "unavailable",
            Err(LogicError::NotFound) => "not_found",
            Err(LogicError::Rejected { .. }) => "rejected",
        };
        with_metrics(|| {
            metrics::counter!("strata_logic_calls_total", "op" => op, "outcome" => outcome)
                .increment(1);
        });
        result
    }

    async fn send<T: DeserializeOwned>(
        &self,
        ctx: &TraceParent,
        req: reqwest::RequestBuilder,
    ) -> Result<(T, Option<Duration>), LogicError> {
        let unavailable = |e: anyhow::Error| LogicError::Unavailable(e);
        let res = req
            .header("traceparent", ctx.child().to_string())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unavailable(anyhow!(e).context("calling logic")))?;
        let span = tracing::Span::current();
        if let Some(joined) = res
            .headers()
            .get("traceresponse")
            .and_then(|v| v.to_str().ok())
        {
            span.record("logic.trace", joined);
        }
        let status = res.status();
        span.record("status", status.as_u16());
        if status.is_success() {
            let fresh_for = res
                .headers()
                .get(contracts::STOCK_FRESH_FOR_HEADER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map(Duration::from_millis);
            return res
                .json::<T>()
                .await
                .map(|answer| (answer, fresh_for))
                .map_err(|e| unavailable(anyhow!(e).context("reading logic's answer")));
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            // The body is logic's business: it is neither logged in full nor shown.
            return Err(unavailable(anyhow!("logic answered {status}")));
        }
        let code = res
            .json::<ErrorBody>()
            .await
            .map(|b| b.error.code)
            .unwrap_or_else(|_| "unknown".to_owned());
        if status == StatusCode::NOT_FOUND {
            return Err(LogicError::NotFound);
        }
        Err(LogicError::Rejected {
            status: status.as_u16(),
            code,
        })
    }
}
