//! Samples the counters (and the autoscaler's view of the queue, when given) every second.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::shared::{Sample, Shared};

/// Reads `GET {autoscaler}/status`: the current worker count and the last reading of the
/// queue (ready + unacknowledged). Tolerant of missing fields.
async fn autoscaler_status(
    http: &reqwest::Client,
    base: &str,
) -> Option<(Option<u64>, Option<u64>)> {
    let status: serde_json::Value = http
        .get(format!("{}/status", base.trim_end_matches('/')))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let workers = status.get("current").and_then(serde_json::Value::as_u64);
    let backlog = status
        .get("backlog")
        .and_then(serde_json::Value::as_u64)
        .or_else(|| {
            // The autoscaler lists its recent decisions newest first, as `last_decisions`.
            let decisions = status
                .get("last_decisions")
                .or_else(|| status.get("decisions"))?;
            let last = decisions.as_array()?.first()?;
            Some(last.get("ready")?.as_u64()? + last.get("unacked")?.as_u64()?)
        });
    Some((backlog, workers))
}

pub async fn run(shared: Arc<Shared>, autoscaler: Option<String>, started: Instant) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while shared.sampling() {
        tick.tick().await;
        let (backlog, workers) = match &autoscaler {
            Some(base) => autoscaler_status(&http, base).await.unwrap_or((None, None)),
            None => (None, None),
        };
        let sample = Sample {
            t_secs: started.elapsed().as_secs_f64(),
            requests: shared.requests.load(Ordering::Relaxed),
            errors: shared.errors.load(Ordering::Relaxed),
            orders_placed: shared.orders_placed.load(Ordering::Relaxed),
            orders_final: shared.orders_final(),
            backlog,
            workers,
        };
        shared
            .timeline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sample);
    }
}
