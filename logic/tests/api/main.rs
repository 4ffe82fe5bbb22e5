//! Tests of logic against the real Postgres, Redis and RabbitMQ: its API black-box, with
//! real workers consuming, and what the binary runs beside it (the outbox relay, the demo
//! seed). One binary, one module per area.

mod cache;
mod errors;
mod helpers;
mod ops;
mod orders;
mod relay;
mod resilience;
mod seed;
mod telemetry;
