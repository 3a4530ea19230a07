//! Workloads: what a cluster runs besides its API server when the builder asks for it
//! ([`SandboxBuilder::workloads`](crate::SandboxBuilder::workloads)): the controllers of
//! kube-controller-manager that users rely on, a scheduler, and sandbox nodes that run
//! pods.
//!
//! Each controller is a small module over the store's watch and write calls, driven by one loop:
//!
//! | module | what |
//! | --- | --- |
//! | `deployment` | Deployment → ReplicaSets: rolling update (`maxSurge`/`maxUnavailable`) or recreate, revisions, `kubectl rollout status` |
//! | `replicaset` | ReplicaSet → pods from the template |
//! | `statefulset` | StatefulSet → pods `NAME-0..N-1` in order, with `hostname` and `subdomain` |
//! | `daemonset` | DaemonSet → one pod per eligible node |
//! | `endpointslice` | Services with selectors → EndpointSlices, labelled as upstream's |
//! | `gc` | ownerReferences: background, foreground and orphan deletion |
//! | `nodeipam` | Node `spec.podCIDRs`: a /24 per node from the cluster range |
//! | `scheduler` | binds pods to nodes, or reports them `Unschedulable` |
//! | `node` | the kubelet of each sandbox node: echo servers on the pods' ports, pod status, logs |
//!
//! Pods do not run their images: each container port is served by a built-in echo
//! server (an HTTP request is answered with the pod's name and the path, any other TCP
//! connection with the pod's name). In loopback mode a pod's address is a loopback
//! address mirroring its node range: the pod `10.42.N.H` is served on `127.B.N.H`, with
//! `B` picked at random per cluster ([`Cluster::pod_network`](crate::Cluster::pod_network)).

pub(crate) mod daemonset;
pub(crate) mod deployment;
pub(crate) mod endpointslice;
pub(crate) mod events;
pub(crate) mod gc;
pub(crate) mod node;
pub(crate) mod nodeipam;
pub(crate) mod objects;
pub(crate) mod replicaset;
pub(crate) mod runner;
pub(crate) mod scheduler;
pub(crate) mod statefulset;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

pub use self::deployment::{POD_TEMPLATE_HASH, REVISION};
pub use self::endpointslice::{HEADLESS_LABEL, MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
pub use self::node::KUBELET_VERSION;
pub use self::node::cni::CniNetwork;
pub use self::nodeipam::{DEFAULT_CLUSTER_CIDR, NODE_MASK};
pub use self::statefulset::{POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL};
use crate::server::Shared;

/// What a cluster runs besides its API server: controllers, a scheduler and sandbox nodes.
#[derive(Debug, Clone)]
#[must_use]
pub struct Workloads {
    nodes: Vec<SandboxNode>,
    cluster_cidr: String,
    network: PodNetwork,
}

impl Default for Workloads {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            cluster_cidr: DEFAULT_CLUSTER_CIDR.to_string(),
            network: PodNetwork::Loopback,
        }
    }
}

impl Workloads {
    /// Controllers, a scheduler, and (unless [`node`](Self::node) adds others) one node,
    /// `sandbox-node-1` on `127.0.0.1`; cluster range `10.42.0.0/16`; loopback pods.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sandbox node (in order; the first added replaces the default node).
    pub fn node(mut self, node: SandboxNode) -> Self {
        self.nodes.push(node);
        self
    }

    /// The IPv4 range node ranges come from, a /24 each (default `10.42.0.0/16`).
    pub fn cluster_cidr(mut self, cidr: impl Into<String>) -> Self {
        self.cluster_cidr = cidr.into();
        self
    }

    /// How pods get their addresses (default [`PodNetwork::Loopback`]).
    pub fn pod_network(mut self, network: PodNetwork) -> Self {
        self.network = network;
        self
    }

    /// The nodes, the default one when none was added.
    pub fn nodes(&self) -> Vec<SandboxNode> {
        if self.nodes.is_empty() {
            vec![SandboxNode::new(
                "sandbox-node-1",
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            )]
        } else {
            self.nodes.clone()
        }
    }
}

