//! Prometheus metrics: queries by type and rcode, cache hits, sync state,
//! index size, skipped objects.
//!
//! The hot path increments pre-resolved counters (one atomic add per query);
//! no label lookup happens per query.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::wire::Rcode;

/// Labels of `queries_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueryLabels {
    /// Query type (`A`, `AAAA`, `SRV`, ..., `other`).
    pub qtype: &'static str,
    /// Response code.
    pub rcode: &'static str,
}

const TYPES: [(u16, &str); 9] = [
    (1, "A"),
    (28, "AAAA"),
    (33, "SRV"),
    (12, "PTR"),
    (5, "CNAME"),
    (16, "TXT"),
    (6, "SOA"),
    (2, "NS"),
    (0, "other"),
];
const RCODES: [Rcode; 6] = [
    Rcode::NoError,
    Rcode::FormErr,
    Rcode::ServFail,
    Rcode::NxDomain,
    Rcode::NotImp,
    Rcode::Refused,
];

/// The DNS metrics. Cheap to clone (shared counters).
#[derive(Debug, Clone)]
pub struct Metrics {
    queries: Vec<Counter>,
    /// Forwarded answers served from the cache.
    pub cache_hits: Counter,
    /// Forwarded queries that went upstream.
    pub cache_misses: Counter,
    /// Upstream exchanges that failed (timeout, bad answer).
    pub upstream_errors: Counter,
    /// Malformed packets dropped without an answer.
    pub dropped: Counter,
    /// 1 once the first full sync was served.
    pub synced: Gauge,
    /// Names in the served zone.
    pub index_names: Gauge,
    /// Objects (or parts) skipped as invalid.
    pub skipped_objects: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Unregistered metrics (for tests, or before [`Metrics::register`]).
    pub fn new() -> Self {
        Self::build(None)
    }

    /// Metrics registered in `registry` (binaries pick the prefix with
    /// `sub_registry_with_prefix`).
    pub fn register(registry: &mut Registry) -> Self {
        Self::build(Some(registry))
    }

    fn build(registry: Option<&mut Registry>) -> Self {
        let family = Family::<QueryLabels, Counter>::default();
        let mut queries = Vec::with_capacity(TYPES.len() * RCODES.len());
        for (_, t) in TYPES {
            for r in RCODES {
                queries.push(
                    family
                        .get_or_create(&QueryLabels {
                            qtype: t,
                            rcode: r.as_str(),
                        })
                        .clone(),
                );
            }
        }
        let m = Self {
            queries,
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            upstream_errors: Counter::default(),
            dropped: Counter::default(),
            synced: Gauge::default(),
            index_names: Gauge::default(),
            skipped_objects: Counter::default(),
        };
        if let Some(r) = registry {
            r.register(
                "queries",
                "DNS queries answered, by query type and response code",
                family,
            );
            r.register(
                "cache_hits",
                "Forwarded queries answered from the cache",
                m.cache_hits.clone(),
            );
            r.register(
                "cache_misses",
                "Forwarded queries sent upstream",
                m.cache_misses.clone(),
            );
            r.register(
                "upstream_errors",
                "Upstream exchanges that failed",
                m.upstream_errors.clone(),
            );
            r.register(
                "dropped_packets",
                "Packets dropped without an answer",
                m.dropped.clone(),
            );
            r.register(
                "synced",
                "1 once the first full sync is served",
                m.synced.clone(),
            );
            r.register(
                "index_names",
                "Owner names in the served zone",
                m.index_names.clone(),
            );
            r.register(
                "skipped_objects",
                "Objects or parts skipped as invalid",
                m.skipped_objects.clone(),
            );
        }
        m
    }

    /// Counts one answered query.
    #[inline]
    pub fn query(&self, qtype: u16, rcode: Rcode) {
        let t = TYPES
            .iter()
            .position(|(code, _)| *code == qtype)
            .unwrap_or(TYPES.len() - 1);
        let r = RCODES.iter().position(|c| *c == rcode).unwrap_or(0);
        if let Some(c) = self.queries.get(t * RCODES.len() + r) {
            c.inc();
        }
    }

    /// The count for one (type, rcode) pair, e.g. `("A", Rcode::NxDomain)`.
    pub fn queries_total(&self, qtype: &str, rcode: Rcode) -> u64 {
        let t = TYPES
            .iter()
            .position(|(_, n)| *n == qtype)
            .unwrap_or(TYPES.len() - 1);
        let r = RCODES.iter().position(|c| *c == rcode).unwrap_or(0);
        self.queries
            .get(t * RCODES.len() + r)
            .map_or(0, Counter::get)
    }
}
