//! Strata's fulfilment worker: consumes `orders.fulfil` with manual acks and a prefetch,
//! runs each order as a saga of short transactions around the payment (the order's step
//! is the state; a redelivery resumes it), works on each delivery under a visibility
//! deadline ([`visibility`]), acks only after the last commit, sweeps lapsed
//! reservations, and drains in-flight work on SIGTERM. It also applies the inventory feed's FIFO partitions
//! ([`inventory`]) and delivers the topics' events to their subscriptions
//! ([`subscriptions`]). With `HEALTH_LISTEN` it serves `/healthz`, `/readyz` and
//! `/metrics`. `--function <name>` runs one function handler instead ([`functions`]);
//! `worker firehose` and `worker analytics` run an application of the event stream
//! ([`streams`]).

pub mod budget;
pub mod config;
pub mod consumer;
pub mod fulfilment;
pub mod functions;
pub mod health;
pub mod inventory;
pub mod parent;
pub mod startup;
pub mod streams;
pub mod subscriptions;
pub mod telemetry;
pub mod visibility;

pub use config::WorkerSettings;
pub use fulfilment::{Disposition, handle_message};
pub use startup::Application;
