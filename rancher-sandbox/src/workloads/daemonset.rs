//! The DaemonSet controller: one pod per node that matches the template's node selector
//! and affinity and whose taints it tolerates, pinned there by node affinity (the
//! scheduler binds it, as upstream); pods at an old template are replaced within
//! `maxUnavailable`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::deployment::{int_or_percent, template_hash};
use super::events::{Recorder, Severity};
use super::objects::{self, Key, Writer, meta};
use super::replicaset::pod_from_template;
use super::runner::Reconciler;
use super::scheduler::{node_matches, tolerates};
use super::statefulset::REVISION_LABEL;
use crate::store::{Change, Obj, Propagation, State};

/// The controller's name, as kube-controller-manager's.
pub(crate) const NAME: &str = "daemonset-controller";

/// The tolerations upstream adds to every DaemonSet pod.
const TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

pub(crate) struct DaemonSets {
    writer: Writer,
    events: Recorder,
}

impl DaemonSets {
    pub(crate) fn new() -> Self {
        Self {
            writer: Writer { manager: NAME },
            events: Recorder::new(NAME),
        }
    }
}

/// The template's pod spec with the DaemonSet tolerations added.
fn tolerant_spec(ds: &Value) -> Value {
    let mut spec = ds["spec"]["template"]["spec"].clone();
    if !spec["tolerations"].is_array() {
        spec["tolerations"] = json!([]);
    }
    if let Some(list) = spec["tolerations"].as_array_mut() {
        for (key, effect) in TOLERATIONS {
            if !list
                .iter()
                .any(|t| t["key"] == *key && t["effect"] == *effect)
            {
                list.push(json!({"key": key, "operator": "Exists", "effect": effect}));
            }
        }
    }
    spec
}

