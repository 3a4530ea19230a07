//! `metadata.managedFields` as kube-apiserver writes them on every write: who set which
//! fields (`manager`), how (`operation` `Update` for create, update and the non-apply patches,
//! `Apply` for server-side apply), through which version and subresource, and when.
//!
//! An `Update` entry is computed the way kube-apiserver's field manager does it: the object
//! before the write (an empty object of the kind on create) is compared with the object the
//! request leaves after defaulting, and the manager takes every field that was added or
//! changed, as a `FieldsV1` tree (`f:` fields, `k:` items of keyed lists, `v:` items of sets,
//! `.` for a map or item the manager created itself). Fields the write removed leave every
//! manager; fields it changed leave the other managers. Server-owned metadata, the `status`
//! of a kind with a status subresource (on main writes) and addresses the server allocates
//! (a Service's cluster IPs and node ports) are nobody's.
//!
//! Server-side apply's own merge and conflicts stay in the store; it reads the entries
//! through [`FieldSet`] and [`Entry`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::patch::{self, FieldPath};
use crate::resource::{Printer, ResourceType};
use crate::status::{ApiError, ApiResult};
use crate::store::{self, Part};

/// The longest field manager kube-apiserver keeps (`FieldManagerMaxLength`).
pub(crate) const MAX_MANAGER_LEN: usize = 128;

/// The manager kube-apiserver records for the objects it creates itself (the default
/// namespaces, the `kubernetes` Service).
pub(crate) const API_SERVER_MANAGER: &str = "kube-apiserver";

/// `operation: Update`.
pub(crate) const UPDATE: &str = "Update";
/// `operation: Apply`.
pub(crate) const APPLY: &str = "Apply";

/// Who is writing: the request's `fieldManager`, else what kube-apiserver derives from its
/// `User-Agent` (the part before the first `/`, printable characters only, at most
/// [`MAX_MANAGER_LEN`] bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Writer {
    manager: String,
    /// Whether the request named its manager (server-side apply requires it).
    named: bool,
    /// The subresource written through (`status`, `scale`), recorded in the entry.
    pub(crate) subresource: Option<&'static str>,
}

impl Writer {
    /// A writer with a manager of its own (`fieldManager`).
    pub(crate) fn named(manager: &str) -> Self {
        Self {
            manager: truncate(manager),
            named: true,
            subresource: None,
        }
    }

    /// The writer of a request: `fieldManager` when given, else the User-Agent's prefix.
    pub(crate) fn from_request(field_manager: Option<&str>, user_agent: Option<&str>) -> Self {
        match field_manager.filter(|m| !m.is_empty()) {
            Some(m) => Self::named(m),
            None => Self {
                manager: prefix_from_user_agent(user_agent.unwrap_or_default()),
                named: false,
                subresource: None,
            },
        }
    }

    /// The same writer through a subresource.
    pub(crate) fn through(&self, subresource: Option<&'static str>) -> Self {
        Self {
            subresource,
            ..self.clone()
        }
    }

    /// The manager, if the request named one (what server-side apply needs).
    pub(crate) fn applier(&self) -> Option<&str> {
        self.named.then_some(self.manager.as_str())
    }
}

/// The writer kube-apiserver records for a cluster component: the manager its
/// User-Agent gives (`kube-controller-manager` for every controller in it).
pub(crate) fn component(name: &str) -> Writer {
    let manager = match name {
        "kubelet" => "kubelet",
        "default-scheduler" => "kube-scheduler",
        _ => "kube-controller-manager",
    };
    Writer::from_request(None, Some(manager))
}

fn truncate(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() + c.len_utf8() > MAX_MANAGER_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// kube-apiserver's `prefixFromUserAgent`.
fn prefix_from_user_agent(user_agent: &str) -> String {
    let head = user_agent.split('/').next().unwrap_or_default();
    let printable: String = head.chars().filter(|c| !c.is_control()).collect();
    truncate(&printable)
}

/// A set of field paths in `FieldsV1` form: each node is one path element (`f:name`,
/// `k:{"key":…}`, `v:value`, `i:index`); `member` says the path itself is in the set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    member: bool,
    children: BTreeMap<String, Self>,
}

