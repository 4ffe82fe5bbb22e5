//! Strata's data tier: configuration of the backing services, the Postgres repositories
//! (sqlx), the Redis read cache, and the one place that declares the broker topology.

pub mod audit;
pub mod broker;
pub mod broker_api;
pub mod cache;
pub mod config;
pub mod db;
pub mod dlq;
pub mod near_cache;
pub mod orders;
pub mod outbox;
pub mod products;
pub mod relay;
pub mod seed;

pub use config::DataSettings;
