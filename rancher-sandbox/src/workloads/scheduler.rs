//! The scheduler: binds each pending pod to a node that is ready, schedulable, matches its
//! `nodeSelector` and required node affinity, whose taints it tolerates and whose host
//! ports are free, spreading a controller's pods over nodes; otherwise marks the pod
//! `Unschedulable` with kube-scheduler's message and tries again when nodes change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::events::{Recorder, Severity};
use super::objects::{self, Key, Writer, meta};
use super::runner::Reconciler;
use crate::store::{Change, EventType, Obj, State};

/// The scheduler's name, as kube-scheduler's.
pub(crate) const NAME: &str = "default-scheduler";

pub(crate) struct Scheduler {
    writer: Writer,
    events: Recorder,
    /// Pods marked unschedulable, tried again when nodes or pods change.
    waiting: BTreeSet<Key>,
}

impl Scheduler {
    pub(crate) fn new() -> Self {
        Self {
            writer: Writer { manager: NAME },
            events: Recorder::new(NAME),
            waiting: BTreeSet::new(),
        }
    }
}

fn wants_us(pod: &Value) -> bool {
    pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
        && pod["spec"]["schedulerName"]
            .as_str()
            .is_none_or(|s| s == NAME)
        && objects::pod_active(pod)
}

/// Whether a toleration tolerates a taint.
pub(crate) fn tolerates(t: &Value, taint: &Value) -> bool {
    if !t["effect"].is_null() && t["effect"] != "" && t["effect"] != taint["effect"] {
        return false;
    }
    let key = t["key"].as_str().unwrap_or_default();
    if !key.is_empty() && taint["key"] != key {
        return false;
    }
    match t["operator"].as_str().unwrap_or("Equal") {
        "Exists" => true,
        _ => {
            !key.is_empty()
                && t["value"].as_str().unwrap_or_default()
                    == taint["value"].as_str().unwrap_or_default()
        }
    }
}

/// One node-selector requirement (`matchExpressions` or `matchFields`) against values.
fn requirement(req: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = req["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let number = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok());
    match req["operator"].as_str().unwrap_or_default() {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((number(value), number(values.first().copied())), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((number(value), number(values.first().copied())), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// Whether the node matches the pod's nodeSelector and required node affinity.
pub(crate) fn node_matches(pod: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let selected = pod["spec"]["nodeSelector"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    let affine = terms.as_array().is_none_or(|terms| {
        terms.iter().any(|term| {
            let exprs = term["matchExpressions"].as_array().into_iter().flatten();
            let fields = term["matchFields"].as_array().into_iter().flatten();
            let mut any = false;
            let ok = exprs
                .map(|r| {
                    any = true;
                    requirement(r, labels[r["key"].as_str().unwrap_or_default()].as_str())
                })
                .collect::<Vec<_>>()
                .into_iter()
                .chain(fields.map(|r| {
                    any = true;
                    r["key"] == "metadata.name" && requirement(r, Some(meta(node, "name")))
                }))
                .all(|b| b);
            ok && any
        })
    });
    selected && affine
}

fn host_ports(pod: &Value) -> Vec<(i64, String)> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter_map(|p| {
            Some((
                p["hostPort"].as_i64().filter(|h| *h > 0)?,
                p["protocol"].as_str().unwrap_or("TCP").to_string(),
            ))
        })
        .collect()
}

/// Why the node cannot take the pod, in kube-scheduler's words; `None` when it can.
fn unfit(pod: &Value, node: &Value, bound: &[Arc<Obj>]) -> Option<String> {
    if node["spec"]["unschedulable"] == true
        && !pod["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                tolerates(
                    t,
                    &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}),
                )
            })
    {
        return Some("node(s) were unschedulable".to_string());
    }
    let ready = objects::condition(node, "Ready").is_some_and(|c| c["status"] == "True");
    let tolerations: Vec<&Value> = pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if !ready
        && !tolerations.iter().any(|t| {
            tolerates(
                t,
                &json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}),
            )
        })
    {
        return Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_string());
    }
    if !node_matches(pod, node) {
        return Some("node(s) didn't match Pod's node affinity/selector".to_string());
    }
    for taint in node["spec"]["taints"].as_array().into_iter().flatten() {
        if !matches!(taint["effect"].as_str(), Some("NoSchedule" | "NoExecute")) {
            continue;
        }
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            return Some(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint["key"].as_str().unwrap_or_default(),
                taint["value"].as_str().unwrap_or_default()
            ));
        }
    }
    let wanted = host_ports(pod);
    if !wanted.is_empty()
        && bound
            .iter()
            .any(|p| host_ports(p).iter().any(|hp| wanted.contains(hp)))
    {
        return Some("node(s) didn't have free ports for the requested pod ports".to_string());
    }
    None
}

