//! Sandbox nodes: a kubelet for each node the builder names. It registers the Node, runs
//! every pod bound to it (each container port an echo server on the pod's address) and
//! writes the pod status a kubelet writes; a container whose port cannot be bound is
//! restarted with back-off, as a crashing container is.

pub(crate) mod cni;
pub(crate) mod echo;
pub(crate) mod logs;
pub(crate) mod network;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::cni::CniNetwork;
use self::echo::Echo;
use self::logs::PodLogs;
use self::network::Loopback;
use super::events::{Recorder, Severity};
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
    /// Root mode: the pod's namespace, bridge and node range.
    netns: Option<(String, String, String)>,
}

pub(crate) struct NodeAgent {
    nodes: BTreeMap<String, SandboxNode>,
    pods: HashMap<Key, RunningPod>,
    /// Pods bound here waiting for the node's range.
    waiting: BTreeSet<Key>,
    net: Loopback,
    /// Root mode: pods in namespaces of their own, wired by the CNI plugin.
    cni: Option<CniNetwork>,
    logs: Arc<PodLogs>,
    shutdown: CancellationToken,
    writer: Writer,
    events: Recorder,
}

/// A bound socket, not yet served.
enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

fn bind(addr: SocketAddr, protocol: &str) -> io::Result<Bound> {
    match protocol {
        "UDP" => std::net::UdpSocket::bind(addr).map(Bound::Udp),
        "TCP" => std::net::TcpListener::bind(addr).map(Bound::Tcp),
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("protocol {other} is not served by sandbox nodes"),
        )),
    }
}

/// A container's declared ports: (containerPort, protocol, hostPort).
fn declared_ports(container: &Value) -> Vec<(u16, String, Option<u16>)> {
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                u16::try_from(p["containerPort"].as_i64()?).ok()?,
                p["protocol"].as_str().unwrap_or("TCP").to_string(),
                p["hostPort"]
                    .as_i64()
                    .and_then(|h| u16::try_from(h).ok())
                    .filter(|h| *h > 0),
            ))
        })
        .collect()
}

fn has_declared_ports(pod: &Value) -> bool {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| !declared_ports(c).is_empty())
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
        Self {
            nodes: nodes.iter().map(|n| (n.name.clone(), n.clone())).collect(),
            pods: HashMap::new(),
            waiting: BTreeSet::new(),
            net: Loopback::new(loopback_octet),
            cni: match network {
                PodNetwork::Cni(c) => Some(c.clone()),
                PodNetwork::Loopback => None,
            },
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
        self.cni
            .as_ref()
            .map_or_else(String::new, |c| c.bridge(index))
    }

    /// Stops a pod's servers and gives its address back.
    fn stop(&mut self, key: &Key) {
        if let Some(p) = self.pods.remove(key) {
            p.stop.cancel();
            if let (Some(cni), Some((_, bridge, range))) = (&self.cni, &p.netns) {
                cni.del(&p.uid, bridge, range);
            }
            if p.allocated
                && let IpAddr::V4(ip) = p.ip
            {
                self.net.release(ip);
            }
        }
        self.waiting.remove(key);
    }

    /// Registers (or re-registers) a node.
    fn register(&mut self, state: &mut State, name: &str) {
        let Some(spec) = self.nodes.get(name).cloned() else {
            return;
        };
        let Some(rt) = objects::rt(state, "", "nodes") else {
            return;
        };
        let existing = objects::get(state, &rt, "", name);
        let mut labels = json!({
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": std::env::consts::ARCH,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": std::env::consts::ARCH,
        });
        for (k, v) in &spec.labels {
            labels[k] = json!(v);
        }
        let taints: Vec<Value> = spec
            .taints
            .iter()
            .map(|(k, v, e)| json!({"key": k, "value": v, "effect": e}))
            .collect();
        let node = match existing {
            Some(n) => n,
            None => {
                let node = json!({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"taints": taints},
                });
                match self.writer.create(state, &rt, "", node) {
                    Ok(n) => n,
                    Err(_) => return,
                }
            }
        };
        let now = objects::now();
        let cond = |t: &str, s: &str, reason: &str, message: &str| {
            let old = objects::condition(&node, t);
            let keep = |f: &str| {
                old.filter(|c| c["status"] == s)
                    .map_or(json!(now), |c| c[f].clone())
            };
            json!({"type": t, "status": s, "reason": reason, "message": message,
                   "lastHeartbeatTime": keep("lastHeartbeatTime"), "lastTransitionTime": keep("lastTransitionTime")})
        };
        let capacity =
            json!({"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"});
        let status = json!({
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status (a rancher-sandbox node)"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": spec.address.to_string()},
                {"type": "Hostname", "address": name},
            ],
            "capacity": capacity,
            "allocatable": capacity,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "sandbox://echo",
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH,
                "osImage": "rancher-sandbox",
                "kernelVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        });
        let mut updated = node.value.clone();
        for (k, v) in labels.as_object().into_iter().flatten() {
            if updated["metadata"]["labels"].get(k) != Some(v) {
                updated["metadata"]["labels"][k] = v.clone();
            }
        }
        if updated != node.value {
            match self.writer.update(state, &rt, updated) {
                Ok(n) => updated = n.value.clone(),
                Err(_) => return,
            }
        }
        if updated["status"] != status {
            updated["status"] = status;
            let _ = self.writer.update_status(state, &rt, updated);
        }
    }
}

