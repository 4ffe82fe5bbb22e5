//! Admin authentication: a bearer token compared in constant time.

use actix_web::HttpRequest;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

#[derive(Clone)]
pub struct AdminToken(pub Option<SecretString>);

impl AdminToken {
    /// Ok when the request carries `Authorization: Bearer <the admin token>`.
    pub fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(expected) = &self.0 else {
            return Err(ApiError::Unauthorized);
        };
        let presented = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let expected = expected.expose_secret().as_bytes();
        // An empty token would let `Bearer ` in; it never counts as configured.
        if expected.is_empty() {
            return Err(ApiError::Unauthorized);
        }
        if bool::from(presented.trim().as_bytes().ct_eq(expected)) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    /// The audit trail's name for the caller: `admin` with the admin token, else `anonymous`.
    pub fn actor(&self, req: &HttpRequest) -> &'static str {
        if self.check(req).is_ok() {
            ADMIN
        } else {
            ANONYMOUS
        }
    }
}

/// Actor of calls made with the admin token.
pub const ADMIN: &str = "admin";
/// Actor of calls without a valid token.
pub const ANONYMOUS: &str = "anonymous";
