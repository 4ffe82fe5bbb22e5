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
        if bool::from(presented.trim().as_bytes().ct_eq(expected)) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}
