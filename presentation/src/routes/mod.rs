//! The shop's pages and endpoints, one module per area (the ops console's are in
//! [`crate::ops`]), and the one route of logic's API the public tier passes
//! through: a subscription's confirmation URL.

pub mod assets;
pub mod cart;
pub mod catalog;
pub mod checkout;
pub mod health;
pub mod orders;
pub mod product;
pub mod subscriptions;

use crate::error::PageError;

/// The default service: the site's 404 page.
pub async fn not_found() -> Result<actix_web::HttpResponse, PageError> {
    Err(PageError::NotFound)
}
