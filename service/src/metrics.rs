//! The Prometheus recorder: one installer for every binary, each passing its own metric
//! descriptions and histogram buckets.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// A recorder being configured: buckets per histogram, then [`Prometheus::install`] (the
/// process's global recorder, what the `metrics` macros record into) or
/// [`Prometheus::local`] (a recorder of one tier's own, used with
/// `metrics::with_local_recorder`).
#[derive(Default)]
pub struct Prometheus {
    builder: PrometheusBuilder,
}

impl Prometheus {
    pub fn new() -> Self {
        Prometheus::default()
    }

    /// Buckets of every histogram that has none of its own.
    pub fn buckets(mut self, bounds: &[f64]) -> Self {
        self.builder = self
            .builder
            .set_buckets(bounds)
            .expect("a bucket list is not empty");
        self
    }

    /// Buckets of the histogram named `metric`.
    pub fn buckets_for(mut self, metric: &str, bounds: &[f64]) -> Self {
        self.builder = self
            .builder
            .set_buckets_for_metric(Matcher::Full(metric.to_owned()), bounds)
            .expect("a bucket list is not empty");
        self
    }

    /// Installs the process-wide recorder once and runs `describe` against it. Every later
    /// call (tests run several tiers in one process) gets the same recorder, keeps the
    /// first caller's buckets and adds its own descriptions. When a recorder that is not
    /// ours is installed already (an embedding program's), the metrics are rendered from a
    /// recorder of our own that nothing records into.
    pub fn install(self, describe: impl FnOnce()) -> PrometheusHandle {
        static GLOBAL: OnceLock<PrometheusHandle> = OnceLock::new();
        let handle = GLOBAL.get_or_init(|| match self.builder.install_recorder() {
            Ok(handle) => handle,
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        });
        describe();
        handle.clone()
    }

    /// A recorder that is not installed globally: for a tier that shares its process with
    /// others (the tests run logic beside presentation) and must show only its own
    /// metrics. `describe` runs with it as the target of the `metrics` macros.
    pub fn local(self, describe: impl FnOnce()) -> PrometheusRecorder {
        let recorder = self.builder.build_recorder();
        metrics::with_local_recorder(&recorder, describe);
        recorder
    }
}

/// The content type of the Prometheus text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";
