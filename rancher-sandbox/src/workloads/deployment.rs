//! The Deployment controller: one ReplicaSet per pod template (named by the template's
//! hash), rolled over with `maxSurge`/`maxUnavailable` or recreated, old ReplicaSets kept
//! up to `revisionHistoryLimit`, and the status `kubectl rollout status` reads.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::events::{Recorder, Severity};
use super::objects::{self, Key, Writer, meta};
use super::runner::Reconciler;
use crate::store::{Change, Obj, Propagation, State};

/// The controller's name, as kube-controller-manager's.
pub(crate) const NAME: &str = "deployment-controller";
/// The label that ties a ReplicaSet and its pods to one template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The revision annotation on Deployments and their ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

pub(crate) struct Deployments {
    writer: Writer,
    events: Recorder,
}

impl Deployments {
    pub(crate) fn new() -> Self {
        Self {
            writer: Writer { manager: NAME },
            events: Recorder::new(NAME),
        }
    }
}

/// FNV-1a (32 bits) of the template, written with kube's "safe" alphabet as
/// kube-controller-manager writes `pod-template-hash` values.
pub(crate) fn template_hash(template: &Value, collisions: Option<i64>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(template.to_string().as_bytes());
    if let Some(c) = collisions {
        feed(c.to_string().as_bytes());
    }
    safe_encode(&h.to_string())
}

/// kube's `rand.SafeEncodeString`: no vowels, no look-alike characters.
pub(crate) fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// An int-or-percent of `total`, rounded up or down.
pub(crate) fn int_or_percent(v: &Value, total: i64, round_up: bool) -> i64 {
    if let Some(n) = v.as_i64() {
        return n.max(0);
    }
    let Some(pct) = v
        .as_str()
        .and_then(|s| s.strip_suffix('%'))
        .and_then(|p| p.parse::<i64>().ok())
    else {
        return 0;
    };
    let scaled = pct.max(0) * total;
    if round_up {
        (scaled + 99) / 100
    } else {
        scaled / 100
    }
}

fn replicas_of(rs: &Value) -> i64 {
    rs["spec"]["replicas"].as_i64().unwrap_or(0)
}

fn status_of(rs: &Value, field: &str) -> i64 {
    rs["status"][field].as_i64().unwrap_or(0)
}

