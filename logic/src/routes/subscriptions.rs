//! Subscriptions to the event topics (SNS's Subscribe, ListSubscriptions, Unsubscribe,
//! ConfirmSubscription): each one gets its own queues on the broker, declared before the
//! answer; the workers deliver from them. The topic policy decides who may subscribe.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use contracts::{
    AuditAction, Confirmed, CreateSubscription, ErrorBody, FUNCTIONS, Protocol, RedriveRequest,
    RedriveResult, Subscription, SubscriptionDeadLetters, SubscriptionList, SubscriptionStatus,
    Topic, dlq_name,
};
use data::messaging::management::{self, AmqpAccount};
use data::messaging::{broker, subscription_dlq, subscriptions as queues};
use data::store::audit::{Caller, Record};
use data::store::subscriptions::{self as store, Confirmation, NewSubscription, SubscriptionRow};
use secrecy::ExposeSecret;
use serde::Deserialize;
use service::Profile;
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::{AppState, audit};
use crate::topic_policy::Grant;

/// The caller as the audit trail names it (the principal's name once authenticated), and
/// what it may do.
pub fn authenticate(req: &HttpRequest, state: &AppState) -> (Caller, Result<Grant, ApiError>) {
    let mut caller = audit::caller(req, &state.admin);
    let grant = state.topic_policy.authenticate(req, &state.admin);
    if let Ok(g) = &grant {
        caller.actor = g.name.clone();
    }
    (caller, grant)
}

fn target(id: &str) -> Option<String> {
    Some(format!("subscription:{id}"))
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw)
        .ok()
        .filter(|_| raw.len() == 36)
        .ok_or_else(|| ApiError::InvalidSubscriptionId(raw.to_owned()))
}

/// Whether a JSON value holds a NUL anywhere (Postgres's jsonb cannot store one).
pub fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A queue endpoint: a name other applications can consume, outside Strata's own names.
fn check_queue_name(name: &str) -> Result<(), ApiError> {
    let valid = (1..=200).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !valid {
        return Err(ApiError::InvalidEndpoint(
            "a queue name is 1 to 200 letters, digits, '.', '_', '-' or ':', starting with a \
             letter or digit"
                .into(),
        ));
    }
    const RESERVED: &[&str] = &["amq.", "sub.", "fn.", "orders.", "inventory.", "events."];
    if let Some(prefix) = RESERVED.iter().find(|p| name.starts_with(*p)) {
        return Err(ApiError::InvalidEndpoint(format!(
            "queue names starting with {prefix} are Strata's or the broker's own"
        )));
    }
    Ok(())
}

/// Checks the endpoint against its protocol (and, in production, keeps http/https out of
/// the private tier).
async fn check_endpoint(
    protocol: Protocol,
    endpoint: &str,
    profile: Profile,
) -> Result<(), ApiError> {
    if endpoint.is_empty() || endpoint.len() > 2048 || endpoint.contains(char::is_control) {
        return Err(ApiError::InvalidEndpoint(
            "an endpoint is 1 to 2048 characters, without control characters".into(),
        ));
    }
    match protocol {
        Protocol::Http | Protocol::Https => {
            let url = reqwest::Url::parse(endpoint)
                .map_err(|e| ApiError::InvalidEndpoint(format!("not a URL: {e}")))?;
            if url.scheme() != protocol.as_str() {
                return Err(ApiError::InvalidEndpoint(format!(
                    "a {} endpoint is a {}:// URL",
                    protocol.as_str(),
                    protocol.as_str()
                )));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(ApiError::InvalidEndpoint("the URL has no host".into()));
            }
            if profile == Profile::Production {
                data::net_guard::check_url(endpoint)
                    .await
                    .map_err(|e| ApiError::EndpointForbidden(e.to_string()))?;
            }
            Ok(())
        }
        Protocol::Email => {
            if email_address::EmailAddress::is_valid(endpoint) && endpoint.len() <= 254 {
                Ok(())
            } else {
                Err(ApiError::InvalidEndpoint(
                    "an email endpoint is a mail address".into(),
                ))
            }
        }
        Protocol::Queue => check_queue_name(endpoint),
        Protocol::Function => {
            if FUNCTIONS.contains(&endpoint) {
                Ok(())
            } else {
                Err(ApiError::UnknownFunction(endpoint.to_owned()))
            }
        }
    }
}

