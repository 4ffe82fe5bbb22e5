//! Strata's data tier, in folders by what they hold: `store/` is Postgres (the pool and
//! migrations, the repositories of products, orders and the audit trail; feature `store`);
//! `cache/` is the Redis read cache with the in-process near cache in front of it and the
//! subscription that keeps it fresh (feature `cache`); `messaging/` is RabbitMQ
//! (connecting, the one declaration of the topology, the management API, the dead-letter
//! queue) and the transactional outbox (which needs `store`); `settings.rs` reads where
//! those services are; `net_guard.rs` keeps subscriber endpoints out of the private tier.

#[cfg(feature = "cache")]
pub mod cache;
pub mod messaging;
#[cfg(any(feature = "store", feature = "cache"))]
pub mod net_guard;
pub mod settings;
#[cfg(feature = "store")]
pub mod store;

pub use settings::DataSettings;
