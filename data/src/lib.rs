//! Strata's data tier, in folders by what they hold: `store/` is Postgres (the pool and
//! migrations, the repositories of products, orders and the audit trail); `cache/` is the
//! Redis read cache with the in-process near cache in front of it and the subscription
//! that keeps it fresh; `messaging/` is RabbitMQ (connecting, the one declaration of the
//! topology, the management API, the dead-letter queue) and the transactional outbox;
//! `settings.rs` reads where those services are.

pub mod cache;
pub mod messaging;
pub mod settings;
pub mod store;

pub use settings::DataSettings;