/// Whether the DaemonSet's pods belong on `node`.
fn should_run(spec: &Value, node: &Value) -> bool {
    let pod = json!({"spec": spec});
    let tolerations: Vec<&Value> = spec["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    node_matches(&pod, node)
        && node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| matches!(t["effect"].as_str(), Some("NoSchedule" | "NoExecute")))
            .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// The node a DaemonSet pod is for: bound, or pinned by its affinity.
fn node_of(pod: &Value) -> Option<String> {
    if let Some(n) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
        .as_str()
        .map(str::to_string)
}

impl Reconciler for DaemonSets {
    type Key = Key;

    fn name(&self) -> &'static str {
        NAME
    }

    fn keys_for(&mut self, state: &State, change: &Change, out: &mut Vec<Key>) {
        match change.storage.as_str() {
            "apps/daemonsets" => out.push(objects::key_of(&change.object)),
            "/pods" => {
                for obj in std::iter::once(&change.object).chain(change.previous.as_ref()) {
                    if let Some(k) = objects::controller_key(obj, "DaemonSet") {
                        out.push(k);
                    }
                }
            }
            "/nodes" => self.all_keys(state, out),
            _ => {}
        }
    }

    fn all_keys(&mut self, state: &State, out: &mut Vec<Key>) {
        if let Some(rt) = objects::rt(state, "apps", "daemonsets") {
            out.extend(
                objects::list(state, &rt, None)
                    .iter()
                    .map(|o| objects::key_of(o)),
            );
        }
    }

    fn reconcile(&mut self, state: &mut State, (ns, name): &Key) -> Option<Duration> {
        let ds_rt = objects::rt(state, "apps", "daemonsets")?;
        let pod_rt = objects::rt(state, "", "pods")?;
        let node_rt = objects::rt(state, "", "nodes")?;
        let ds = objects::get(state, &ds_rt, ns, name)?;
        let revision = template_hash(&ds["spec"]["template"], None);
        let spec = tolerant_spec(&ds);
        let eligible: Vec<String> = objects::list(state, &node_rt, None)
            .iter()
            .filter(|n| should_run(&spec, n))
            .map(|n| meta(n, "name").to_string())
            .collect();
        let by_node = |state: &State| -> BTreeMap<String, Vec<Arc<Obj>>> {
            let mut m: BTreeMap<String, Vec<Arc<Obj>>> = BTreeMap::new();
            for p in objects::list(state, &pod_rt, Some(ns)) {
                if objects::controlled_by(&p, &ds) && objects::pod_active(&p) {
                    m.entry(node_of(&p).unwrap_or_default())
                        .or_default()
                        .push(p);
                }
            }
            m
        };
        if !objects::is_deleting(&ds) {
            self.step(state, &ds, &spec, &revision, &eligible, &by_node(state));
        }
        let pods = by_node(state);
        let min_ready = ds["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
        let on_eligible: Vec<&Arc<Obj>> = eligible
            .iter()
            .filter_map(|n| pods.get(n)?.first())
            .collect();
        let ready = on_eligible.iter().filter(|p| objects::pod_ready(p)).count();
        let available = on_eligible
            .iter()
            .filter(|p| objects::pod_available(p, min_ready).is_ok())
            .count();
        let status = json!({
            "observedGeneration": ds["metadata"]["generation"],
            "desiredNumberScheduled": eligible.len(),
            "currentNumberScheduled": on_eligible.len(),
            "numberMisscheduled": pods.keys().filter(|n| !eligible.contains(n)).count(),
            "numberReady": ready,
            "numberAvailable": available,
            "numberUnavailable": eligible.len() - available,
            "updatedNumberScheduled": on_eligible.iter().filter(|p| p["metadata"]["labels"][REVISION_LABEL] == revision.as_str()).count(),
        });
        if ds["status"] != status {
            let mut updated = ds.value.clone();
            updated["status"] = status;
            let _ = self.writer.update_status(state, &ds_rt, updated);
        }
        None
    }
}

impl DaemonSets {
    fn step(
        &mut self,
        state: &mut State,
        ds: &Arc<Obj>,
        spec: &Value,
        revision: &str,
        eligible: &[String],
        pods: &BTreeMap<String, Vec<Arc<Obj>>>,
    ) {
        let Some(pod_rt) = objects::rt(state, "", "pods") else {
            return;
        };
        let kind = ("apps/v1", "DaemonSet");
        let mut doomed: Vec<&Arc<Obj>> = Vec::new();
        for (node, list) in pods {
            if eligible.contains(node) {
                doomed.extend(list.iter().skip(1));
            } else {
                doomed.extend(list.iter());
            }
        }
        for node in eligible.iter().filter(|n| !pods.contains_key(*n)) {
            let mut template = ds["spec"]["template"].clone();
            template["spec"] = spec.clone();
            let mut pod = pod_from_template(ds, "DaemonSet", &template);
            pod["metadata"]["generateName"] = json!(format!("{}-", meta(ds, "name")));
            if !pod["metadata"]["labels"].is_object() {
                pod["metadata"]["labels"] = json!({});
            }
            pod["metadata"]["labels"][REVISION_LABEL] = json!(revision);
            pod["spec"]["affinity"]["nodeAffinity"] = json!({"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}});
            match self
                .writer
                .create(state, &pod_rt, meta(ds, "namespace"), pod)
            {
                Ok(p) => self.events.record(
                    state,
                    ds,
                    kind,
                    Severity::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", meta(&p, "name")),
                ),
                Err(e) => self.events.record(
                    state,
                    ds,
                    kind,
                    Severity::Warning,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                ),
            }
        }
        // Replace pods at an old template, within maxUnavailable.
        if ds["spec"]["updateStrategy"]["type"] != "OnDelete" {
            let max_unavailable = int_or_percent(
                &ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
                i64::try_from(eligible.len()).unwrap_or(0),
                true,
            )
            .max(1);
            let current: Vec<&Arc<Obj>> = eligible
                .iter()
                .filter_map(|n| pods.get(n)?.first())
                .collect();
            let unavailable = i64::try_from(
                eligible.len() - current.iter().filter(|p| objects::pod_ready(p)).count(),
            )
            .unwrap_or(0);
            let budget = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
            doomed.extend(
                current
                    .iter()
                    .filter(|p| {
                        p["metadata"]["labels"][REVISION_LABEL] != revision && objects::pod_ready(p)
                    })
                    .take(budget),
            );
            // Old pods that are not ready anyway go at once.
            doomed.extend(current.iter().filter(|p| {
                p["metadata"]["labels"][REVISION_LABEL] != revision && !objects::pod_ready(p)
            }));
        }
        for p in doomed {
            if self
                .writer
                .delete(state, &pod_rt, p, Propagation::Background)
            {
                self.events.record(
                    state,
                    ds,
                    kind,
                    Severity::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", meta(p, "name")),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_pods_tolerate_what_upstream_tolerates() {
        let ds = json!({"spec": {"template": {"spec": {"nodeSelector": {"role": "edge"}}}}});
        let spec = tolerant_spec(&ds);
        let cordoned = json!({"metadata": {"name": "n1", "labels": {"role": "edge"}},
                              "spec": {"unschedulable": true, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}});
        assert!(should_run(&spec, &cordoned));
        let other = json!({"metadata": {"name": "n2", "labels": {"role": "core"}}, "spec": {}});
        assert!(!should_run(&spec, &other));
        let tainted = json!({"metadata": {"name": "n3", "labels": {"role": "edge"}},
                             "spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}});
        assert!(!should_run(&spec, &tainted));
    }
}
