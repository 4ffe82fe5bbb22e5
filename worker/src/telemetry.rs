//! The worker's metrics.

use metrics_exporter_prometheus::PrometheusHandle;
use service::metrics::Prometheus;

/// Installs the process's recorder with the worker's metric descriptions.
pub fn prometheus() -> PrometheusHandle {
    Prometheus::new().install(describe)
}

fn describe() {
    metrics::describe_histogram!(
        "strata_analytics_lag_seconds",
        metrics::Unit::Seconds,
        "worker analytics: time from a record's event time to its batch being folded into the windows"
    );
    metrics::describe_counter!(
        "strata_worker_messages_total",
        "Deliveries of orders.fulfil by outcome (fulfilled, rejected, duplicate, already_final, retry, dead_lettered, given_back)"
    );
    metrics::describe_gauge!(
        "strata_worker_in_flight",
        "Deliveries being processed (at most the prefetch)"
    );
    metrics::describe_gauge!(
        "strata_worker_waiting_for_database",
        "Messages held while Postgres is out of reach (the worker is not ready while any are)"
    );
    metrics::describe_counter!(
        "strata_worker_database_retries_total",
        "Attempts at a message that failed because Postgres was out of reach"
    );
    metrics::describe_counter!(
        "strata_subscription_deliveries_total",
        "Subscription deliveries by protocol and outcome (delivered, retried, dead_lettered, filtered, before_confirmation)"
    );
    metrics::describe_histogram!(
        "strata_subscription_attempt_seconds",
        "Duration of one delivery attempt to a subscription, by protocol"
    );
    metrics::describe_gauge!(
        "strata_worker_consuming",
        "1 while the consumer is connected and consuming, 0 otherwise"
    );
}

/// Deliveries being processed now.
pub fn in_flight(n: usize) {
    metrics::gauge!("strata_worker_in_flight").set(n as f64);
}
