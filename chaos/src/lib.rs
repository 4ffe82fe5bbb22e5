//! The chaos suite. Each run starts the real `logic`, `worker` and `autoscaler` binaries on a
//! database, vhost and key prefix of its own, sends a steady load of orders with
//! idempotency keys, injects one fault while the load flows, lets the system settle and
//! classifies every order from Postgres (the ledger). The soak runs the load test for a
//! while and watches the processes' resources.

pub mod bins;
pub mod cli;
pub mod faults;
pub mod ledger;
pub mod load;
pub mod procs;
pub mod report;
pub mod services;
pub mod soak;
pub mod stack;
