//! Where workers run. A backend starts and stops workers; the controller only tells it how
//! many to run.

pub mod compose;
pub mod process;

use std::future::Future;

use serde::Serialize;

pub use compose::{ComposeBackend, ComposeConfig};
pub use process::{ProcessBackend, ProcessConfig};

/// What a backend runs right now, for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackendStatus {
    /// Workers taking messages.
    pub running: u32,
    /// Workers told to stop that are still finishing their in-flight messages.
    pub draining: u32,
    /// Workers that died on their own and were replaced, since start.
    pub replaced: u64,
    /// Workers told to stop that drained and exited 0, since start.
    pub drained: u64,
    /// Workers killed because they did not drain within the drain timeout, since start.
    pub killed: u64,
}

pub trait Backend: Send {
    /// The worker count the decision starts from.
    fn current(&self) -> u32;

    /// What runs, for `/status`.
    fn status(&self) -> BackendStatus;

    /// Runs `n` workers: starts the missing ones, or drains the surplus (never kills a
    /// worker mid-message on purpose).
    fn scale_to(&mut self, n: u32) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Called every tick before the decision: notices workers that exited, replaces the
    /// ones that died on their own, and enforces the drain timeout.
    fn reconcile(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// The autoscaler is stopping: stop what it owns, draining it.
    fn shutdown(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The backend chosen at start-up.
pub enum AnyBackend {
    Process(ProcessBackend),
    Compose(ComposeBackend),
}

impl AnyBackend {
    /// Checks, with the workers' own settings, that `replicas` workers plus `reserve`
    /// other connections fit Postgres' connection limit (see `crate::budget`).
    pub async fn check_budget(&self, replicas: u32, reserve: u32) -> anyhow::Result<String> {
        match self {
            AnyBackend::Process(b) => b.check_budget(replicas, reserve).await,
            AnyBackend::Compose(b) => b.check_budget(replicas, reserve).await,
        }
    }
}

impl Backend for AnyBackend {
    fn current(&self) -> u32 {
        match self {
            AnyBackend::Process(b) => b.current(),
            AnyBackend::Compose(b) => b.current(),
        }
    }

    fn status(&self) -> BackendStatus {
        match self {
            AnyBackend::Process(b) => b.status(),
            AnyBackend::Compose(b) => b.status(),
        }
    }

    async fn scale_to(&mut self, n: u32) -> anyhow::Result<()> {
        match self {
            AnyBackend::Process(b) => b.scale_to(n).await,
            AnyBackend::Compose(b) => b.scale_to(n).await,
        }
    }

    async fn reconcile(&mut self) -> anyhow::Result<()> {
        match self {
            AnyBackend::Process(b) => b.reconcile().await,
            AnyBackend::Compose(b) => b.reconcile().await,
        }
    }

    async fn shutdown(&mut self) -> anyhow::Result<()> {
        match self {
            AnyBackend::Process(b) => b.shutdown().await,
            AnyBackend::Compose(b) => b.shutdown().await,
        }
    }
}