/// How pods get their addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PodNetwork {
    /// A loopback address per pod, mirroring the node's range (needs no privileges; ports
    /// below 1024 need root or a lowered `net.ipv4.ip_unprivileged_port_start`).
    Loopback,
    /// Root mode: a network namespace per pod, wired by a CNI plugin (`rancher-cni`)
    /// called as a container runtime calls it, with a real address from the node's
    /// range on a bridge per node, reachable from the host. Needs root and `ip`
    /// (iproute2); namespaces, veths and bridges go when the sandbox stops.
    Cni(CniNetwork),
}

/// A node the sandbox runs: its Node object and a kubelet for the pods bound to it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct SandboxNode {
    pub(crate) name: String,
    pub(crate) address: IpAddr,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) taints: Vec<(String, String, String)>,
}

impl SandboxNode {
    /// A node named `name` whose `InternalIP` (the pods' `hostIP`) is `address`.
    pub fn new(name: impl Into<String>, address: IpAddr) -> Self {
        Self {
            name: name.into(),
            address,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    /// Adds a label to the Node (beside `kubernetes.io/hostname`, `kubernetes.io/os`
    /// and `kubernetes.io/arch`).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a taint (`effect`: `NoSchedule`, `PreferNoSchedule` or `NoExecute`).
    pub fn taint(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        effect: impl Into<String>,
    ) -> Self {
        self.taints.push((key.into(), value.into(), effect.into()));
        self
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's address.
    pub fn address(&self) -> IpAddr {
        self.address
    }
}

/// Errors starting a cluster's workloads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cluster range is not an IPv4 network of /8 to /24.
    #[error(
        "invalid cluster CIDR {0:?}: expected an IPv4 network such as 10.42.0.0/16 with a prefix of /8 to /24"
    )]
    ClusterCidr(String),
    /// Two nodes have the same name.
    #[error("two sandbox nodes are named {0:?}")]
    DuplicateNode(String),
}

/// What a cluster's workloads were started with, for [`Cluster`](crate::Cluster).
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub(crate) pod_network: String,
}

/// Checks the configuration before anything starts.
pub(crate) fn check(config: &Workloads) -> Result<(), Error> {
    if nodeipam::NodeIpam::new(&config.cluster_cidr).is_none() {
        return Err(Error::ClusterCidr(config.cluster_cidr.clone()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for n in config.nodes() {
        if !seen.insert(n.name.clone()) {
            return Err(Error::DuplicateNode(n.name));
        }
    }
    Ok(())
}

/// Starts every controller of a cluster on its store.
pub(crate) fn start(shared: &Arc<Shared>, config: &Workloads) -> Result<Running, Error> {
    check(config)?;
    let ipam = nodeipam::NodeIpam::new(&config.cluster_cidr)
        .ok_or_else(|| Error::ClusterCidr(config.cluster_cidr.clone()))?;
    shared.store.lock().garbage_collector = true;
    let octet = node::network::Loopback::random_octet();
    let mut agent = node::NodeAgent::new(
        &config.nodes(),
        (&config.network, octet),
        shared.logs.clone(),
        shared.shutdown.clone(),
    );
    // The nodes exist before any controller runs: the scheduler never sees
    // the seeded pods with no node to bind them to (a FailedScheduling
    // Warning on a clean start).
    agent.register_all(&mut shared.store.lock());
    runner::spawn(shared.clone(), ipam);
    runner::spawn(shared.clone(), agent);
    runner::spawn(shared.clone(), scheduler::Scheduler::new());
    runner::spawn(shared.clone(), deployment::Deployments::new());
    runner::spawn(shared.clone(), replicaset::ReplicaSets::new());
    runner::spawn(shared.clone(), statefulset::StatefulSets::new());
    runner::spawn(shared.clone(), daemonset::DaemonSets::new());
    runner::spawn(shared.clone(), endpointslice::EndpointSlices::new());
    runner::spawn(shared.clone(), gc::Collector::new());
    Ok(Running {
        pod_network: match &config.network {
            PodNetwork::Loopback => node::loopback_network(octet),
            PodNetwork::Cni(_) => config.cluster_cidr.clone(),
        },
    })
}
