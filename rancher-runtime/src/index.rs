//! Watch plumbing written once: sink traits that an index implements per resource,
//! and driver functions that feed a [`kube::runtime::watcher()`] stream into them.
//!
//! The shape follows kubert's `index` module. An index is shared as
//! `Arc<parking_lot::RwLock<I>>` between the watch drivers (writers) and whatever
//! reads it; each sink method runs with the write lock held, so readers never see a
//! half-applied event.
//!
//! On the first list (and on every re-list after a watch was lost) the driver
//! buffers the listed objects and calls `reset` once with the complete set and the
//! keys that disappeared since the last list, then marks its [`Pending`] ready.

use std::{
    collections::{HashMap, HashSet},
    fmt::Debug,
    sync::Arc,
};

use futures::{Stream, StreamExt};
use kube::{
    Resource, ResourceExt,
    runtime::watcher::{self, Event},
};
use parking_lot::RwLock;

use crate::ready::Pending;

/// Names removed from a namespaced resource, by namespace.
pub type NamespacedRemoved = HashMap<String, HashSet<String>>;

/// Names removed from a cluster-scoped resource.
pub type ClusterRemoved = HashSet<String>;

/// A sink for watch events of a namespaced resource.
pub trait IndexNamespacedResource<T> {
    /// An object was created or changed.
    fn apply(&mut self, resource: T);

    /// The object `namespace/name` was deleted.
    fn delete(&mut self, namespace: String, name: String);

    /// The watch (re)listed: `resources` is the complete current set and `removed`
    /// names the objects seen before that are gone now.
    ///
    /// The default deletes the removed objects, then applies every listed one. An
    /// index that publishes a snapshot after each change should override this to
    /// publish once.
    fn reset(&mut self, resources: Vec<T>, removed: NamespacedRemoved) {
        for (namespace, names) in removed {
            for name in names {
                self.delete(namespace.clone(), name);
            }
        }
        for resource in resources {
            self.apply(resource);
        }
    }
}

/// A sink for watch events of a cluster-scoped resource.
pub trait IndexClusterResource<T> {
    /// An object was created or changed.
    fn apply(&mut self, resource: T);

    /// The object `name` was deleted.
    fn delete(&mut self, name: String);

    /// The watch (re)listed; see [`IndexNamespacedResource::reset`].
    fn reset(&mut self, resources: Vec<T>, removed: ClusterRemoved) {
        for name in removed {
            self.delete(name);
        }
        for resource in resources {
            self.apply(resource);
        }
    }
}

/// A watch stream to hand to [`namespaced`] or [`cluster`]: [`crate::watch::watch`],
/// which retries within seconds, resumes from the last resourceVersion, lists
/// again on 410 Gone and restarts a stalled watch. Add
/// [`tracked`](crate::watch::Watch::tracked) so `/readyz` and `/metrics` report
/// when its view is stale.
pub fn watch<K>(api: kube::Api<K>, config: watcher::Config) -> crate::watch::Watch<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + Debug + Send + 'static,
{
    crate::watch::watch(api, config)
}

/// Feeds a namespaced resource's watch events into `index` until the stream ends.
///
/// `ready` is marked ready after the first complete list has been applied. Watch
/// errors are logged; the stream (built with [`watch`]) retries on its own.
pub async fn namespaced<T, I, S>(index: Arc<RwLock<I>>, events: S, ready: Option<Pending>)
where
    T: Resource + Send,
    T::DynamicType: Default,
    I: IndexNamespacedResource<T>,
    S: Stream<Item = watcher::Result<Event<T>>>,
{
    let mut known: HashMap<String, HashSet<String>> = HashMap::new();
    drive(events, ready, |batch| match batch {
        Batch::Apply(resource) => {
            let namespace = resource.namespace().unwrap_or_default();
            known
                .entry(namespace)
                .or_default()
                .insert(resource.name_any());
            index.write().apply(resource);
        }
        Batch::Delete(resource) => {
            let namespace = resource.namespace().unwrap_or_default();
            let name = resource.name_any();
            if let Some(names) = known.get_mut(&namespace) {
                names.remove(&name);
            }
            index.write().delete(namespace, name);
        }
        Batch::Reset(resources) => {
            let mut listed: HashMap<String, HashSet<String>> = HashMap::new();
            for resource in &resources {
                listed
                    .entry(resource.namespace().unwrap_or_default())
                    .or_default()
                    .insert(resource.name_any());
            }
            let mut removed = NamespacedRemoved::new();
            for (namespace, names) in &known {
                let still = listed.get(namespace);
                let gone: HashSet<String> = names
                    .iter()
                    .filter(|name| still.is_none_or(|s| !s.contains(*name)))
                    .cloned()
                    .collect();
                if !gone.is_empty() {
                    removed.insert(namespace.clone(), gone);
                }
            }
            known = listed;
            index.write().reset(resources, removed);
        }
    })
    .await;
}

