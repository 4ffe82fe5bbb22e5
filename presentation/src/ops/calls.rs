//! What the console's pages share about calling logic: the words shown when a call fails
//! or cannot be made, the one place such failures are logged, and the gate and error body
//! of the JSON routes the live pages poll.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use secrecy::SecretString;

use crate::cookies::CookieKeys;
use crate::logic_client::LogicError;
use crate::ops::auth::OpsAuth;

/// What the console says when a call to logic fails; logic's own words are never shown.
fn problem(err: &LogicError) -> &'static str {
    match err {
        LogicError::Rejected { status: 401, .. } => {
            "Logic refused the console's admin token: check LOGIC_ADMIN_TOKEN against logic's \
             ADMIN_TOKEN."
        }
        LogicError::NotFound => "This logic version does not offer that ops endpoint.",
        LogicError::Unavailable(_) => {
            "Logic, or the broker behind it, did not answer. Figures may be missing."
        }
        LogicError::Rejected { .. } => "Logic refused the request.",
    }
}

/// Shown instead of figures when there is no token to ask logic with.
pub const NO_TOKEN: &str =
    "LOGIC_ADMIN_TOKEN is not configured: logic's ops endpoints cannot be asked.";

/// Logic's answer, with failures logged here once.
pub fn logged<T>(what: &str, result: Result<T, LogicError>) -> Result<T, &'static str> {
    result.map_err(|err| {
        tracing::warn!(
            error = format!("{err:#}"),
            call = what,
            "ops call to logic failed"
        );
        problem(&err)
    })
}

/// A JSON route's error, in logic's shape.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .json(serde_json::json!({"error": {"code": code, "message": message}}))
}

/// The gate of a JSON route: 404 while the console is off, 401 without a session, 503
/// without a token for logic; the token otherwise.
pub fn json_gate<'a>(
    req: &HttpRequest,
    auth: &'a OpsAuth,
    keys: &CookieKeys,
) -> Result<&'a SecretString, Box<HttpResponse>> {
    if !auth.enabled() {
        return Err(Box::new(json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "not found",
        )));
    }
    if auth.session(req, keys).is_none() {
        return Err(Box::new(json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "log in at /ops/login",
        )));
    }
    auth.logic_token().ok_or_else(|| {
        Box::new(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_logic_token",
            NO_TOKEN,
        ))
    })
}
