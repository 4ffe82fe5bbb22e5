//! The fulfilment worker against the real services: duplicates, crashes, drains, poison
//! messages, the dead-letter queue, broker connections cut or gone silent, and database
//! outages.

mod delivery;
mod fifo;
mod helpers;
mod liveness;
mod locks;
mod outage;
mod plans;
mod processes;
