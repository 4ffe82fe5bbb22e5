//! Signed cookies: a value plus an HMAC under the site's key. A cookie whose signature does
//! not verify (edited, forged, or signed by another key) reads as absent.

use actix_web::HttpRequest;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use secrecy::ExposeSecret;

use crate::Settings;

pub struct CookieKeys {
    key: Key,
    secure: bool,
}

impl CookieKeys {
    /// The configured key, or a random one (logged: carts then die with the process).
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let key = match settings.cookie_secret()? {
            Some(secret) => {
                let bytes = secret.expose_secret().as_bytes();
                anyhow::ensure!(bytes.len() >= 32, "COOKIE_KEY must be at least 32 bytes");
                Key::derive_from(bytes)
            }
            None => {
                tracing::warn!(
                    "no COOKIE_KEY set: using a random key, so carts do not survive a restart \
                     and are not shared between replicas"
                );
                Key::generate()
            }
        };
        Ok(CookieKeys {
            key,
            secure: settings.cookie_secure,
        })
    }

    /// The verified value of a signed cookie; `None` when absent or tampered with.
    pub fn read(&self, req: &HttpRequest, name: &str) -> Option<String> {
        let cookie = req.cookie(name)?;
        let mut jar = CookieJar::new();
        jar.add_original(cookie);
        let verified = jar.signed(&self.key).get(name);
        if verified.is_none() {
            tracing::info!(cookie = name, "ignored a cookie with an invalid signature");
        }
        verified.map(|c| c.value().to_owned())
    }

    /// A signed, HttpOnly, SameSite=Lax cookie for the whole site.
    pub fn signed(&self, name: &str, value: String, days: i64) -> Cookie<'static> {
        let cookie = Cookie::build(name.to_owned(), value)
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(CookieDuration::days(days))
            .finish();
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(cookie);
        jar.get(name).cloned().expect("the cookie was just added")
    }

    /// A signed, HttpOnly, SameSite=Strict cookie for `path` only, living `max_age`: an
    /// admin session, never sent along with a request that another site started.
    pub fn strict(
        &self,
        name: &str,
        value: String,
        path: &str,
        max_age: CookieDuration,
    ) -> Cookie<'static> {
        let cookie = Cookie::build(name.to_owned(), value)
            .path(path.to_owned())
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Strict)
            .max_age(max_age)
            .finish();
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(cookie);
        jar.get(name).cloned().expect("the cookie was just added")
    }

    /// A cookie that deletes the strict cookie `name` of `path`.
    pub fn strict_removal(&self, name: &str, path: &str) -> Cookie<'static> {
        let mut cookie = Cookie::build(name.to_owned(), "")
            .path(path.to_owned())
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Strict)
            .finish();
        cookie.make_removal();
        cookie
    }

    /// A cookie that deletes `name` in the browser.
    pub fn removal(&self, name: &str) -> Cookie<'static> {
        let mut cookie = Cookie::build(name.to_owned(), "")
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .finish();
        cookie.make_removal();
        cookie
    }
}
