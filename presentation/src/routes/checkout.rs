//! `/checkout`: email and confirmation. Errors, from here or from logic, are shown next to
//! the field with the input kept. The form carries an idempotency key that becomes the
//! `Idempotency-Key` header, so a double submit places one order.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use contracts::{OrderLineRequest, PlaceOrder};
use serde::Deserialize;
use uuid::Uuid;

use crate::cart::Cart;
use crate::cookies::CookieKeys;
use crate::csrf::{CsrfForm, CsrfToken};
use crate::error::PageError;
use crate::logic_client::{LogicClient, LogicError};
use crate::routes::cart::{LineView, price};
use crate::telemetry::trace_context;
use crate::views;

#[derive(Template)]
#[template(path = "checkout.html")]
struct CheckoutPage {
    title: &'static str,
    cart_units: i32,
    form_error: Option<&'static str>,
    lines: Vec<LineView>,
    total: String,
    csrf: String,
    idempotency_key: Uuid,
    email: String,
    email_error: Option<&'static str>,
}

/// What the shopper typed and what went wrong with it.
struct Attempt {
    email: String,
    idempotency_key: Uuid,
    email_error: Option<&'static str>,
    form_error: Option<&'static str>,
}

async fn render(
    req: &HttpRequest,
    logic: &LogicClient,
    cart: &Cart,
    csrf: String,
    attempt: Attempt,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let priced = price(logic, &trace_context(req), cart).await?;
    if !priced.missing.is_empty() {
        // The cart page drops what is no longer sold and says so.
        return Ok(views::see_other("/cart").finish());
    }
    let view = CheckoutPage {
        title: "Checkout",
        cart_units: cart.units(),
        form_error: attempt.form_error,
        lines: priced.lines,
        total: views::money(priced.total_cents),
        csrf,
        idempotency_key: attempt.idempotency_key,
        email: attempt.email,
        email_error: attempt.email_error,
    };
    Ok(views::html(status, &view))
}

#[get("/checkout")]
pub async fn show(
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    cart: Cart,
    csrf: CsrfToken,
) -> Result<HttpResponse, PageError> {
    if cart.is_empty() {
        return Ok(views::see_other("/cart").finish());
    }
    let attempt = Attempt {
        email: String::new(),
        idempotency_key: Uuid::new_v4(),
        email_error: None,
        form_error: None,
    };
    render(&req, &logic, &cart, csrf.value, attempt, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
pub struct CheckoutForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    idempotency_key: String,
}

/// The checks presentation makes itself; logic checks again (and more).
pub fn email_problem(email: &str) -> Option<&'static str> {
    if email.is_empty() {
        return Some("Enter your email address so we can send your receipt.");
    }
    if email.len() > 254 {
        return Some("That email address is too long.");
    }
    let well_formed = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !email.chars().any(char::is_whitespace);
    if !well_formed {
        return Some("Enter an email address like name@example.com.");
    }
    None
}

/// Wording for the codes logic answers a checkout with.
fn rejection(code: &str) -> (Option<&'static str>, Option<&'static str>) {
    match code {
        "invalid_email" => (
            Some("Enter an email address with a full domain, like name@example.com."),
            None,
        ),
        "idempotency_key_reused" => (
            None,
            Some(
                "Your cart changed since this page was opened. Check the total and place the order again.",
            ),
        ),
        _ => (
            None,
            Some("We couldn't place this order as it is. Please check your cart."),
        ),
    }
}

#[post("/checkout")]
pub async fn place(
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    keys: web::Data<CookieKeys>,
    cart: Cart,
    csrf: CsrfToken,
    form: CsrfForm<CheckoutForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.0;
    let idempotency_key =
        Uuid::parse_str(form.idempotency_key.trim()).map_err(|_| PageError::BadRequest)?;
    if cart.is_empty() {
        return Ok(views::see_other("/cart").finish());
    }
    let email = form.email.trim().to_owned();
    let mut attempt = Attempt {
        email: email.clone(),
        idempotency_key,
        email_error: email_problem(&email),
        form_error: None,
    };
    if attempt.email_error.is_some() {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return render(&req, &logic, &cart, csrf.value, attempt, status).await;
    }
    let order = PlaceOrder {
        email,
        lines: cart
            .lines()
            .iter()
            .map(|(sku, quantity)| OrderLineRequest {
                sku: sku.clone(),
                quantity: *quantity,
            })
            .collect(),
    };
    match logic
        .place_order(&trace_context(&req), &order, idempotency_key)
        .await
    {
        Ok(order) => {
            tracing::info!(order.id = %order.id, "order placed");
            Ok(views::see_other(&format!("/orders/{}", order.id))
                .cookie(keys.removal(crate::cart::CART_COOKIE))
                .finish())
        }
        Err(LogicError::Rejected { code, .. }) => {
            tracing::info!(code = %code, "logic rejected the order");
            (attempt.email_error, attempt.form_error) = rejection(&code);
            if code == "idempotency_key_reused" {
                attempt.idempotency_key = Uuid::new_v4();
            }
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            render(&req, &logic, &cart, csrf.value, attempt, status).await
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::email_problem;

    #[test]
    fn checks_emails() {
        assert!(email_problem("ada@example.com").is_none());
        assert!(
            email_problem("ada@localhost").is_none(),
            "logic decides that one"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "a b@example.com",
            "a@b@c",
        ] {
            assert!(email_problem(bad).is_some(), "{bad}");
        }
    }
}
