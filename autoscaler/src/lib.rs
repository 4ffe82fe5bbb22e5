//! Strata's autoscaler: a control loop that reads the backlog of `orders.fulfil` (ready
//! plus unacknowledged) and sets the number of workers, on local processes or on a docker
//! compose service. docs/autoscaling.md explains the rules.

pub mod backend;
pub mod budget;
pub mod config;
pub mod controller;
pub mod decision;
pub mod metrics_source;
pub mod startup;
pub mod status;
pub mod telemetry;

pub use config::AutoscalerSettings;
pub use startup::Application;
