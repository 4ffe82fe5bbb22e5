//! The admin login of the ops console: one user from configuration, its password stored as
//! an Argon2id PHC hash, and a stateless session in a signed, SameSite=Strict cookie.

use std::future::{Ready, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::cookie::{Cookie, time::Duration as CookieDuration};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use anyhow::{Context, anyhow};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::Settings;
use crate::cookies::CookieKeys;
use crate::error::PageError;
use crate::views;

pub const SESSION_COOKIE: &str = "strata_ops";
/// The session cookie is sent to the console's paths only.
pub const SESSION_PATH: &str = "/ops";
/// How long a login lasts.
pub const SESSION_HOURS: i64 = 8;

/// The Argon2id PHC hash of `password`, with a random salt and the crate's default
/// (OWASP-recommended) cost.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    anyhow::ensure!(!password.is_empty(), "refusing to hash an empty password");
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow!("encoding a salt: {e}"))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow!("hashing the password: {e}"))?;
    Ok(hash.to_string())
}

struct Console {
    user: String,
    hash: SecretString,
    /// The hash's salt: part of every session, so changing the password ends them all.
    fingerprint: String,
}

/// Who may use the console, and the token presentation shows logic on their behalf.
pub struct OpsAuth {
    console: Option<Console>,
    logic_token: Option<SecretString>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl OpsAuth {
    /// Reads and checks the credentials; a hash that is not Argon2id stops the start.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let logic_token = settings.logic_admin_token()?;
        let Some(hash) = settings.ops_password_hash()? else {
            tracing::info!("no OPS_PASSWORD_HASH: the ops console is disabled (/ops answers 404)");
            return Ok(OpsAuth {
                console: None,
                logic_token,
            });
        };
        let parsed = PasswordHash::new(hash.expose_secret().trim())
            .map_err(|e| anyhow!("OPS_PASSWORD_HASH is not a PHC string: {e}"))?;
        anyhow::ensure!(
            parsed.algorithm == argon2::ARGON2ID_IDENT,
            "OPS_PASSWORD_HASH must be an Argon2id hash ($argon2id$...); make one with \
             `presentation hash-password`"
        );
        let fingerprint = parsed
            .salt
            .map(|s| s.as_str().to_owned())
            .context("OPS_PASSWORD_HASH has no salt")?;
        anyhow::ensure!(
            !settings.ops_user.is_empty() && !settings.ops_user.contains('|'),
            "OPS_USER must be non-empty and contain no '|'"
        );
        if logic_token.is_none() {
            tracing::warn!(
                "ops console enabled without LOGIC_ADMIN_TOKEN: logic will refuse its calls"
            );
        }
        Ok(OpsAuth {
            console: Some(Console {
                user: settings.ops_user.clone(),
                hash: SecretString::from(hash.expose_secret().trim().to_owned()),
                fingerprint,
            }),
            logic_token,
        })
    }

    pub fn enabled(&self) -> bool {
        self.console.is_some()
    }

    /// The bearer token for logic's ops endpoints.
    pub fn logic_token(&self) -> Option<&SecretString> {
        self.logic_token.as_ref()
    }

    /// Whether `user` and `password` are the console's. The hash is always computed (on a
    /// blocking thread), whatever the user name, so timing tells nothing about it.
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        let Some(console) = &self.console else {
            return false;
        };
        let user_ok: bool = user.as_bytes().ct_eq(console.user.as_bytes()).into();
        let hash = console.hash.expose_secret().to_owned();
        let password = SecretString::from(password.to_owned());
        let password_ok = web::block(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        user_ok && password_ok
    }

    /// A new session cookie for the console's user.
    pub fn login_cookie(&self, keys: &CookieKeys) -> Option<Cookie<'static>> {
        let console = self.console.as_ref()?;
        let expires = unix_now() + SESSION_HOURS * 3600;
        let value = format!("{expires}|{}|{}", console.fingerprint, console.user);
        Some(keys.strict(
            SESSION_COOKIE,
            value,
            SESSION_PATH,
            CookieDuration::hours(SESSION_HOURS),
        ))
    }

    pub fn logout_cookie(&self, keys: &CookieKeys) -> Cookie<'static> {
        keys.strict_removal(SESSION_COOKIE, SESSION_PATH)
    }

    /// The request's session: a cookie signed by our key, not expired, for the current
    /// user and password.
    pub fn session(&self, req: &HttpRequest, keys: &CookieKeys) -> Option<OpsSession> {
        let console = self.console.as_ref()?;
        let value = keys.read(req, SESSION_COOKIE)?;
        let mut parts = value.splitn(3, '|');
        let expires: i64 = parts.next()?.parse().ok()?;
        let fingerprint = parts.next()?;
        let user = parts.next()?;
        let valid = expires > unix_now()
            && expires <= unix_now() + SESSION_HOURS * 3600
            && fingerprint == console.fingerprint
            && user == console.user;
        valid.then(|| OpsSession {
            user: user.to_owned(),
        })
    }
}

/// A logged-in admin. As an extractor it turns everyone else away: 404 while the console
/// is disabled, else a 303 to the login page.
#[derive(Debug, Clone)]
pub struct OpsSession {
    pub user: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OpsDenied {
    #[error("the ops console is disabled")]
    Disabled,
    #[error("login required")]
    LoginRequired,
}

impl ResponseError for OpsDenied {
    fn status_code(&self) -> StatusCode {
        match self {
            OpsDenied::Disabled => StatusCode::NOT_FOUND,
            OpsDenied::LoginRequired => StatusCode::SEE_OTHER,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            OpsDenied::Disabled => PageError::NotFound.error_response(),
            OpsDenied::LoginRequired => views::see_other("/ops/login").finish(),
        }
    }
}

impl FromRequest for OpsSession {
    type Error = OpsDenied;
    type Future = Ready<Result<OpsSession, OpsDenied>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let auth = req.app_data::<web::Data<OpsAuth>>();
        let keys = req.app_data::<web::Data<CookieKeys>>();
        ready(match (auth, keys) {
            (Some(auth), Some(keys)) if auth.enabled() => {
                auth.session(req, keys).ok_or(OpsDenied::LoginRequired)
            }
            _ => Err(OpsDenied::Disabled),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "a random salt each time");
        let parsed = PasswordHash::new(&a).unwrap();
        let argon = Argon2::default();
        assert!(argon.verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon.verify_password(b"correct horsf", &parsed).is_err());
        assert!(hash_password("").is_err());
    }

    #[test]
    fn only_argon2id_hashes_are_accepted() {
        let mut settings = Settings::for_logic("http://127.0.0.1:1");
        assert!(!OpsAuth::from_settings(&settings).unwrap().enabled());
        settings.ops_password_hash = Some(SecretString::from("plaintext".to_owned()));
        assert!(OpsAuth::from_settings(&settings).is_err());
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$Ne2TzO5XwW2mv6rT7Z4iEg";
        settings.ops_password_hash = Some(SecretString::from(argon2i.to_owned()));
        assert!(OpsAuth::from_settings(&settings).is_err());
        let good = hash_password("pw").unwrap();
        settings.ops_password_hash = Some(SecretString::from(good));
        assert!(OpsAuth::from_settings(&settings).unwrap().enabled());
    }
}
