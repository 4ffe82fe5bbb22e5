//! Helpers shared by the pages: rendering, money, stock state, links.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use askama::Template;

/// At or below this many units a product shows as "low stock".
pub const LOW_STOCK: i32 = 5;

/// Renders a page; a template failure becomes a plain, opaque 500.
pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(err) => {
            tracing::error!(error = %err, "rendering a page failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("Something went wrong on our side. Please try again.")
        }
    }
}

/// 303 See Other: the answer to every successful form POST (no resubmit on reload).
pub fn see_other(location: &str) -> HttpResponseBuilder {
    let mut res = HttpResponse::SeeOther();
    res.insert_header(("Location", location.to_owned()));
    res
}

pub use contracts::money;

/// CSS class and label of a stock level.
pub fn stock_state(stock: i32) -> (&'static str, String) {
    match stock {
        s if s <= 0 => ("stock-out", "Sold out".to_owned()),
        s if s <= LOW_STOCK => ("stock-low", format!("Low stock: only {s} left")),
        _ => ("stock-in", "In stock".to_owned()),
    }
}

/// Link to a product page, the sku percent-encoded.
pub fn product_href(sku: &str) -> String {
    let mut out = String::from("/products/");
    for b in sku.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_states() {
        assert_eq!(stock_state(0).0, "stock-out");
        assert_eq!(stock_state(LOW_STOCK).0, "stock-low");
        assert_eq!(stock_state(LOW_STOCK + 1).0, "stock-in");
    }

    #[test]
    fn encodes_hrefs() {
        assert_eq!(product_href("A-1"), "/products/A-1");
        assert_eq!(product_href("a b/<"), "/products/a%20b%2F%3C");
    }
}
