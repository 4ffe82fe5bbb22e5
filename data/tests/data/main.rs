//! The data tier against the real Postgres, Redis and RabbitMQ, each test on services of its
//! own (testkit's `TestEnv`). One binary, one module per part.

#[cfg(feature = "cache")]
mod cache;
mod notifier;
mod store;
