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

impl IndexNamespacedResource<EndpointSlice> for Index {
    fn apply(&mut self, slice: EndpointSlice) {
        let Some(key) = slice_owner(&slice) else {
            return;
        };
        let name = slice.name_any();
        // A slice moving to another Service (relabelled) leaves its old owner.
        for (owner, slices) in &mut self.slices {
            if owner != &key && slices.remove(&name).is_some() {
                self.service_queue.add(owner.clone());
            }
        }
        self.slices
            .entry(key.clone())
            .or_default()
            .insert(name, Arc::new(slice));
        if self.services.get(&key).is_some_and(|s| self.relevant(s)) {
            self.service_queue.add(key);
        }
    }

    fn delete(&mut self, namespace: String, name: String) {
        let mut touched = Vec::new();
        for (owner, slices) in &mut self.slices {
            if owner.namespace == namespace && slices.remove(&name).is_some() {
                touched.push(owner.clone());
            }
        }
        for key in touched {
            if self.services.get(&key).is_some_and(|s| self.relevant(s)) {
                self.service_queue.add(key);
            }
        }
    }
}
