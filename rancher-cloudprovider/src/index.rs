//! The controller's in-memory view of Services, Nodes and EndpointSlices, fed by
//! the watch drivers of [`rancher_runtime::index`]. Every change that can matter to
//! a load balancer queues the affected Services (and Nodes, for the node
//! controller).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use k8s_openapi::api::{
    core::v1::{Node, Service},
    discovery::v1::EndpointSlice,
};
use kube::ResourceExt;
use rancher_runtime::{
    index::{IndexClusterResource, IndexNamespacedResource},
    queue::Queue,
};

use crate::{
    convert,
    model::{self, ServiceKey},
    well_known::{
        EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS, LOAD_BALANCER_CLEANUP_FINALIZER, SERVICE_NAME_LABEL,
        TO_BE_DELETED_BY_CLUSTER_AUTOSCALER,
    },
};

/// What identifies a node as a backend: a change to any of it re-syncs the load
/// balancers. Readiness is deliberately not part of it (KEP-3458).
type NodeFingerprint = (String, Option<String>, Vec<model::NodeAddress>);

/// Services, Nodes and EndpointSlices as last seen, plus the queues they feed.
pub struct Index {
    class: Option<String>,
    services: HashMap<ServiceKey, Arc<Service>>,
    nodes: BTreeMap<String, Arc<Node>>,
    slices: HashMap<ServiceKey, BTreeMap<String, Arc<EndpointSlice>>>,
    /// The Service each slice (by namespace and name) is filed under, so that a
    /// deleted or relabelled slice is found without a scan.
    slice_owners: HashMap<(String, String), ServiceKey>,
    eligible: Vec<NodeFingerprint>,
    service_queue: Queue<ServiceKey>,
    node_queue: Option<Queue<String>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("services", &self.services.len())
            .field("nodes", &self.nodes.len())
            .field("eligible", &self.eligible.len())
            .finish_non_exhaustive()
    }
}

impl Index {
    /// An empty index for a controller serving load balancer class `class`
    /// (`None`: Services without a class). Service keys go to `service_queue`,
    /// node names to `node_queue` when a node controller runs.
    pub fn new(
        class: Option<String>,
        service_queue: Queue<ServiceKey>,
        node_queue: Option<Queue<String>>,
    ) -> Self {
        Self {
            class,
            services: HashMap::new(),
            nodes: BTreeMap::new(),
            slices: HashMap::new(),
            slice_owners: HashMap::new(),
            eligible: Vec::new(),
            service_queue,
            node_queue,
        }
    }

    /// The Service `key`, if it exists.
    pub fn service(&self, key: &ServiceKey) -> Option<Arc<Service>> {
        self.services.get(key).cloned()
    }