/// The validated request: topic, protocol, endpoint, policy.
async fn validate(
    request: CreateSubscription,
    grant: &Grant,
    profile: Profile,
) -> Result<(Topic, Protocol, CreateSubscription), ApiError> {
    let topic = match request.topic.as_deref() {
        None => Topic::Orders,
        Some(t) => Topic::parse(t).ok_or_else(|| ApiError::UnknownTopic(t.to_owned()))?,
    };
    grant.may_subscribe(topic)?;
    let protocol = Protocol::parse(&request.protocol).ok_or_else(|| {
        ApiError::InvalidProtocol(format!(
            "unknown protocol {:?}; protocols: http, https, email, queue, function",
            request.protocol
        ))
    })?;
    check_endpoint(protocol, &request.endpoint, profile).await?;
    if let Some(policy) = &request.filter_policy {
        if has_nul(policy) {
            return Err(ApiError::InvalidFilterPolicy(
                "a filter policy must not contain NUL".into(),
            ));
        }
        contracts::filter::FilterPolicy::parse(policy)
            .map_err(|e| ApiError::InvalidFilterPolicy(e.to_string()))?;
    }
    Ok((topic, protocol, request))
}

/// Subscribe an endpoint to a topic (admin, or a principal allowed to subscribe to it).
/// The subscription's queues exist when this answers. http/https/email subscriptions are
/// `pending_confirmation` until their confirmation URL is fetched; queue and function
/// ones are `confirmed` at once. `secret` (http/https) is shown only here.
#[utoipa::path(post, path = "/api/v1/subscriptions", tag = "subscriptions",
    request_body = CreateSubscription,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "created", body = Subscription),
        (status = 400, description = "malformed JSON or unknown field (`malformed_json`)", body = ErrorBody),
        (status = 401, description = "no valid token (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "the topic policy does not let the caller subscribe (`topic_forbidden`)", body = ErrorBody),
        (status = 404, description = "unknown topic (`unknown_topic`)", body = ErrorBody),
        (status = 413, description = "body over 64 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "body is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "`invalid_protocol`, `invalid_endpoint`, `unknown_function`, `invalid_filter_policy`, `endpoint_forbidden` (production: an endpoint in the private tier)", body = ErrorBody),
        (status = 503, description = "Postgres or RabbitMQ unreachable", body = ErrorBody),
    ))]
#[post("/api/v1/subscriptions")]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<web::Json<serde_json::Value>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let (caller, grant) = authenticate(&req, &state);
    let result = async {
        let grant = grant?;
        let request: CreateSubscription = crate::extract::json_object(body)?;
        let (topic, protocol, request) = validate(request, &grant, state.data.profile).await?;
        let new = NewSubscription {
            id: Uuid::now_v7(),
            topic,
            protocol,
            endpoint: request.endpoint,
            filter_policy: request.filter_policy,
            raw_delivery: request.raw_delivery,
            secret: random_hex(),
            confirm_token: random_hex(),
            owner: grant.name.clone(),
        };
        let row = insert_and_declare(&state, &new, &caller).await?;
        metrics::counter!("strata_subscriptions_created_total", "protocol" => protocol.as_str())
            .increment(1);
        let mut view = row.view(Some(0))?;
        if matches!(protocol, Protocol::Http | Protocol::Https) {
            view.secret = Some(row.secret.clone());
        }
        Ok(HttpResponse::Created()
            .insert_header(("Location", format!("/api/v1/subscriptions/{}", row.id)))
            .json(view))
    }
    .await;
    audit::settle(
        &state,
        &caller,
        AuditAction::SubscriptionCreate,
        None,
        result,
    )
    .await
}