/// Binds `addr`, inside the pod's namespace in root mode.
fn bind_in(netns: Option<&str>, addr: SocketAddr, protocol: &str) -> io::Result<Bound> {
    match netns {
        Some(ns) => cni::run_in(ns, || bind(addr, protocol))?,
        None => bind(addr, protocol),
    }
}

/// The sockets of one container, bound on `ip` (in the pod's namespace in root mode),
/// and its host ports on `host_ip`.
fn bind_container(
    (ip, netns): (IpAddr, Option<&str>),
    host_ip: IpAddr,
    ports: &[(u16, String, Option<u16>)],
) -> Result<Vec<Bound>, (SocketAddr, io::Error)> {
    let mut out = Vec::new();
    for (port, protocol, host_port) in ports {
        let addr = SocketAddr::new(ip, *port);
        out.push(bind_in(netns, addr, protocol).map_err(|e| (addr, e))?);
        if let Some(hp) = host_port {
            let addr = SocketAddr::new(host_ip, *hp);
            out.push(bind(addr, protocol).map_err(|e| (addr, e))?);
        }
    }
    Ok(out)
}

fn serve(sockets: Vec<Bound>, echo: &Arc<Echo>, stop: &CancellationToken) {
    for s in sockets {
        let served = match s {
            Bound::Tcp(l) => echo::serve_tcp(l, echo.clone(), stop.clone()),
            Bound::Udp(u) => echo::serve_udp(u, echo.clone(), stop.clone()),
        };
        if let Err(e) = served {
            echo.log.push(format!("serving failed: {e}"));
        }
    }
}

fn bind_message(addr: SocketAddr, e: &io::Error) -> String {
    format!("listen {addr}: bind: {e}")
}

impl NodeAgent {
    /// Starts a pod: an address, then each container's ports.
    fn start(&mut self, state: &mut State, pod: &Value, key: &Key) -> Option<Duration> {
        let node_name = pod["spec"]["nodeName"].as_str()?.to_string();
        let spec = self.nodes.get(&node_name)?.clone();
        let host_ip = spec.address;
        let containers: Vec<&Value> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let ports: Vec<Vec<(u16, String, Option<u16>)>> =
            containers.iter().map(|c| declared_ports(c)).collect();
        let host_network = pod["spec"]["hostNetwork"] == true;
        let uid = meta(pod, "uid").to_string();
        let mut avoid = HashSet::new();
        let mut tries = 0;
        let mut netns = None;
        let (ip, allocated, bound) = loop {
            if let Some(cni) = self.cni.as_ref().filter(|_| !host_network) {
                let node_rt = objects::rt(state, "", "nodes")?;
                let range = objects::get(state, &node_rt, "", &node_name)
                    .and_then(|n| n["spec"]["podCIDR"].as_str().map(str::to_string))
                    .filter(|r| !r.is_empty());
                let Some(range) = range else {
                    self.waiting.insert(key.clone());
                    return None;
                };
                let bridge = self.bridge(&node_name);
                match cni.add(&uid, &bridge, &range) {
                    Ok(ip) => {
                        let ns = cni.netns(&uid);
                        let attempt = ports
                            .iter()
                            .map(|p| bind_container((ip, Some(&ns)), host_ip, p))
                            .collect();
                        netns = Some((ns, bridge, range));
                        break (ip, false, attempt);
                    }
                    Err(e) => {
                        self.events.record(
                            state,
                            pod,
                            ("v1", "Pod"),
                            Severity::Warning,
                            "FailedCreatePodSandBox",
                            format!("Failed to create pod sandbox: {e}"),
                        );
                        return Some(Duration::from_secs(5));
                    }
                }
            }
            let (ip, allocated) = if host_network {
                (host_ip, false)
            } else {
                let node_rt = objects::rt(state, "", "nodes")?;
                let range = objects::get(state, &node_rt, "", &node_name)
                    .and_then(|n| n["spec"]["podCIDR"].as_str().map(str::to_string));
                let Some(range) = range.filter(|r| !r.is_empty()) else {
                    self.waiting.insert(key.clone());
                    return None;
                };
                let ip = self.net.allocate(&range, &avoid)?;
                (IpAddr::V4(ip), true)
            };
            let attempt: Vec<Result<Vec<Bound>, (SocketAddr, io::Error)>> = ports
                .iter()
                .map(|p| bind_container((ip, None), host_ip, p))
                .collect();
            let clash = attempt.iter().find_map(|r| match r {
                Err((addr, e)) if e.kind() == io::ErrorKind::AddrInUse && addr.ip() == ip => {
                    Some(ip)
                }
                _ => None,
            });
            tries += 1;
            match clash {
                Some(IpAddr::V4(v4)) if allocated && tries < ADDRESS_TRIES => {
                    // Another process serves this address (another sandbox?): the next one.
                    self.net.release(v4);
                    avoid.insert(v4);
                }
                _ => break (ip, allocated, attempt),
            }
        };
        self.waiting.remove(key);
        let stop = self.shutdown.child_token();
        let now = objects::now();
        let pod_name = meta(pod, "name").to_string();
        let mut running = Vec::new();
        for (c, result) in containers.iter().zip(bound) {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            let log = self.logs.open(&key.0, &pod_name, &name);
            let mut container = Container {
                image: c["image"].as_str().unwrap_or_default().to_string(),
                id: container_id(&uid, &name, 0),
                started_at: now.clone(),
                restarts: 0,
                failure: None,
                name,
            };
            match result {
                Ok(sockets) => {
                    log.push(format!(
                        "rancher-sandbox echo server standing in for image {:?} on {ip} (ports: {})",
                        container.image,
                        ports_text(&declared_ports(c))
                    ));
                    serve(
                        sockets,
                        &Arc::new(Echo {
                            pod: pod_name.clone(),
                            log,
                        }),
                        &stop,
                    );
                }
                Err((addr, e)) => {
                    let message = bind_message(addr, &e);
                    log.push(message.clone());
                    container.failure = Some(Failure {
                        message,
                        finished_at: now.clone(),
                        retry_at: Instant::now() + Duration::from_secs(BACKOFF.0),
                        backoff: BACKOFF.0,
                    });
                }
            }
            running.push(container);
        }
        self.pods.insert(
            key.clone(),
            RunningPod {
                uid,
                ip,
                allocated,
                host_ip,
                start_time: now,
                stop,
                containers: running,
                inferred: BTreeSet::new(),
                netns,
            },
        );
        None
    }

