//! The garbage collector: deletes objects whose owners are all gone (background
//! deletion), holds an owner deleted in the foreground until its blocking dependents are
//! gone, and strips an orphaning owner from its dependents' `ownerReferences`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::objects::{self, Writer, meta};
use super::runner::Reconciler;
use crate::resource::ResourceType;
use crate::store::{Change, EventType, FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Propagation, State};

/// The controller's name, as kube-controller-manager's.
pub(crate) const NAME: &str = "generic-garbage-collector";

/// An object: (storage, namespace, name).
type Ref = (String, String, String);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum GcKey {
    /// An object with owners: delete it if they are gone.
    Dependent(Ref),
    /// An object being deleted with a foreground or orphan finalizer.
    Owner(Ref),
}

pub(crate) struct Collector {
    writer: Writer,
    /// Owner uid → its dependents.
    dependents: HashMap<String, BTreeSet<Ref>>,
}

impl Collector {
    pub(crate) fn new() -> Self {
        Self {
            writer: Writer { manager: NAME },
            dependents: HashMap::new(),
        }
    }

    fn index(&mut self, r: &Ref, obj: Option<&Value>, previous: Option<&Value>) {
        for owner in owners(previous) {
            if let Some(set) = self.dependents.get_mut(owner)
                && set.remove(r)
                && set.is_empty()
            {
                self.dependents.remove(owner);
            }
        }
        for owner in owners(obj) {
            self.dependents
                .entry(owner.to_string())
                .or_default()
                .insert(r.clone());
        }
    }
}

fn owners(obj: Option<&Value>) -> impl Iterator<Item = &str> {
    obj.and_then(|o| o["metadata"]["ownerReferences"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
}

fn refs_of(obj: &Value) -> Vec<Value> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Sets the owner references, dropping the field when none are left (as the API does).
fn set_refs(obj: &mut Value, refs: Vec<Value>) {
    if refs.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("ownerReferences");
        }
    } else {
        obj["metadata"]["ownerReferences"] = Value::Array(refs);
    }
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| x == f))
}

fn type_of_storage(state: &State, storage: &str) -> Option<Arc<ResourceType>> {
    state
        .registry
        .types()
        .iter()
        .find(|t| t.storage == storage)
        .cloned()
}

fn get_ref(state: &State, (storage, ns, name): &Ref) -> Option<(Arc<ResourceType>, Value)> {
    let rt = type_of_storage(state, storage)?;
    let obj = objects::get(state, &rt, ns, name)?;
    Some((rt, obj.value.clone()))
}

/// An owner reference's object: `Some(Some(owner))` when it exists with the same uid,
/// `Some(None)` when it is gone, `None` when its kind is not served (left alone).
fn resolve_owner(state: &State, dependent: &Value, r: &Value) -> Option<Option<Value>> {
    let rt = state
        .registry
        .find_kind(r["apiVersion"].as_str()?, r["kind"].as_str()?)?;
    let ns = if rt.namespaced {
        meta(dependent, "namespace")
    } else {
        ""
    };
    let owner = objects::get(state, &rt, ns, r["name"].as_str().unwrap_or_default());
    Some(
        owner
            .filter(|o| o["metadata"]["uid"] == r["uid"])
            .map(|o| o.value.clone()),
    )
}

impl Reconciler for Collector {
    type Key = GcKey;

    fn name(&self) -> &'static str {
        NAME
    }

    fn keys_for(&mut self, state: &State, change: &Change, out: &mut Vec<GcKey>) {
        let r: Ref = (
            change.storage.clone(),
            change.namespace.clone(),
            meta(&change.object, "name").to_string(),
        );
        let deleted = change.kind == EventType::Deleted;
        let now = (!deleted).then_some(&change.object.value);
        self.index(&r, now, change.previous.as_deref().map(|p| &p.value));
        if deleted {
            self.index(&r, None, Some(&change.object));
        }
        let obj = &change.object;
        if !deleted && owners(Some(obj)).next().is_some() {
            out.push(GcKey::Dependent(r.clone()));
        }
        if !deleted
            && objects::is_deleting(obj)
            && (has_finalizer(obj, FOREGROUND_FINALIZER) || has_finalizer(obj, ORPHAN_FINALIZER))
        {
            out.push(GcKey::Owner(r.clone()));
        }
        if deleted || objects::is_deleting(obj) {
            // Its dependents may be orphans now.
            if let Some(deps) = self.dependents.get(meta(obj, "uid")) {
                out.extend(deps.iter().cloned().map(GcKey::Dependent));
            }
        }
        // An owner waiting in the foreground may be unblocked by this change.
        for o in obj["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(Some(owner)) = resolve_owner(state, obj, o)
                && objects::is_deleting(&owner)
                && let Some(rt) = state.registry.find_kind(
                    o["apiVersion"].as_str().unwrap_or_default(),
                    o["kind"].as_str().unwrap_or_default(),
                )
            {
                out.push(GcKey::Owner((
                    rt.storage.clone(),
                    meta(&owner, "namespace").to_string(),
                    meta(&owner, "name").to_string(),
                )));
            }
        }
    }

    fn all_keys(&mut self, state: &State, out: &mut Vec<GcKey>) {
        self.dependents.clear();
        let mut seen = BTreeSet::new();
        for rt in state.registry.types().to_vec() {
            if !seen.insert(rt.storage.clone()) {
                continue;
            }
            for obj in objects::list(state, &rt, None) {
                let r: Ref = (
                    rt.storage.clone(),
                    meta(&obj, "namespace").to_string(),
                    meta(&obj, "name").to_string(),
                );
                if owners(Some(&obj)).next().is_some() {
                    self.index(&r, Some(&obj), None);
                    out.push(GcKey::Dependent(r.clone()));
                }
                if objects::is_deleting(&obj) {
                    out.push(GcKey::Owner(r));
                }
            }
        }
    }

    fn reconcile(&mut self, state: &mut State, key: &GcKey) -> Option<Duration> {
        match key {
            GcKey::Dependent(r) => self.dependent(state, r),
            GcKey::Owner(r) => self.owner(state, r),
        }
        None
    }
}