impl FieldSet {
    /// Reads a `fieldsV1` tree.
    pub(crate) fn from_fields_v1(fields: &Value) -> Self {
        let mut set = Self::default();
        if let Some(m) = fields.as_object() {
            for (k, v) in m {
                if k == "." {
                    set.member = true;
                    continue;
                }
                let mut child = Self::from_fields_v1(v);
                if child.children.is_empty() {
                    child.member = true;
                }
                set.children.insert(k.clone(), child);
            }
        }
        set
    }

    /// The `fieldsV1` tree: a leaf is `{}`; a member with children also has `".": {}`.
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".to_string(), json!({}));
        }
        for (k, child) in &self.children {
            m.insert(k.clone(), child.to_fields_v1());
        }
        Value::Object(m)
    }

    /// Whether the set has no member.
    pub(crate) fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(Self::is_empty)
    }

    fn child(&mut self, key: String) -> &mut Self {
        self.children.entry(key).or_default()
    }

    /// Drops nodes that hold no member.
    fn prune(&mut self) {
        self.children.retain(|_, c| {
            c.prune();
            !c.is_empty()
        });
    }

    /// Adds every member of `other`.
    pub(crate) fn union(&mut self, other: &Self) {
        self.member |= other.member;
        for (k, c) in &other.children {
            self.child(k.clone()).union(c);
        }
    }

    /// Removes every member of `other` (members only, not what lies under them).
    pub(crate) fn difference(&mut self, other: &Self) {
        if other.member {
            self.member = false;
        }
        for (k, c) in &other.children {
            if let Some(mine) = self.children.get_mut(k) {
                mine.difference(c);
            }
        }
        self.prune();
    }

    /// Keeps the members whose field path (the `f:` names down to the first list item)
    /// passes `keep`.
    pub(crate) fn retain_fields(&mut self, keep: &mut impl FnMut(&[String]) -> bool) {
        fn walk(
            set: &mut FieldSet,
            path: &mut Vec<String>,
            in_item: bool,
            keep: &mut impl FnMut(&[String]) -> bool,
        ) {
            if set.member && !keep(path) {
                set.member = false;
            }
            for (k, child) in &mut set.children {
                let field = (!in_item).then(|| k.strip_prefix("f:")).flatten();
                match field {
                    Some(name) => {
                        path.push(name.to_string());
                        walk(child, path, false, keep);
                        path.pop();
                    }
                    None => walk(child, path, true, keep),
                }
            }
        }
        walk(self, &mut Vec::new(), false, keep);
        self.prune();
    }

    /// Removes the member at `path` (path elements as in `fieldsV1`).
    fn remove(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = false,
            Some((head, rest)) => {
                if let Some(c) = self.children.get_mut(head) {
                    c.remove(rest);
                }
            }
        }
    }

    /// Keeps only the listed top-level fields (or drops them, with `keep = false`).
    fn filter_top(&mut self, fields: &[&str], keep: bool) {
        self.children
            .retain(|k, _| fields.iter().any(|f| k.strip_prefix("f:") == Some(*f)) == keep);
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    pub(crate) operation: String,
    pub(crate) api_version: String,
    pub(crate) time: Option<String>,
    pub(crate) subresource: Option<String>,
    pub(crate) fields: FieldSet,
}

impl Entry {
    /// Reads an entry; anything but an object yields `None`.
    pub(crate) fn from_value(v: &Value) -> Option<Self> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        v.is_object().then(|| Self {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation").unwrap_or_default(),
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").filter(|s| !s.is_empty()),
            fields: FieldSet::from_fields_v1(&v["fieldsV1"]),
        })
    }

    /// The entry as kube-apiserver serves it (empty strings left out, as Go's `omitempty`).
    pub(crate) fn to_value(&self) -> Value {
        let mut m = Map::new();
        if !self.manager.is_empty() {
            m.insert("manager".into(), json!(self.manager));
        }
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m)
    }

    /// Whether the entry is `writer`'s for `operation` (kube-apiserver's manager identifier:
    /// an applier is one entry whatever the version; an updater one per version).
    pub(crate) fn is(&self, writer: &Writer, operation: &str, api_version: &str) -> bool {
        self.manager == writer.manager
            && self.operation == operation
            && self.subresource.as_deref() == writer.subresource
            && (operation == APPLY || self.api_version == api_version)
    }
}

