//! The API's error type: one variant per stable code, one `ResponseError` impl. Client
//! errors explain themselves; server errors are logged in full and answered opaquely.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use contracts::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON for this endpoint: {0}")]
    MalformedJson(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("invalid query parameters: {0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidEmail(String),
    #[error("{0}")]
    InvalidQuantity(String),
    #[error("an order needs at least one line")]
    NoLines,
    #[error("an order has at most {0} lines")]
    TooManyLines(usize),
    #[error("sku {0} appears on more than one line")]
    DuplicateSku(String),
    #[error("unknown sku {0}")]
    UnknownSku(String),
    #[error("{0}")]
    InvalidProductPatch(String),
    #[error("'{0}' is not a valid order id (a UUID)")]
    InvalidOrderId(String),
    #[error("{0}")]
    InvalidIdempotencyKey(String),
    #[error("{0}")]
    InvalidRedrive(String),
    #[error("{0}")]
    InvalidAdjustment(String),
    #[error("{0}")]
    StockOutOfRange(String),
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    #[error("no product with sku {0}")]
    ProductNotFound(String),
    #[error("no order with id {0}")]
    OrderNotFound(String),
    #[error("{0}")]
    InvalidProtocol(String),
    #[error("{0}")]
    InvalidEndpoint(String),
    #[error("invalid filter policy: {0}")]
    InvalidFilterPolicy(String),
    #[error("unknown function {0}; known: loyalty-points, low-stock-alert")]
    UnknownFunction(String),
    #[error("the endpoint is refused: {0}")]
    EndpointForbidden(String),
    #[error("unknown topic {0}; topics: orders, catalog")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidMessage(String),
    #[error("{0}")]
    TopicForbidden(String),
    #[error("'{0}' is not a valid subscription id (a UUID)")]
    InvalidSubscriptionId(String),
    #[error("no subscription with id {0}")]
    SubscriptionNotFound(String),
    #[error("the confirmation token does not match")]
    InvalidConfirmationToken,
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    #[error("a dependency is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::InvalidEmail(_) => "invalid_email",
            ApiError::InvalidQuantity(_) => "invalid_quantity",
            ApiError::NoLines => "no_lines",
            ApiError::TooManyLines(_) => "too_many_lines",
            ApiError::DuplicateSku(_) => "duplicate_sku",
            ApiError::UnknownSku(_) => "unknown_sku",
            ApiError::InvalidProductPatch(_) => "invalid_product_patch",
            ApiError::InvalidOrderId(_) => "invalid_order_id",
            ApiError::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::InvalidRedrive(_) => "invalid_redrive",
            ApiError::InvalidAdjustment(_) => "invalid_adjustment",
            ApiError::StockOutOfRange(_) => "stock_out_of_range",
            ApiError::ProductNotFound(_) => "product_not_found",
            ApiError::OrderNotFound(_) => "order_not_found",
            ApiError::InvalidProtocol(_) => "invalid_protocol",
            ApiError::InvalidEndpoint(_) => "invalid_endpoint",
            ApiError::InvalidFilterPolicy(_) => "invalid_filter_policy",
            ApiError::UnknownFunction(_) => "unknown_function",
            ApiError::EndpointForbidden(_) => "endpoint_forbidden",
            ApiError::UnknownTopic(_) => "unknown_topic",
            ApiError::InvalidMessage(_) => "invalid_message",
            ApiError::TopicForbidden(_) => "topic_forbidden",
            ApiError::InvalidSubscriptionId(_) => "invalid_subscription_id",
            ApiError::SubscriptionNotFound(_) => "subscription_not_found",
            ApiError::InvalidConfirmationToken => "invalid_confirmation_token",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// How the audit trail records a call that ended with this error.
    pub fn audit_outcome(&self) -> contracts::AuditOutcome {
        use contracts::AuditOutcome;
        match self {
            ApiError::Unauthorized
            | ApiError::TopicForbidden(_)
            | ApiError::InvalidConfirmationToken => AuditOutcome::Denied,
            ApiError::Unavailable(_) | ApiError::Internal(_) => AuditOutcome::Failed,
            _ => AuditOutcome::Rejected,
        }
    }

    /// Every code the API can answer with, for the OpenAPI description.
    pub const ALL_CODES: &'static [&'static str] = &[
        "malformed_json",
        "payload_too_large",
        "unsupported_media_type",
        "invalid_query",
        "invalid_email",
        "invalid_quantity",
        "no_lines",
        "too_many_lines",
        "duplicate_sku",
        "unknown_sku",
        "invalid_product_patch",
        "invalid_order_id",
        "invalid_idempotency_key",
        "idempotency_key_reused",
        "invalid_redrive",
        "invalid_adjustment",
        "stock_out_of_range",
        "product_not_found",
        "order_not_found",
        "invalid_protocol",
        "invalid_endpoint",
        "invalid_filter_policy",
        "unknown_function",
        "endpoint_forbidden",
        "unknown_topic",
        "invalid_message",
        "topic_forbidden",
        "invalid_subscription_id",
        "subscription_not_found",
        "invalid_confirmation_token",
        "not_found",
        "method_not_allowed",
        "unauthorized",
        "service_unavailable",
        "internal_error",
    ];
}

/// Database errors are server-side unless the connection to Postgres failed: not reached,
/// dropped, cut off in the middle of the protocol (as a proxy in front of a stopped server
/// does), no connection free in time, or the server ending or refusing sessions (SQLSTATE
/// classes 08, 57P01-57P03, 53300). Those are 503 with Retry-After, never 500.
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if data::store::retry::is_connection_error(&err) {
            ApiError::Unavailable(anyhow::Error::new(err).context("Postgres is unavailable"))
        } else {
            ApiError::Internal(err.into())
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        match err.downcast::<sqlx::Error>() {
            Ok(sqlx) => sqlx.into(),
            Err(other) => ApiError::Internal(other),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidOrderId(_)
            | ApiError::InvalidSubscriptionId(_)
            | ApiError::InvalidIdempotencyKey(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidEmail(_)
            | ApiError::InvalidQuantity(_)
            | ApiError::NoLines
            | ApiError::TooManyLines(_)
            | ApiError::DuplicateSku(_)
            | ApiError::UnknownSku(_)
            | ApiError::InvalidProductPatch(_)
            | ApiError::IdempotencyKeyReused
            | ApiError::InvalidRedrive(_)
            | ApiError::InvalidAdjustment(_)
            | ApiError::StockOutOfRange(_)
            | ApiError::InvalidProtocol(_)
            | ApiError::InvalidEndpoint(_)
            | ApiError::InvalidFilterPolicy(_)
            | ApiError::UnknownFunction(_)
            | ApiError::EndpointForbidden(_)
            | ApiError::InvalidMessage(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TopicForbidden(_) | ApiError::InvalidConfirmationToken => {
                StatusCode::FORBIDDEN
            }
            ApiError::ProductNotFound(_)
            | ApiError::OrderNotFound(_)
            | ApiError::UnknownTopic(_)
            | ApiError::SubscriptionNotFound(_)
            | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "request failed");
                "internal error".to_owned()
            }
            ApiError::Unavailable(err) => {
                tracing::warn!(error = format!("{err:#}"), "dependency unavailable");
                "a dependency is unavailable; try again shortly".to_owned()
            }
            other => other.to_string(),
        };
        let mut builder = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            builder.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            builder.insert_header(("Retry-After", "1"));
        }
        builder.json(ErrorBody::new(self.code(), message))
    }
}