/// The row and its audit entry commit only once the queues are declared: a subscription
/// never exists without its queues.
async fn insert_and_declare(
    state: &AppState,
    new: &NewSubscription,
    caller: &Caller,
) -> Result<SubscriptionRow, ApiError> {
    let mut tx = state.pool.begin().await?;
    let row = store::insert(&mut tx, new, caller).await?;
    let unavailable = |e: lapin::Error| {
        ApiError::Unavailable(anyhow::Error::new(e).context("declaring the subscription's queues"))
    };
    let connection = broker::connect(state.data.amqp_url(), "strata-logic-subscriptions")
        .await
        .map_err(unavailable)?;
    let declared = async {
        let channel = connection.create_channel().await?;
        queues::declare(
            &channel,
            new.id,
            new.topic,
            state.subscription_retry_tiers,
            state.data.delivery_limit,
        )
        .await?;
        if new.protocol == Protocol::Function {
            queues::declare_function(&channel, &new.endpoint, state.data.delivery_limit).await?;
        }
        lapin::Result::Ok(())
    }
    .await;
    let _ = connection.close(200, "declared".into()).await;
    declared.map_err(unavailable)?;
    tx.commit().await?;
    Ok(row)
}

/// Depths of every subscription DLQ, in one call of the management API; `None` when it
/// does not answer.
async fn dlq_depths(state: &AppState) -> Option<std::collections::HashMap<String, u64>> {
    let account = AmqpAccount::of(state.data.amqp_url.expose_secret()).ok()?;
    management::queue_depths(&state.http, &state.rabbitmq_api_url, &account, "sub.")
        .await
        .map_err(|e| tracing::debug!(error = format!("{e:#}"), "no DLQ depths"))
        .ok()
}

fn with_depth(
    row: &SubscriptionRow,
    depths: &Option<std::collections::HashMap<String, u64>>,
) -> sqlx::Result<Subscription> {
    let depth = depths
        .as_ref()
        .map(|d| d.get(&dlq_name(row.id)).copied().unwrap_or(0));
    row.view(depth)
}

/// The subscriptions (not deleted) with their delivery counters and DLQ depths, oldest
/// first: all of them for the admin, a principal's own for a principal.
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "subscriptions",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "the subscriptions", body = SubscriptionList),
        (status = 401, description = "no valid token (`unauthorized`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[get("/api/v1/subscriptions")]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let grant = state.topic_policy.authenticate(&req, &state.admin)?;
    let owner = (!grant.admin).then_some(grant.name.as_str());
    let rows = store::list(&state.pool, owner).await?;
    let depths = dlq_depths(&state).await;
    let items = rows
        .iter()
        .map(|r| with_depth(r, &depths))
        .collect::<sqlx::Result<Vec<_>>>()?;
    Ok(HttpResponse::Ok().json(SubscriptionList { items }))
}

/// The caller's subscription `raw` (deleted ones included), 404 when there is none or it
/// is another principal's, 400 for an id that is not a UUID.
async fn owned(state: &AppState, grant: &Grant, raw: &str) -> Result<SubscriptionRow, ApiError> {
    let id = parse_id(raw)?;
    store::get(&state.pool, id)
        .await?
        .filter(|row| grant.owns(&row.owner))
        .ok_or_else(|| ApiError::SubscriptionNotFound(raw.to_owned()))
}

/// One subscription with its delivery counters and DLQ depth (a deleted one is gone: 404).
#[utoipa::path(get, path = "/api/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "the subscription's id")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "the subscription", body = Subscription),
        (status = 401, description = "no valid token (`unauthorized`)", body = ErrorBody),
        (status = 400, description = "the id is not a UUID (`invalid_subscription_id`)", body = ErrorBody),
        (status = 404, description = "no such subscription of the caller's, or deleted (`subscription_not_found`)", body = ErrorBody),
    ))]
