//! Tests of logic against the real Postgres, Redis and RabbitMQ: its API black-box, with
//! real workers consuming, the audit trail, the near cache and the stock view, the `logic` binary's handling
//! of secrets, and what the binary runs beside the API (the outbox relay, the demo seed).
//! One binary, one module per area.

mod analytics;
mod audit;
mod cache;
mod connections;
mod errors;
mod helpers;
mod inventory;
mod near_cache;
mod ops;
mod orders;
mod relay;
mod resilience;
mod secrets;
mod seed;
mod stock;
mod stream;
mod stream_consumer;
mod subscriptions;
mod telemetry;
