//! The autoscaler's metrics.

use metrics_exporter_prometheus::PrometheusHandle;
use service::metrics::Prometheus;

/// Installs the process's recorder with the autoscaler's metric descriptions.
pub fn prometheus() -> PrometheusHandle {
    Prometheus::new().install(describe)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "strata_autoscaler_queue_messages",
        "Messages of the scaled queue at the last reading, by state (ready, unacked)"
    );
    describe_gauge!(
        "strata_autoscaler_metric_available",
        "1 when the last reading succeeded, 0 when the decision had no metric"
    );
    describe_gauge!(
        "strata_autoscaler_metric_ready_only",
        "1 when the last reading came from the AMQP fallback (ready count only)"
    );
    describe_gauge!(
        "strata_autoscaler_workers_current",
        "Workers running before the last decision"
    );
    describe_gauge!(
        "strata_autoscaler_workers_desired",
        "Workers wanted by the last decision"
    );
    describe_gauge!(
        "strata_autoscaler_workers_draining",
        "Workers told to stop that are finishing their in-flight messages"
    );
    describe_counter!(
        "strata_autoscaler_decisions_total",
        "Decisions by action (up, down, hold)"
    );
    describe_counter!(
        "strata_autoscaler_metric_failures_total",
        "Failed queue readings by source (management_api, amqp)"
    );
    describe_counter!(
        "strata_autoscaler_worker_starts_total",
        "Worker processes started"
    );
    describe_counter!(
        "strata_autoscaler_worker_exits_total",
        "Worker exits by kind (drained, killed after the drain timeout, unexpected)"
    );
    describe_counter!(
        "strata_autoscaler_workers_replaced_total",
        "Workers that died on their own and were started again"
    );
}
