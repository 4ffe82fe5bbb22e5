//! Postgres: the pool and the embedded migrations ([`db`]), and the repositories of the
//! catalog ([`products`]), of orders ([`orders`]), of the inventory feed
//! ([`inventory`]) and of the audit trail ([`audit`]).

pub mod audit;
pub mod db;
pub mod inventory;
pub mod orders;
pub mod products;