/// The entries of an object's `metadata.managedFields`.
pub(crate) fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| a.iter().filter_map(Entry::from_value).collect())
        .unwrap_or_default()
}

/// Writes `entries` into `obj`, in kube-apiserver's order (operation, time, manager,
/// version, subresource); no entry means no `managedFields`.
pub(crate) fn store_entries(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(meta) = obj["metadata"].as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::to_value).collect()),
        );
    }
}

/// How the fields of a kind are merged, as its OpenAPI schema says (only what the built-in
/// kinds need; custom resources have no schema here, so their lists are atomic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A map or struct whose fields are owned one by one.
    Granular,
    /// Owned whole: scalars, atomic lists, atomic maps and structs.
    Atomic,
    /// A list of items keyed by these fields (`listType: map`); items are owned field by
    /// field unless `atomic_items`.
    Keyed {
        keys: &'static [&'static str],
        atomic_items: bool,
    },
    /// A list of unique scalars (`listType: set`).
    Set,
}

/// Whether `rt` is a custom resource (a CRD's kind).
fn is_custom(rt: &ResourceType) -> bool {
    matches!(rt.printer, Printer::Custom(_))
}

/// The shape at `path` (field names from the root; list items add nothing) in `rt`.
fn shape_of(rt: &ResourceType, path: &[&str]) -> Shape {
    let keyed = |keys| Shape::Keyed {
        keys,
        atomic_items: false,
    };
    match path {
        ["metadata", "finalizers"] => return Shape::Set,
        ["metadata", "ownerReferences"] => {
            return Shape::Keyed {
                keys: &["uid"],
                atomic_items: true,
            };
        }
        ["metadata", ..] => return Shape::Granular,
        _ => {}
    }
    if is_custom(rt) {
        return Shape::Granular;
    }
    let Some((last, parents)) = path.split_last() else {
        return Shape::Granular;
    };
    let parent = parents.last().copied().unwrap_or_default();
    match *last {
        "selector" | "nodeSelector" | "podSelector" | "namespaceSelector" | "labelSelector"
        | "targetRef" | "fieldRef" | "resourceFieldRef" | "configMapKeyRef" | "secretKeyRef" => {
            Shape::Atomic
        }
        "ports" if rt.kind == "Service" && path == ["spec", "ports"] => {
            keyed(&["port", "protocol"])
        }
        "ports"
            if matches!(
                parent,
                "containers" | "initContainers" | "ephemeralContainers"
            ) =>
        {
            keyed(&["containerPort", "protocol"])
        }
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => keyed(&["name"]),
        "volumeMounts" => keyed(&["mountPath"]),
        "volumeDevices" => keyed(&["devicePath"]),
        "hostAliases" | "podIPs" | "hostIPs" => keyed(&["ip"]),
        "topologySpreadConstraints" => keyed(&["topologyKey", "whenUnsatisfiable"]),
        "conditions" if parent == "status" => keyed(&["type"]),
        "addresses" if rt.kind == "Node" => keyed(&["type"]),
        "podCIDRs" if rt.kind == "Node" => Shape::Set,
        _ => Shape::Granular,
    }
}

