//! Running a pod: its address (a loopback address, or in root mode a namespace the CNI
//! plugin wires away from the store's lock), its containers' ports, restarts with
//! back-off, and the pod status a kubelet writes for each stage.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::echo::Echo;
use super::ports::{self, Bound, bind_container, bind_message, declared_ports};
use super::wiring::{Place, Wire};
use super::{ADDRESS_TRIES, BACKOFF, Container, Failure, NodeAgent, RunningPod, container_id};
use crate::store::State;
use crate::workloads::events::Severity;
use crate::workloads::objects::{self, Key, meta};

/// Each container's sockets, or the address and error that failed it.
type Attempt = Vec<Result<Vec<Bound>, (SocketAddr, io::Error)>>;

/// A pod's address, and its containers bound on it.
struct Address {
    ip: IpAddr,
    /// Whether `ip` came from the loopback allocator (and goes back to it).
    allocated: bool,
    /// Root mode: the pod's namespace and where it is wired.
    netns: Option<(String, Place)>,
    bound: Attempt,
}

/// Why a pod has no address yet: the node has no range (its change brings the pod
/// back), the CNI ADD runs (its return does), or it failed (try again after a while).
enum NotYet {
    Waiting,
    Again(Duration),
}

fn containers(pod: &Value) -> Vec<&Value> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect()
}

impl NodeAgent {
    /// Starts a pod: an address, then each container's ports. `Some(after)`: try again
    /// after that long.
    pub(super) fn start(&mut self, state: &mut State, pod: &Value, key: &Key) -> Option<Duration> {
        let node_name = pod["spec"]["nodeName"].as_str()?.to_string();
        let host_ip = self.nodes.get(&node_name)?.address;
        let ports: Vec<_> = containers(pod).into_iter().map(declared_ports).collect();
        let host_network = pod["spec"]["hostNetwork"] == true;
        let address = if host_network {
            Ok(Address {
                ip: host_ip,
                allocated: false,
                netns: None,
                bound: ports
                    .iter()
                    .map(|p| bind_container((host_ip, None), host_ip, p))
                    .collect(),
            })
        } else {
            match node_range(state, &node_name) {
                None => Err(NotYet::Waiting),
                Some(range) if self.wiring.is_some() => {
                    self.wired(state, pod, key, (&node_name, range), host_ip, &ports)
                }
                Some(range) => self
                    .loopback(&range, host_ip, &ports)
                    .ok_or(NotYet::Waiting),
            }
        };
        match address {
            Ok(address) => {
                self.waiting.remove(key);
                self.launch(pod, key, host_ip, address);
                None
            }
            Err(NotYet::Waiting) => {
                if node_range(state, &node_name).is_none() {
                    self.waiting.insert(key.clone());
                }
                None
            }
            Err(NotYet::Again(after)) => Some(after),
        }
    }

    /// A loopback address whose ports are free, trying the next address while another
    /// process (another sandbox?) holds one.
    fn loopback(
        &mut self,
        range: &str,
        host_ip: IpAddr,
        ports: &[Vec<(u16, String, Option<u16>)>],
    ) -> Option<Address> {
        let mut avoid = HashSet::new();
        let mut tries = 0;
        loop {
            let ip = IpAddr::V4(self.net.allocate(range, &avoid)?);
            let bound: Attempt = ports
                .iter()
                .map(|p| bind_container((ip, None), host_ip, p))
                .collect();
            let clash = bound.iter().any(|r| {
                matches!(r, Err((addr, e)) if e.kind() == io::ErrorKind::AddrInUse && addr.ip() == ip)
            });
            tries += 1;
            match ip {
                IpAddr::V4(v4) if clash && tries < ADDRESS_TRIES => {
                    self.net.release(v4);
                    avoid.insert(v4);
                }
                _ => {
                    return Some(Address {
                        ip,
                        allocated: true,
                        netns: None,
                        bound,
                    });
                }
            }
        }
    }

