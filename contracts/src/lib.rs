//! The defined interfaces between Strata's tiers: the JSON bodies of the logic API and the
//! envelopes of the messages on the broker. Plain serde types; no I/O lives here.

pub mod api;
pub mod filter;
mod integral;
pub mod inventory;
pub mod messages;
mod money;
pub mod streams;
pub mod subscriptions;
pub mod trace;

pub use api::*;
pub use inventory::*;
pub use messages::*;
pub use money::money;
pub use streams::*;
pub use subscriptions::*;
