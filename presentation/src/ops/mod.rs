//! The ops console's building blocks: the admin login ([`auth`]), the figures shown
//! ([`view`]) and the audit trail's filters and rows ([`audit`]). The pages themselves are
//! in `routes::ops`, `routes::ops_audit` and `routes::ops_login`.

pub mod audit;
pub mod auth;
pub mod view;

pub use auth::{OpsAuth, OpsSession, hash_password};
