//! The watch sink (feature `runtime`): Service, EndpointSlice and Pod watch
//! events go through [`convert`] into the
//! [`RecordIndex`]; the resulting per-name changes are sent to the
//! publisher, which hands them to the backends.
//!
//! [`follow`] feeds one watch into the sink the way the controller runs it:
//! every object is converted as it arrives, so an initial list is held as
//! the small record-model objects, never as the whole list of Kubernetes
//! objects, and applied as one reset once complete.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::ResourceExt;
use kube::runtime::watcher::{self, Event};
use parking_lot::RwLock;
use rancher_runtime::index::{IndexNamespacedResource, NamespacedRemoved};
use rancher_runtime::ready::Pending;
use tokio::sync::mpsc;

use crate::convert;
use crate::metrics::Metrics;
use crate::model::{Change, Options, ServiceKey};
use crate::object;
use crate::records::RecordIndex;

/// A watched kind: how its objects become record-model objects and reach
/// the [`RecordIndex`]. Implemented by the lean [`object`] types the
/// controller decodes and by the full `k8s-openapi` types.
pub trait Watched: kube::Resource<DynamicType = ()> + Sized {
    /// The record-model object.
    type Model;

    /// Converts an object, taking what it keeps from it.
    fn convert(self) -> convert::Result<Self::Model>;

    /// Adds or replaces one object.
    fn apply(records: &mut RecordIndex, model: Self::Model) -> Vec<Change>;

    /// Removes one object.
    fn delete(records: &mut RecordIndex, namespace: &str, name: &str) -> Vec<Change>;

    /// Replaces every object of the kind (a complete list).
    fn reset(records: &mut RecordIndex, models: Vec<Self::Model>) -> Vec<Change>;
}

macro_rules! watched {
    ($kind:ty, $model:ty, $convert:expr, $apply:ident, $delete:expr, $reset:ident) => {
        impl Watched for $kind {
            type Model = $model;

            fn convert(self) -> convert::Result<Self::Model> {
                ($convert)(self)
            }

            fn apply(records: &mut RecordIndex, model: Self::Model) -> Vec<Change> {
                records.$apply(model)
            }

            fn delete(records: &mut RecordIndex, namespace: &str, name: &str) -> Vec<Change> {
                $delete(records, namespace, name)
            }

            fn reset(records: &mut RecordIndex, models: Vec<Self::Model>) -> Vec<Change> {
                records.$reset(models)
            }
        }
    };
}

fn delete_service(records: &mut RecordIndex, namespace: &str, name: &str) -> Vec<Change> {
    records.delete_service(&ServiceKey::new(namespace, name))
}

watched!(
    object::Service,
    crate::model::Service,
    convert::service,
    apply_service,
    delete_service,
    reset_services
);
watched!(
    core::Service,
    crate::model::Service,
    |s: Self| convert::service((&s).into()),
    apply_service,
    delete_service,
    reset_services
);
watched!(
    object::EndpointSlice,
    crate::model::EndpointSlice,
    convert::endpoint_slice,
    apply_slice,
    RecordIndex::delete_slice,
    reset_slices
);
watched!(
    discovery::EndpointSlice,
    crate::model::EndpointSlice,
    |s: Self| convert::endpoint_slice((&s).into()),
    apply_slice,
    RecordIndex::delete_slice,
    reset_slices
);
watched!(
    object::Pod,
    crate::model::Pod,
    |p| Ok(convert::pod(p)),
    apply_pod,
    RecordIndex::delete_pod,
    reset_pods
);
watched!(
    core::Pod,
    crate::model::Pod,
    |p: Self| Ok(convert::pod((&p).into())),
    apply_pod,
    RecordIndex::delete_pod,
    reset_pods
);

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
        let mut records = RecordIndex::new(options);
        // Until the publisher takes the full state, changes would be dropped.
        records.set_changes_wanted(false);
        let index = Self {
            records,
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
        self.records.set_changes_wanted(true);
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

    /// Converts a listed object for [`DnsIndex::reset_models`]; an invalid
    /// one is logged, counted and left out.
    pub fn convert_listed<K: Watched>(&self, object: K) -> Option<K::Model> {
        object.convert().map_err(|e| self.invalid(&e)).ok()
    }

    /// Adds or replaces an object; an invalid one removes what it had.
    pub fn apply_object<K: Watched>(&mut self, object: K) {
        let key = (object.meta().namespace.clone(), object.meta().name.clone());
        let changes = match object.convert() {
            Ok(model) => K::apply(&mut self.records, model),
            Err(e) => {
                self.invalid(&e);
                let (ns, name) = key;
                K::delete(
                    &mut self.records,
                    ns.as_deref().unwrap_or_default(),
                    name.as_deref().unwrap_or_default(),
                )
            }
        };
        self.emit(changes);
    }

    /// Removes an object.
    pub fn delete_object<K: Watched>(&mut self, namespace: &str, name: &str) {
        let changes = K::delete(&mut self.records, namespace, name);
        self.emit(changes);
    }

    /// Replaces every object of kind `K` with a complete, converted list.
    pub fn reset_models<K: Watched>(&mut self, models: Vec<K::Model>) {
        let changes = K::reset(&mut self.records, models);
        self.emit(changes);
    }

    /// Replaces every object of kind `K`, converting each listed object and
    /// dropping it right away, so the index built next reuses its memory.
    fn reset_objects<K: Watched>(&mut self, objects: Vec<K>) {
        let models = objects
            .into_iter()
            .filter_map(|o| self.convert_listed(o))
            .collect();
        self.reset_models::<K>(models);
    }
}

