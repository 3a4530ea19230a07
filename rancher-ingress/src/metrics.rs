//! The controller's Prometheus metrics.

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of a metric family: `(name, value)` pairs.
pub type Labels = Vec<(&'static str, &'static str)>;

/// The controller's metrics. Cheap to clone; clones share values.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Translations run.
    pub syncs: Counter,
    /// How long a translation took, in seconds.
    pub sync_duration: Histogram,
    /// Failed operations, by `stage` (`backend`, `status`).
    pub errors: Family<Labels, Counter>,
    /// Load balancers wanted.
    pub load_balancers: Gauge,
    /// Routes across all load balancers.
    pub routes: Gauge,
    /// Ingresses by `state` (`programmed`, `rejected`, `ignored`).
    pub ingresses: Family<Labels, Gauge>,
    /// Status writes.
    pub status_writes: Counter,
    /// Backend ensure and delete calls that succeeded.
    pub backend_applies: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            syncs: Counter::default(),
            sync_duration: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            errors: Family::default(),
            load_balancers: Gauge::default(),
            routes: Gauge::default(),
            ingresses: Family::default(),
            status_writes: Counter::default(),
            backend_applies: Counter::default(),
        }
    }
}

impl Metrics {
    /// New metrics registered in `registry` (conventionally under a
    /// `rancher_ingress` sub-registry).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "syncs",
            "Translations of every Ingress",
            metrics.syncs.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Time one translation took",
            metrics.sync_duration.clone(),
        );
        registry.register(
            "errors",
            "Failed operations by stage",
            metrics.errors.clone(),
        );
        registry.register(
            "load_balancers",
            "Load balancers wanted",
            metrics.load_balancers.clone(),
        );
        registry.register(
            "routes",
            "Routes across all load balancers",
            metrics.routes.clone(),
        );
        registry.register("ingresses", "Ingresses by state", metrics.ingresses.clone());
        registry.register(
            "status_writes",
            "Ingress status writes",
            metrics.status_writes.clone(),
        );
        registry.register(
            "backend_applies",
            "Successful backend ensure and delete calls",
            metrics.backend_applies.clone(),
        );
        metrics
    }
}
