//! The webhook's Prometheus metrics. Labels are fixed words: never a token, a user name or
//! a path.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `review` and `decision` of one answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `authenticate`, `authorize` or `kubeconfig`.
    pub review: &'static str,
    /// `authenticated`, `unauthenticated`, `allowed`, `denied`, `no_opinion`, `error`,
    /// `bad_request`.
    pub decision: &'static str,
}

/// `review` of one answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// `authenticate`, `authorize` or `kubeconfig`.
    pub review: &'static str,
}

/// `result` of a token cache lookup or a certificate reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `hit`, `miss`, `joined`; `ok`, `error`.
    pub result: &'static str,
}

/// Every metric of the webhook server.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Answers by review and decision.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Time to answer, by review.
    pub duration: Family<ReviewLabels, Histogram>,
    /// Token cache lookups by result.
    pub token_cache: Family<ResultLabels, Counter>,
    /// Certificate reloads by result.
    pub certificate_reloads: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            decisions: Family::default(),
            duration: Family::new_with_constructor(|| {
                // 50 µs to 5 s: cached answers sit at the bottom, Rancher lookups higher up.
                Histogram::new([
                    0.000_05, 0.0001, 0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
            }),
            token_cache: Family::default(),
            certificate_reloads: Family::default(),
        }
    }
}

impl Metrics {
    /// New metrics, registered into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "decisions",
            "Webhook answers by review (authenticate, authorize, kubeconfig) and decision",
            metrics.decisions.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a webhook request, by review",
            metrics.duration.clone(),
        );
        registry.register(
            "token_cache_lookups",
            "Token cache lookups by result (hit, miss, joined: shared an in-flight lookup)",
            metrics.token_cache.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Reloads of the serving certificate by result",
            metrics.certificate_reloads.clone(),
        );
        metrics
    }

    /// Counts a certificate reload that succeeded or failed.
    pub fn certificate_reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.certificate_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub(crate) fn decided(&self, review: &'static str, decision: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabels { review, decision })
            .inc();
    }

    pub(crate) fn took(&self, review: &'static str, seconds: f64) {
        self.duration
            .get_or_create(&ReviewLabels { review })
            .observe(seconds);
    }
}
