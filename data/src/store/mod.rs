//! Postgres: the pool and the embedded migrations ([`db`]), and the repositories of the
//! catalog ([`products`]), of orders ([`orders`]) and of the audit trail ([`audit`]);
//! which failures are the connection's, and the one retry on a fresh one ([`retry`]).

pub mod audit;
pub mod db;
pub mod orders;
pub mod products;
pub mod retry;