impl Collector {
    /// Deletes a dependent whose owners are all gone or deleting in the foreground; drops
    /// such owners from its references when a live owner remains.
    fn dependent(&mut self, state: &mut State, r: &Ref) {
        let Some((rt, obj)) = get_ref(state, r) else {
            return;
        };
        let refs = obj["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if refs.is_empty() {
            return;
        }
        let mut solid = 0;
        let mut gone_uids = Vec::new();
        let mut waiting = 0;
        for o in &refs {
            match resolve_owner(state, &obj, o) {
                None => solid += 1,
                Some(None) => gone_uids.push(o["uid"].clone()),
                Some(Some(owner)) => {
                    if objects::is_deleting(&owner) && has_finalizer(&owner, FOREGROUND_FINALIZER) {
                        waiting += 1;
                        gone_uids.push(o["uid"].clone());
                    } else {
                        solid += 1;
                    }
                }
            }
        }
        if solid > 0 {
            if gone_uids.is_empty() {
                return;
            }
            let mut updated = obj.clone();
            let kept = refs
                .iter()
                .filter(|o| !gone_uids.contains(&o["uid"]))
                .cloned()
                .collect();
            set_refs(&mut updated, kept);
            let _ = self.writer.update(state, &rt, updated);
            return;
        }
        if objects::is_deleting(&obj) {
            return;
        }
        let has_dependents = self.dependents.contains_key(meta(&obj, "uid"));
        let propagation = if has_finalizer(&obj, ORPHAN_FINALIZER) {
            Propagation::Orphan
        } else if has_finalizer(&obj, FOREGROUND_FINALIZER) || (waiting > 0 && has_dependents) {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        self.writer.delete(state, &rt, &obj, propagation);
    }

    /// Finishes an owner's foreground or orphan deletion once its dependents allow.
    fn owner(&mut self, state: &mut State, r: &Ref) {
        let Some((rt, obj)) = get_ref(state, r) else {
            return;
        };
        if !objects::is_deleting(&obj) {
            return;
        }
        let uid = meta(&obj, "uid").to_string();
        let deps: Vec<Ref> = self
            .dependents
            .get(&uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        let drop_finalizer = |state: &mut State, writer: &Writer, obj: &Value, f: &str| {
            let mut updated = obj.clone();
            if let Some(list) = updated["metadata"]["finalizers"].as_array_mut() {
                list.retain(|x| x != f);
            }
            let _ = writer.update(state, &rt, updated);
        };
        if has_finalizer(&obj, ORPHAN_FINALIZER) {
            for d in &deps {
                let Some((d_rt, dep)) = get_ref(state, d) else {
                    continue;
                };
                let mut updated = dep.clone();
                let kept: Vec<Value> = refs_of(&dep)
                    .into_iter()
                    .filter(|o| o["uid"] != uid.as_str())
                    .collect();
                set_refs(&mut updated, kept);
                let _ = self.writer.update(state, &d_rt, updated);
            }
            drop_finalizer(state, &self.writer, &obj, ORPHAN_FINALIZER);
            return;
        }
        if !has_finalizer(&obj, FOREGROUND_FINALIZER) {
            return;
        }
        let mut blocking = 0;
        for d in &deps {
            let Some((_, dep)) = get_ref(state, d) else {
                continue;
            };
            let blocks = dep["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["uid"] == uid.as_str() && o["blockOwnerDeletion"] == true);
            if blocks {
                blocking += 1;
            }
            if !objects::is_deleting(&dep) {
                self.dependent(state, d);
            }
        }
        if blocking == 0 {
            drop_finalizer(state, &self.writer, &obj, FOREGROUND_FINALIZER);
        }
    }
}