/// The Go zero value of a built-in kind as kube-apiserver's field manager sees it on create:
/// the structs that are not pointers exist (empty), so the creator does not own them.
fn zero(rt: &ResourceType) -> Value {
    let template = json!({"metadata": {}, "spec": {}});
    let mut z = match rt.kind.as_str() {
        _ if is_custom(rt) => json!({}),
        "Service" => json!({"spec": {}, "status": {"loadBalancer": {}}}),
        "Ingress" => json!({"spec": {}, "status": {"loadBalancer": {}}}),
        "Pod" | "Namespace" => json!({"spec": {}, "status": {}}),
        "Node" => {
            json!({"spec": {}, "status": {"daemonEndpoints": {"kubeletEndpoint": {}}, "nodeInfo": {}}})
        }
        "Deployment" => json!({"spec": {"template": template, "strategy": {}}, "status": {}}),
        "StatefulSet" | "DaemonSet" => {
            json!({"spec": {"template": template, "updateStrategy": {}}, "status": {}})
        }
        "ReplicaSet" => json!({"spec": {"template": template}, "status": {}}),
        "IngressClass" | "Lease" => json!({"spec": {}}),
        "RoleBinding" | "ClusterRoleBinding" => json!({"roleRef": {}}),
        "Event" => json!({"involvedObject": {}, "source": {}}),
        _ => json!({}),
    };
    z["metadata"] = json!({});
    z
}

/// Fields no manager owns: the server's metadata (kube-apiserver's `stripMeta`).
fn strip_server_fields(set: &mut FieldSet) {
    set.filter_top(&["apiVersion", "kind"], false);
    if let Some(meta) = set.children.get_mut("f:metadata") {
        meta.filter_top(
            &[
                "name",
                "namespace",
                "creationTimestamp",
                "selfLink",
                "uid",
                "clusterName",
                "generation",
                "managedFields",
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ],
            false,
        );
    }
    set.prune();
}

/// The compare of two versions of an object: fields added or changed, and fields removed.
#[derive(Debug, Default)]
struct Comparison {
    changed: FieldSet,
    removed: FieldSet,
}

fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn is_empty_value(v: Option<&Value>) -> bool {
    match v {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// The `k:` element of a keyed list item, or `None` when a key field is missing.
fn item_key(item: &Value, keys: &[&str]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        let v = non_null(item.get(*k))?;
        m.insert((*k).to_string(), v.clone());
    }
    Some(format!("k:{}", Value::Object(m)))
}

/// Items of a keyed list by key; `None` when a key is missing or repeated (then the list
/// is compared whole, as kube-apiserver's field manager falls back to).
fn keyed_items<'a>(list: Option<&'a Value>, keys: &[&str]) -> Option<BTreeMap<String, &'a Value>> {
    let mut out = BTreeMap::new();
    for item in list.and_then(Value::as_array).into_iter().flatten() {
        if out.insert(item_key(item, keys)?, item).is_some() {
            return None;
        }
    }
    Some(out)
}

struct Walker<'a> {
    rt: &'a ResourceType,
}

