//! HTTP-level tests of the shop pages: presentation on a free port in front of a real
//! logic app (and, where orders must complete, a real worker) on the test's own services;
//! and the `presentation` binary's handling of secrets, in front of such a logic app.

mod audit;
mod cart;
mod checkout;
mod helpers;
mod ops;
mod pages;
mod product_copy;
mod resilience;
mod secrets;
mod security;
mod stream_pages;
mod subscriptions;
mod tracing;
