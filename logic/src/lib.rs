//! Strata's logic tier: the private JSON API over the catalog and orders, cache-aside reads
//! through Redis with a per-replica stock view ([`stock`]), the transactional outbox (its relay is `data::messaging::relay`), and the
//! demo catalog of `logic seed` ([`seed`]).

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod fifo;
pub mod openapi;
pub mod routes;
pub mod seed;
pub mod startup;
pub mod stock;
pub mod telemetry;
pub mod topic_policy;
pub mod validation;

pub use config::LogicSettings;
pub use startup::Application;