/// kube-scheduler's message for a pod no node can take.
fn unschedulable_message(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

impl Reconciler for Scheduler {
    type Key = Key;

    fn name(&self) -> &'static str {
        NAME
    }

    fn keys_for(&mut self, _state: &State, change: &Change, out: &mut Vec<Key>) {
        match change.storage.as_str() {
            "/pods" => {
                if change.kind != EventType::Deleted && wants_us(&change.object) {
                    out.push(objects::key_of(&change.object));
                } else if change.kind == EventType::Deleted {
                    self.waiting.remove(&objects::key_of(&change.object));
                    // Its host ports are free again.
                    out.extend(self.waiting.iter().cloned());
                }
            }
            "/nodes" => out.extend(self.waiting.iter().cloned()),
            _ => {}
        }
    }

    fn all_keys(&mut self, state: &State, out: &mut Vec<Key>) {
        if let Some(rt) = objects::rt(state, "", "pods") {
            out.extend(
                objects::list(state, &rt, None)
                    .iter()
                    .filter(|p| wants_us(p))
                    .map(|p| objects::key_of(p)),
            );
        }
    }

    fn reconcile(&mut self, state: &mut State, key: &Key) -> Option<Duration> {
        let pod_rt = objects::rt(state, "", "pods")?;
        let node_rt = objects::rt(state, "", "nodes")?;
        let Some(pod) = objects::get(state, &pod_rt, &key.0, &key.1).filter(|p| wants_us(p)) else {
            self.waiting.remove(key);
            return None;
        };
        let nodes = objects::list(state, &node_rt, None);
        let pods = objects::list(state, &pod_rt, None);
        let mut by_node: BTreeMap<&str, Vec<Arc<Obj>>> = BTreeMap::new();
        for p in pods.iter().filter(|p| objects::pod_active(p)) {
            if let Some(n) = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                by_node.entry(n).or_default().push(p.clone());
            }
        }
        let owner = objects::controller_ref(&pod).map(|r| r["uid"].clone());
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<((usize, usize), String)> = None;
        for node in &nodes {
            let name = meta(node, "name");
            let bound = by_node.get(name).map_or(&[][..], Vec::as_slice);
            if let Some(why) = unfit(&pod, node, bound) {
                *reasons.entry(why).or_default() += 1;
                continue;
            }
            // Spread: fewest pods of the same controller, then fewest pods.
            let siblings = bound
                .iter()
                .filter(|p| {
                    owner.is_some()
                        && objects::controller_ref(p).map(|r| &r["uid"]) == owner.as_ref()
                })
                .count();
            let score = (siblings, bound.len());
            if best.as_ref().is_none_or(|(s, _)| score < *s) {
                best = Some((score, name.to_string()));
            }
        }
        let kind = ("v1", "Pod");
        let Some((_, node)) = best else {
            let message = unschedulable_message(nodes.len(), &reasons);
            let mut updated = pod.value.clone();
            objects::set_condition(
                &mut updated["status"]["conditions"],
                json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                       "message": message, "lastProbeTime": null}),
            );
            // One event per new reason, not one per retry.
            if updated != pod.value {
                let _ = self.writer.update_status(state, &pod_rt, updated);
                self.events.record(
                    state,
                    &pod,
                    kind,
                    Severity::Warning,
                    "FailedScheduling",
                    message,
                );
            }
            self.waiting.insert(key.clone());
            return None;
        };
        self.waiting.remove(key);
        let mut bound = pod.value.clone();
        bound["spec"]["nodeName"] = json!(node);
        let Ok(bound) = self.writer.update(state, &pod_rt, bound) else {
            return Some(Duration::from_secs(1));
        };
        let mut updated = bound.value.clone();
        objects::set_condition(
            &mut updated["status"]["conditions"],
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null}),
        );
        let _ = self.writer.update_status(state, &pod_rt, updated);
        self.events.record(
            state,
            &pod,
            kind,
            Severity::Normal,
            "Scheduled",
            format!("Successfully assigned {}/{} to {node}", key.0, key.1),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    #[test]
    fn selectors_affinity_and_taints() {
        let n = node(
            "n1",
            json!({"disk": "ssd", "size": "4"}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        let plain = json!({"spec": {}});
        assert_eq!(
            unfit(&plain, &n, &[]).unwrap(),
            "node(s) had untolerated taint {dedicated: db}"
        );
        let tolerant = json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}});
        assert_eq!(unfit(&tolerant, &n, &[]), None);
        let mut picky = tolerant.clone();
        picky["spec"]["nodeSelector"] = json!({"disk": "hdd"});
        assert_eq!(
            unfit(&picky, &n, &[]).unwrap(),
            "node(s) didn't match Pod's node affinity/selector"
        );
        let mut affine = tolerant.clone();
        affine["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "size", "operator": "Gt", "values": ["3"]}], "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ]}}});
        assert_eq!(unfit(&affine, &n, &[]), None);
        let mut cordoned = node("n2", json!({}), json!([]));
        cordoned["spec"]["unschedulable"] = json!(true);
        assert_eq!(
            unfit(&plain, &cordoned, &[]).unwrap(),
            "node(s) were unschedulable"
        );
    }

    #[test]
    fn the_message_counts_reasons() {
        let reasons = BTreeMap::from([(
            "node(s) didn't match Pod's node affinity/selector".to_string(),
            2,
        )]);
        assert_eq!(
            unschedulable_message(2, &reasons),
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }
}