    /// Tries failed containers again whose back-off is over.
    fn retry(&mut self, state: &mut State, pod: &Value, key: &Key) {
        let Some(running) = self.pods.get_mut(key) else {
            return;
        };
        let containers: Vec<&Value> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let now = Instant::now();
        let mut failed_again = Vec::new();
        for (c, spec) in running.containers.iter_mut().zip(&containers) {
            let Some(f) = c.failure.as_mut().filter(|f| f.retry_at <= now) else {
                continue;
            };
            c.restarts += 1;
            c.id = container_id(&running.uid, &c.name, c.restarts);
            let log = self.logs.open(&key.0, meta(pod, "name"), &c.name);
            let netns = running.netns.as_ref().map(|(ns, _, _)| ns.as_str());
            match bind_container((running.ip, netns), running.host_ip, &declared_ports(spec)) {
                Ok(sockets) => {
                    c.failure = None;
                    c.started_at = objects::now();
                    log.push(format!(
                        "rancher-sandbox echo server restarted on {}",
                        running.ip
                    ));
                    serve(
                        sockets,
                        &Arc::new(Echo {
                            pod: meta(pod, "name").to_string(),
                            log,
                        }),
                        &running.stop,
                    );
                }
                Err((addr, e)) => {
                    f.message = bind_message(addr, &e);
                    f.finished_at = objects::now();
                    f.backoff = (f.backoff * 2).min(BACKOFF.1);
                    f.retry_at = now + Duration::from_secs(f.backoff);
                    log.push(f.message.clone());
                    failed_again.push((c.name.clone(), f.backoff));
                }
            }
        }
        for (name, backoff) in failed_again {
            self.events.record(
                state,
                pod,
                ("v1", "Pod"),
                Severity::Warning,
                "BackOff",
                format!(
                    "Back-off {backoff}s restarting failed container {name} in pod {}",
                    meta(pod, "name")
                ),
            );
        }
    }

