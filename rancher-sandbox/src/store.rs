//! The in-memory object store of one cluster: objects keyed by resource, namespace and
//! name, one cluster-wide resourceVersion counter, a bounded event history for watches,
//! and the write rules kube-apiserver applies (defaults, validation, status subresource,
//! generation, finalizers, optimistic concurrency, Service allocation, CRDs).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::allocate::Allocator;
use crate::convert;
use crate::managed::{self, Writer};
use crate::patch;
use crate::resource::{self, APIEXTENSIONS_GROUP, Registry, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::validate;

mod delete;
pub(crate) mod dry_run;
mod read;

/// A stored object with its JSON encoding, made once on first use and shared by every
/// list and watch that sends it.
#[derive(Debug)]
pub(crate) struct Obj {
    pub(crate) value: Value,
    json: OnceLock<Bytes>,
}

impl Obj {
    pub(crate) fn new(value: Value) -> Arc<Self> {
        Arc::new(Self {
            value,
            json: OnceLock::new(),
        })
    }

    /// The object's JSON encoding.
    pub(crate) fn json(&self) -> &Bytes {
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default()))
    }
}

impl std::ops::Deref for Obj {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.value
    }
}

/// Objects of one resource, keyed by (namespace, name); `""` namespace for cluster scope.
type Table = BTreeMap<(String, String), Arc<Obj>>;

/// The kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change to one object.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) rv: u64,
    pub(crate) storage: String,
    pub(crate) namespace: String,
    pub(crate) kind: EventType,
    pub(crate) object: Arc<Obj>,
    pub(crate) previous: Option<Arc<Obj>>,
}

/// A change replayed to a new watch: kind, object and the object before the change.
pub(crate) type Replayed = (EventType, Arc<Obj>, Option<Arc<Obj>>);

/// Which part of an object a write targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Main,
    Status,
    /// The `scale` subresource (served by [`State::scale`], never passed to writes).
    Scale,
    /// A pod's `log` subresource (served from the sandbox nodes, never passed to writes).
    Log,
}

impl Part {
    /// The subresource `managedFields` name for writes to this part.
    pub(crate) fn subresource(self) -> Option<&'static str> {
        match self {
            Self::Main | Self::Log => None,
            Self::Status => Some("status"),
            Self::Scale => Some("scale"),
        }
    }
}

/// The content type of a PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

/// What a delete did.
#[derive(Debug)]
pub(crate) enum Deleted {
    /// Removed now; the final object.
    Now(Arc<Obj>),
    /// Finalizers remain; the object now carries a deletionTimestamp.
    Pending(Arc<Obj>),
}

/// What happens to an object's dependents when it is deleted (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Propagation {
    /// The object goes now; the garbage collector deletes its dependents after.
    #[default]
    Background,
    /// The object stays, with the `foregroundDeletion` finalizer, until the garbage
    /// collector has deleted the dependents that block it.
    Foreground,
    /// The object stays, with the `orphan` finalizer, until the garbage collector has
    /// removed it from its dependents' `ownerReferences`.
    Orphan,
}

/// The finalizer of a foreground deletion.
pub(crate) const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion.
pub(crate) const ORPHAN_FINALIZER: &str = "orphan";

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchFrom {
    /// Synthetic ADDED events for current objects, then changes.
    Current,
    /// Changes after this resourceVersion.
    Version(u64),
}

/// List parameters.
#[derive(Debug, Default)]
pub(crate) struct ListOptions {
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
    pub(crate) limit: Option<usize>,
    pub(crate) continue_token: Option<String>,
}

/// A page of a list.
#[derive(Debug)]
pub(crate) struct ListPage {
    pub(crate) items: Vec<Arc<Obj>>,
    pub(crate) resource_version: u64,
    pub(crate) continue_token: Option<String>,
    pub(crate) remaining: Option<usize>,
}

/// Store configuration.
#[derive(Debug, Clone)]
pub(crate) struct StoreConfig {
    pub(crate) history: usize,
}

