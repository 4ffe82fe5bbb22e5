//! Postgres: the pool and the embedded migrations ([`db`]), and the repositories of the
//! catalog ([`products`]), of orders ([`orders`]), of the inventory feed ([`inventory`]),
//! of the audit trail ([`audit`]) and of the subscriptions to the event topics
//! ([`subscriptions`]); the consumers' record of processed messages
//! ([`processed`]); which failures are the connection's (an outage, not a failed
//! statement), and the one retry on a fresh one ([`retry`]).

pub mod audit;
pub mod db;
pub mod inventory;
pub mod orders;
pub mod processed;
pub mod products;
pub mod retry;
pub mod subscriptions;
