//! Where the consumer is in its life, which is what the worker's `/readyz` answers
//! (`HEALTH_LISTEN`; `/healthz` and `/metrics` come with the endpoints themselves).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use service::health::ReadyCheck;

/// Where the consumer is in its life; only `Consuming` is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Not yet connected to the broker.
    Starting = 0,
    /// Consuming `orders.fulfil`.
    Consuming = 1,
    /// The connection failed or ended; retrying with backoff.
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

/// The consumer's phase, shared between the consumer and the health endpoints.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

impl Readiness {
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Release);
        metrics::gauge!("strata_worker_consuming").set(if phase == Phase::Consuming {
            1.0
        } else {
            0.0
        });
    }

    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            1 => Phase::Consuming,
            2 => Phase::Reconnecting,
            3 => Phase::Draining,
            _ => Phase::Starting,
        }
    }

    /// `/readyz`: ready while consuming, the phase's name either way.
    pub fn check(self: Arc<Self>) -> ReadyCheck {
        Arc::new(move || match self.phase() {
            Phase::Consuming => Ok(Phase::Consuming.name()),
            other => Err(other.name()),
        })
    }
}
