//! The HAProxy driver's Prometheus metrics.

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use prometheus_client::registry::Registry;

/// Counters and gauges of one driver. Cheap to clone; clones share values.
#[derive(Clone, Debug, Default)]
pub struct HaproxyMetrics {
    /// Reloads (a changed structure: listeners, backends, certificates).
    pub reloads: Counter,
    /// Changes applied through the runtime API instead of a reload.
    pub runtime_updates: Counter,
    /// Configurations `haproxy -c` rejected (nothing was applied).
    pub rejected: Counter,
    /// Load balancers the driver holds.
    pub load_balancers: Gauge,
    /// HAProxy processes (one per host) running now.
    pub instances_running: Gauge,
}

impl HaproxyMetrics {
    /// Registers clones of every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "reloads",
            "HAProxy reloads for changes of structure",
            self.reloads.clone(),
        );
        registry.register(
            "runtime_updates",
            "Changes applied through the HAProxy runtime API without a reload",
            self.runtime_updates.clone(),
        );
        registry.register(
            "rejected_configurations",
            "Configurations haproxy -c rejected",
            self.rejected.clone(),
        );
        registry.register(
            "load_balancers",
            "Load balancers the driver holds",
            self.load_balancers.clone(),
        );
        registry.register(
            "instances_running",
            "HAProxy processes running",
            self.instances_running.clone(),
        );
    }
}