impl Walker<'_> {
    fn leaf(old: Option<&Value>, new: Option<&Value>, out: &mut Comparison) {
        match (old, new) {
            (None, Some(_)) => out.changed.member = true,
            (Some(_), None) => out.removed.member = true,
            (Some(a), Some(b)) if a != b => out.changed.member = true,
            _ => {}
        }
    }

    /// Marks the node itself for a map, list or item that appeared or went away.
    fn container(old: Option<&Value>, new: Option<&Value>, out: &mut Comparison) {
        match (old, new) {
            (None, Some(_)) => out.changed.member = true,
            (Some(_), None) => out.removed.member = true,
            _ => {}
        }
    }

    fn walk(
        &self,
        path: &mut Vec<String>,
        shape: Shape,
        old: Option<&Value>,
        new: Option<&Value>,
        out: &mut Comparison,
    ) {
        let (old, new) = (non_null(old), non_null(new));
        // Empty or missing on both sides: compared as a value, so `{}` and `[]` still
        // count as set.
        let both_empty = is_empty_value(old) && is_empty_value(new);
        let all = |v: Option<&Value>, f: fn(&Value) -> bool| v.is_none_or(f);
        match shape {
            Shape::Granular
                if !both_empty && all(old, Value::is_object) && all(new, Value::is_object) =>
            {
                Self::container(old, new, out);
                let keys: BTreeSet<&String> = old
                    .and_then(Value::as_object)
                    .into_iter()
                    .chain(new.and_then(Value::as_object))
                    .flat_map(Map::keys)
                    .collect();
                for key in keys {
                    path.push(key.clone());
                    let names: Vec<&str> = path.iter().map(String::as_str).collect();
                    let child_shape = shape_of(self.rt, &names);
                    let mut sub = Comparison::default();
                    self.walk(
                        path,
                        child_shape,
                        old.and_then(|o| o.get(key)),
                        new.and_then(|n| n.get(key)),
                        &mut sub,
                    );
                    path.pop();
                    graft(out, format!("f:{key}"), sub);
                }
            }
            Shape::Keyed { keys, atomic_items }
                if !both_empty && all(old, Value::is_array) && all(new, Value::is_array) =>
            {
                let (Some(before), Some(after)) = (keyed_items(old, keys), keyed_items(new, keys))
                else {
                    Self::leaf(old, new, out);
                    return;
                };
                Self::container(old, new, out);
                let item_shape = if atomic_items {
                    Shape::Atomic
                } else {
                    Shape::Granular
                };
                let all_keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
                for key in all_keys {
                    let mut sub = Comparison::default();
                    self.walk(
                        path,
                        item_shape,
                        before.get(key).copied(),
                        after.get(key).copied(),
                        &mut sub,
                    );
                    graft(out, key.clone(), sub);
                }
            }
            Shape::Set if !both_empty && all(old, Value::is_array) && all(new, Value::is_array) => {
                Self::container(old, new, out);
                let items = |v: Option<&Value>| -> BTreeSet<String> {
                    v.and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|i| format!("v:{i}"))
                        .collect()
                };
                let (before, after) = (items(old), items(new));
                for v in after.difference(&before) {
                    out.changed.child(v.clone()).member = true;
                }
                for v in before.difference(&after) {
                    out.removed.child(v.clone()).member = true;
                }
            }
            _ => Self::leaf(old, new, out),
        }
    }
}

/// Puts a child's comparison under `key`.
fn graft(out: &mut Comparison, key: String, sub: Comparison) {
    if !sub.changed.is_empty() {
        out.changed.children.insert(key.clone(), sub.changed);
    }
    if !sub.removed.is_empty() {
        out.removed.children.insert(key, sub.removed);
    }
}

fn compare(rt: &ResourceType, old: &Value, new: &Value) -> Comparison {
    let mut out = Comparison::default();
    Walker { rt }.walk(
        &mut Vec::new(),
        Shape::Granular,
        Some(old),
        Some(new),
        &mut out,
    );
    // The root object exists on both sides.
    out.changed.member = false;
    out.removed.member = false;
    strip_server_fields(&mut out.changed);
    strip_server_fields(&mut out.removed);
    out
}

/// Fields of a Service the server allocates when the request leaves them out; they are
/// nobody's (kube-apiserver allocates after its field manager ran). Call before defaulting.
pub(crate) fn allocated_fields(rt: &ResourceType, request: &Value) -> Vec<Vec<String>> {
    if !(rt.group.is_empty() && rt.plural == "services") {
        return Vec::new();
    }
    let spec = &request["spec"];
    let mut out: Vec<Vec<String>> = ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"]
        .iter()
        .filter(|f| non_null(spec.get(**f)).is_none())
        .map(|f| vec!["f:spec".to_string(), format!("f:{f}")])
        .collect();
    for port in spec["ports"].as_array().into_iter().flatten() {
        if non_null(port.get("nodePort")).is_none() {
            // The protocol is defaulted later; the key uses the defaulted one.
            let mut keyed = port.clone();
            if non_null(keyed.get("protocol")).is_none() {
                keyed["protocol"] = json!("TCP");
            }
            if let Some(key) = item_key(&keyed, &["port", "protocol"]) {
                out.push(vec![
                    "f:spec".to_string(),
                    "f:ports".to_string(),
                    key,
                    "f:nodePort".to_string(),
                ]);
            }
        }
    }
    out
}

