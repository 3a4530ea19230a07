//! Deletion: finalizers and preconditions, propagation policies, collections, and the
//! namespaces and CRDs whose deletion takes their contents along.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    Deleted, EventType, FOREGROUND_FINALIZER, ListOptions, ORPHAN_FINALIZER, Obj, Propagation,
    State, finalizers, meta_str, now,
};
use crate::resource::ResourceType;
use crate::status::{self, ApiError, ApiResult};

impl State {
    pub(super) fn finish_namespace(&mut self, ns: &str) {
        let ns_key = (String::new(), ns.to_string());
        let Some(ns_obj) = self
            .tables
            .get("/namespaces")
            .and_then(|t| t.get(&ns_key))
            .cloned()
        else {
            return;
        };
        if ns_obj["metadata"]
            .get("deletionTimestamp")
            .is_none_or(Value::is_null)
        {
            return;
        }
        let empty = self.tables.values().all(|t| {
            t.range((ns.to_string(), String::new())..)
                .next()
                .is_none_or(|((k, _), _)| k != ns)
        });
        if empty && let Some(rt) = self.registry.find("", "v1", "namespaces") {
            let rv = self.next_rv();
            let mut final_obj = ns_obj.value.clone();
            final_obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.remove(&rt, &ns_key, Obj::new(final_obj), Some(ns_obj));
        }
    }

    pub(super) fn drop_crd(&mut self, crd_name: &str) {
        if let Some(storage) = self.registry.remove_crd(crd_name)
            && let Some(table) = self.tables.remove(&storage)
        {
            for ((ns, _), obj) in table {
                self.rv += 1;
                let mut final_obj = obj.value.clone();
                final_obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                self.record(
                    &storage,
                    &ns,
                    EventType::Deleted,
                    Obj::new(final_obj),
                    Some(obj),
                );
            }
        }
    }

    /// Deletes an object, honouring finalizers and preconditions (background propagation).
    pub(crate) fn delete(
        &mut self,
        rt: &Arc<ResourceType>,
        ns: &str,
        name: &str,
        precondition_rv: Option<&str>,
        precondition_uid: Option<&str>,
    ) -> ApiResult<Deleted> {
        self.delete_propagating(
            rt,
            ns,
            name,
            (precondition_rv, precondition_uid),
            Propagation::Background,
        )
    }

    /// Deletes an object with a propagation policy. Foreground and orphan deletions add
    /// their finalizer when a garbage collector runs to remove it (without one they are
    /// background deletions, as kube-apiserver's are with the collector off).
    pub(crate) fn delete_propagating(
        &mut self,
        rt: &Arc<ResourceType>,
        ns: &str,
        name: &str,
        (precondition_rv, precondition_uid): (Option<&str>, Option<&str>),
        propagation: Propagation,
    ) -> ApiResult<Deleted> {
        let key_ns = if rt.namespaced { ns } else { "" };
        let stored = self.get(rt, key_ns, name)?;
        let mut old = stored.clone();
        let finalizer = match propagation {
            Propagation::Foreground => Some(FOREGROUND_FINALIZER),
            Propagation::Orphan => Some(ORPHAN_FINALIZER),
            Propagation::Background => None,
        };
        let deleting = old["metadata"]
            .get("deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        if let Some(f) = finalizer.filter(|_| self.garbage_collector && !deleting)
            && !finalizers(&old).iter().any(|x| x == f)
        {
            // The finalizer goes on with the deletionTimestamp below, in the same change.
            let mut with = old.value.clone();
            match with["metadata"]["finalizers"].as_array_mut() {
                Some(list) => list.push(json!(f)),
                None => with["metadata"]["finalizers"] = json!([f]),
            }
            old = Obj::new(with);
        }
        if let Some(rv) = precondition_rv.filter(|s| !s.is_empty())
            && meta_str(&old, "resourceVersion") != Some(rv)
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                    meta_str(&old, "resourceVersion").unwrap_or_default()
                ),
            ));
        }
        if let Some(uid) = precondition_uid.filter(|s| !s.is_empty())
            && meta_str(&old, "uid") != Some(uid)
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                    meta_str(&old, "uid").unwrap_or_default()
                ),
            ));
        }
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        let key = (key_ns.to_string(), name.to_string());
        if !finalizers(&old).is_empty() || is_namespace {
            let mut obj = old.value.clone();
            let already = obj["metadata"]
                .get("deletionTimestamp")
                .is_some_and(|v| !v.is_null());
            if !already {
                obj["metadata"]["deletionTimestamp"] = json!(now());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                if is_namespace {
                    obj["status"]["phase"] = json!("Terminating");
                }
                let rv = self.next_rv();
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                let obj = Obj::new(obj);
                self.tables
                    .entry(rt.storage.clone())
                    .or_default()
                    .insert(key.clone(), obj.clone());
                self.record(
                    &rt.storage,
                    &key.0,
                    EventType::Modified,
                    obj.clone(),
                    Some(stored),
                );
                if is_namespace {
                    self.empty_namespace(name);
                    if let Ok(still) = self.get(rt, "", name) {
                        return Ok(Deleted::Pending(still));
                    }
                    return Ok(Deleted::Now(obj));
                }
                return Ok(Deleted::Pending(obj));
            }
            return Ok(Deleted::Pending(old));
        }
        let rv = self.next_rv();
        let mut final_obj = old.value.clone();
        final_obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let final_obj = Obj::new(final_obj);
        self.remove(rt, &key, final_obj.clone(), Some(old));
        Ok(Deleted::Now(final_obj))
    }

    /// Deletes everything in a terminating namespace; the namespace goes when it is empty.
    pub(super) fn empty_namespace(&mut self, ns: &str) {
        let types: Vec<Arc<ResourceType>> = self
            .registry
            .types()
            .iter()
            .filter(|t| t.namespaced)
            .cloned()
            .collect();
        let mut seen = Vec::new();
        for rt in types {
            if seen.contains(&rt.storage) {
                continue;
            }
            seen.push(rt.storage.clone());
            let names: Vec<String> = self
                .tables
                .get(&rt.storage)
                .map(|t| {
                    t.range((ns.to_string(), String::new())..)
                        .take_while(|((k, _), _)| k == ns)
                        .map(|((_, n), _)| n.clone())
                        .collect()
                })
                .unwrap_or_default();
            for n in names {
                let _ = self.delete(&rt, ns, &n, None, None);
            }
        }
        self.finish_namespace(ns);
    }

    /// Deletes every object of `rt` in `ns` that matches the selectors.
    pub(crate) fn delete_collection(
        &mut self,
        rt: &Arc<ResourceType>,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<Vec<Arc<Obj>>> {
        let page = self.list(
            rt,
            ns,
            &ListOptions {
                labels: opts.labels.clone(),
                fields: opts.fields.clone(),
                limit: None,
                continue_token: None,
            },
        )?;
        let mut out = Vec::new();
        for obj in page.items {
            let obj_ns = meta_str(&obj, "namespace").unwrap_or_default().to_string();
            let name = meta_str(&obj, "name").unwrap_or_default().to_string();
            match self.delete(rt, &obj_ns, &name, None, None)? {
                Deleted::Now(o) | Deleted::Pending(o) => out.push(o),
            }
        }
        Ok(out)
    }

    /// The success body of an immediate delete.
    pub(crate) fn delete_status(rt: &ResourceType, obj: &Value) -> Value {
        status::success(
            &rt.group,
            &rt.plural,
            meta_str(obj, "name").unwrap_or_default(),
            meta_str(obj, "uid").unwrap_or_default(),
        )
    }
}
