//! Sandbox nodes: a kubelet for each node the builder names. It registers the Node, runs
//! every pod bound to it (each container port an echo server on the pod's address) and
//! writes the pod status a kubelet writes; a container whose port cannot be bound is
//! restarted with back-off, as a crashing container is. In root mode the CNI plugin is
//! called away from the store's lock, so the API server answers while pods are wired.
//!
//! | module | what |
//! | --- | --- |
//! | `register` | the Node object and its status |
//! | `run` | a pod's address, its containers, their restarts, the pod status |
//! | `ports` | the containers' sockets, and ports Services target |
//! | `network` | loopback addresses |
//! | `cni`, `wiring` | root mode: the CNI calls, and the threads they run on |
//! | `echo`, `logs` | the echo server, and what `kubectl logs` shows |

pub(crate) mod cni;
pub(crate) mod echo;
pub(crate) mod logs;
pub(crate) mod network;
mod ports;
mod register;
mod run;
mod wiring;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::logs::PodLogs;
use self::network::Loopback;
use self::wiring::{Place, Wiring};
use super::events::Recorder;
use super::objects::{self, Key, Writer, meta};
use super::runner::Reconciler;
use super::{PodNetwork, SandboxNode};
use crate::store::{Change, State};

/// The kubelet's name in events and field managers.
pub(crate) const NAME: &str = "kubelet";
/// The version nodes report (`kubectl get nodes`).
pub const KUBELET_VERSION: &str = "v1.32.0-sandbox";
/// How often an address is tried again when its port is taken, before the pod's
/// containers are reported as failing.
const ADDRESS_TRIES: usize = 8;
/// The first and the longest back-off of a failing container, as the kubelet's.
const BACKOFF: (u64, u64) = (10, 300);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum NodeKey {
    Node(String),
    Pod(Key),
}

/// One container: running, or failing to start.
#[derive(Debug)]
struct Container {
    name: String,
    image: String,
    id: String,
    started_at: String,
    restarts: u32,
    failure: Option<Failure>,
}

#[derive(Debug)]
struct Failure {
    message: String,
    finished_at: String,
    retry_at: Instant,
    backoff: u64,
}

/// A pod this node runs.
#[derive(Debug)]
struct RunningPod {
    uid: String,
    ip: IpAddr,
    /// Whether `ip` came from the loopback allocator (and goes back to it).
    allocated: bool,
    host_ip: IpAddr,
    start_time: String,
    stop: CancellationToken,
    containers: Vec<Container>,
    /// Ports served without being declared (the Services' target ports).
    inferred: BTreeSet<(u16, String)>,
    /// Root mode: the pod's namespace, and where it is wired.
    netns: Option<(String, Place)>,
}

pub(crate) struct NodeAgent {
    nodes: BTreeMap<String, SandboxNode>,
    pods: HashMap<Key, RunningPod>,
    /// Pods bound here waiting for the node's range.
    waiting: BTreeSet<Key>,
    net: Loopback,
    /// Root mode: pods in namespaces of their own, wired by the CNI plugin.
    wiring: Option<Wiring>,
    /// Pods whose CNI call returned, for the loop (taken when it starts).
    wakeups: Option<UnboundedReceiver<NodeKey>>,
    /// The sandbox stops: pods are unwired at once, not on threads.
    closing: bool,
    logs: Arc<PodLogs>,
    shutdown: CancellationToken,
    writer: Writer,
    events: Recorder,
}

fn container_id(uid: &str, name: &str, restarts: u32) -> String {
    let short: String = uid.chars().filter(|c| *c != '-').take(12).collect();
    format!("sandbox://{short}-{name}-{restarts}")
}

impl NodeAgent {
    pub(crate) fn new(
        nodes: &[SandboxNode],
        (network, loopback_octet): (&PodNetwork, u8),
        logs: Arc<PodLogs>,
        shutdown: CancellationToken,
    ) -> Self {
        let (wake, wakeups) = unbounded_channel();
        Self {
            nodes: nodes.iter().map(|n| (n.name.clone(), n.clone())).collect(),
            pods: HashMap::new(),
            waiting: BTreeSet::new(),
            net: Loopback::new(loopback_octet),
            wiring: match network {
                PodNetwork::Cni(c) => Some(Wiring::new(c.clone(), wake)),
                PodNetwork::Loopback => None,
            },
            wakeups: Some(wakeups),
            closing: false,
            logs,
            shutdown,
            writer: Writer { manager: NAME },
            events: Recorder::new(NAME),
        }
    }