/// Everything behind the store's lock.
#[derive(Debug)]
pub(crate) struct State {
    rv: u64,
    pub(crate) registry: Registry,
    tables: HashMap<String, Table>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    compacted: u64,
    alloc: Allocator,
    events: broadcast::Sender<Arc<Change>>,
    /// Whether a garbage collector runs (foreground and orphan deletions need one to finish).
    pub(crate) garbage_collector: bool,
}

/// One cluster's store.
#[derive(Debug)]
pub(crate) struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Change>>,
}

/// Capacity of the change broadcast; a watcher that falls further behind is sent 410.
const BROADCAST_CAPACITY: usize = 1 << 16;

pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn uid() -> String {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = fastrand::u8(..);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj["metadata"][field].as_str()
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything but `metadata` and `status` (or but `metadata` when there is no status subresource).
fn spec_part(rt: &ResourceType, obj: &Value) -> Map<String, Value> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| *k != "metadata" && !(rt.status && *k == "status"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

impl Store {
    pub(crate) fn new(config: &StoreConfig, alloc: Allocator) -> Self {
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let state = State {
            rv: 1,
            registry: Registry::built_in(),
            tables: HashMap::new(),
            history: VecDeque::new(),
            history_limit: config.history.max(1),
            compacted: 0,
            alloc,
            events: events.clone(),
            garbage_collector: false,
        };
        Self {
            state: Mutex::new(state),
            events,
        }
    }

    /// Locks the state. A poisoned lock is taken over: every write leaves the state consistent
    /// before it can fail.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh receiver of changes (used after the state lock was taken, so none are missed).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.events.subscribe()
    }
}

impl State {
    /// The current cluster-wide resourceVersion.
    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The type served at `group/version/plural`.
    pub(crate) fn find_type(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceType>> {
        self.registry.find(group, version, plural)
    }

    fn table(&self, storage: &str) -> Option<&Table> {
        self.tables.get(storage)
    }

    fn record(
        &mut self,
        rt_storage: &str,
        namespace: &str,
        kind: EventType,
        object: Arc<Obj>,
        previous: Option<Arc<Obj>>,
    ) {
        let change = Arc::new(Change {
            rv: self.rv,
            storage: rt_storage.to_string(),
            namespace: namespace.to_string(),
            kind,
            object,
            previous,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine.
        let _ = self.events.send(change);
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Reads one object.
    pub(crate) fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Arc<Obj>> {
        self.table(&rt.storage)
            .and_then(|t| t.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// Checks the body's `apiVersion`/`kind` against the endpoint and converts it to storage form.
    fn accept_body(rt: &ResourceType, obj: Value) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(format!(
                "the body of a {} must be a JSON object",
                rt.kind
            )));
        }
        if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
            && av != rt.api_version()
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
        if let Some(kind) = obj.get("kind").and_then(Value::as_str)
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        if !obj["metadata"].is_object() && !obj["metadata"].is_null() {
            return Err(ApiError::bad_request(
                "metadata must be an object".to_string(),
            ));
        }
        Ok(convert::to_storage(rt, obj))
    }

    fn check_namespace(&self, rt: &ResourceType, ns: &str, obj: &mut Value) -> ApiResult<()> {
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        if rt.namespaced {
            match meta_str(obj, "namespace") {
                Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => obj["metadata"]["namespace"] = json!(ns),
            }
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        Ok(())
    }

    fn namespace_usable(&self, ns: &str) -> ApiResult<()> {
        let ns_obj = self
            .tables
            .get("/namespaces")
            .and_then(|t| t.get(&(String::new(), ns.to_string())))
            .ok_or_else(|| ApiError::not_found("", "namespaces", ns))?;
        if ns_obj["metadata"]
            .get("deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )));
        }
        Ok(())
    }

    fn validate(rt: &ResourceType, obj: &Value, name: &str) -> ApiResult<()> {
        let causes = validate::object(rt, obj);
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&rt.kind, &rt.group, name, &causes))
        }
    }

    /// Creates an object, recording `by` in its `managedFields` as an `Update`.
    pub(crate) fn create(
        &mut self,
        rt: &Arc<ResourceType>,
        ns: &str,
        obj: Value,
        by: &Writer,
    ) -> ApiResult<Arc<Obj>> {
        self.create_as(rt, ns, obj, Some(by))
    }

    /// Creates an object; without a writer its `managedFields` stay as given (an apply).
    fn create_as(
        &mut self,
        rt: &Arc<ResourceType>,
        ns: &str,
        obj: Value,
        by: Option<&Writer>,
    ) -> ApiResult<Arc<Obj>> {
        let mut obj = Self::accept_body(rt, obj)?;
        self.check_namespace(rt, ns, &mut obj)?;
        let mut name = meta_str(&obj, "name").unwrap_or_default().to_string();
        if name.is_empty() {
            let prefix = meta_str(&obj, "generateName")
                .unwrap_or_default()
                .to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &rt.kind,
                    &rt.group,
                    "",
                    &[
                        "metadata.name: Required value: name or generateName is required"
                            .to_string(),
                    ],
                ));
            }
            let prefix: String = prefix.chars().take(63 - 5).collect();
            name = loop {
                let candidate = format!("{prefix}{}", random_suffix());
                if self.get(rt, ns, &candidate).is_err() {
                    break candidate;
                }
            };
            obj["metadata"]["name"] = json!(name);
        }
        if let Err(e) = validate::name(rt.names, &name) {
            return Err(ApiError::invalid(
                &rt.kind,
                &rt.group,
                &name,
                &[format!("metadata.name: Invalid value: {name:?}: {e}")],
            ));
        }
        if rt.namespaced {
            self.namespace_usable(ns)?;
        }
        Self::validate(rt, &obj, &name)?;
        let key = (
            if rt.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name.clone(),
        );
        if self
            .tables
            .get(&rt.storage)
            .is_some_and(|t| t.contains_key(&key))
        {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        // Server-owned metadata.
        let meta = obj["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::internal("metadata vanished"))?;
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(f);
        }
        meta.insert("uid".to_string(), json!(uid()));
        meta.insert("creationTimestamp".to_string(), json!(now()));
        meta.insert("generation".to_string(), json!(1));
        if meta
            .get("finalizers")
            .is_some_and(|f| f.as_array().is_some_and(Vec::is_empty))
        {
            meta.remove("finalizers");
        }
        let allocated = managed::allocated_fields(rt, &obj);
        reset_status_on_create(rt, &mut obj);
        self.defaults(rt, None, &mut obj, &name)?;
        if let Some(by) = by {
            managed::record_update(rt, by, None, &mut obj, &allocated, &now());
        }
        let crd_types = if is_crd(rt) {
            Some(self.crd_types(&obj, &name)?)
        } else {
            None
        };
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if let Some(types) = crd_types {
            self.registry.register_crd(&name, types);
        }
        let obj = Obj::new(obj);
        self.tables
            .entry(rt.storage.clone())
            .or_default()
            .insert(key.clone(), obj.clone());
        self.record(&rt.storage, &key.0, EventType::Added, obj.clone(), None);
        Ok(obj)
    }

    /// Kind-specific defaults and allocations (Services, Secrets, CRDs).
    fn defaults(
        &mut self,
        rt: &ResourceType,
        old: Option<&Value>,
        obj: &mut Value,
        name: &str,
    ) -> ApiResult<()> {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "services") => {
                if let Err(causes) = self.alloc.allocate_service(old, obj) {
                    return Err(ApiError::invalid(&rt.kind, &rt.group, name, &causes));
                }
                if obj.get("status").is_none_or(Value::is_null) {
                    obj["status"] = json!({"loadBalancer": {}});
                }
            }
            ("", "secrets") => {
                if obj.get("type").is_none() {
                    obj["type"] = json!("Opaque");
                }
                if let Some(Value::Object(string_data)) =
                    obj.as_object_mut().and_then(|m| m.remove("stringData"))
                {
                    if !obj["data"].is_object() {
                        obj["data"] = json!({});
                    }
                    for (k, v) in string_data {
                        let s = v.as_str().unwrap_or_default();
                        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                    }
                }
            }
            ("", "namespaces") => {
                // As kube-apiserver does: every namespace carries its own name as a label.
                if !obj["metadata"]["labels"].is_object() {
                    obj["metadata"]["labels"] = json!({});
                }
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            }
            ("", "pods") => crate::defaults::pod(obj),
            ("discovery.k8s.io", "endpointslices") => {
                if let Some(ports) = obj["ports"].as_array_mut() {
                    for p in ports {
                        if p.get("protocol").is_none() {
                            p["protocol"] = json!("TCP");
                        }
                    }
                }
            }
            ("apps", _) => crate::defaults::workload(&rt.kind, obj),
            _ => {}
        }
        Ok(())
    }

    fn crd_types(&self, crd: &Value, name: &str) -> ApiResult<Vec<ResourceType>> {
        let rt = self
            .registry
            .find(APIEXTENSIONS_GROUP, "v1", "customresourcedefinitions");
        let kind = rt
            .as_ref()
            .map_or("CustomResourceDefinition", |r| r.kind.as_str());
        let types = resource::types_from_crd(crd)
            .map_err(|c| ApiError::invalid(kind, APIEXTENSIONS_GROUP, name, &c))?;
        for t in &types {
            if let Some(existing) = self.registry.find(&t.group, &t.version, &t.plural)
                && self.registry.crd_owning(&existing) != Some(name)
            {
                return Err(ApiError::invalid(
                    kind,
                    APIEXTENSIONS_GROUP,
                    name,
                    &[format!(
                        "spec.names.plural: Invalid value: {:?}: already served by {}",
                        t.plural,
                        existing.qualified()
                    )],
                ));
            }
        }
        Ok(types)
    }

    /// Replaces an object (PUT), or its status.
    pub(crate) fn update(
        &mut self,
        rt: &Arc<ResourceType>,
        ns: &str,
        name: &str,
        obj: Value,
        part: Part,
        by: &Writer,
    ) -> ApiResult<Arc<Obj>> {
        let mut obj = Self::accept_body(rt, obj)?;
        self.check_namespace(rt, ns, &mut obj)?;
        match meta_str(&obj, "name") {
            Some(n) if !n.is_empty() && n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => obj["metadata"]["name"] = json!(name),
        }
        let key_ns = if rt.namespaced { ns } else { "" };
        let old = match self.get(rt, key_ns, name) {
            Ok(old) => old,
            Err(e) if rt.create_on_update && part == Part::Main => {
                let _ = e;
                return self.create(rt, ns, obj, by);
            }
            Err(e) => return Err(e),
        };
        self.write(rt, &old, obj, part, Some(&by.through(part.subresource())))
    }

    /// The common path of update, patch and apply: `new` is the full desired object.
    /// `by` is recorded in `managedFields` as an `Update`; without it (an apply) they
    /// stay as `new` has them.
    fn write(
        &mut self,
        rt: &Arc<ResourceType>,
        old: &Arc<Obj>,
        mut new: Value,
        part: Part,
        by: Option<&Writer>,
    ) -> ApiResult<Arc<Obj>> {
        let name = meta_str(old, "name").unwrap_or_default().to_string();
        let ns = meta_str(old, "namespace").unwrap_or_default().to_string();
        let old_rv = meta_str(old, "resourceVersion").unwrap_or_default();
        match meta_str(&new, "resourceVersion") {
            Some(rv) if !rv.is_empty() && rv != old_rv => {
                return Err(ApiError::conflict(
                    &rt.group,
                    &rt.plural,
                    &name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            _ => {}
        }
        if part == Part::Status {
            let status = new.get("status").cloned();
            new = old.value.clone();
            match status {
                Some(s) if !s.is_null() => new["status"] = s,
                _ => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        } else if rt.status {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        // Server-owned metadata comes from the stored object.
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
        ] {
            match old["metadata"].get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        if new["metadata"]
            .get("finalizers")
            .is_some_and(|f| f.as_array().is_some_and(Vec::is_empty) || f.is_null())
            && let Some(m) = new["metadata"].as_object_mut()
        {
            m.remove("finalizers");
        }
        let deleting = old["metadata"]
            .get("deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        if deleting {
            let before = finalizers(old);
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(&rt.kind, &rt.group, &name, &["metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted".to_string()]));
            }
        }
        Self::validate(rt, &new, &name)?;
        let allocated = managed::allocated_fields(rt, &new);
        self.defaults(rt, Some(old), &mut new, &name)?;
        match by {
            Some(by) => {
                managed::record_update(rt, by, Some(&old.value), &mut new, &allocated, &now());
            }
            None => {
                if new["metadata"].get("managedFields").is_none()
                    && let Some(mf) = old["metadata"].get("managedFields")
                {
                    new["metadata"]["managedFields"] = mf.clone();
                }
            }
        }
        // A write that changes nothing is not a write.
        new["metadata"]["resourceVersion"] = json!(old_rv);
        if new == old.value {
            return Ok(old.clone());
        }
        if spec_part(rt, &new) != spec_part(rt, old) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        let crd_types = if is_crd(rt) && part == Part::Main {
            Some(self.crd_types(&new, &name)?)
        } else {
            None
        };
        let key = (ns.clone(), name.clone());
        let rv = self.next_rv();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        if let Some(types) = crd_types {
            self.registry.register_crd(&name, types);
        }
        let new = Obj::new(new);
        if deleting && finalizers(&new).is_empty() {
            self.remove(rt, &key, new.clone(), Some(old.clone()));
            return Ok(new);
        }
        self.tables
            .entry(rt.storage.clone())
            .or_default()
            .insert(key, new.clone());
        self.record(
            &rt.storage,
            &ns,
            EventType::Modified,
            new.clone(),
            Some(old.clone()),
        );
        Ok(new)
    }

    /// Removes an object for good (its last finalizer is gone or it had none).
    fn remove(
        &mut self,
        rt: &ResourceType,
        key: &(String, String),
        final_obj: Arc<Obj>,
        previous: Option<Arc<Obj>>,
    ) {
        if let Some(t) = self.tables.get_mut(&rt.storage) {
            t.remove(key);
        }
        if rt.group.is_empty() && rt.plural == "services" {
            self.alloc.release_service(&final_obj);
        }
        self.record(
            &rt.storage,
            &key.0,
            EventType::Deleted,
            final_obj.clone(),
            previous,
        );
        if is_crd(rt) {
            self.drop_crd(&key.1);
        }
        if rt.group.is_empty() && rt.plural == "namespaces" {
            return;
        }
        // A terminating namespace goes once it is empty.
        if rt.namespaced && !key.0.is_empty() {
            self.finish_namespace(&key.0);
        }
    }

    /// The `autoscaling/v1` Scale of a Deployment.
    pub(crate) fn scale_of(obj: &Value) -> Value {
        let meta = &obj["metadata"];
        let selector = obj["spec"]["selector"]["matchLabels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
            "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
        })
    }

    /// Writes a Deployment's `scale` subresource: `change` turns the current Scale into the
    /// desired one (a PUT body or a patch); only `spec.replicas` is taken.
    pub(crate) fn scale(
        &mut self,
        rt: &Arc<ResourceType>,
        ns: &str,
        name: &str,
        by: &Writer,
        change: impl FnOnce(Value) -> ApiResult<Value>,
    ) -> ApiResult<Value> {
        let old = self.get(rt, ns, name)?;
        let desired = change(Self::scale_of(&old))?;
        let replicas = desired["spec"]["replicas"]
            .as_i64()
            .filter(|r| (0..=i64::from(i32::MAX)).contains(r))
            .ok_or_else(|| {
                ApiError::invalid(
                    "Scale",
                    "autoscaling",
                    name,
                    &["spec.replicas: Invalid value: must be a non-negative integer".to_string()],
                )
            })?;
        let mut new = old.value.clone();
        new["spec"]["replicas"] = json!(replicas);
        new["metadata"]["resourceVersion"] = desired["metadata"]["resourceVersion"].clone();
        let written = self.write(rt, &old, new, Part::Main, Some(&by.through(Some("scale"))))?;
        Ok(Self::scale_of(&written))
    }

    /// Patches an object (or its status).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &mut self,
        rt: &Arc<ResourceType>,
        ns: &str,
        name: &str,
        kind: PatchType,
        body: Value,
        part: Part,
        by: &Writer,
        force: bool,
    ) -> ApiResult<Arc<Obj>> {
        let manager = by.applier();
        let key_ns = if rt.namespaced { ns } else { "" };
        let old = match self.get(rt, key_ns, name) {
            Ok(o) => o,
            Err(e) if kind == PatchType::Apply && part == Part::Main => {
                let _ = e;
                return self.apply_create(rt, ns, name, body, manager);
            }
            Err(e) => return Err(e),
        };
        let current = convert::present(rt, &old).into_owned();
        let patched = match kind {
            PatchType::Merge => {
                if !body.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                patch::merge_patch(&current, &body)
            }
            PatchType::Json => {
                patch::json_patch(&current, &body).map_err(|e| patch_failed(rt, name, &e))?
            }
            PatchType::Strategic => patch::strategic_merge_patch(&current, &body)
                .map_err(|e| patch_failed(rt, name, &e))?,
            PatchType::Apply => managed::apply_merge(rt, &current, &body, manager, force, part)?,
        };
        if !patched.is_object() {
            return Err(ApiError::invalid(
                &rt.kind,
                &rt.group,
                name,
                &["patch: the patched document is not an object".to_string()],
            ));
        }
        if meta_str(&patched, "name").is_some_and(|n| n != name) {
            return Err(ApiError::invalid(
                &rt.kind,
                &rt.group,
                name,
                &[
                    "metadata.name: Invalid value: the name cannot be changed by a patch"
                        .to_string(),
                ],
            ));
        }
        let patched = Self::accept_body(rt, patched)?;
        let by = by.through(part.subresource());
        let updater = (kind != PatchType::Apply).then_some(&by);
        self.write(rt, &old, patched, part, updater)
    }

    fn apply_create(
        &mut self,
        rt: &Arc<ResourceType>,
        ns: &str,
        name: &str,
        config: Value,
        manager: Option<&str>,
    ) -> ApiResult<Arc<Obj>> {
        let manager = manager.ok_or_else(|| {
            ApiError::bad_request("PATCH with an apply patch requires the fieldManager parameter")
        })?;
        managed::check_apply_config(&config, name)?;
        let paths = patch::leaf_paths(&config);
        let mut obj = config;
        obj["metadata"]["name"] = json!(name);
        obj["metadata"]["managedFields"] = json!([managed::applier_entry(
            manager,
            &rt.api_version(),
            None,
            &paths
        )]);
        self.create_as(rt, ns, obj, None)
    }
}

