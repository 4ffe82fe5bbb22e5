//! The ops console's building blocks: the admin login ([`auth`]) and the figures shown
//! ([`view`]). The pages themselves are in `routes::ops` and `routes::ops_login`.

pub mod auth;
pub mod view;

pub use auth::{OpsAuth, OpsSession, hash_password};
