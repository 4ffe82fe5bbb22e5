//! Strata's presentation tier: the public, server-rendered shop. It holds no database,
//! cache or broker credentials and talks only to the logic API over HTTP.

pub mod cart;
pub mod config;
pub mod cookies;
pub mod csrf;
pub mod error;
pub mod logic_client;
pub mod ops;
pub mod product_cache;
pub mod routes;
pub mod startup;
pub mod telemetry;
pub mod views;

pub use config::Settings;
pub use startup::Application;
