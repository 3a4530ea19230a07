//! Reading and writing the objects the controllers share: metadata, owner references,
//! conditions, pod readiness, and the store calls every controller makes.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::managed;
use crate::resource::ResourceType;
use crate::selector::LabelSelector;
use crate::status::{ApiError, ApiResult};
use crate::store::{ListOptions, Obj, Part, Propagation, State};

/// `(namespace, name)`.
pub(crate) type Key = (String, String);

/// A string field of `metadata`, or `""`.
pub(crate) fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

/// The object's `(namespace, name)`.
pub(crate) fn key_of(obj: &Value) -> Key {
    (
        meta(obj, "namespace").to_string(),
        meta(obj, "name").to_string(),
    )
}

/// Whether the object carries a deletionTimestamp.
pub(crate) fn is_deleting(obj: &Value) -> bool {
    obj["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// The ownerReference marked `controller: true`, if any.
pub(crate) fn controller_ref(obj: &Value) -> Option<&Value> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
}

/// Whether `obj`'s controller is `owner` (compared by uid).
pub(crate) fn controlled_by(obj: &Value, owner: &Value) -> bool {
    let uid = meta(owner, "uid");
    !uid.is_empty() && controller_ref(obj).is_some_and(|r| r["uid"] == uid)
}

/// The `(namespace, name)` of `obj`'s controller when it is of `kind`.
pub(crate) fn controller_key(obj: &Value, kind: &str) -> Option<Key> {
    let r = controller_ref(obj).filter(|r| r["kind"] == kind)?;
    Some((
        meta(obj, "namespace").to_string(),
        r["name"].as_str()?.to_string(),
    ))
}

/// A controller ownerReference to `owner` (which is served as `api_version`/`kind`).
pub(crate) fn owner_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": meta(owner, "name"),
        "uid": meta(owner, "uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The condition of `type_` in `status.conditions`.
pub(crate) fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Sets a condition in `conditions` (an array), keeping its lastTransitionTime while the
/// status does not change. Extra fields (lastUpdateTime, lastProbeTime) come in `cond`.
pub(crate) fn set_condition(conditions: &mut Value, mut cond: Value) {
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let now = now();
    match list.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(old) => {
            let transition = if old["status"] == cond["status"] {
                old["lastTransitionTime"].clone()
            } else {
                json!(now)
            };
            cond["lastTransitionTime"] = transition;
            *old = cond;
        }
        None => {
            cond["lastTransitionTime"] = json!(now);
            list.push(cond);
        }
    }
}

/// The time now, as the API writes timestamps (RFC 3339, seconds).
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Seconds since an RFC 3339 timestamp (0 when unreadable).
pub(crate) fn seconds_since(ts: &Value) -> i64 {
    ts.as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map_or(0, |t| jiff::Timestamp::now().as_second() - t.as_second())
}

/// Whether a pod counts toward its controller: not terminal, not being deleted.
pub(crate) fn pod_active(pod: &Value) -> bool {
    !is_deleting(pod)
        && !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
}

/// Whether the pod's `Ready` condition is true.
pub(crate) fn pod_ready(pod: &Value) -> bool {
    condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

/// Whether the pod has been ready for `min_ready` seconds; otherwise how many seconds
/// remain (`Err`), or `Err(0)` when it is not ready at all.
pub(crate) fn pod_available(pod: &Value, min_ready: i64) -> Result<(), i64> {
    let Some(ready) = condition(pod, "Ready").filter(|c| c["status"] == "True") else {
        return Err(0);
    };
    if min_ready <= 0 {
        return Ok(());
    }
    let since = seconds_since(&ready["lastTransitionTime"]);
    if since >= min_ready {
        Ok(())
    } else {
        Err(min_ready - since)
    }
}

/// The workload's `spec.selector`, or `None` when it is missing or invalid (validation
/// refuses those on write; an object seeded around validation selects nothing).
pub(crate) fn selector(obj: &Value) -> Option<LabelSelector> {
    LabelSelector::from_object(&obj["spec"]["selector"], "spec.selector")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A built-in type by group, version and plural.
pub(crate) fn rt(state: &State, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
    let version = "v1";
    state.find_type(group, version, plural)
}

/// Every object of `rt` in `ns` (all namespaces when `None`).
pub(crate) fn list(state: &State, rt: &ResourceType, ns: Option<&str>) -> Vec<Arc<Obj>> {
    state
        .list(rt, ns, &ListOptions::default())
        .map(|p| p.items)
        .unwrap_or_default()
}

/// One object, if it exists.
pub(crate) fn get(state: &State, rt: &ResourceType, ns: &str, name: &str) -> Option<Arc<Obj>> {
    state.get(rt, ns, name).ok()
}

/// The writes controllers make, each logged when the store refuses it, under the field
/// manager a cluster's component would use.
pub(crate) struct Writer {
    /// The component writing (`replicaset-controller`, `kubelet`, ...).
    pub(crate) manager: &'static str,
}

impl Writer {
    /// Creates `obj` in `ns`.
    pub(crate) fn create(
        &self,
        state: &mut State,
        rt: &Arc<ResourceType>,
        ns: &str,
        obj: Value,
    ) -> ApiResult<Arc<Obj>> {
        state
            .create(rt, ns, obj, &managed::component(self.manager))
            .inspect_err(|e| self.refused("create", &rt.kind, ns, "", e))
    }

    /// Replaces the object (not its status).
    pub(crate) fn update(
        &self,
        state: &mut State,
        rt: &Arc<ResourceType>,
        obj: Value,
    ) -> ApiResult<Arc<Obj>> {
        self.put(state, rt, obj, Part::Main)
    }

    /// Replaces the object's status.
    pub(crate) fn update_status(
        &self,
        state: &mut State,
        rt: &Arc<ResourceType>,
        obj: Value,
    ) -> ApiResult<Arc<Obj>> {
        self.put(state, rt, obj, Part::Status)
    }

    fn put(
        &self,
        state: &mut State,
        rt: &Arc<ResourceType>,
        obj: Value,
        part: Part,
    ) -> ApiResult<Arc<Obj>> {
        let (ns, name) = key_of(&obj);
        state
            .update(rt, &ns, &name, obj, part, &managed::component(self.manager))
            .inspect_err(|e| self.refused("update", &rt.kind, &ns, &name, e))
    }

    /// Deletes `obj` (only the very object: its uid is a precondition).
    pub(crate) fn delete(
        &self,
        state: &mut State,
        rt: &Arc<ResourceType>,
        obj: &Value,
        propagation: Propagation,
    ) -> bool {
        let (ns, name) = key_of(obj);
        state
            .delete_propagating(rt, &ns, &name, (None, Some(meta(obj, "uid"))), propagation)
            .inspect_err(|e| self.refused("delete", &rt.kind, &ns, &name, e))
            .is_ok()
    }

    fn refused(&self, verb: &str, kind: &str, ns: &str, name: &str, e: &ApiError) {
        tracing::debug!(manager = self.manager, verb, kind, ns, name, error = %e, "write refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time() {
        let mut conds = Value::Null;
        set_condition(&mut conds, json!({"type": "Ready", "status": "False"}));
        conds[0]["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        set_condition(
            &mut conds,
            json!({"type": "Ready", "status": "False", "reason": "X"}),
        );
        assert_eq!(conds[0]["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(conds[0]["reason"], "X");
        set_condition(&mut conds, json!({"type": "Ready", "status": "True"}));
        assert_ne!(conds[0]["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(conds.as_array().unwrap().len(), 1);
    }

    #[test]
    fn controller_references() {
        let owner = json!({"metadata": {"name": "web", "uid": "u1"}});
        let pod = json!({"metadata": {"namespace": "ns", "ownerReferences": [
            owner_ref(&owner, "apps/v1", "ReplicaSet")
        ]}});
        assert!(controlled_by(&pod, &owner));
        assert_eq!(
            controller_key(&pod, "ReplicaSet"),
            Some(("ns".to_string(), "web".to_string()))
        );
        assert_eq!(controller_key(&pod, "StatefulSet"), None);
    }
}
