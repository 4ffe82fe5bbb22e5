//! Black-box tests of the logic API against the real Postgres, Redis and RabbitMQ, with
//! real workers consuming. One binary, one module per area.

mod cache;
mod errors;
mod helpers;
mod ops;
mod orders;
mod resilience;
mod seed;
mod telemetry;
