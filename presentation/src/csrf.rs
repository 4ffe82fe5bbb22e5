//! CSRF protection by a synchronizer token: a random token in a signed cookie, repeated in
//! a hidden field of every form. A POST whose field does not match the cookie gets 403.
//! A cross-site page can neither read the token nor set a cookie that verifies.

use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use rand::RngCore;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::cookies::CookieKeys;
use crate::error::PageError;

pub const CSRF_COOKIE: &str = "strata_csrf";
pub const CSRF_FIELD: &str = "csrf_token";
/// Largest form body accepted.
pub const FORM_LIMIT: usize = 16 * 1024;

/// The token of this request's session, for rendering forms.
#[derive(Debug, Clone)]
pub struct CsrfToken {
    pub value: String,
    /// Whether the browser sent a valid one (else it is new and must be set).
    from_cookie: bool,
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn well_formed(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Middleware: finds or creates the token and sets the cookie when it is new.
pub async fn ensure_token<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    let keys = req.app_data::<web::Data<CookieKeys>>().cloned();
    let existing = keys
        .as_ref()
        .and_then(|k| k.read(req.request(), CSRF_COOKIE))
        .filter(|t| well_formed(t));
    let token = match existing {
        Some(value) => CsrfToken {
            value,
            from_cookie: true,
        },
        None => CsrfToken {
            value: new_token(),
            from_cookie: false,
        },
    };
    req.extensions_mut().insert(token.clone());
    let mut res = next.call(req).await?;
    // Only pages get the cookie: a cacheable asset must never carry a Set-Cookie.
    let is_page = res
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !token.from_cookie
        && is_page
        && let Some(keys) = keys
    {
        let cookie = keys.signed(CSRF_COOKIE, token.value, 30);
        res.response_mut().add_cookie(&cookie)?;
    }
    Ok(res)
}

impl FromRequest for CsrfToken {
    type Error = PageError;
    type Future = Ready<Result<CsrfToken, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<CsrfToken>()
                .cloned()
                .ok_or_else(|| PageError::Internal(anyhow::anyhow!("CSRF middleware missing"))),
        )
    }
}

/// A url-encoded form whose `csrf_token` matched the cookie's; anything else is 403.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let expected = req
            .extensions()
            .get::<CsrfToken>()
            .filter(|t| t.from_cookie)
            .map(|t| t.value.clone());
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let body = body
                .await
                .map_err(|err| match err.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => PageError::PayloadTooLarge,
                    _ => PageError::BadRequest,
                })?;
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&body).map_err(|_| PageError::Forbidden)?;
            let sent = pairs
                .iter()
                .find(|(k, _)| k == CSRF_FIELD)
                .map(|(_, v)| v.as_str());
            let valid = matches!((expected, sent), (Some(e), Some(s))
                if bool::from(e.as_bytes().ct_eq(s.as_bytes())));
            if !valid {
                tracing::info!("rejected a form without a valid CSRF token");
                return Err(PageError::Forbidden);
            }
            serde_urlencoded::from_bytes(&body)
                .map(CsrfForm)
                .map_err(|_| PageError::BadRequest)
        })
    }
}