#[get("/api/v1/subscriptions/{id}")]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let grant = state.topic_policy.authenticate(&req, &state.admin)?;
    let row = live(owned(&state, &grant, &id).await?, &id)?;
    let depths = dlq_depths(&state).await;
    Ok(HttpResponse::Ok().json(with_depth(&row, &depths)?))
}

/// Unsubscribe: the subscription is marked deleted and its queues (with any message in
/// them) are deleted; its consumer stops at the workers' next poll.
#[utoipa::path(delete, path = "/api/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "the subscription's id")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "deleted", body = Subscription),
        (status = 401, description = "no valid token (`unauthorized`)", body = ErrorBody),
        (status = 400, description = "the id is not a UUID (`invalid_subscription_id`)", body = ErrorBody),
        (status = 404, description = "no such subscription, or deleted already (`subscription_not_found`)", body = ErrorBody),
        (status = 503, description = "Postgres or RabbitMQ unreachable", body = ErrorBody),
    ))]
#[delete("/api/v1/subscriptions/{id}")]
pub async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (caller, grant) = authenticate(&req, &state);
    let result = async {
        let grant = grant?;
        let row = owned(&state, &grant, &id).await?;
        let mut tx = state.pool.begin().await?;
        let row = store::mark_deleted(&mut tx, row.id, &caller)
            .await?
            .ok_or_else(|| ApiError::SubscriptionNotFound(id.to_string()))?;
        let unavailable = |e: lapin::Error| {
            ApiError::Unavailable(
                anyhow::Error::new(e).context("deleting the subscription's queues"),
            )
        };
        let connection = broker::connect(state.data.amqp_url(), "strata-logic-subscriptions")
            .await
            .map_err(unavailable)?;
        let deleted = async {
            let channel = connection.create_channel().await?;
            queues::delete(&channel, row.id, state.subscription_retry_tiers).await
        }
        .await;
        let _ = connection.close(200, "deleted".into()).await;
        deleted.map_err(unavailable)?;
        tx.commit().await?;
        Ok(HttpResponse::Ok().json(row.view(None)?))
    }
    .await;
    audit::settle(
        &state,
        &caller,
        AuditAction::SubscriptionDelete,
        target(&id),
        result,
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfirmParams {
    /// The token of the confirmation URL.
    pub token: String,
}

/// Confirm a subscription (SNS's ConfirmSubscription): the URL sent to the endpoint in the
/// confirmation request. No bearer token: the confirmation token is the credential.
/// Fetching it again changes nothing.
#[utoipa::path(get, path = "/api/v1/subscriptions/{id}/confirm", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "the subscription's id"), ConfirmParams),
    responses(
        (status = 200, description = "confirmed", body = Confirmed),
        (status = 400, description = "no token (`invalid_query`), an id that is not a UUID (`invalid_subscription_id`)", body = ErrorBody),
        (status = 403, description = "wrong token (`invalid_confirmation_token`)", body = ErrorBody),
        (status = 404, description = "no such subscription (`subscription_not_found`)", body = ErrorBody),
    ))]
