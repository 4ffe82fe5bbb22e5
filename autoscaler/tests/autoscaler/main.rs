//! The autoscaler against the real services: queue readings, the process backend with the
//! real `worker` binary, and the compose backend with a stand-in `docker`.

mod compose;
mod function;
mod helpers;
mod orphans;
mod process;
mod readings;
mod scaling;
