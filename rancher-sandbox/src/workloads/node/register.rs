//! The Node a sandbox node registers, and the status its kubelet posts.

use serde_json::{Value, json};

use super::{KUBELET_VERSION, NodeAgent};
use crate::store::State;
use crate::workloads::objects;

impl NodeAgent {
    /// Registers every node (before the controllers start).
    pub(crate) fn register_all(&mut self, state: &mut State) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            self.register(state, &name);
        }
    }

    /// Registers (or re-registers) a node.
    pub(super) fn register(&mut self, state: &mut State, name: &str) {
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