/// Feeds a cluster-scoped resource's watch events into `index` until the stream
/// ends; see [`namespaced`].
pub async fn cluster<T, I, S>(index: Arc<RwLock<I>>, events: S, ready: Option<Pending>)
where
    T: Resource + Send,
    T::DynamicType: Default,
    I: IndexClusterResource<T>,
    S: Stream<Item = watcher::Result<Event<T>>>,
{
    let mut known: HashSet<String> = HashSet::new();
    drive(events, ready, |batch| match batch {
        Batch::Apply(resource) => {
            known.insert(resource.name_any());
            index.write().apply(resource);
        }
        Batch::Delete(resource) => {
            let name = resource.name_any();
            known.remove(&name);
            index.write().delete(name);
        }
        Batch::Reset(resources) => {
            let listed: HashSet<String> = resources.iter().map(ResourceExt::name_any).collect();
            let removed = known.difference(&listed).cloned().collect();
            known = listed;
            index.write().reset(resources, removed);
        }
    })
    .await;
}

enum Batch<T> {
    Apply(T),
    Delete(T),
    Reset(Vec<T>),
}

async fn drive<T, S>(events: S, mut ready: Option<Pending>, mut sink: impl FnMut(Batch<T>))
where
    T: Resource,
    T::DynamicType: Default,
    S: Stream<Item = watcher::Result<Event<T>>>,
{
    let kind = T::kind(&Default::default()).into_owned();
    let mut events = std::pin::pin!(events);
    let mut buffer: Option<Vec<T>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => buffer = Some(Vec::new()),
            Ok(Event::InitApply(resource)) => match &mut buffer {
                Some(buffer) => buffer.push(resource),
                None => sink(Batch::Apply(resource)),
            },
            Ok(Event::InitDone) => {
                sink(Batch::Reset(buffer.take().unwrap_or_default()));
                if let Some(ready) = ready.take() {
                    tracing::debug!(%kind, "initial list applied");
                    ready.ready();
                }
            }
            Ok(Event::Apply(resource)) => sink(Batch::Apply(resource)),
            Ok(Event::Delete(resource)) => sink(Batch::Delete(resource)),
            Err(error) => {
                tracing::warn!(%kind, error = &error as &dyn std::error::Error, "watch failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ready::Readiness;
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use kube::api::ObjectMeta;

    #[derive(Default)]
    struct Names {
        applied: Vec<String>,
        deleted: Vec<String>,
        resets: usize,
    }

    impl IndexNamespacedResource<Service> for Names {
        fn apply(&mut self, svc: Service) {
            self.applied
                .push(format!("{}/{}", svc.namespace().unwrap(), svc.name_any()));
        }
        fn delete(&mut self, namespace: String, name: String) {
            self.deleted.push(format!("{namespace}/{name}"));
        }
        fn reset(&mut self, resources: Vec<Service>, removed: NamespacedRemoved) {
            self.resets += 1;
            for (ns, names) in removed {
                for name in names {
                    IndexNamespacedResource::<Service>::delete(self, ns.clone(), name);
                }
            }
            for r in resources {
                IndexNamespacedResource::apply(self, r);
            }
        }
    }

    impl IndexClusterResource<Namespace> for Names {
        fn apply(&mut self, ns: Namespace) {
            self.applied.push(ns.name_any());
        }
        fn delete(&mut self, name: String) {
            self.deleted.push(name);
        }
    }

    fn svc(ns: &str, name: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn ns(name: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn relist_deletes_what_disappeared_and_marks_ready_once() {
        let readiness = Readiness::new();
        let index = Arc::new(RwLock::new(Names::default()));
        let events = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(svc("a", "one"))),
            Ok(Event::InitApply(svc("a", "two"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(svc("b", "three"))),
            Ok(Event::Delete(svc("a", "one"))),
            // The watch was lost and re-listed: a/two is gone.
            Ok(Event::Init),
            Ok(Event::InitApply(svc("b", "three"))),
            Ok(Event::InitDone),
        ]);
        namespaced(index.clone(), events, Some(readiness.register("services"))).await;
        let names = index.read();
        assert!(readiness.is_ready());
        assert_eq!(names.resets, 2);
        assert_eq!(
            names.applied,
            ["a/one", "a/two", "b/three", "b/three"].map(String::from)
        );
        assert_eq!(names.deleted, ["a/one", "a/two"].map(String::from));
    }

    #[tokio::test]
    async fn not_ready_before_the_first_list_completes() {
        let readiness = Readiness::new();
        let index = Arc::new(RwLock::new(Names::default()));
        let events = futures::stream::iter(vec![Ok(Event::Init), Ok(Event::InitApply(ns("x")))]);
        cluster(
            index.clone(),
            events,
            Some(readiness.register("namespaces")),
        )
        .await;
        assert!(!readiness.is_ready());
        assert!(index.read().applied.is_empty(), "buffered until InitDone");
    }

    #[tokio::test]
    async fn cluster_relist_deletes_missing_names() {
        let index = Arc::new(RwLock::new(Names::default()));
        let events = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(ns("x"))),
            Ok(Event::InitApply(ns("y"))),
            Ok(Event::InitDone),
            Ok(Event::Init),
            Ok(Event::InitApply(ns("y"))),
            Ok(Event::InitDone),
        ]);
        cluster(index.clone(), events, None).await;
        assert_eq!(index.read().deleted, ["x".to_string()]);
    }
}
