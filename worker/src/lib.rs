//! Strata's fulfilment worker: consumes `orders.fulfil` with manual acks and a prefetch,
//! runs one Postgres transaction per order, acks only after the commit, and drains
//! in-flight work on SIGTERM. It also applies the inventory feed's FIFO partitions
//! ([`inventory`]). With `HEALTH_LISTEN` it serves `/healthz`, `/readyz` and
//! `/metrics`.

pub mod budget;
pub mod config;
pub mod consumer;
pub mod fulfilment;
pub mod health;
pub mod inventory;
pub mod parent;
pub mod startup;
pub mod telemetry;

pub use config::WorkerSettings;
pub use fulfilment::{Disposition, handle_message};
pub use startup::Application;