    /// The Node `name`, if it exists.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(name).cloned()
    }

    /// The EndpointSlices of Service `key`.
    pub fn slices(&self, key: &ServiceKey) -> Vec<Arc<EndpointSlice>> {
        self.slices
            .get(key)
            .map(|slices| slices.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The load balancer class this controller serves.
    pub fn class(&self) -> Option<&str> {
        self.class.as_deref()
    }

    /// Nodes eligible as load balancer backends, sorted by name: not being
    /// deleted, not labelled `node.kubernetes.io/exclude-from-external-load-balancers`,
    /// not tainted `ToBeDeletedByClusterAutoscaler`. Readiness does not matter.
    pub fn eligible_nodes(&self) -> Vec<model::Node> {
        self.nodes
            .values()
            .filter(|node| eligible(node))
            .map(|node| convert::node(node))
            .collect()
    }

    /// Whether Service `key` is (or was) handled by this controller.
    fn relevant(&self, service: &Service) -> bool {
        convert::wants_load_balancer(service, self.class())
            || service
                .finalizers()
                .iter()
                .any(|f| f == LOAD_BALANCER_CLEANUP_FINALIZER)
    }

    /// Keys of every Service this controller handles.
    pub fn load_balancer_services(&self) -> Vec<ServiceKey> {
        self.services
            .iter()
            .filter(|(_, service)| self.relevant(service))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Queues Service `key` again.
    pub fn requeue(&self, key: &ServiceKey) {
        self.service_queue.add(key.clone());
    }

    /// Queues every Service this controller handles (a resync).
    pub fn queue_all(&self) {
        for key in self.load_balancer_services() {
            self.service_queue.add(key);
        }
        if let Some(queue) = &self.node_queue {
            for name in self.nodes.keys() {
                queue.add(name.clone());
            }
        }
    }

    fn nodes_changed(&mut self) {
        let eligible: Vec<NodeFingerprint> = self
            .nodes
            .values()
            .filter(|node| eligible(node))
            .map(|node| {
                let node = convert::node(node);
                (node.name, node.provider_id, node.addresses)
            })
            .collect();
        if eligible != self.eligible {
            self.eligible = eligible;
            for key in self.load_balancer_services() {
                self.service_queue.add(key);
            }
        }
    }
}

fn eligible(node: &Node) -> bool {
    node.metadata.deletion_timestamp.is_none()
        && !node
            .labels()
            .contains_key(EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS)
        && !node
            .spec
            .as_ref()
            .and_then(|spec| spec.taints.as_ref())
            .is_some_and(|taints| {
                taints
                    .iter()
                    .any(|t| t.key == TO_BE_DELETED_BY_CLUSTER_AUTOSCALER)
            })
}

impl IndexNamespacedResource<Service> for Index {
    fn apply(&mut self, service: Service) {
        let key = convert::service_key(&service);
        let previous = self.services.insert(key.clone(), Arc::new(service));
        let now = self.services.get(&key).is_some_and(|s| self.relevant(s));
        let before = previous.is_some_and(|s| self.relevant(&s));
        if now || before {
            self.service_queue.add(key);
        }
    }

    fn delete(&mut self, namespace: String, name: String) {
        let key = ServiceKey::new(namespace, name);
        if self.services.remove(&key).is_some() {
            // The controller forgets (or, without a finalizer, cleans up) it.
            self.service_queue.add(key);
        }
    }
}

impl IndexClusterResource<Node> for Index {
    fn apply(&mut self, node: Node) {
        let name = node.name_any();
        self.nodes.insert(name.clone(), Arc::new(node));
        if let Some(queue) = &self.node_queue {
            queue.add(name);
        }
        self.nodes_changed();
    }

    fn delete(&mut self, name: String) {
        if self.nodes.remove(&name).is_some() {
            self.nodes_changed();
        }
    }

    fn reset(&mut self, nodes: Vec<Node>, removed: rancher_runtime::index::ClusterRemoved) {
        for name in removed {
            self.nodes.remove(&name);
        }
        for node in nodes {
            let name = node.name_any();
            if let Some(queue) = &self.node_queue {
                queue.add(name.clone());
            }
            self.nodes.insert(name, Arc::new(node));
        }
        self.nodes_changed();
    }
}

fn slice_owner(slice: &EndpointSlice) -> Option<ServiceKey> {
    Some(ServiceKey::new(
        slice.namespace()?,
        slice.labels().get(SERVICE_NAME_LABEL)?.clone(),
    ))
}

impl Index {
    /// Takes slice `namespace/name` out from under the Service it was filed
    /// under, dropping that Service's entry once it has no slices left, and
    /// returns that Service.
    fn unfile_slice(&mut self, namespace: &str, name: &str) -> Option<ServiceKey> {
        let owner = self
            .slice_owners
            .remove(&(namespace.to_owned(), name.to_owned()))?;
        if let Some(slices) = self.slices.get_mut(&owner) {
            slices.remove(name);
            if slices.is_empty() {
                self.slices.remove(&owner);
            }
        }
        Some(owner)
    }

    /// Queues Service `key` if this controller handles it.
    fn queue_if_relevant(&self, key: ServiceKey) {
        if self.services.get(&key).is_some_and(|s| self.relevant(s)) {
            self.service_queue.add(key);
        }
    }
}

impl IndexNamespacedResource<EndpointSlice> for Index {
    fn apply(&mut self, slice: EndpointSlice) {
        let namespace = slice.namespace().unwrap_or_default();
        let name = slice.name_any();
        let owner = slice_owner(&slice);
        // A slice moving to another Service (relabelled) or losing its label
        // leaves its old owner.
        if let Some(previous) = self.unfile_slice(&namespace, &name)
            && Some(&previous) != owner.as_ref()
        {
            self.queue_if_relevant(previous);
        }
        let Some(key) = owner else {
            return;
        };
        self.slice_owners
            .insert((namespace, name.clone()), key.clone());
        self.slices
            .entry(key.clone())
            .or_default()
            .insert(name, Arc::new(slice));
        self.queue_if_relevant(key);
    }

    fn delete(&mut self, namespace: String, name: String) {
        if let Some(owner) = self.unfile_slice(&namespace, &name) {
            self.queue_if_relevant(owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lb_service(name: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}
        }))
        .expect("service")
    }

    fn slice(name: &str, service: Option<&str>) -> EndpointSlice {
        let labels = service.map(|s| json!({ SERVICE_NAME_LABEL: s }));
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "addressType": "IPv4",
            "endpoints": []
        }))
        .expect("slice")
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("default", name)
    }

    #[test]
    fn deleted_slices_leave_nothing_behind() {
        let mut index = Index::new(None, Queue::new(), None);
        for i in 0..100 {
            let name = format!("app-{i}");
            IndexNamespacedResource::<Service>::apply(&mut index, lb_service(&name));
            IndexNamespacedResource::<EndpointSlice>::apply(
                &mut index,
                slice(&format!("{name}-1"), Some(&name)),
            );
            IndexNamespacedResource::<EndpointSlice>::delete(
                &mut index,
                "default".into(),
                format!("{name}-1"),
            );
            IndexNamespacedResource::<Service>::delete(&mut index, "default".into(), name);
        }
        assert!(
            index.slices.is_empty(),
            "{} services kept",
            index.slices.len()
        );
        assert!(index.slice_owners.is_empty());
    }

    /// Takes every waiting key off `queue`.
    async fn drain(queue: &Queue<ServiceKey>) -> Vec<ServiceKey> {
        let mut keys = Vec::new();
        while !queue.is_empty() {
            let Some(key) = queue.next().await else { break };
            queue.done(&key);
            keys.push(key);
        }
        keys.sort();
        keys
    }

    #[tokio::test]
    async fn a_relabelled_slice_moves_and_queues_both_services() {
        let queue = Queue::new();
        let mut index = Index::new(None, queue.clone(), None);
        IndexNamespacedResource::<Service>::apply(&mut index, lb_service("a"));
        IndexNamespacedResource::<Service>::apply(&mut index, lb_service("b"));
        IndexNamespacedResource::<EndpointSlice>::apply(&mut index, slice("s", Some("a")));
        drain(&queue).await;
        IndexNamespacedResource::<EndpointSlice>::apply(&mut index, slice("s", Some("b")));
        assert!(index.slices(&key("a")).is_empty());
        assert_eq!(index.slices(&key("b")).len(), 1);
        assert_eq!(
            drain(&queue).await,
            [key("a"), key("b")],
            "old and new owner"
        );

        // Losing the label takes it away from its owner too.
        IndexNamespacedResource::<EndpointSlice>::apply(&mut index, slice("s", None));
        assert!(index.slices(&key("b")).is_empty());
        assert!(index.slices.is_empty() && index.slice_owners.is_empty());
    }
}