fn revision_of(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The rollout's bounds: (maxSurge, maxUnavailable) as numbers of pods.
fn bounds(d: &Value, replicas: i64) -> (i64, i64) {
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let surge = int_or_percent(&ru["maxSurge"], replicas, true);
    let unavailable = int_or_percent(&ru["maxUnavailable"], replicas, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

impl Reconciler for Deployments {
    type Key = Key;

    fn name(&self) -> &'static str {
        NAME
    }

    fn keys_for(&mut self, _state: &State, change: &Change, out: &mut Vec<Key>) {
        match change.storage.as_str() {
            "apps/deployments" => out.push(objects::key_of(&change.object)),
            "apps/replicasets" => {
                for obj in std::iter::once(&change.object).chain(change.previous.as_ref()) {
                    if let Some(k) = objects::controller_key(obj, "Deployment") {
                        out.push(k);
                    }
                }
            }
            _ => {}
        }
    }

    fn all_keys(&mut self, state: &State, out: &mut Vec<Key>) {
        if let Some(rt) = objects::rt(state, "apps", "deployments") {
            out.extend(
                objects::list(state, &rt, None)
                    .iter()
                    .map(|o| objects::key_of(o)),
            );
        }
    }

    fn reconcile(&mut self, state: &mut State, (ns, name): &Key) -> Option<Duration> {
        let d_rt = objects::rt(state, "apps", "deployments")?;
        let rs_rt = objects::rt(state, "apps", "replicasets")?;
        let d = objects::get(state, &d_rt, ns, name)?;
        if objects::is_deleting(&d) || objects::selector(&d).is_none() {
            return None;
        }
        let owned = |state: &State| -> Vec<Arc<Obj>> {
            let mut rss: Vec<Arc<Obj>> = objects::list(state, &rs_rt, Some(ns))
                .into_iter()
                .filter(|rs| objects::controlled_by(rs, &d))
                .collect();
            rss.sort_by(|a, b| {
                meta(a, "creationTimestamp")
                    .cmp(meta(b, "creationTimestamp"))
                    .then_with(|| meta(a, "name").cmp(meta(b, "name")))
            });
            rss
        };
        let collisions = d["status"]["collisionCount"].as_i64();
        let hash = template_hash(&d["spec"]["template"], collisions);
        let rss = owned(state);
        let mut created = false;
        if d["spec"]["paused"] != true {
            let new = rss.iter().find(|rs| {
                rs["spec"]["template"]["metadata"]["labels"][POD_TEMPLATE_HASH] == hash.as_str()
            });
            match new {
                None => match self.create_new(state, &d, &hash, &rss) {
                    Ok(()) => created = true,
                    Err(()) => return Some(Duration::from_secs(1)),
                },
                Some(new) => {
                    let new = new.clone();
                    self.roll(state, &d, &new, &rss);
                }
            }
            self.clean_up(state, &d, &hash);
        }
        self.sync_status(state, &d, &hash, &owned(state), created)
    }
}

impl Deployments {
    /// Creates the ReplicaSet of the current template.
    fn create_new(
        &mut self,
        state: &mut State,
        d: &Arc<Obj>,
        hash: &str,
        rss: &[Arc<Obj>],
    ) -> Result<(), ()> {
        let rs_rt = objects::rt(state, "apps", "replicasets").ok_or(())?;
        let d_rt = objects::rt(state, "apps", "deployments").ok_or(())?;
        let ns = meta(d, "namespace");
        let replicas = replicas_of(d);
        let name = format!("{}-{hash}", meta(d, "name"));
        if let Some(existing) = objects::get(state, &rs_rt, ns, &name)
            && !objects::controlled_by(&existing, d)
        {
            // Someone else's ReplicaSet has the name: a new hash, as upstream does.
            let mut bumped = d.value.clone();
            bumped["status"]["collisionCount"] =
                json!(d["status"]["collisionCount"].as_i64().unwrap_or(0) + 1);
            let _ = self.writer.update_status(state, &d_rt, bumped);
            return Err(());
        }
        let initial = if d["spec"]["strategy"]["type"] == "Recreate" {
            if rss
                .iter()
                .any(|rs| replicas_of(rs) > 0 || status_of(rs, "replicas") > 0)
            {
                0
            } else {
                replicas
            }
        } else {
            let (surge, _) = bounds(d, replicas);
            let current: i64 = rss.iter().map(|rs| replicas_of(rs)).sum();
            (replicas + surge - current).clamp(0, replicas)
        };
        let revision = rss.iter().map(|rs| revision_of(rs)).max().unwrap_or(0) + 1;
        let mut template = d["spec"]["template"].clone();
        template["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
        let mut selector = d["spec"]["selector"].clone();
        selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
        let (surge, _) = bounds(d, replicas);
        let rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": template["metadata"]["labels"].clone(),
                "annotations": {
                    REVISION: revision.to_string(),
                    "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                    "deployment.kubernetes.io/max-replicas": (replicas + surge).to_string(),
                },
                "ownerReferences": [objects::owner_ref(d, "apps/v1", "Deployment")],
            },
            "spec": {
                "replicas": initial,
                "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
                "selector": selector,
                "template": template,
            },
        });
        self.writer.create(state, &rs_rt, ns, rs).map_err(|e| {
            self.events.record(
                state,
                d,
                ("apps/v1", "Deployment"),
                Severity::Warning,
                "FailedCreate",
                format!("Failed to create new replica set {name:?}: {e}"),
            );
        })?;
        self.scaled(state, d, &name, 0, initial);
        Ok(())
    }

    fn scaled(&mut self, state: &mut State, d: &Value, rs: &str, from: i64, to: i64) {
        if from == to {
            return;
        }
        let verb = if to > from { "up" } else { "down" };
        self.events.record(
            state,
            d,
            ("apps/v1", "Deployment"),
            Severity::Normal,
            "ScalingReplicaSet",
            format!("Scaled {verb} replica set {rs} from {from} to {to}"),
        );
    }

    /// Sets a ReplicaSet's replicas (and the Deployment's annotations on it).
    fn scale_rs(&mut self, state: &mut State, d: &Value, rs: &Value, to: i64) {
        let Some(rs_rt) = objects::rt(state, "apps", "replicasets") else {
            return;
        };
        let from = replicas_of(rs);
        let replicas = replicas_of(d);
        let (surge, _) = bounds(d, replicas);
        let mut updated = rs.clone();
        updated["spec"]["replicas"] = json!(to);
        let annotations = &mut updated["metadata"]["annotations"];
        annotations["deployment.kubernetes.io/desired-replicas"] = json!(replicas.to_string());
        annotations["deployment.kubernetes.io/max-replicas"] =
            json!((replicas + surge).to_string());
        if *rs != updated && self.writer.update(state, &rs_rt, updated).is_ok() {
            self.scaled(state, d, meta(rs, "name"), from, to);
        }
    }

    /// One step of the rollout towards the new ReplicaSet.
    fn roll(&mut self, state: &mut State, d: &Arc<Obj>, new: &Arc<Obj>, rss: &[Arc<Obj>]) {
        let replicas = replicas_of(d);
        let old: Vec<&Arc<Obj>> = rss
            .iter()
            .filter(|rs| meta(rs, "uid") != meta(new, "uid"))
            .collect();
        // A template rolled back to: the newest revision again.
        let newest = rss.iter().map(|rs| revision_of(rs)).max().unwrap_or(0);
        if revision_of(new) < newest
            && let Some(rs_rt) = objects::rt(state, "apps", "replicasets")
        {
            let mut updated = new.value.clone();
            updated["metadata"]["annotations"][REVISION] = json!((newest + 1).to_string());
            let _ = self.writer.update(state, &rs_rt, updated);
        }
        let current = |state: &State, rs: &Value| -> Value {
            let (ns, name) = objects::key_of(rs);
            objects::rt(state, "apps", "replicasets")
                .and_then(|rt| objects::get(state, &rt, &ns, &name))
                .map_or(Value::Null, |o| o.value.clone())
        };
        if d["spec"]["strategy"]["type"] == "Recreate" {
            for rs in &old {
                self.scale_rs(state, d, rs, 0);
            }
            let old_running: i64 = old.iter().map(|rs| status_of(rs, "replicas")).sum();
            if old_running == 0 {
                self.scale_rs(state, d, new, replicas);
            }
            return;
        }
        let (surge, max_unavailable) = bounds(d, replicas);
        // Scale the new ReplicaSet up within maxSurge (or down to the replicas wanted).
        let total: i64 = rss.iter().map(|rs| replicas_of(rs)).sum();
        let new_replicas = replicas_of(new);
        let target = if new_replicas > replicas {
            replicas
        } else if total >= replicas + surge {
            new_replicas
        } else {
            new_replicas + (replicas + surge - total).min(replicas - new_replicas)
        };
        self.scale_rs(state, d, new, target);
        let new = current(state, new);
        // Scale old ReplicaSets down within maxUnavailable: unhealthy pods first.
        let old: Vec<Value> = old.iter().map(|rs| current(state, rs)).collect();
        if old.iter().map(replicas_of).sum::<i64>() == 0 {
            return;
        }
        let all_pods: i64 = old.iter().map(replicas_of).sum::<i64>() + replicas_of(&new);
        let min_available = replicas - max_unavailable;
        let new_unavailable = replicas_of(&new) - status_of(&new, "availableReplicas");
        let mut max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return;
        }
        let mut left: Vec<(Value, i64)> = old
            .into_iter()
            .map(|rs| {
                let n = replicas_of(&rs);
                (rs, n)
            })
            .collect();
        for (rs, n) in &mut left {
            if max_scaled_down <= 0 {
                break;
            }
            let unhealthy = *n - status_of(rs, "availableReplicas");
            if *n == 0 || unhealthy <= 0 {
                continue;
            }
            let down = unhealthy.min(max_scaled_down);
            *n -= down;
            max_scaled_down -= down;
        }
        let available: i64 = left
            .iter()
            .map(|(rs, _)| status_of(rs, "availableReplicas"))
            .sum::<i64>()
            + status_of(&new, "availableReplicas");
        let mut can_go = (available - min_available).max(0);
        for (_, n) in &mut left {
            if can_go <= 0 {
                break;
            }
            let down = (*n).min(can_go);
            *n -= down;
            can_go -= down;
        }
        for (rs, n) in left {
            self.scale_rs(state, d, &rs, n);
        }
    }

    /// Deletes old, empty ReplicaSets beyond `revisionHistoryLimit`.
    fn clean_up(&mut self, state: &mut State, d: &Arc<Obj>, hash: &str) {
        let Some(rs_rt) = objects::rt(state, "apps", "replicasets") else {
            return;
        };
        let limit =
            usize::try_from(d["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10)).unwrap_or(0);
        let mut idle: Vec<Arc<Obj>> = objects::list(state, &rs_rt, Some(meta(d, "namespace")))
            .into_iter()
            .filter(|rs| {
                objects::controlled_by(rs, d)
                    && rs["spec"]["template"]["metadata"]["labels"][POD_TEMPLATE_HASH] != hash
                    && replicas_of(rs) == 0
                    && status_of(rs, "replicas") == 0
                    && !objects::is_deleting(rs)
            })
            .collect();
        if idle.len() <= limit {
            return;
        }
        idle.sort_by_key(|rs| revision_of(rs));
        let extra = idle.len() - limit;
        for rs in idle.into_iter().take(extra) {
            self.writer
                .delete(state, &rs_rt, &rs, Propagation::Background);
        }
    }

    fn sync_status(
        &mut self,
        state: &mut State,
        d: &Arc<Obj>,
        hash: &str,
        rss: &[Arc<Obj>],
        created: bool,
    ) -> Option<Duration> {
        let d_rt = objects::rt(state, "apps", "deployments")?;
        let replicas = replicas_of(d);
        let (_, max_unavailable) = bounds(d, replicas);
        let new = rss
            .iter()
            .find(|rs| rs["spec"]["template"]["metadata"]["labels"][POD_TEMPLATE_HASH] == hash);
        let sum = |f: &str| rss.iter().map(|rs| status_of(rs, f)).sum::<i64>();
        let spec_total: i64 = rss.iter().map(|rs| replicas_of(rs)).sum();
        let available = sum("availableReplicas");
        let mut status = json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": sum("replicas"),
            "updatedReplicas": new.map_or(0, |rs| status_of(rs, "replicas")),
            "readyReplicas": sum("readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": (spec_total - available).max(0),
            "conditions": d["status"]["conditions"].clone(),
        });
        if let Some(c) = d["status"].get("collisionCount") {
            status["collisionCount"] = c.clone();
        }
        let now = objects::now();
        let (ok, reason, message) = if available >= replicas - max_unavailable {
            (
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        } else {
            (
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        };
        let old_available = objects::condition(d, "Available");
        if old_available.is_none_or(|c| c["reason"] != reason) {
            objects::set_condition(
                &mut status["conditions"],
                json!({"type": "Available", "status": if ok { "True" } else { "False" },
                       "reason": reason, "message": message, "lastUpdateTime": now}),
            );
        }
        let new_name = new.map_or_else(String::new, |rs| meta(rs, "name").to_string());
        let complete = status["updatedReplicas"] == replicas
            && status["replicas"] == replicas
            && available == replicas;
        let progressed = created
            || [
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
            ]
            .iter()
            .any(|f| d["status"][*f] != status[*f]);
        let old_progressing = objects::condition(d, "Progressing").cloned();
        let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
        let mut again = None;
        let progressing = if complete {
            Some((
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet {new_name:?} has successfully progressed."),
            ))
        } else if progressed || old_progressing.is_none() {
            again = Some(Duration::from_secs(
                u64::try_from(deadline).unwrap_or(600).max(1),
            ));
            Some((
                "True",
                if created {
                    "NewReplicaSetCreated"
                } else {
                    "ReplicaSetUpdated"
                },
                if created {
                    format!("Created new replica set {new_name:?}")
                } else {
                    format!("ReplicaSet {new_name:?} is progressing.")
                },
            ))
        } else if let Some(old) = &old_progressing
            && old["reason"] != "ProgressDeadlineExceeded"
            && old["reason"] != "NewReplicaSetAvailable"
        {
            let idle = objects::seconds_since(&old["lastUpdateTime"]);
            if idle >= deadline {
                Some((
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet {new_name:?} has timed out progressing."),
                ))
            } else {
                again = Some(Duration::from_secs(
                    u64::try_from(deadline - idle).unwrap_or(1).max(1),
                ));
                None
            }
        } else {
            None
        };
        if let Some((s, reason, message)) = progressing
            && (progressed
                || old_progressing
                    .as_ref()
                    .is_none_or(|c| c["reason"] != reason || c["message"] != message.as_str()))
        {
            objects::set_condition(
                &mut status["conditions"],
                json!({"type": "Progressing", "status": s, "reason": reason,
                       "message": message, "lastUpdateTime": now}),
            );
        }
        // The Deployment carries its current revision, as upstream's does.
        let revision = new.map(|rs| revision_of(rs)).unwrap_or(0);
        let mut updated = d.value.clone();
        if revision > 0 && d["metadata"]["annotations"][REVISION] != revision.to_string().as_str() {
            updated["metadata"]["annotations"][REVISION] = json!(revision.to_string());
            if let Ok(written) = self.writer.update(state, &d_rt, updated.clone()) {
                updated = written.value.clone();
            }
        }
        if updated["status"] != status {
            updated["status"] = status;
            let _ = self.writer.update_status(state, &d_rt, updated);
        }
        again
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surge_rounds_up_and_unavailable_down() {
        assert_eq!(int_or_percent(&json!("25%"), 10, true), 3);
        assert_eq!(int_or_percent(&json!("25%"), 10, false), 2);
        assert_eq!(int_or_percent(&json!(2), 10, false), 2);
        let d = json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}});
        assert_eq!(bounds(&d, 3), (0, 1));
    }

    #[test]
    fn template_hashes_are_stable_and_safe() {
        let t = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}});
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t.clone(), None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert!(
            h.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
    }
}
