//! The built-in server's backend: applies changes to a
//! [`SnapshotBuilder`] and publishes each result atomically.

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use async_trait::async_trait;

use super::{DnsBackend, Result};
use crate::metrics::Metrics;
use crate::model::{Change, Options, ZoneRecords};
use crate::snapshot::{Snapshot, SnapshotBuilder};

/// Feeds the built-in server: readers load the current [`Snapshot`] from
/// [`ServerBackend::snapshots`] and never see a half-applied update.
#[derive(Debug)]
pub struct ServerBackend {
    builder: Mutex<SnapshotBuilder>,
    published: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
}

impl ServerBackend {
    /// An unsynced, empty zone for `options`.
    pub fn new(options: &Options, metrics: Metrics) -> Self {
        let builder = SnapshotBuilder::new(options);
        let published = Arc::new(ArcSwap::from_pointee(builder.snapshot()));
        Self {
            builder: Mutex::new(builder),
            published,
            metrics,
        }
    }

    /// The published snapshots, for [`Server::start`](crate::server::Server::start).
    pub fn snapshots(&self) -> Arc<ArcSwap<Snapshot>> {
        self.published.clone()
    }

    fn publish(&self, builder: &SnapshotBuilder) {
        let snapshot = builder.snapshot();
        self.metrics
            .index_names
            .set(i64::try_from(snapshot.len()).unwrap_or(i64::MAX));
        self.metrics.synced.set(i64::from(snapshot.synced()));
        self.published.store(Arc::new(snapshot));
    }
}

#[async_trait]
impl DnsBackend for ServerBackend {
    async fn sync(&self, zone: &dyn ZoneRecords) -> Result<()> {
        let mut builder = self.builder.lock().unwrap_or_else(PoisonError::into_inner);
        builder.replace_all(zone);
        builder.set_synced(true);
        self.publish(&builder);
        Ok(())
    }

    async fn apply(&self, changes: &[Change]) -> Result<()> {
        let mut builder = self.builder.lock().unwrap_or_else(PoisonError::into_inner);
        builder.apply(changes);
        self.publish(&builder);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RData as HRData;

    use super::*;
    use crate::backend::conformance;
    use crate::wire;

    fn ask_a(snapshot: &Snapshot, name: &str) -> Option<Vec<std::net::Ipv4Addr>> {
        let mut p = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend(crate::name::to_wire(name));
        p.extend([0, 1, 0, 1]);
        let q = wire::parse_query(&p).unwrap();
        let mut out = Vec::new();
        snapshot.respond(&p, &q, &mut out, 65535)?;
        let m = Message::from_vec(&out).unwrap();
        if m.metadata.response_code != ResponseCode::NoError || m.answers.is_empty() {
            return None;
        }
        Some(
            m.answers
                .iter()
                .filter_map(|r| match &r.data {
                    HRData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect(),
        )
    }

    #[tokio::test]
    async fn passes_the_conformance_battery() {
        let metrics = Metrics::new();
        let backend = ServerBackend::new(&Options::default(), metrics.clone());
        let snapshots = backend.snapshots();
        assert!(!snapshots.load().synced());
        conformance::run(&backend, |name| {
            let s = snapshots.load_full();
            async move { ask_a(&s, &name) }
        })
        .await;
        assert_eq!(metrics.synced.get(), 1);
        assert_eq!(metrics.index_names.get(), 2, "apex and dns-version");
    }
}
