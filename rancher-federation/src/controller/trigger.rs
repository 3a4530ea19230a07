//! Requeueing a federation when a host object naming it changes.

use std::{collections::HashMap, sync::Arc};

use kube::{Api, Resource, runtime::watcher};
use parking_lot::RwLock;
use rancher_runtime::{
    index::{self, IndexNamespacedResource},
    queue::Queue,
    ready::{Pending, WatchTracker},
};
use tokio_util::sync::CancellationToken;

/// Requeues a federation whenever an object naming it changes.
struct Trigger<T> {
    queue: Queue<String>,
    key: fn(&T) -> Option<String>,
    known: HashMap<(String, String), String>,
}

impl<T: Resource> IndexNamespacedResource<T> for Trigger<T> {
    fn apply(&mut self, resource: T) {
        let id = (
            resource.meta().namespace.clone().unwrap_or_default(),
            resource.meta().name.clone().unwrap_or_default(),
        );
        let key = (self.key)(&resource);
        if let Some(previous) = self.known.remove(&id)
            && Some(&previous) != key.as_ref()
        {
            self.queue.add(previous);
        }
        if let Some(key) = key {
            self.known.insert(id, key.clone());
            self.queue.add(key);
        }
    }

    fn delete(&mut self, namespace: String, name: String) {
        if let Some(key) = self.known.remove(&(namespace, name)) {
            self.queue.add(key);
        }
    }
}

pub(super) fn spawn_trigger<T>(
    api: Api<T>,
    config: watcher::Config,
    queue: Queue<String>,
    key: fn(&T) -> Option<String>,
    ready: Option<(Pending, WatchTracker)>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    T: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let sink = Arc::new(RwLock::new(Trigger {
        queue,
        key,
        known: HashMap::new(),
    }));
    tokio::spawn(async move {
        let (ready, tracker) = ready.unzip();
        let mut events = index::watch(api, config);
        if let Some(tracker) = tracker {
            events = events.tracked(tracker);
        }
        tokio::select! {
            () = index::namespaced(sink, events, ready) => {}
            () = shutdown.cancelled() => {}
        }
    })
}
