//! The StatefulSet controller: pods `NAME-0` to `NAME-(N-1)`, each with `hostname` its
//! own name and `subdomain` the governing Service, created in order (each waits for the
//! one before to be running and ready, unless `podManagementPolicy: Parallel`), removed
//! from the highest ordinal down, and replaced one at a time, highest first, when the
//! template changes (down to `partition`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::deployment::template_hash;
use super::events::{Recorder, Severity};
use super::objects::{self, Key, Writer, meta};
use super::replicaset::pod_from_template;
use super::runner::Reconciler;
use crate::store::{Change, Obj, Propagation, State};

/// The controller's name, as kube-controller-manager's.
pub(crate) const NAME: &str = "statefulset-controller";
/// The label with a pod's template revision (StatefulSets and DaemonSets).
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label with a StatefulSet pod's name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub(crate) struct StatefulSets {
    writer: Writer,
    events: Recorder,
}

impl StatefulSets {
    pub(crate) fn new() -> Self {
        Self {
            writer: Writer { manager: NAME },
            events: Recorder::new(NAME),
        }
    }
}

/// The ordinal of a pod named `SET-N`.
fn ordinal(set: &str, pod: &str) -> Option<i64> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn running_and_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running" && objects::pod_ready(pod) && !objects::is_deleting(pod)
}

/// The pod of ordinal `i` at revision `revision`.
fn pod_for(set: &Value, i: i64, revision: &str) -> Value {
    let name = format!("{}-{i}", meta(set, "name"));
    let mut pod = pod_from_template(set, "StatefulSet", &set["spec"]["template"]);
    pod["metadata"]["name"] = json!(name);
    let labels = &mut pod["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[POD_NAME_LABEL] = json!(name);
    labels[POD_INDEX_LABEL] = json!(i.to_string());
    labels[REVISION_LABEL] = json!(revision);
    pod["spec"]["hostname"] = json!(name);
    if let Some(service) = set["spec"]["serviceName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        pod["spec"]["subdomain"] = json!(service);
    }
    pod
}

impl Reconciler for StatefulSets {
    type Key = Key;

    fn name(&self) -> &'static str {
        NAME
    }

    fn keys_for(&mut self, _state: &State, change: &Change, out: &mut Vec<Key>) {
        match change.storage.as_str() {
            "apps/statefulsets" => out.push(objects::key_of(&change.object)),
            "/pods" => {
                for obj in std::iter::once(&change.object).chain(change.previous.as_ref()) {
                    if let Some(k) = objects::controller_key(obj, "StatefulSet") {
                        out.push(k);
                    }
                }
            }
            _ => {}
        }
    }

    fn all_keys(&mut self, state: &State, out: &mut Vec<Key>) {
        if let Some(rt) = objects::rt(state, "apps", "statefulsets") {
            out.extend(
                objects::list(state, &rt, None)
                    .iter()
                    .map(|o| objects::key_of(o)),
            );
        }
    }

    fn reconcile(&mut self, state: &mut State, (ns, name): &Key) -> Option<Duration> {
        let set_rt = objects::rt(state, "apps", "statefulsets")?;
        let pod_rt = objects::rt(state, "", "pods")?;
        let set = objects::get(state, &set_rt, ns, name)?;
        let revision = format!("{name}-{}", template_hash(&set["spec"]["template"], None));
        let pods = |state: &State| -> BTreeMap<i64, Arc<Obj>> {
            objects::list(state, &pod_rt, Some(ns))
                .into_iter()
                .filter(|p| objects::controlled_by(p, &set))
                .filter_map(|p| Some((ordinal(name, meta(&p, "name"))?, p)))
                .collect()
        };
        if !objects::is_deleting(&set) {
            self.step(state, &set, &revision, &pods(state));
        }
        self.sync_status(state, &set, &revision, &pods(state));
        None
    }
}