#[get("/api/v1/subscriptions/{id}/confirm")]
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    params: web::Query<ConfirmParams>,
) -> Result<HttpResponse, ApiError> {
    let caller = audit::caller(&req, &state.admin);
    let result = async {
        let uuid = parse_id(&id)?;
        match store::confirm(&state.pool, uuid, &params.token, &caller).await? {
            Confirmation::Confirmed(confirmed_at) => Ok(HttpResponse::Ok().json(Confirmed {
                id: uuid,
                status: SubscriptionStatus::Confirmed,
                confirmed_at,
            })),
            Confirmation::NotFound => Err(ApiError::SubscriptionNotFound(id.to_string())),
            Confirmation::WrongToken => Err(ApiError::InvalidConfirmationToken),
        }
    }
    .await;
    audit::settle(
        &state,
        &caller,
        AuditAction::SubscriptionConfirm,
        target(&id),
        result,
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DlqParams {
    /// Show at most this many messages (default 20, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// The messages of the subscription's DLQ (deliveries that failed every attempt), oldest
/// first, peeked: nothing is consumed.
#[utoipa::path(get, path = "/api/v1/subscriptions/{id}/dlq", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "the subscription's id"), DlqParams),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "the dead letters", body = SubscriptionDeadLetters),
        (status = 400, description = "limit out of 1..=100 (`invalid_query`), an id that is not a UUID (`invalid_subscription_id`)", body = ErrorBody),
        (status = 401, description = "no valid token (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "no such subscription (`subscription_not_found`)", body = ErrorBody),
        (status = 503, description = "RabbitMQ unreachable", body = ErrorBody),
    ))]
#[get("/api/v1/subscriptions/{id}/dlq")]
pub async fn dead_letters(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    params: web::Query<DlqParams>,
) -> Result<HttpResponse, ApiError> {
    let grant = state.topic_policy.authenticate(&req, &state.admin)?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::InvalidQuery(
            "limit must be between 1 and 100".into(),
        ));
    }
    let row = live(owned(&state, &grant, &id).await?, &id)?;
    let (total, items) = subscription_dlq::peek(&state.data, row.id, limit)
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(SubscriptionDeadLetters {
        queue: dlq_name(row.id),
        total,
        items,
    }))
}

fn live(row: SubscriptionRow, raw: &str) -> Result<SubscriptionRow, ApiError> {
    if row.status() == Some(SubscriptionStatus::Deleted) {
        return Err(ApiError::SubscriptionNotFound(raw.to_owned()));
    }
    Ok(row)
}

/// Move the subscription's dead letters back into its queue `sub.<id>`, with a fresh
/// attempt count: each is delivered again with the whole retry schedule.
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/dlq/redrive", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "the subscription's id")),
    request_body(content = Option<RedriveRequest>, description = "optional: at most `limit` messages"),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "moved", body = RedriveResult),
        (status = 400, description = "malformed JSON (`malformed_json`), an id that is not a UUID (`invalid_subscription_id`)", body = ErrorBody),
        (status = 401, description = "no valid token (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "no such subscription (`subscription_not_found`)", body = ErrorBody),
        (status = 422, description = "limit out of 1..=10000 (`invalid_redrive`)", body = ErrorBody),
        (status = 503, description = "RabbitMQ unreachable", body = ErrorBody),
    ))]
#[post("/api/v1/subscriptions/{id}/dlq/redrive")]
pub async fn redrive(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (caller, grant) = authenticate(&req, &state);
    let result = async {
        let grant = grant?;
        let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?
        };
        let request: RedriveRequest = match value {
            serde_json::Value::Null => RedriveRequest::default(),
            value @ serde_json::Value::Object(_) => {
                serde_json::from_value(value).map_err(|e| ApiError::MalformedJson(e.to_string()))?
            }
            _ => {
                return Err(ApiError::MalformedJson(
                    "the body must be a JSON object".into(),
                ));
            }
        };
        let limit = request.limit.unwrap_or(10_000);
        if !(1..=10_000).contains(&limit) {
            return Err(ApiError::InvalidRedrive(
                "limit must be between 1 and 10000".into(),
            ));
        }
        let row = live(owned(&state, &grant, &id).await?, &id)?;
        let (redriven, remaining) = subscription_dlq::redrive(&state.data, row.id, limit as u32)
            .await
            .map_err(ApiError::Unavailable)?;
        let entry = Record::success(
            &caller,
            AuditAction::SubscriptionRedrive,
            target(&id),
            serde_json::json!({"redriven": redriven, "remaining": remaining}),
        );
        data::store::audit::record_alone(&state.pool, &entry).await?;
        Ok(HttpResponse::Ok().json(RedriveResult {
            redriven,
            remaining,
        }))
    }
    .await;
    audit::settle(
        &state,
        &caller,
        AuditAction::SubscriptionRedrive,
        target(&id),
        result,
    )
    .await
}
