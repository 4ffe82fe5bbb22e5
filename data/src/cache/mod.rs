//! The read cache (ElastiCache's role): cache-aside over Redis with a TTL.
//!
//! - A miss loads from Postgres once per key, however many requests miss together
//!   (single flight), and stores the value with a TTL.
//! - Writers call [`Cache::invalidate_product`] after their commit.
//! - Redis down means slower, never failing: every Redis call has a timeout, errors are
//!   counted in `strata_cache_unavailable_total`, and the value comes from Postgres.
//! - An optional near cache ([`near`]) in front of Redis answers repeated reads from
//!   process memory while its invalidation subscription ([`invalidation`]) is up.

mod aside;
pub mod invalidation;
pub mod near;

pub use aside::{Cache, Source};
