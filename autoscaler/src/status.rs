//! What the controller decided lately, shared with `/status` and `/metrics`.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backend::BackendStatus;
use crate::config::{AutoscalerSettings, BackendKind};
use crate::decision::{Action, Decision};
use crate::metrics_source::{Reading, Source};

/// Decisions kept for `/status`.
pub const KEPT_DECISIONS: usize = 50;

/// One decision as logged and shown.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub time: DateTime<Utc>,
    pub ready: Option<u64>,
    pub unacked: Option<u64>,
    pub backlog: Option<u64>,
    pub source: Option<Source>,
    pub current: u32,
    pub desired: u32,
    pub recommendation: Option<u32>,
    pub action: Action,
    pub reason: String,
}

impl DecisionRecord {
    pub fn new(time: DateTime<Utc>, reading: Option<Reading>, decision: Decision) -> Self {
        let obs = reading.map(|r| r.observation);
        DecisionRecord {
            time,
            ready: obs.map(|o| o.ready),
            unacked: obs.and_then(|o| o.unacked),
            backlog: obs.map(|o| o.backlog()),
            source: reading.map(|r| r.source),
            current: decision.current,
            desired: decision.desired,
            recommendation: decision.recommendation,
            action: decision.action,
            reason: decision.reason,
        }
    }
}

/// The body of `GET /status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    pub backend: BackendKind,
    pub queue: String,
    pub min: u32,
    pub max: u32,
    pub target_backlog: u32,
    pub poll_interval_ms: u64,
    pub scale_down_window_ms: u64,
    /// Workers running now, as the last decision saw them or after it acted.
    pub current: u32,
    /// The last decision's worker count.
    pub desired: u32,
    pub workers: BackendStatus,
    /// Decisions made since start.
    pub decisions_total: u64,
    /// The latest decisions, newest first.
    pub last_decisions: Vec<DecisionRecord>,
}

pub struct StatusBoard {
    inner: Mutex<(StatusSnapshot, VecDeque<DecisionRecord>)>,
}

impl StatusBoard {
    pub fn new(settings: &AutoscalerSettings) -> Self {
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let snapshot = StatusSnapshot {
            backend: settings.backend,
            queue: settings.queue.clone(),
            min: settings.min,
            max: settings.max,
            target_backlog: settings.target_backlog,
            poll_interval_ms: millis(settings.poll_interval),
            scale_down_window_ms: millis(settings.scale_down_window),
            current: 0,
            desired: 0,
            workers: BackendStatus::default(),
            decisions_total: 0,
            last_decisions: Vec::new(),
        };
        StatusBoard {
            inner: Mutex::new((snapshot, VecDeque::with_capacity(KEPT_DECISIONS))),
        }
    }

    /// Records a decision and what the backend runs after acting on it.
    pub fn record(&self, decision: DecisionRecord, current: u32, workers: BackendStatus) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (snapshot, ring) = &mut *guard;
        snapshot.desired = decision.desired;
        snapshot.current = current;
        snapshot.workers = workers;
        snapshot.decisions_total += 1;
        if ring.len() == KEPT_DECISIONS {
            ring.pop_back();
        }
        ring.push_front(decision);
    }

    /// Updates the worker counts only (after the shutdown drain).
    pub fn set_workers(&self, current: u32, workers: BackendStatus) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.current = current;
        guard.0.workers = workers;
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (snapshot, ring) = &*guard;
        StatusSnapshot {
            last_decisions: ring.iter().cloned().collect(),
            ..snapshot.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_latest_decisions_newest_first() {
        let board = StatusBoard::new(&AutoscalerSettings::defaults());
        for i in 0..(KEPT_DECISIONS as u32 + 10) {
            let decision = Decision {
                current: i,
                desired: i + 1,
                recommendation: Some(i + 1),
                action: Action::Up,
                reason: format!("tick {i}"),
            };
            board.record(
                DecisionRecord::new(Utc::now(), None, decision),
                i + 1,
                BackendStatus::default(),
            );
        }
        let s = board.snapshot();
        assert_eq!(s.last_decisions.len(), KEPT_DECISIONS);
        assert_eq!(s.last_decisions[0].reason, "tick 59");
        assert_eq!(s.decisions_total, 60);
        assert_eq!((s.current, s.desired), (60, 60));
    }
}