impl StatefulSets {
    /// One step towards the desired pods: create, delete or replace.
    fn step(
        &mut self,
        state: &mut State,
        set: &Arc<Obj>,
        revision: &str,
        pods: &BTreeMap<i64, Arc<Obj>>,
    ) {
        let Some(pod_rt) = objects::rt(state, "", "pods") else {
            return;
        };
        let replicas = set["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
        let parallel = set["spec"]["podManagementPolicy"] == "Parallel";
        let kind = ("apps/v1", "StatefulSet");
        let set_name = meta(set, "name").to_string();
        // Create the missing ordinals, in order (all at once when Parallel).
        for i in 0..replicas {
            match pods.get(&i) {
                Some(p) if running_and_ready(p) => continue,
                Some(_) if parallel => continue,
                Some(_) => return,
                None => {
                    let pod = pod_for(set, i, revision);
                    let pod_name = format!("{set_name}-{i}");
                    match self
                        .writer
                        .create(state, &pod_rt, meta(set, "namespace"), pod)
                    {
                        Ok(_) => self.events.record(
                            state,
                            set,
                            kind,
                            Severity::Normal,
                            "SuccessfulCreate",
                            format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                        ),
                        Err(e) => {
                            self.events.record(state, set, kind, Severity::Warning, "FailedCreate",
                                format!("create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"));
                            return;
                        }
                    }
                    if !parallel {
                        return;
                    }
                }
            }
        }
        // Remove the ordinals beyond replicas, highest first.
        let surplus: Vec<&Arc<Obj>> = pods.range(replicas..).rev().map(|(_, p)| p).collect();
        if !surplus.is_empty() {
            if !parallel && !pods.range(..replicas).all(|(_, p)| running_and_ready(p)) {
                return;
            }
            for p in surplus
                .iter()
                .take(if parallel { surplus.len() } else { 1 })
            {
                if objects::is_deleting(p) {
                    continue;
                }
                if self
                    .writer
                    .delete(state, &pod_rt, p, Propagation::Background)
                {
                    self.events.record(
                        state,
                        set,
                        kind,
                        Severity::Normal,
                        "SuccessfulDelete",
                        format!(
                            "delete Pod {} in StatefulSet {set_name} successful",
                            meta(p, "name")
                        ),
                    );
                }
            }
            return;
        }
        // Rolling update: the highest pod at an old revision, once every pod is ready.
        if set["spec"]["updateStrategy"]["type"] == "OnDelete" {
            return;
        }
        if !pods.range(..replicas).all(|(_, p)| running_and_ready(p)) {
            return;
        }
        let partition = set["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
            .as_i64()
            .unwrap_or(0);
        let stale = pods
            .range(partition.max(0)..replicas)
            .rev()
            .find(|(_, p)| p["metadata"]["labels"][REVISION_LABEL] != revision);
        if let Some((_, p)) = stale
            && self
                .writer
                .delete(state, &pod_rt, p, Propagation::Background)
        {
            self.events.record(
                state,
                set,
                kind,
                Severity::Normal,
                "SuccessfulDelete",
                format!(
                    "delete Pod {} in StatefulSet {set_name} successful",
                    meta(p, "name")
                ),
            );
        }
    }

    fn sync_status(
        &mut self,
        state: &mut State,
        set: &Arc<Obj>,
        revision: &str,
        pods: &BTreeMap<i64, Arc<Obj>>,
    ) {
        let Some(set_rt) = objects::rt(state, "apps", "statefulsets") else {
            return;
        };
        let replicas = set["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
        let min_ready = set["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
        let live: Vec<&Arc<Obj>> = pods.values().filter(|p| !objects::is_deleting(p)).collect();
        let at = |r: &str| {
            live.iter()
                .filter(|p| p["metadata"]["labels"][REVISION_LABEL] == r)
                .count()
        };
        let updated = at(revision);
        let mut current = set["status"]["currentRevision"]
            .as_str()
            .unwrap_or(revision)
            .to_string();
        if updated == usize::try_from(replicas).unwrap_or(0)
            && i64::try_from(live.len()).unwrap_or(0) == replicas
            && live.iter().all(|p| running_and_ready(p))
        {
            current = revision.to_string();
        }
        let status = json!({
            "observedGeneration": set["metadata"]["generation"],
            "replicas": live.len(),
            "readyReplicas": live.iter().filter(|p| objects::pod_ready(p)).count(),
            "availableReplicas": live.iter().filter(|p| objects::pod_available(p, min_ready).is_ok()).count(),
            "currentReplicas": at(&current),
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": revision,
            "collisionCount": set["status"]["collisionCount"].as_i64().unwrap_or(0),
        });
        if set["status"] != status {
            let mut updated = set.value.clone();
            updated["status"] = status;
            let _ = self.writer.update_status(state, &set_rt, updated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_numbered_and_named_for_dns() {
        let set = json!({"metadata": {"name": "mdb", "namespace": "default", "uid": "u"},
                         "spec": {"serviceName": "mongodb", "template": {"metadata": {"labels": {"app": "mongodb"}}, "spec": {"containers": []}}}});
        let pod = pod_for(&set, 2, "mdb-abc");
        assert_eq!(pod["metadata"]["name"], "mdb-2");
        assert_eq!(pod["spec"]["hostname"], "mdb-2");
        assert_eq!(pod["spec"]["subdomain"], "mongodb");
        assert_eq!(pod["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert_eq!(pod["metadata"]["labels"]["app"], "mongodb");
        assert_eq!(ordinal("mdb", "mdb-12"), Some(12));
        assert_eq!(ordinal("mdb", "mdb2-1"), None);
    }
}