/// An `Update` write by `writer` through `rt`: `old` is the object before (`None` on
/// create), `new` the object after defaulting, `allocated` what
/// [`allocated_fields`] found. Sets `new`'s `managedFields`, starting from the ones the
/// request carried (kube-apiserver lets a writer set them) or else `old`'s.
pub(crate) fn record_update(
    rt: &ResourceType,
    writer: &Writer,
    old: Option<&Value>,
    new: &mut Value,
    allocated: &[Vec<String>],
    time: &str,
) {
    let requested = entries(new);
    let mut managers = if requested.is_empty() {
        old.map(entries).unwrap_or_default()
    } else {
        requested
    };
    let zero_obj;
    let before = match old {
        Some(o) => o,
        None => {
            zero_obj = zero(rt);
            &zero_obj
        }
    };
    let mut cmp = compare(rt, before, new);
    for path in allocated {
        cmp.changed.remove(path);
    }
    // Reset fields: a main write leaves the status alone, a status write the rest.
    let scope: &[&str] = &["status"];
    let keep_status = writer.subresource == Some("status");
    if rt.status {
        cmp.changed.filter_top(scope, keep_status);
        cmp.removed.filter_top(scope, keep_status);
    }
    cmp.changed.prune();
    cmp.removed.prune();
    let api_version = rt.api_version();
    let mut taken = cmp.changed.clone();
    for e in &mut managers {
        if e.is(writer, UPDATE, &api_version) {
            continue;
        }
        e.fields.difference(&cmp.changed);
        e.fields.difference(&cmp.removed);
        // Server-side apply owns lists whole: a list this write changed inside is no
        // longer the applier's.
        if e.operation == APPLY && !cmp.changed.is_empty() {
            let changed = &cmp.changed;
            e.fields
                .retain_fields(&mut |p| !overlaps_fields(changed, p));
        }
    }
    match managers
        .iter_mut()
        .find(|e| e.is(writer, UPDATE, &api_version))
    {
        Some(mine) => {
            mine.fields.difference(&cmp.removed);
            if !taken.is_empty() {
                mine.fields.union(&taken);
                mine.time = Some(time.to_string());
            }
        }
        None if !taken.is_empty() => {
            taken.prune();
            managers.push(Entry {
                manager: writer.manager.clone(),
                operation: UPDATE.to_string(),
                api_version,
                time: Some(time.to_string()),
                subresource: writer.subresource.map(str::to_string),
                fields: taken,
            });
        }
        None => {}
    }
    store_entries(new, managers);
}

/// Whether `set` has a member at or under the field path `p` (`f:` names).
fn overlaps_fields(set: &FieldSet, p: &[String]) -> bool {
    let mut node = set;
    for name in p {
        if node.member {
            return true;
        }
        match node.children.get(&format!("f:{name}")) {
            Some(c) => node = c,
            None => return false,
        }
    }
    !node.is_empty()
}

// Server-side apply.

