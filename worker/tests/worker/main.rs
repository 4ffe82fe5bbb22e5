//! The fulfilment worker against the real services: duplicates, crashes, drains, poison
//! messages, the dead-letter queue, broker connections cut or gone silent, database
//! outages, the fulfilment saga's crash points, the delivery of subscriptions, and the
//! stream's archive (`worker firehose`) and its analytics windows (`worker analytics`).

mod analytics;
mod delivery;
mod fifo;
mod firehose;
mod functions;
mod helpers;
mod liveness;
mod locks;
mod outage;
mod plans;
mod processes;
mod relay;
mod saga;
mod subscriptions;
