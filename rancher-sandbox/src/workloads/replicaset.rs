//! The ReplicaSet controller: keeps `spec.replicas` active pods from the template, each
//! owned by the ReplicaSet, and reports their readiness in the status.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::events::{Recorder, Severity};
use super::objects::{self, Key, Writer, meta};
use super::runner::Reconciler;
use crate::store::{Change, Obj, Propagation, State};

/// The controller's name, as kube-controller-manager's.
pub(crate) const NAME: &str = "replicaset-controller";

pub(crate) struct ReplicaSets {
    writer: Writer,
    events: Recorder,
}

impl ReplicaSets {
    pub(crate) fn new() -> Self {
        Self {
            writer: Writer { manager: NAME },
            events: Recorder::new(NAME),
        }
    }
}

/// A pod built from a workload's template, owned by `owner` (served as `owner_kind`).
pub(crate) fn pod_from_template(owner: &Value, owner_kind: &str, template: &Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": meta(owner, "namespace"),
            "labels": template["metadata"]["labels"].clone(),
            "ownerReferences": [objects::owner_ref(owner, "apps/v1", owner_kind)],
        },
        "spec": template["spec"].clone(),
    });
    if template["metadata"]["annotations"].is_object() {
        pod["metadata"]["annotations"] = template["metadata"]["annotations"].clone();
    }
    pod
}

/// The order in which surplus pods go: unscheduled, pending, not ready, then the newest.
pub(crate) fn deletion_order(pods: &mut [Arc<Obj>]) {
    pods.sort_by_key(|p| {
        (
            p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty()),
            p["status"]["phase"] == "Running",
            objects::pod_ready(p),
            Reverse(meta(p, "creationTimestamp").to_string()),
            Reverse(meta(p, "name").to_string()),
        )
    });
}

impl Reconciler for ReplicaSets {
    type Key = Key;

    fn name(&self) -> &'static str {
        NAME
    }

    fn keys_for(&mut self, _state: &State, change: &Change, out: &mut Vec<Key>) {
        match change.storage.as_str() {
            "apps/replicasets" => out.push(objects::key_of(&change.object)),
            "/pods" => {
                for obj in std::iter::once(&change.object).chain(change.previous.as_ref()) {
                    if let Some(k) = objects::controller_key(obj, "ReplicaSet") {
                        out.push(k);
                    }
                }
            }
            _ => {}
        }
    }

    fn all_keys(&mut self, state: &State, out: &mut Vec<Key>) {
        if let Some(rt) = objects::rt(state, "apps", "replicasets") {
            out.extend(
                objects::list(state, &rt, None)
                    .iter()
                    .map(|o| objects::key_of(o)),
            );
        }
    }

    fn reconcile(&mut self, state: &mut State, (ns, name): &Key) -> Option<Duration> {
        let rs_rt = objects::rt(state, "apps", "replicasets")?;
        let pod_rt = objects::rt(state, "", "pods")?;
        let rs = objects::get(state, &rs_rt, ns, name)?;
        let mut pods: Vec<Arc<Obj>> = objects::list(state, &pod_rt, Some(ns))
            .into_iter()
            .filter(|p| objects::controlled_by(p, &rs) && objects::pod_active(p))
            .collect();
        let desired = usize::try_from(rs["spec"]["replicas"].as_i64().unwrap_or(1)).unwrap_or(0);
        if !objects::is_deleting(&rs) {
            self.scale(state, &rs, &mut pods, desired);
        }
        let pods: Vec<Arc<Obj>> = objects::list(state, &pod_rt, Some(ns))
            .into_iter()
            .filter(|p| objects::controlled_by(p, &rs) && objects::pod_active(p))
            .collect();
        let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
        let template_labels = &rs["spec"]["template"]["metadata"]["labels"];
        let mut ready = 0;
        let mut available = 0;
        let mut again: Option<i64> = None;
        for p in &pods {
            if objects::pod_ready(p) {
                ready += 1;
            }
            match objects::pod_available(p, min_ready) {
                Ok(()) => available += 1,
                Err(0) => {}
                Err(left) => again = Some(again.map_or(left, |a| a.min(left))),
            }
        }
        let fully_labeled = pods
            .iter()
            .filter(|p| {
                template_labels.as_object().is_none_or(|m| {
                    m.iter()
                        .all(|(k, v)| p["metadata"]["labels"].get(k) == Some(v))
                })
            })
            .count();
        let mut status = json!({
            "replicas": pods.len(),
            "fullyLabeledReplicas": fully_labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs["metadata"]["generation"],
        });
        if rs["status"]["conditions"].is_array() {
            status["conditions"] = rs["status"]["conditions"].clone();
        }
        if rs["status"] != status {
            let mut updated = rs.value.clone();
            updated["status"] = status;
            let _ = self.writer.update_status(state, &rs_rt, updated);
        }
        again.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(1).max(1)))
    }
}

impl ReplicaSets {
    fn scale(&mut self, state: &mut State, rs: &Arc<Obj>, pods: &mut [Arc<Obj>], desired: usize) {
        let kind = ("apps/v1", "ReplicaSet");
        let ns = meta(rs, "namespace").to_string();
        if pods.len() < desired {
            let Some(pod_rt) = objects::rt(state, "", "pods") else {
                return;
            };
            for _ in pods.len()..desired {
                let mut pod = pod_from_template(rs, "ReplicaSet", &rs["spec"]["template"]);
                pod["metadata"]["generateName"] = json!(format!("{}-", meta(rs, "name")));
                match self.writer.create(state, &pod_rt, &ns, pod) {
                    Ok(created) => self.events.record(
                        state,
                        rs,
                        kind,
                        Severity::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", meta(&created, "name")),
                    ),
                    Err(e) => {
                        self.events.record(
                            state,
                            rs,
                            kind,
                            Severity::Warning,
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        );
                        return;
                    }
                }
            }
        } else if pods.len() > desired {
            let Some(pod_rt) = objects::rt(state, "", "pods") else {
                return;
            };
            deletion_order(pods);
            for pod in &pods[..pods.len() - desired] {
                if self
                    .writer
                    .delete(state, &pod_rt, pod, Propagation::Background)
                {
                    self.events.record(
                        state,
                        rs,
                        kind,
                        Severity::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", meta(pod, "name")),
                    );
                }
            }
        }
    }
}
