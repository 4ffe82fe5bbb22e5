//! Strata's logic tier: the private JSON API over the catalog and orders, cache-aside reads
//! through Redis, and the transactional outbox with its relay to RabbitMQ.

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod seed;
pub mod startup;
pub mod telemetry;
pub mod validation;

pub use config::LogicSettings;
pub use startup::Application;
