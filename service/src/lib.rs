//! The service plumbing every Strata binary shares and no tier owns: the async runtime,
//! logging, signals turned into a stop token, the configuration profile with secrets read
//! from files, the Prometheus recorder, and the health endpoints of the binaries that are
//! not web servers. It links no database, cache or broker client.

pub mod health;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod profile;
pub mod runtime;
pub mod secrets;
pub mod signals;

pub use profile::Profile;
