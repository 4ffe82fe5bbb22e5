//! Errors of the pages: one `ResponseError` that renders the site's own error page. Details
//! are logged here, once; the shopper sees a plain sentence, never an upstream body.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::logic_client::LogicError;
use crate::views;

#[derive(thiserror::Error)]
pub enum PageError {
    #[error("not found")]
    NotFound,
    #[error("bad request")]
    BadRequest,
    #[error("missing or invalid CSRF token")]
    Forbidden,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("the logic API is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The cause chain on one line, without a backtrace: tracing-actix-web records errors with
/// `Debug`, and an `anyhow` backtrace per failed page would drown the logs during an outage.
impl std::fmt::Debug for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::Unavailable(e) | PageError::Internal(e) => write!(f, "{self}: {e:#}"),
            other => write!(f, "{other}"),
        }
    }
}

impl From<LogicError> for PageError {
    fn from(err: LogicError) -> Self {
        match err {
            LogicError::NotFound => PageError::NotFound,
            LogicError::Unavailable(e) => PageError::Unavailable(e),
            LogicError::Rejected { status: 400, .. } => PageError::BadRequest,
            rejected @ LogicError::Rejected { .. } => PageError::Internal(rejected.into()),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub title: &'static str,
    pub cart_units: i32,
    pub heading: &'static str,
    pub message: &'static str,
}

impl PageError {
    fn page(&self) -> ErrorPage {
        let (title, heading, message) = match self {
            PageError::NotFound => (
                "Page not found",
                "We couldn't find that page",
                "The product or page you asked for does not exist, or no longer does.",
            ),
            PageError::BadRequest => (
                "Bad request",
                "That request didn't make sense to us",
                "Please go back and try again.",
            ),
            PageError::Forbidden => (
                "Form expired",
                "This form has expired",
                "For your security we could not accept it. Please go back, reload the page \
                 and submit it again.",
            ),
            PageError::PayloadTooLarge => (
                "Too much data",
                "That form was too large",
                "Please go back and send less.",
            ),
            PageError::Unavailable(_) => (
                "Temporarily unavailable",
                "The shop is taking a short break",
                "We can't reach our catalog and order service right now. Your cart is safe. \
                 Please try again in a moment.",
            ),
            PageError::Internal(_) => (
                "Something went wrong",
                "Something went wrong on our side",
                "We have been told about it. Please try again in a moment.",
            ),
        };
        ErrorPage {
            title,
            cart_units: 0,
            heading,
            message,
        }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::NotFound => StatusCode::NOT_FOUND,
            PageError::BadRequest => StatusCode::BAD_REQUEST,
            PageError::Forbidden => StatusCode::FORBIDDEN,
            PageError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            PageError::Unavailable(err) => {
                tracing::warn!(error = format!("{err:#}"), "logic unavailable")
            }
            PageError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "request failed")
            }
            _ => {}
        }
        let mut res = views::html(self.status_code(), &self.page());
        if matches!(self, PageError::Unavailable(_)) {
            res.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static("5"),
            );
        }
        res
    }
}