    /// Serves the target ports of the Services that select a pod declaring no ports.
    fn infer_ports(&mut self, state: &State, pod: &Value, key: &Key) {
        if has_declared_ports(pod) {
            return;
        }
        let Some(running) = self.pods.get_mut(key) else {
            return;
        };
        let Some(svc_rt) = objects::rt(state, "", "services") else {
            return;
        };
        let mut wanted = BTreeSet::new();
        for svc in objects::list(state, &svc_rt, Some(&key.0)) {
            let Some(sel) = svc["spec"]["selector"]
                .as_object()
                .filter(|m| !m.is_empty())
            else {
                continue;
            };
            if !sel
                .iter()
                .all(|(k, v)| pod["metadata"]["labels"].get(k) == Some(v))
            {
                continue;
            }
            for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
                let port = p["targetPort"]
                    .as_i64()
                    .or_else(|| p["targetPort"].as_str().and_then(|s| s.parse().ok()))
                    .or_else(|| {
                        p["targetPort"]
                            .is_null()
                            .then(|| p["port"].as_i64())
                            .flatten()
                    });
                if let Some(port) = port.and_then(|n| u16::try_from(n).ok()) {
                    wanted.insert((port, p["protocol"].as_str().unwrap_or("TCP").to_string()));
                }
            }
        }
        let Some(first) = running.containers.first() else {
            return;
        };
        let log = self.logs.open(&key.0, meta(pod, "name"), &first.name);
        let echo = Arc::new(Echo {
            pod: meta(pod, "name").to_string(),
            log,
        });
        for (port, protocol) in wanted.difference(&running.inferred.clone()) {
            let addr = SocketAddr::new(running.ip, *port);
            let netns = running.netns.as_ref().map(|(ns, _, _)| ns.as_str());
            match bind_in(netns, addr, protocol) {
                Ok(s) => {
                    echo.log.push(format!("serving {addr}/{protocol}, a port a Service targets (the container declares none)"));
                    serve(vec![s], &echo, &running.stop);
                    running.inferred.insert((*port, protocol.clone()));
                }
                Err(e) => echo.log.push(bind_message(addr, &e)),
            }
        }
    }

    /// The pod status a kubelet writes for what runs.
    fn status(&self, pod: &Value, running: &RunningPod) -> Value {
        let mut statuses = Vec::new();
        let mut unready = Vec::new();
        for c in &running.containers {
            let mut s = json!({
                "name": c.name, "image": c.image, "imageID": "", "containerID": c.id,
                "restartCount": c.restarts, "ready": c.failure.is_none(), "started": c.failure.is_none(),
                "state": {"running": {"startedAt": c.started_at}}, "lastState": {},
            });
            if let Some(f) = &c.failure {
                unready.push(c.name.clone());
                s["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})", f.backoff, c.name, meta(pod, "name"), meta(pod, "namespace"), running.uid)}});
                s["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error", "message": f.message,
                    "startedAt": c.started_at, "finishedAt": f.finished_at, "containerID": c.id}});
            } else if c.restarts > 0 {
                s["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": running.start_time, "finishedAt": c.started_at}});
            }
            statuses.push(s);
        }
        let mut status = pod["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        let ready = unready.is_empty();
        let not_ready = |cond: &str| {
            if ready {
                json!({"type": cond, "status": "True", "lastProbeTime": null})
            } else {
                json!({"type": cond, "status": "False", "lastProbeTime": null, "reason": "ContainersNotReady",
                       "message": format!("containers with unready status: [{}]", unready.join(" "))})
            }
        };
        for cond in [
            json!({"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null}),
            json!({"type": "Initialized", "status": "True", "lastProbeTime": null}),
            not_ready("Ready"),
            not_ready("ContainersReady"),
        ] {
            objects::set_condition(&mut status["conditions"], cond);
        }
        status["phase"] = json!("Running");
        status["hostIP"] = json!(running.host_ip.to_string());
        status["hostIPs"] = json!([{"ip": running.host_ip.to_string()}]);
        status["podIP"] = json!(running.ip.to_string());
        status["podIPs"] = json!([{"ip": running.ip.to_string()}]);
        status["startTime"] = json!(running.start_time);
        status["qosClass"] = json!("BestEffort");
        status["containerStatuses"] = Value::Array(statuses);
        status
    }
}

fn ports_text(ports: &[(u16, String, Option<u16>)]) -> String {
    if ports.is_empty() {
        return "none declared".to_string();
    }
    ports
        .iter()
        .map(|(p, proto, host)| match host {
            Some(h) => format!("{p}/{proto} (host port {h})"),
            None => format!("{p}/{proto}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
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
        if !self.pods.contains_key(key) {
            self.start(state, &pod, key);
        } else {
            self.retry(state, &pod, key);
        }
        self.infer_ports(state, &pod, key);
        let running = self.pods.get(key)?;
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
        let keys: Vec<Key> = self.pods.keys().cloned().collect();
        for key in keys {
            self.stop(&key);
        }
        if let Some(cni) = &self.cni {
            for i in 0..self.nodes.len() {
                cni.remove_bridge(&cni.bridge(i));
            }
        }
    }
}

/// The loopback network of a cluster's pods, for messages.
pub(crate) fn loopback_network(octet: u8) -> String {
    Loopback::new(octet).network()
}