fn is_crd(rt: &ResourceType) -> bool {
    rt.group == APIEXTENSIONS_GROUP && rt.plural == "customresourcedefinitions"
}

pub(crate) fn patch_failed(rt: &ResourceType, name: &str, e: &patch::PatchError) -> ApiError {
    ApiError::invalid(
        &rt.kind,
        &rt.group,
        name,
        &[format!(
            "patch: Invalid value: the patch does not apply: {e}"
        )],
    )
}

/// kube-apiserver resets status on create for kinds with a status subresource.
fn reset_status_on_create(rt: &ResourceType, obj: &mut Value) {
    if !rt.status {
        return;
    }
    let status = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => Some(json!({"phase": "Active"})),
        ("", "pods") => Some(json!({"phase": "Pending", "qosClass": "BestEffort"})),
        ("", "nodes") => return,
        ("", "services") => Some(json!({"loadBalancer": {}})),
        ("networking.k8s.io", "ingresses") => Some(json!({"loadBalancer": {}})),
        ("apps", _) => Some(json!({})),
        (APIEXTENSIONS_GROUP, "customresourcedefinitions") => {
            let names = obj["spec"]["names"].clone();
            let t = now();
            Some(json!({
                "acceptedNames": names,
                "storedVersions": obj["spec"]["versions"].as_array().map(|vs| vs.iter().filter(|v| v["storage"] == true).filter_map(|v| v["name"].as_str().map(str::to_string)).collect::<Vec<_>>()).unwrap_or_default(),
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": t},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": t},
                ],
            }))
        }
        _ => None,
    };
    match status {
        Some(s) => obj["status"] = s,
        None => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
    }
}
