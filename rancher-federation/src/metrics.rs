//! Prometheus metrics of the federation controller (feature `runtime`).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// The federation a series is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FederationLabels {
    /// The federation's name.
    pub federation: String,
}

/// The controller's metrics. Cheap to clone (shared series).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Reconciles of a federation.
    pub reconciles: Family<FederationLabels, Counter>,
    /// Reconciles that failed (host API or DNS provider errors).
    pub reconcile_errors: Family<FederationLabels, Counter>,
    /// Member clusters.
    pub members: Family<FederationLabels, Gauge>,
    /// Member clusters that passed their last health check.
    pub healthy_members: Family<FederationLabels, Gauge>,
    /// Records the federation wants published.
    pub records: Family<FederationLabels, Gauge>,
    /// Records added to the DNS provider.
    pub records_added: Family<FederationLabels, Counter>,
    /// Records removed from the DNS provider.
    pub records_removed: Family<FederationLabels, Counter>,
}

impl Metrics {
    /// Metrics registered in `registry` (binaries pick the prefix, e.g.
    /// `rancher_federation`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "reconciles",
            "Reconciles of a federation",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed",
            metrics.reconcile_errors.clone(),
        );
        registry.register("members", "Member clusters", metrics.members.clone());
        registry.register(
            "healthy_members",
            "Member clusters that passed their last health check",
            metrics.healthy_members.clone(),
        );
        registry.register(
            "records",
            "Records the federation wants published",
            metrics.records.clone(),
        );
        registry.register(
            "records_added",
            "Records added to the DNS provider",
            metrics.records_added.clone(),
        );
        registry.register(
            "records_removed",
            "Records removed from the DNS provider",
            metrics.records_removed.clone(),
        );
        metrics
    }

    pub(crate) fn labels(federation: &str) -> FederationLabels {
        FederationLabels {
            federation: federation.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_exported_with_the_federation_label() {
        let mut registry = Registry::with_prefix("rancher_federation");
        let metrics = Metrics::register(&mut registry);
        let labels = Metrics::labels("myfed");
        metrics.healthy_members.get_or_create(&labels).set(2);
        metrics.records_added.get_or_create(&labels).inc_by(9);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("rancher_federation_healthy_members{federation=\"myfed\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("rancher_federation_records_added_total{federation=\"myfed\"} 9"),
            "{text}"
        );
    }
}
