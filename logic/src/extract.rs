//! Reading requests: JSON bodies, query strings and paths, with every failure mapped to
//! the API's error codes.

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::web;

use crate::error::ApiError;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Maps a JSON extraction failure to the API's error codes.
pub fn json_error(err: actix_web::Error) -> ApiError {
    match err.as_error::<JsonPayloadError>() {
        Some(JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. }) => {
            ApiError::PayloadTooLarge(BODY_LIMIT)
        }
        Some(JsonPayloadError::ContentType) => ApiError::UnsupportedMediaType,
        Some(JsonPayloadError::Deserialize(e)) => ApiError::MalformedJson(e.to_string()),
        Some(other) => ApiError::MalformedJson(other.to_string()),
        None => ApiError::MalformedJson(err.to_string()),
    }
}

/// Reads a JSON body that must be an object of type `T` (serde would also accept a
/// struct written as an array, which the API does not document).
pub fn json_object<T: serde::de::DeserializeOwned>(
    body: Result<web::Json<serde_json::Value>, actix_web::Error>,
) -> Result<T, ApiError> {
    let value = body.map_err(json_error)?.into_inner();
    if !value.is_object() {
        return Err(ApiError::MalformedJson(
            "the body must be a JSON object".into(),
        ));
    }
    serde_json::from_value(value).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

pub fn query_error(err: QueryPayloadError) -> ApiError {
    ApiError::InvalidQuery(err.to_string())
}