/// Server-side apply's merge: conflicts against other appliers, then merge the
/// configuration and drop fields this manager applied before and no longer does.
pub(crate) fn apply_merge(
    rt: &ResourceType,
    current: &Value,
    config: &Value,
    manager: Option<&str>,
    force: bool,
    part: Part,
) -> ApiResult<Value> {
    let name = current["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let manager = manager.ok_or_else(|| {
        ApiError::bad_request("PATCH with an apply patch requires the fieldManager parameter")
    })?;
    check_apply_config(config, &name)?;
    let mut paths = patch::leaf_paths(config);
    if part == Part::Status {
        paths.retain(|p| p.first().is_some_and(|s| s == "status"));
    }
    let subresource = part.subresource();
    let mine = |e: &Value| {
        e["manager"] == manager
            && e["operation"] == APPLY
            && e["subresource"].as_str() == subresource
    };
    let mut entries: Vec<Value> = current["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conflicts = Vec::new();
    let mut previous: Vec<FieldPath> = Vec::new();
    for entry in &mut entries {
        let owner = entry["manager"].as_str().unwrap_or_default().to_string();
        let owned = patch::from_fields_v1(&entry["fieldsV1"]);
        if mine(entry) {
            previous = owned;
            continue;
        }
        if entry["operation"] != APPLY {
            // Conflicts are only reported between appliers; a field the apply sets
            // to another value is no longer the updater's.
            if let Some(mut e) = Entry::from_value(entry) {
                e.fields.retain_fields(&mut |q| {
                    !paths.iter().any(|p| {
                        patch::overlaps(p, q)
                            && patch::value_at(current, p) != patch::value_at(config, p)
                    })
                });
                *entry = e.to_value();
            }
            continue;
        }
        let mut kept = Vec::new();
        for q in owned {
            let clash = paths.iter().find(|p| {
                patch::overlaps(p, &q) && patch::value_at(current, p) != patch::value_at(config, p)
            });
            match clash {
                Some(p) if !force => {
                    conflicts.push(format!("conflict with \"{owner}\": .{}", p.join(".")));
                    kept.push(q);
                }
                Some(_) => {}
                None => kept.push(q),
            }
        }
        entry["fieldsV1"] = patch::to_fields_v1(&kept);
    }
    if !conflicts.is_empty() {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            &name,
            &format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                conflicts.join(", ")
            ),
        ));
    }
    let mut stripped = config.clone();
    if let Some(m) = stripped["metadata"].as_object_mut() {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    let mut merged = patch::strategic_merge_patch(current, &stripped)
        .map_err(|e| store::patch_failed(rt, &name, &e))?;
    let others: Vec<FieldPath> = entries
        .iter()
        .filter(|e| !mine(e))
        .flat_map(|e| patch::from_fields_v1(&e["fieldsV1"]))
        .collect();
    for p in previous {
        if !paths.iter().any(|n| patch::overlaps(n, &p))
            && !others.iter().any(|o| patch::overlaps(o, &p))
        {
            patch::remove_path(&mut merged, &p);
        }
    }
    entries.retain(|e| !mine(e));
    entries.push(applier_entry(
        manager,
        &rt.api_version(),
        subresource,
        &paths,
    ));
    store_entries(
        &mut merged,
        entries.iter().filter_map(Entry::from_value).collect(),
    );
    merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    Ok(merged)
}

/// Checks an apply configuration: an object with `apiVersion`, `kind` and the URL's name.
pub(crate) fn check_apply_config(config: &Value, name: &str) -> ApiResult<()> {
    if !config.is_object() || !(config["metadata"].is_object() || config["metadata"].is_null()) {
        return Err(ApiError::bad_request(
            "an apply patch must be a YAML or JSON object whose metadata is an object",
        ));
    }
    if config
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        || config
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(
            "invalid object: apiVersion and kind must be set in an apply patch",
        ));
    }
    if let Some(n) = config["metadata"]["name"].as_str()
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    Ok(())
}

