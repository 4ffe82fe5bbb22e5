//! The fulfilment worker against the real services: duplicates, crashes, drains, poison
//! messages and the dead-letter queue.

mod delivery;
mod fifo;
mod helpers;
mod locks;
mod plans;
mod processes;