    /// Root mode: the pod's namespace once the CNI plugin wired it; until then its ADD
    /// runs on a thread of its own.
    fn wired(
        &mut self,
        state: &mut State,
        pod: &Value,
        key: &Key,
        (node_name, range): (&str, String),
        host_ip: IpAddr,
        ports: &[Vec<(u16, String, Option<u16>)>],
    ) -> Result<Address, NotYet> {
        let uid = meta(pod, "uid").to_string();
        let bridge = self.bridge(node_name);
        let wiring = self.wiring.as_mut().ok_or(NotYet::Waiting)?;
        match wiring.poll(key, &uid) {
            Wire::Idle => {
                wiring.begin(key, &uid, Place { bridge, range });
                Err(NotYet::Waiting)
            }
            Wire::Running => Err(NotYet::Waiting),
            Wire::Done(Ok(ip)) => {
                let ns = wiring.cni().netns(&uid);
                let bound = ports
                    .iter()
                    .map(|p| bind_container((ip, Some(&ns)), host_ip, p))
                    .collect();
                Ok(Address {
                    ip,
                    allocated: false,
                    netns: Some((ns, Place { bridge, range })),
                    bound,
                })
            }
            Wire::Done(Err(e)) => {
                self.events.record(
                    state,
                    pod,
                    ("v1", "Pod"),
                    Severity::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                );
                Err(NotYet::Again(Duration::from_secs(5)))
            }
        }
    }

    /// Serves each container whose ports are bound; the others fail with back-off.
    fn launch(&mut self, pod: &Value, key: &Key, host_ip: IpAddr, address: Address) {
        let Address {
            ip,
            allocated,
            netns,
            bound,
        } = address;
        let uid = meta(pod, "uid").to_string();
        let stop = self.shutdown.child_token();
        let now = objects::now();
        let pod_name = meta(pod, "name").to_string();
        let mut running = Vec::new();
        for (c, result) in containers(pod).into_iter().zip(bound) {
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
                        ports::ports_text(&declared_ports(c))
                    ));
                    let echo = Arc::new(Echo {
                        pod: pod_name.clone(),
                        log,
                    });
                    ports::serve(sockets, &echo, &stop);
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
    }

    /// Tries failed containers again whose back-off is over.
    pub(super) fn retry(&mut self, state: &mut State, pod: &Value, key: &Key) {
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
            let netns = running.netns.as_ref().map(|(ns, _)| ns.as_str());
            match bind_container((running.ip, netns), running.host_ip, &declared_ports(spec)) {
                Ok(sockets) => {
                    c.failure = None;
                    c.started_at = objects::now();
                    log.push(format!(
                        "rancher-sandbox echo server restarted on {}",
                        running.ip
                    ));
                    ports::serve(
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

    /// The pod status a kubelet writes for what runs.
    pub(super) fn status(&self, pod: &Value, running: &RunningPod) -> Value {
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

    /// The status a kubelet writes while the pod's sandbox is made (root mode's CNI ADD
    /// runs): `Pending`, each container waiting in `ContainerCreating`.
    pub(super) fn creating_status(&self, pod: &Value) -> Option<Value> {
        let host_ip = self.nodes.get(pod["spec"]["nodeName"].as_str()?)?.address;
        let names: Vec<&str> = containers(pod)
            .into_iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let statuses: Vec<Value> = containers(pod)
            .into_iter()
            .map(|c| {
                json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false,
                       "started": false, "restartCount": 0,
                       "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}})
            })
            .collect();
        let mut status = pod["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        let unready = |cond: &str| {
            json!({"type": cond, "status": "False", "lastProbeTime": null, "reason": "ContainersNotReady",
                   "message": format!("containers with unready status: [{}]", names.join(" "))})
        };
        for cond in [
            json!({"type": "PodReadyToStartContainers", "status": "False", "lastProbeTime": null}),
            json!({"type": "Initialized", "status": "True", "lastProbeTime": null}),
            unready("Ready"),
            unready("ContainersReady"),
        ] {
            objects::set_condition(&mut status["conditions"], cond);
        }
        status["phase"] = json!("Pending");
        status["hostIP"] = json!(host_ip.to_string());
        status["hostIPs"] = json!([{"ip": host_ip.to_string()}]);
        if status["startTime"].is_null() {
            status["startTime"] = json!(objects::now());
        }
        status["qosClass"] = json!("BestEffort");
        status["containerStatuses"] = Value::Array(statuses);
        Some(status)
    }
}

/// The range the node's Node object has been given, if any yet.
fn node_range(state: &State, node: &str) -> Option<String> {
    let rt = objects::rt(state, "", "nodes")?;
    objects::get(state, &rt, "", node)
        .and_then(|n| n["spec"]["podCIDR"].as_str().map(str::to_string))
        .filter(|r| !r.is_empty())
}