/// An applier's entry: it owns the fields of its configuration (lists whole).
pub(crate) fn applier_entry(
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    paths: &[FieldPath],
) -> Value {
    let mut entry = json!({
        "manager": manager,
        "operation": APPLY,
        "apiVersion": api_version,
        "time": store::now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": patch::to_fields_v1(paths),
    });
    if let Some(s) = subresource {
        entry["subresource"] = json!(s);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Registry;

    fn rt(plural: &str) -> std::sync::Arc<ResourceType> {
        let registry = Registry::built_in();
        registry
            .find("", "v1", plural)
            .or_else(|| registry.find("discovery.k8s.io", "v1", plural))
            .or_else(|| registry.find("apps", "v1", plural))
            .expect("built-in kind")
    }

    #[test]
    fn manager_from_user_agent_as_kube_apiserver_derives_it() {
        let w = Writer::from_request(None, Some("kubectl/v1.32.4 (linux/amd64) kubernetes/abc"));
        assert_eq!(w.manager, "kubectl");
        assert_eq!(w.applier(), None, "not named by the request");
        let w = Writer::from_request(Some("kubectl-client-side-apply"), Some("kubectl/v1.32"));
        assert_eq!(w.applier(), Some("kubectl-client-side-apply"));
        let long = "m".repeat(200);
        assert_eq!(Writer::named(&long).manager.len(), MAX_MANAGER_LEN);
        assert_eq!(Writer::from_request(None, None).manager, "");
    }

    #[test]
    fn fields_v1_round_trips_with_dots_and_keys() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}, "f:selector": {}}
        });
        let set = FieldSet::from_fields_v1(&v);
        assert_eq!(set.to_fields_v1(), v);
    }

    #[test]
    fn create_owns_what_the_request_set_and_defaulting_added() {
        let svc = rt("services");
        let request = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": "web"}},
        });
        let allocated = allocated_fields(&svc, &request);
        let mut obj = request;
        // What defaulting and allocation add.
        obj["spec"]["ports"][0]["protocol"] = json!("TCP");
        obj["spec"]["ports"][0]["targetPort"] = json!(80);
        obj["spec"]["type"] = json!("ClusterIP");
        obj["spec"]["clusterIP"] = json!("10.43.0.20");
        obj["spec"]["clusterIPs"] = json!(["10.43.0.20"]);
        obj["status"] = json!({"loadBalancer": {}});
        record_update(&svc, &Writer::named("m"), None, &mut obj, &allocated, "T");
        assert_eq!(
            obj["metadata"]["managedFields"],
            json!([{
                "manager": "m", "operation": "Update", "apiVersion": "v1", "time": "T",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
                        "f:selector": {},
                        "f:type": {},
                    },
                },
            }])
        );
    }

    #[test]
    fn a_second_manager_takes_what_it_changes() {
        let cm = rt("configmaps");
        let mut first = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        record_update(&cm, &Writer::named("one"), None, &mut first, &[], "T1");
        let mut second = first.clone();
        second["data"]["a"] = json!("changed");
        second["data"]["c"] = json!("3");
        second["data"].as_object_mut().unwrap().remove("b");
        record_update(
            &cm,
            &Writer::named("two"),
            Some(&first),
            &mut second,
            &[],
            "T2",
        );
        let e = entries(&second);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].manager, "one");
        assert_eq!(e[0].fields.to_fields_v1(), json!({"f:data": {}}));
        assert_eq!(e[1].manager, "two");
        assert_eq!(
            e[1].fields.to_fields_v1(),
            json!({"f:data": {"f:a": {}, "f:c": {}}})
        );
        // A write that changes nothing leaves the entries (and their times) alone.
        let mut same = second.clone();
        record_update(
            &cm,
            &Writer::named("three"),
            Some(&second),
            &mut same,
            &[],
            "T3",
        );
        assert_eq!(same, second);
    }

    #[test]
    fn status_writes_own_status_only_and_say_so() {
        let svc = rt("services");
        let old = json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP"}, "status": {"loadBalancer": {}}});
        let mut new = old.clone();
        new["status"]["loadBalancer"]["ingress"] = json!([{"ip": "10.0.0.1"}]);
        let w = Writer::named("lb").through(Some("status"));
        record_update(&svc, &w, Some(&old), &mut new, &[], "T");
        let e = entries(&new);
        assert_eq!(e[0].subresource.as_deref(), Some("status"));
        assert_eq!(
            e[0].fields.to_fields_v1(),
            json!({"f:status": {"f:loadBalancer": {"f:ingress": {}}}})
        );
    }

    #[test]
    fn owner_references_and_finalizers_are_keyed_and_sets() {
        let slices = rt("endpointslices");
        let mut obj = json!({
            "metadata": {"name": "s-abc", "generateName": "s-", "finalizers": ["x"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "s", "uid": "u1", "controller": true}]},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [],
        });
        record_update(&slices, &Writer::named("kcm"), None, &mut obj, &[], "T");
        assert_eq!(
            entries(&obj)[0].fields.to_fields_v1(),
            json!({
                "f:addressType": {}, "f:endpoints": {}, "f:ports": {},
                "f:metadata": {
                    "f:finalizers": {".": {}, "v:\"x\"": {}},
                    "f:generateName": {},
                    "f:ownerReferences": {".": {}, "k:{\"uid\":\"u1\"}": {}},
                },
            })
        );
    }
}