    fn ours(&self, pod: &Value) -> bool {
        pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| self.nodes.contains_key(n))
    }

    /// The bridge of a node in root mode (nodes are numbered in name order).
    fn bridge(&self, node: &str) -> String {
        let index = self.nodes.keys().position(|n| n == node).unwrap_or(0);
        self.wiring
            .as_ref()
            .map_or_else(String::new, |w| w.cni().bridge(index))
    }

    /// Stops a pod's servers and gives its address back (an ADD still running is undone
    /// when it returns).
    fn stop(&mut self, key: &Key) {
        if let Some(w) = self.wiring.as_mut() {
            w.abandon(key);
        }
        if let Some(p) = self.pods.remove(key) {
            p.stop.cancel();
            if let (Some(w), Some((_, place))) = (&self.wiring, &p.netns) {
                if self.closing {
                    w.cni().del(&p.uid, &place.bridge, &place.range);
                } else {
                    w.unwire(&p.uid, place);
                }
            }
            if p.allocated
                && let IpAddr::V4(ip) = p.ip
            {
                self.net.release(ip);
            }
        }
        self.waiting.remove(key);
    }
}

impl Reconciler for NodeAgent {
    type Key = NodeKey;

    fn name(&self) -> &'static str {
        NAME
    }

    fn keys_for(&mut self, _state: &State, change: &Change, out: &mut Vec<NodeKey>) {
        match change.storage.as_str() {
            "/pods" => {
                let key = objects::key_of(&change.object);
                if self.ours(&change.object) || self.pods.contains_key(&key) {
                    out.push(NodeKey::Pod(key));
                }
            }
            "/nodes" => {
                let name = meta(&change.object, "name");
                if self.nodes.contains_key(name) {
                    out.push(NodeKey::Node(name.to_string()));
                    out.extend(self.waiting.iter().cloned().map(NodeKey::Pod));
                }
            }
            "/services" => {
                let ns = &change.namespace;
                out.extend(
                    self.pods
                        .keys()
                        .filter(|k| k.0 == *ns)
                        .cloned()
                        .map(NodeKey::Pod),
                );
            }
            _ => {}
        }
    }

    fn all_keys(&mut self, state: &State, out: &mut Vec<NodeKey>) {
        out.extend(self.nodes.keys().cloned().map(NodeKey::Node));
        if let Some(rt) = objects::rt(state, "", "pods") {
            for p in objects::list(state, &rt, None) {
                if self.ours(&p) {
                    out.push(NodeKey::Pod(objects::key_of(&p)));
                }
            }
        }
        out.extend(self.pods.keys().cloned().map(NodeKey::Pod));
    }

    fn wakeups(&mut self) -> Option<UnboundedReceiver<NodeKey>> {
        self.wakeups.take()
    }

    fn reconcile(&mut self, state: &mut State, key: &NodeKey) -> Option<Duration> {
        let key = match key {
            NodeKey::Node(name) => {
                self.register(state, name);
                return None;
            }
            NodeKey::Pod(key) => key,
        };
        let pod_rt = objects::rt(state, "", "pods")?;
        let pod = objects::get(state, &pod_rt, &key.0, &key.1);
        let live = pod
            .as_ref()
            .filter(|p| self.ours(p) && !objects::is_deleting(p));
        let Some(pod) = live.cloned() else {
            self.stop(key);
            if pod.is_none() {
                self.logs.remove_pod(&key.0, &key.1);
            }
            return None;
        };
        if self
            .pods
            .get(key)
            .is_some_and(|r| r.uid != meta(&pod, "uid"))
        {
            // A new pod of the same name (a StatefulSet's replacement).
            self.stop(key);
        }
        if matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        ) {
            return None;
        }
        let mut again = None;
        if self.pods.contains_key(key) {
            self.retry(state, &pod, key);
        } else {
            again = self.start(state, &pod, key);
        }
        self.infer_ports(state, &pod, key);
        let Some(running) = self.pods.get(key) else {
            if self.wiring.as_ref().is_some_and(|w| w.started(key))
                && let Some(status) = self.creating_status(&pod)
                && pod["status"] != status
            {
                let mut updated = pod.value.clone();
                updated["status"] = status;
                let _ = self.writer.update_status(state, &pod_rt, updated);
            }
            return again;
        };
        let status = self.status(&pod, running);
        let again = running
            .containers
            .iter()
            .filter_map(|c| c.failure.as_ref().map(|f| f.retry_at))
            .min()
            .map(|at| {
                at.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(10))
            });
        if pod["status"] != status {
            let mut updated = pod.value.clone();
            updated["status"] = status;
            let _ = self.writer.update_status(state, &pod_rt, updated);
        }
        again
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.closing = true;
        let keys: Vec<Key> = self.pods.keys().cloned().collect();
        for key in keys {
            self.stop(&key);
        }
        if let Some(w) = self.wiring.as_mut() {
            w.close();
            for i in 0..self.nodes.len() {
                w.cni().remove_bridge(&w.cni().bridge(i));
            }
        }
    }
}

/// The loopback network of a cluster's pods, for messages.
pub(crate) fn loopback_network(octet: u8) -> String {
    Loopback::new(octet).network()
}