/// Feeds a watch stream (from [`rancher_runtime::index::watch`]) into `sink`
/// until it ends; `ready` is marked once the first complete list is applied.
///
/// Each object is converted as it arrives: during an initial list only the
/// record-model objects are kept (a page of Kubernetes objects at a time is
/// all the watcher holds), and the complete list is applied as one reset.
/// Watch errors are logged; the stream retries with its backoff.
pub async fn follow<K, S>(sink: Arc<RwLock<DnsIndex>>, events: S, ready: Option<Pending>)
where
    K: Watched,
    S: Stream<Item = watcher::Result<Event<K>>>,
{
    let mut ready = ready;
    let mut listing: Option<Vec<K::Model>> = None;
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listing = Some(Vec::new()),
            Ok(Event::InitApply(object)) => match &mut listing {
                Some(models) => models.extend(sink.read().convert_listed(object)),
                None => sink.write().apply_object(object),
            },
            Ok(Event::InitDone) => {
                let models = listing.take().unwrap_or_default();
                sink.write().reset_models::<K>(models);
                if let Some(r) = ready.take() {
                    r.ready();
                }
            }
            Ok(Event::Apply(object)) => sink.write().apply_object(object),
            Ok(Event::Delete(object)) => {
                let ns = object.namespace().unwrap_or_default();
                sink.write().delete_object::<K>(&ns, &object.name_any());
            }
            Err(error) => {
                let kind = K::kind(&());
                tracing::warn!(%kind, error = &error as &dyn std::error::Error, "watch failed");
            }
        }
    }
}

impl IndexNamespacedResource<core::Service> for DnsIndex {
    fn apply(&mut self, svc: core::Service) {
        self.apply_object(svc);
    }

    fn delete(&mut self, namespace: String, name: String) {
        self.delete_object::<core::Service>(&namespace, &name);
    }

    fn reset(&mut self, resources: Vec<core::Service>, _removed: NamespacedRemoved) {
        self.reset_objects(resources);
    }
}

impl IndexNamespacedResource<discovery::EndpointSlice> for DnsIndex {
    fn apply(&mut self, slice: discovery::EndpointSlice) {
        self.apply_object(slice);
    }

    fn delete(&mut self, namespace: String, name: String) {
        self.delete_object::<discovery::EndpointSlice>(&namespace, &name);
    }

    fn reset(&mut self, resources: Vec<discovery::EndpointSlice>, _removed: NamespacedRemoved) {
        self.reset_objects(resources);
    }
}

impl IndexNamespacedResource<core::Pod> for DnsIndex {
    fn apply(&mut self, pod: core::Pod) {
        self.apply_object(pod);
    }

    fn delete(&mut self, namespace: String, name: String) {
        self.delete_object::<core::Pod>(&namespace, &name);
    }

    fn reset(&mut self, resources: Vec<core::Pod>, _removed: NamespacedRemoved) {
        self.reset_objects(resources);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use rancher_runtime::ready::Readiness;

    use super::*;

    fn svc(name: &str, ip: &str) -> core::Service {
        core::Service {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("ns".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(core::ServiceSpec {
                cluster_ip: Some(ip.to_owned()),
                cluster_ips: Some(vec![ip.to_owned()]),
                ..core::ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn a(sink: &RwLock<DnsIndex>, name: &str) -> Option<Vec<crate::model::RData>> {
        sink.read()
            .records()
            .get(&format!("{name}.ns.svc.cluster.local"))
    }

    #[tokio::test]
    async fn follow_converts_as_objects_arrive_and_resets_once_listed() {
        let metrics = Metrics::new();
        let (sink, mut changes) = DnsIndex::new(Options::default(), metrics.clone());
        let sink = Arc::new(RwLock::new(sink));
        sink.write().apply_object(svc("gone", "10.43.0.9"));
        let readiness = Readiness::new();
        let events = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(svc("web", "10.43.0.1"))),
            Ok(Event::InitApply(svc("Bad_Name", "10.43.0.2"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(svc("api", "10.43.0.3"))),
            Ok(Event::Delete(svc("web", "10.43.0.1"))),
        ]);
        sink.write().start_publishing();
        follow(sink.clone(), events, Some(readiness.register("services"))).await;

        assert!(readiness.is_ready(), "ready once the list is applied");
        assert!(a(&sink, "gone").is_none(), "not in the list: removed");
        assert!(a(&sink, "web").is_none(), "deleted after the list");
        assert_eq!(
            a(&sink, "api"),
            Some(vec![crate::model::RData::A("10.43.0.3".parse().unwrap())])
        );
        assert_eq!(metrics.skipped_objects.get(), 1, "the invalid Service");
        let mut names = Vec::new();
        while let Ok(batch) = changes.try_recv() {
            names.extend(batch.iter().map(|c| c.name().to_owned()));
        }
        for name in ["gone", "web", "api"] {
            let name = format!("{name}.ns.svc.cluster.local");
            assert!(names.contains(&name), "{name} published: {names:?}");
        }
    }
}
