//! The shop's pages and endpoints, one module per area (the ops console's are in
//! [`crate::ops`]).

pub mod assets;
pub mod cart;
pub mod catalog;
pub mod checkout;
pub mod health;
pub mod orders;
pub mod product;

use crate::error::PageError;

/// The default service: the site's 404 page.
pub async fn not_found() -> Result<actix_web::HttpResponse, PageError> {
    Err(PageError::NotFound)
}
