//! Prometheus metrics of the service controller.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Labels of a provider call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct CallLabels {
    /// `ensure`, `update`, `delete` or `get`.
    pub(crate) call: String,
    /// `ok`, `retry`, `elsewhere` or `error`.
    pub(crate) outcome: String,
}

/// The controller's metrics; clones share the same series.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    calls: Family<CallLabels, Counter>,
    load_balancers: Gauge,
}

impl Metrics {
    /// Registers the series into `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "provider_calls",
            "Load balancer provider calls by call and outcome",
            self.calls.clone(),
        );
        registry.register(
            "load_balancers",
            "Services with a load balancer applied",
            self.load_balancers.clone(),
        );
    }

    /// Counts one provider call.
    pub(crate) fn call<T>(&self, call: &str, result: &crate::Result<T>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(crate::Error::Retry { .. }) => "retry",
            Err(crate::Error::ImplementedElsewhere) => "elsewhere",
            Err(_) => "error",
        };
        self.calls
            .get_or_create(&CallLabels {
                call: call.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Sets the number of applied load balancers.
    pub(crate) fn set_load_balancers(&self, n: usize) {
        self.load_balancers
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_outcome() {
        let metrics = Metrics::default();
        let mut registry = Registry::with_prefix("cloud");
        metrics.register(&mut registry);
        metrics.call("ensure", &Ok::<(), crate::Error>(()));
        metrics.call::<()>(
            "ensure",
            &Err(crate::Error::retry(std::time::Duration::from_secs(1), "x")),
        );
        metrics.set_load_balancers(3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"cloud_provider_calls_total{call="ensure",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"cloud_provider_calls_total{call="ensure",outcome="retry"} 1"#),
            "{text}"
        );
        assert!(text.contains("cloud_load_balancers 3"), "{text}");
    }
}
