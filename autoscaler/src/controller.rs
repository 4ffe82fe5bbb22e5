//! The control loop: every poll interval, replace dead workers, read the queue, decide,
//! act, and record the decision (one log line, metrics, `/status`). On stop, the backend
//! drains its workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::backend::{AnyBackend, Backend};
use crate::decision::{Decider, Decision};
use crate::metrics_source::{QueueMetrics, Reading, Source};
use crate::status::{DecisionRecord, StatusBoard};

pub struct Controller {
    pub backend: AnyBackend,
    pub source: QueueMetrics,
    pub decider: Decider,
    pub poll_interval: Duration,
    pub status: Arc<StatusBoard>,
}

impl Controller {
    /// Ticks until `stop`, then shuts the backend down (process workers drain and exit).
    pub async fn run(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(self.poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            self.tick().await;
        }
        let result = self.backend.shutdown().await;
        self.status
            .set_workers(self.backend.current(), self.backend.status());
        tracing::info!("autoscaler stopped");
        result
    }

    /// One decision, acted on.
    pub async fn tick(&mut self) -> Decision {
        if let Err(err) = self.backend.reconcile().await {
            tracing::warn!(
                error = format!("{err:#}"),
                "could not reconcile the workers"
            );
        }
        let current = self.backend.current();
        let reading = self.source.read().await;
        let decision = self
            .decider
            .decide(Instant::now(), current, reading.map(|r| r.observation));
        log_and_measure(reading, &decision);
        if decision.desired != current
            && let Err(err) = self.backend.scale_to(decision.desired).await
        {
            tracing::error!(
                error = format!("{err:#}"),
                desired = decision.desired,
                "scaling failed; retrying next tick"
            );
        }
        let workers = self.backend.status();
        metrics::gauge!("strata_autoscaler_workers_draining").set(workers.draining);
        self.status.record(
            DecisionRecord::new(chrono::Utc::now(), reading, decision.clone()),
            self.backend.current(),
            workers,
        );
        decision
    }
}

fn log_and_measure(reading: Option<Reading>, decision: &Decision) {
    let obs = reading.map(|r| r.observation);
    let source = reading.map(|r| match r.source {
        Source::ExactReady => "amqp_ready+management_api_unacked",
        Source::ManagementApi => "management_api",
        Source::AmqpPassive => "amqp_ready_only",
    });
    tracing::info!(
        ready = obs.map(|o| o.ready),
        unacked = obs.and_then(|o| o.unacked),
        backlog = obs.map(|o| o.backlog()),
        source,
        current = decision.current,
        desired = decision.desired,
        recommendation = decision.recommendation,
        action = decision.action.as_str(),
        reason = %decision.reason,
        "scaling decision"
    );
    metrics::counter!("strata_autoscaler_decisions_total", "action" => decision.action.as_str())
        .increment(1);
    metrics::gauge!("strata_autoscaler_workers_current").set(decision.current);
    metrics::gauge!("strata_autoscaler_workers_desired").set(decision.desired);
    metrics::gauge!("strata_autoscaler_metric_available").set(if obs.is_some() { 1 } else { 0 });
    if let Some(o) = obs {
        metrics::gauge!("strata_autoscaler_queue_messages", "state" => "ready").set(o.ready as f64);
        metrics::gauge!("strata_autoscaler_metric_ready_only").set(if o.unacked.is_none() {
            1
        } else {
            0
        });
        if let Some(unacked) = o.unacked {
            metrics::gauge!("strata_autoscaler_queue_messages", "state" => "unacked")
                .set(unacked as f64);
        }
    }
}
