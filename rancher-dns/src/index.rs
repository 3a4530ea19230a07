//! The watch sink (feature `runtime`): Service, EndpointSlice and Pod watch
//! events go through [`convert`] into the
//! [`RecordIndex`]; the resulting per-name changes are sent to the
//! publisher, which hands them to the backends.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use rancher_runtime::index::{IndexNamespacedResource, NamespacedRemoved};
use tokio::sync::mpsc;

use crate::convert;
use crate::metrics::Metrics;
use crate::model::{Change, Options, ServiceKey};
use crate::records::RecordIndex;

/// The record index as a watch sink.
#[derive(Debug)]
pub struct DnsIndex {
    records: RecordIndex,
    changes: mpsc::UnboundedSender<Vec<Change>>,
    metrics: Metrics,
    skipped_seen: u64,
    /// Changes are sent only once the publisher took the first full state;
    /// before that they would just be a second copy of it.
    publishing: bool,
}

impl DnsIndex {
    /// A sink and the receiving end of its changes.
    pub fn new(options: Options, metrics: Metrics) -> (Self, mpsc::UnboundedReceiver<Vec<Change>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let index = Self {
            records: RecordIndex::new(options),
            changes: tx,
            metrics,
            skipped_seen: 0,
            publishing: false,
        };
        (index, rx)
    }

    /// The record index.
    pub fn records(&self) -> &RecordIndex {
        &self.records
    }

    /// From now on every change is sent to the publisher. Call with the
    /// lock held while taking the full state the publisher syncs first.
    pub fn start_publishing(&mut self) {
        self.publishing = true;
    }

    fn emit(&mut self, changes: Vec<Change>) {
        let skipped = self.records.skipped_total();
        if skipped > self.skipped_seen {
            self.metrics
                .skipped_objects
                .inc_by(skipped - self.skipped_seen);
            self.skipped_seen = skipped;
        }
        if self.publishing && !changes.is_empty() {
            // The publisher only goes away at shutdown.
            let _ = self.changes.send(changes);
        }
    }

    fn invalid(&self, error: &convert::Error) {
        match error {
            convert::Error::Ignored(why) => tracing::debug!(%why, "object ignored"),
            _ => {
                tracing::warn!(%error, "skipping invalid object");
                self.metrics.skipped_objects.inc();
            }
        }
    }
}

impl IndexNamespacedResource<core::Service> for DnsIndex {
    fn apply(&mut self, svc: core::Service) {
        let changes = match convert::service(&svc) {
            Ok(s) => self.records.apply_service(s),
            Err(e) => {
                self.invalid(&e);
                let ns = svc.metadata.namespace.clone().unwrap_or_default();
                let name = svc.metadata.name.clone().unwrap_or_default();
                self.records.delete_service(&ServiceKey::new(ns, name))
            }
        };
        self.emit(changes);
    }

    fn delete(&mut self, namespace: String, name: String) {
        let changes = self
            .records
            .delete_service(&ServiceKey::new(namespace, name));
        self.emit(changes);
    }

    fn reset(&mut self, resources: Vec<core::Service>, _removed: NamespacedRemoved) {
        // Each listed object is dropped once converted, so the index built
        // next reuses its memory instead of growing the heap past the list.
        let mut services = Vec::with_capacity(resources.len());
        for svc in resources {
            match convert::service(&svc) {
                Ok(s) => services.push(s),
                Err(e) => self.invalid(&e),
            }
        }
        let changes = self.records.reset_services(services);
        self.emit(changes);
    }
}

impl IndexNamespacedResource<discovery::EndpointSlice> for DnsIndex {
    fn apply(&mut self, slice: discovery::EndpointSlice) {
        let changes = match convert::endpoint_slice(&slice) {
            Ok(s) => self.records.apply_slice(s),
            Err(e) => {
                self.invalid(&e);
                let ns = slice.metadata.namespace.clone().unwrap_or_default();
                let name = slice.metadata.name.clone().unwrap_or_default();
                self.records.delete_slice(&ns, &name)
            }
        };
        self.emit(changes);
    }

    fn delete(&mut self, namespace: String, name: String) {
        let changes = self.records.delete_slice(&namespace, &name);
        self.emit(changes);
    }

    fn reset(&mut self, resources: Vec<discovery::EndpointSlice>, _removed: NamespacedRemoved) {
        // As for Services: each listed object goes once converted.
        let mut slices = Vec::with_capacity(resources.len());
        for slice in resources {
            match convert::endpoint_slice(&slice) {
                Ok(s) => slices.push(s),
                Err(e) => self.invalid(&e),
            }
        }
        let changes = self.records.reset_slices(slices);
        self.emit(changes);
    }
}

impl IndexNamespacedResource<core::Pod> for DnsIndex {
    fn apply(&mut self, pod: core::Pod) {
        let changes = self.records.apply_pod(convert::pod(&pod));
        self.emit(changes);
    }

    fn delete(&mut self, namespace: String, name: String) {
        let changes = self.records.delete_pod(&namespace, &name);
        self.emit(changes);
    }

    fn reset(&mut self, resources: Vec<core::Pod>, _removed: NamespacedRemoved) {
        let pods = resources.into_iter().map(|p| convert::pod(&p)).collect();
        let changes = self.records.reset_pods(pods);
        self.emit(changes);
    }
}
