//! Where the consumer is in its life, which is what the worker's `/readyz` answers
//! (`HEALTH_LISTEN`; `/healthz` and `/metrics` come with the endpoints themselves).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use service::health::ReadyCheck;

/// Where the consumer is in its life; only `Consuming` is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Not yet connected to the broker.
    Starting = 0,
    /// Consuming `orders.fulfil`.
    Consuming = 1,
    /// The connection failed, ended or went silent; retrying with backoff.
    Reconnecting = 2,
    /// Told to stop: finishing in-flight messages, taking no new ones.
    Draining = 3,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Consuming => "consuming",
            Phase::Reconnecting => "reconnecting",
            Phase::Draining => "draining",
        }
    }
}

/// What `/readyz` names while the consumer is connected but messages wait for Postgres.
pub const DATABASE_UNAVAILABLE: &str = "database_unavailable";

/// The consumer's phase and how many messages wait out a database outage, shared between
/// the consumer and the health endpoints.
#[derive(Debug, Default)]
pub struct Readiness {
    phase: AtomicU8,
    waiting_for_database: AtomicUsize,
}

impl Readiness {
    pub fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        self.publish();
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            1 => Phase::Consuming,
            2 => Phase::Reconnecting,
            3 => Phase::Draining,
            _ => Phase::Starting,
        }
    }

    /// Messages held while Postgres is unreachable.
    pub fn waiting_for_database(&self) -> usize {
        self.waiting_for_database.load(Ordering::Acquire)
    }

    /// Ready: consuming, and no message waiting for the database.
    pub fn state(&self) -> Result<&'static str, &'static str> {
        match self.phase() {
            Phase::Consuming if self.waiting_for_database() > 0 => Err(DATABASE_UNAVAILABLE),
            Phase::Consuming => Ok(Phase::Consuming.name()),
            other => Err(other.name()),
        }
    }

    fn publish(&self) {
        metrics::gauge!("strata_worker_consuming").set(if self.phase() == Phase::Consuming {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("strata_worker_waiting_for_database")
            .set(self.waiting_for_database() as f64);
    }

    /// `/readyz`: ready while consuming with the database in reach, the state's name
    /// either way.
    pub fn check(self: Arc<Self>) -> ReadyCheck {
        Arc::new(move || self.state())
    }
}

/// One message's wait for the database: counted from the first failed attempt ([`note`])
/// until dropped.
///
/// [`note`]: DatabaseWait::note
pub struct DatabaseWait {
    readiness: Arc<Readiness>,
    counted: AtomicBool,
}

impl DatabaseWait {
    pub fn new(readiness: Arc<Readiness>) -> Self {
        DatabaseWait {
            readiness,
            counted: AtomicBool::new(false),
        }
    }

    /// An attempt failed because the database is out of reach.
    pub fn note(&self) {
        if !self.counted.swap(true, Ordering::AcqRel) {
            self.readiness
                .waiting_for_database
                .fetch_add(1, Ordering::AcqRel);
            self.readiness.publish();
        }
    }
}

impl Drop for DatabaseWait {
    fn drop(&mut self) {
        if self.counted.load(Ordering::Acquire) {
            self.readiness
                .waiting_for_database
                .fetch_sub(1, Ordering::AcqRel);
            self.readiness.publish();
        }
    }
}
