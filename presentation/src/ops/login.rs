//! `/ops/login` and `/ops/logout`: the console's admin session.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use crate::cookies::CookieKeys;
use crate::csrf::{CsrfForm, CsrfToken};
use crate::error::PageError;
use crate::ops::auth::OpsAuth;
use crate::views;

/// Added to every failed login, to slow down guessing a little.
const FAILURE_DELAY: Duration = Duration::from_millis(300);

#[derive(Template)]
#[template(path = "ops_login.html")]
struct LoginPage {
    title: &'static str,
    user: Option<String>,
    csrf: String,
    login_user: String,
    error: Option<&'static str>,
}

#[get("/ops/login")]
pub async fn show(
    req: HttpRequest,
    auth: web::Data<OpsAuth>,
    keys: web::Data<CookieKeys>,
    csrf: CsrfToken,
) -> Result<HttpResponse, PageError> {
    if !auth.enabled() {
        return Err(PageError::NotFound);
    }
    if auth.session(&req, &keys).is_some() {
        return Ok(views::see_other("/ops").finish());
    }
    let page = LoginPage {
        title: "Sign in",
        user: None,
        csrf: csrf.value,
        login_user: String::new(),
        error: None,
    };
    Ok(views::html(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

#[post("/ops/login")]
pub async fn login(
    auth: web::Data<OpsAuth>,
    keys: web::Data<CookieKeys>,
    csrf: CsrfToken,
    form: CsrfForm<LoginForm>,
) -> Result<HttpResponse, PageError> {
    if !auth.enabled() {
        return Err(PageError::NotFound);
    }
    let form = form.0;
    let user = form.user.trim().to_owned();
    if auth.verify(&user, &form.password).await
        && let Some(cookie) = auth.login_cookie(&keys)
    {
        tracing::info!(user = %user, "ops login");
        return Ok(views::see_other("/ops").cookie(cookie).finish());
    }
    tracing::warn!("failed ops login");
    tokio::time::sleep(FAILURE_DELAY).await;
    let page = LoginPage {
        title: "Sign in",
        user: None,
        csrf: csrf.value,
        login_user: user.chars().take(100).collect(),
        error: Some("Wrong user name or password."),
    };
    Ok(views::html(StatusCode::UNAUTHORIZED, &page))
}

#[derive(Deserialize)]
pub struct LogoutForm {}

#[post("/ops/logout")]
pub async fn logout(
    auth: web::Data<OpsAuth>,
    keys: web::Data<CookieKeys>,
    _form: CsrfForm<LogoutForm>,
) -> HttpResponse {
    views::see_other("/ops/login")
        .cookie(auth.logout_cookie(&keys))
        .finish()
}
