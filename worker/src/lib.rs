//! Strata's fulfilment worker: consumes `orders.fulfil` with manual acks and a prefetch,
//! runs one Postgres transaction per order, acks only after the commit, and drains
//! in-flight work on SIGTERM. With `HEALTH_LISTEN` it serves `/healthz`, `/readyz` and
//! `/metrics`.

pub mod config;
pub mod consumer;
pub mod health;
pub mod payment;

pub use config::WorkerSettings;
pub use consumer::{Disposition, Worker, handle_message};
