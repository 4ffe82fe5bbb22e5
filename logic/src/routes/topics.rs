//! Publishing to a topic (SNS's Publish): a message with attributes goes through the
//! outbox onto the `events` exchange, under its event type as routing key, and from there
//! to every subscription of the topic whose filter policy matches.

use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::Utc;
use contracts::{AuditAction, EVENTS_EXCHANGE, ErrorBody, PublishRequest, Published, Topic};
use data::messaging::outbox;
use data::store::audit::{self as audit_store, Record};
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::subscriptions::{authenticate, has_nul};
use crate::routes::{AppState, audit};
use crate::telemetry::trace_context;

/// Most attributes of a published message besides `type` (SNS's limit).
pub const MAX_ATTRIBUTES: usize = 10;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidMessage(message.into())
}

/// The message kind of the events Strata itself writes; anything else is `Published`.
fn kind_of(event_type: &str) -> &'static str {
    match event_type {
        "order.placed" => "OrderPlaced",
        "order.fulfilled" => "OrderFulfilled",
        "order.rejected" => "OrderRejected",
        "product.changed" => "ProductChanged",
        "inventory.adjusted" => "InventoryAdjusted",
        _ => "Published",
    }
}

fn check_type(topic: Topic, event_type: &str) -> Result<(), ApiError> {
    let shaped = (3..=100).contains(&event_type.len())
        && event_type.split('.').count() >= 2
        && event_type.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if !shaped || Topic::of_event_type(event_type) != Some(topic) {
        return Err(invalid(format!(
            "type must be an event type of the topic {} (routing keys {})",
            topic.as_str(),
            topic.binding_keys().join(", ")
        )));
    }
    Ok(())
}

fn check_scalar(name: &str, v: &Value) -> Result<(), ApiError> {
    match v {
        Value::String(s) if s.len() <= 256 && !s.contains('\0') => Ok(()),
        Value::Number(_) | Value::Bool(_) => Ok(()),
        _ => Err(invalid(format!(
            "attribute {name}: a string (at most 256 bytes), a number, a boolean or an array of strings and numbers"
        ))),
    }
}

fn check_attributes(attributes: &contracts::Attributes) -> Result<(), ApiError> {
    let own = attributes.keys().filter(|k| k.as_str() != "type").count();
    if own > MAX_ATTRIBUTES {
        return Err(invalid(format!(
            "at most {MAX_ATTRIBUTES} attributes besides type"
        )));
    }
    for (name, value) in attributes {
        let named = (1..=64).contains(&name.len())
            && !name.contains('\0')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !named {
            return Err(invalid(format!(
                "attribute name {name:?}: 1 to 64 letters, digits, '_', '-' or '.'"
            )));
        }
        match value {
            Value::Array(items) if items.len() <= 50 && !items.iter().any(Value::is_boolean) => {
                items.iter().try_for_each(|i| check_scalar(name, i))?
            }
            Value::Array(_) => {
                return Err(invalid(format!(
                    "attribute {name}: an array of at most 50 strings or numbers"
                )));
            }
            v => check_scalar(name, v)?,
        }
    }
    Ok(())
}

/// Publish a message to a topic (admin, or a principal allowed to publish to it). It is
/// written to the outbox and relayed to the `events` exchange with the event type as
/// routing key; every matching subscription of the topic gets it.
#[utoipa::path(post, path = "/api/v1/topics/{topic}/messages", tag = "subscriptions",
    params(("topic" = Topic, Path, description = "`orders` or `catalog`")),
    request_body = PublishRequest,
    security(("admin_token" = [])),
    responses(
        (status = 202, description = "accepted into the outbox", body = Published),
        (status = 400, description = "malformed JSON or unknown field (`malformed_json`)", body = ErrorBody),
        (status = 401, description = "no valid token (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "the topic policy does not let the caller publish (`topic_forbidden`)", body = ErrorBody),
        (status = 404, description = "unknown topic (`unknown_topic`)", body = ErrorBody),
        (status = 413, description = "body over 64 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "body is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "a type outside the topic, bad attributes (`invalid_message`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[post("/api/v1/topics/{topic}/messages")]
pub async fn publish(
    req: HttpRequest,
    state: web::Data<AppState>,
    topic: web::Path<String>,
    body: Result<web::Json<Value>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let (caller, grant) = authenticate(&req, &state);
    let target = Some(format!("topic:{}", topic.as_str()));
    let result = async {
        let grant = grant?;
        let topic = Topic::parse(topic.as_str())
            .ok_or_else(|| ApiError::UnknownTopic(topic.to_string()))?;
        grant.may_publish(topic)?;
        let request: PublishRequest = crate::extract::json_object(body)?;
        check_type(topic, &request.kind)?;
        check_attributes(&request.attributes)?;
        if has_nul(&request.message) {
            return Err(invalid("the message must not contain NUL"));
        }
        let mut attributes = request.attributes;
        attributes.insert("type".into(), request.kind.clone().into());
        let message_id = Uuid::now_v7();
        let traceparent = trace_context(&req).child().to_string();
        let kind = kind_of(&request.kind);
        let body = serde_json::json!({
            "message_id": message_id,
            "type": kind,
            "schema_version": 1,
            "occurred_at": Utc::now(),
            "traceparent": traceparent,
            "attributes": attributes,
            "payload": request.message,
        });
        let message = outbox::Message {
            message_id,
            exchange: EVENTS_EXCHANGE,
            routing_key: &request.kind,
            kind,
            body,
            traceparent: Some(&traceparent),
        };
        let mut conn = state.pool.acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        outbox::enqueue_many(&mut tx, std::slice::from_ref(&message)).await?;
        let entry = Record::success(
            &caller,
            AuditAction::TopicPublish,
            Some(format!("topic:{}", topic.as_str())),
            serde_json::json!({"type": request.kind, "message_id": message_id}),
        );
        audit_store::record(&mut tx, &entry).await?;
        tx.commit().await?;
        outbox::announce(&state.pool, &mut conn).await;
        metrics::counter!("strata_topic_messages_published_total", "topic" => topic.as_str())
            .increment(1);
        Ok(HttpResponse::Accepted().json(Published {
            message_id,
            topic,
            kind: request.kind,
        }))
    }
    .await;
    audit::settle(&state, &caller, AuditAction::TopicPublish, target, result).await
}
