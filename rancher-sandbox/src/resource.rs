//! Resource types: the table of built-in kinds and the types CustomResourceDefinitions add.
//!
//! Storage, discovery, validation and table printing all read a [`ResourceType`];
//! adding a built-in kind is one entry in the built-in table.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// How an object's name is validated on create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameRule {
    /// DNS-1123 subdomain: lowercase alphanumerics, `-` and `.`, at most 253 characters.
    Subdomain,
    /// DNS-1123 label: lowercase alphanumerics and `-`, at most 63 characters.
    Label,
    /// DNS-1035 label: a DNS-1123 label that starts with a letter (Service names).
    Rfc1035Label,
    /// Any name that is a valid path segment (custom resources).
    PathSegment,
}

/// Which columns `kubectl get` shows for a kind (server-side `Table` output).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Printer {
    /// NAME, AGE.
    Default,
    /// NAME, STATUS, AGE.
    Namespace,
    /// NAME, STATUS, ROLES, AGE, VERSION.
    Node,
    /// NAME, READY, STATUS, RESTARTS, AGE.
    Pod,
    /// NAME, TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S), AGE.
    Service,
    /// NAME, ENDPOINTS, AGE.
    Endpoints,
    /// NAME, DATA, AGE.
    ConfigMap,
    /// NAME, TYPE, DATA, AGE.
    Secret,
    /// LAST SEEN, TYPE, REASON, OBJECT, MESSAGE.
    Event,
    /// NAME, HOLDER, AGE.
    Lease,
    /// NAME, ADDRESSTYPE, PORTS, ENDPOINTS, AGE.
    EndpointSlice,
    /// NAME, CLASS, HOSTS, ADDRESS, PORTS, AGE.
    Ingress,
    /// NAME, CONTROLLER, PARAMETERS, AGE.
    IngressClass,
    /// NAME, READY, UP-TO-DATE, AVAILABLE, AGE.
    Deployment,
    /// NAME, DESIRED, CURRENT, READY, AGE.
    ReplicaSet,
    /// NAME, READY, AGE.
    StatefulSet,
    /// NAME, DESIRED, CURRENT, READY, UP-TO-DATE, AVAILABLE, NODE SELECTOR, AGE.
    DaemonSet,
    /// NAME, CREATED AT.
    Crd,
    /// A CRD's `additionalPrinterColumns`, then AGE.
    Custom(Vec<PrinterColumn>),
}

/// One `additionalPrinterColumns` entry of a CRD version.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type (`string`, `integer`, `date`, ...).
    pub type_: String,
    /// Simple JSONPath such as `.spec.replicas`.
    pub json_path: String,
    /// 0 is shown by default; higher only with `-o wide`.
    pub priority: i64,
}

/// Conversion between the stored form and the served form of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Conversion {
    /// Served as stored.
    None,
    /// `events.k8s.io/v1` Events, stored as `core/v1` Events.
    EventsV1,
}

/// One resource the server serves: everything storage, discovery and printing need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResourceType {
    /// API group (`""` for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name (the URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names for kubectl (`svc`, `ing`, ...).
    pub short_names: Vec<String>,
    /// Categories for kubectl (`all`).
    pub categories: Vec<String>,
    /// Whether the kind has a `status` subresource.
    pub status: bool,
    /// Name validation.
    pub names: NameRule,
    /// Table columns.
    pub printer: Printer,
    /// Field selector labels accepted beyond `metadata.name` and `metadata.namespace`.
    pub field_labels: Vec<String>,
    /// Whether PUT on a missing object creates it.
    pub create_on_update: bool,
    /// Whether the kind has an `autoscaling/v1` `scale` subresource.
    pub scale: bool,
    /// Storage key shared by every version of the same resource.
    pub storage: String,
    /// Conversion from the stored form.
    pub conversion: Conversion,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group`, or `plural` for the core group.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether a field selector may use `label`.
    pub fn field_label_supported(&self, label: &str) -> bool {
        label == "metadata.name"
            || label == "metadata.namespace"
            || self.field_labels.iter().any(|f| f == label)
    }
}

/// A built-in kind, as one row of [`BUILT_IN`].
#[derive(Debug)]
struct BuiltIn {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    names: NameRule,
    printer: Printer,
    fields: &'static [&'static str],
    create_on_update: bool,
    storage: &'static str,
    conversion: Conversion,
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const EVENT_V1_FIELDS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "type",
];

macro_rules! either {
    ([$x:expr] [$d:expr]) => {
        $x
    };
    ([] [$d:expr]) => {
        $d
    };
}

macro_rules! built_in {
    ($group:expr, $version:expr, $plural:expr, $kind:expr, namespaced: $ns:expr, short: $short:expr,
     status: $status:expr, names: $names:ident, printer: $printer:ident $(, fields: $fields:expr)?
     $(, create_on_update: $cou:expr)? $(, storage: $storage:expr, conversion: $conv:ident)?) => {
        BuiltIn {
            group: $group,
            version: $version,
            plural: $plural,
            kind: $kind,
            namespaced: $ns,
            short: $short,
            status: $status,
            names: NameRule::$names,
            printer: Printer::$printer,
            fields: either!([$($fields)?] [&[]]),
            create_on_update: either!([$($cou)?] [false]),
            storage: either!([$($storage)?] [""]),
            conversion: either!([$(Conversion::$conv)?] [Conversion::None]),
        }
    };
}

/// The API group that CustomResourceDefinitions live in.
pub const APIEXTENSIONS_GROUP: &str = "apiextensions.k8s.io";

/// The built-in kinds, in discovery order.
const BUILT_IN: &[BuiltIn] = &[
    built_in!("", "v1", "namespaces", "Namespace", namespaced: false, short: &["ns"], status: true, names: Label, printer: Namespace, fields: &["status.phase"]),
    built_in!("", "v1", "nodes", "Node", namespaced: false, short: &["no"], status: true, names: Subdomain, printer: Node, fields: &["spec.unschedulable"]),
    built_in!("", "v1", "pods", "Pod", namespaced: true, short: &["po"], status: true, names: Subdomain, printer: Pod, fields: POD_FIELDS),
    built_in!("", "v1", "services", "Service", namespaced: true, short: &["svc"], status: true, names: Rfc1035Label, printer: Service, fields: &["spec.clusterIP", "spec.type"]),
    built_in!("", "v1", "endpoints", "Endpoints", namespaced: true, short: &["ep"], status: false, names: Subdomain, printer: Endpoints, create_on_update: true),
    built_in!("", "v1", "secrets", "Secret", namespaced: true, short: &[], status: false, names: Subdomain, printer: Secret, fields: &["type"]),
    built_in!("", "v1", "configmaps", "ConfigMap", namespaced: true, short: &["cm"], status: false, names: Subdomain, printer: ConfigMap),
    built_in!("", "v1", "serviceaccounts", "ServiceAccount", namespaced: true, short: &["sa"], status: false, names: Subdomain, printer: Default),
    built_in!("", "v1", "events", "Event", namespaced: true, short: &["ev"], status: false, names: Subdomain, printer: Event, fields: EVENT_FIELDS, create_on_update: true),
    built_in!("apps", "v1", "deployments", "Deployment", namespaced: true, short: &["deploy"], status: true, names: Subdomain, printer: Deployment),
    built_in!("apps", "v1", "replicasets", "ReplicaSet", namespaced: true, short: &["rs"], status: true, names: Subdomain, printer: ReplicaSet),
    built_in!("apps", "v1", "daemonsets", "DaemonSet", namespaced: true, short: &["ds"], status: true, names: Subdomain, printer: DaemonSet),
    built_in!("apps", "v1", "statefulsets", "StatefulSet", namespaced: true, short: &["sts"], status: true, names: Subdomain, printer: StatefulSet),
    built_in!("rbac.authorization.k8s.io", "v1", "roles", "Role", namespaced: true, short: &[], status: false, names: PathSegment, printer: Default),
    built_in!("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", namespaced: true, short: &[], status: false, names: PathSegment, printer: Default),
    built_in!("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced: false, short: &[], status: false, names: PathSegment, printer: Default),
    built_in!("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced: false, short: &[], status: false, names: PathSegment, printer: Default),
    built_in!("events.k8s.io", "v1", "events", "Event", namespaced: true, short: &["ev"], status: false, names: Subdomain, printer: Event, fields: EVENT_V1_FIELDS, create_on_update: true, storage: "/events", conversion: EventsV1),
    built_in!("coordination.k8s.io", "v1", "leases", "Lease", namespaced: true, short: &[], status: false, names: Subdomain, printer: Lease, create_on_update: true),
    built_in!("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", namespaced: true, short: &[], status: false, names: Subdomain, printer: EndpointSlice),
    built_in!("networking.k8s.io", "v1", "ingresses", "Ingress", namespaced: true, short: &["ing"], status: true, names: Subdomain, printer: Ingress),
    built_in!("networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced: false, short: &[], status: false, names: Subdomain, printer: IngressClass),
    built_in!("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced: false, short: &["crd", "crds"], status: true, names: Subdomain, printer: Crd),
];

/// Kinds listed under kubectl's `all` category.
const ALL_CATEGORY: &[&str] = &[
    "pods",
    "services",
    "deployments",
    "replicasets",
    "daemonsets",
    "statefulsets",
];

fn from_built_in(b: &BuiltIn) -> ResourceType {
    let storage = if b.storage.is_empty() {
        format!("{}/{}", b.group, b.plural)
    } else {
        b.storage.to_string()
    };
    ResourceType {
        group: b.group.to_string(),
        version: b.version.to_string(),
        plural: b.plural.to_string(),
        singular: b.kind.to_lowercase(),
        kind: b.kind.to_string(),
        namespaced: b.namespaced,
        short_names: b.short.iter().map(|s| s.to_string()).collect(),
        categories: if ALL_CATEGORY.contains(&b.plural) && b.group != "events.k8s.io" {
            vec!["all".to_string()]
        } else {
            Vec::new()
        },
        status: b.status,
        names: b.names,
        printer: b.printer.clone(),
        field_labels: b.fields.iter().map(|s| s.to_string()).collect(),
        create_on_update: b.create_on_update,
        scale: b.group == "apps"
            && ["deployments", "replicasets", "statefulsets"].contains(&b.plural),
        storage,
        conversion: b.conversion,
    }
}

/// The resource types one cluster serves: the built-in table plus established CRDs.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    /// Every served type, in discovery order.
    types: Vec<Arc<ResourceType>>,
    /// CRD name → the types it added.
    crds: BTreeMap<String, Vec<Arc<ResourceType>>>,
}

impl Registry {
    /// The built-in kinds.
    pub(crate) fn built_in() -> Self {
        Self {
            types: BUILT_IN
                .iter()
                .map(|b| Arc::new(from_built_in(b)))
                .collect(),
            crds: BTreeMap::new(),
        }
    }

    /// Every served type.
    pub(crate) fn types(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    /// The type served at `group/version/plural`.
    pub(crate) fn find(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The preferred-version type for `group` and `kind` (used for seeding and conversions).
    pub(crate) fn find_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
    }

    /// Whether `group/version` is served at all.
    pub(crate) fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.group == group && t.version == version)
    }

    /// Groups (excluding core) with their versions, preferred version first.
    pub(crate) fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            if t.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        out
    }

    /// The name of the CRD that added `rt`, if a CRD did.
    pub(crate) fn crd_owning(&self, rt: &Arc<ResourceType>) -> Option<&str> {
        self.crds
            .iter()
            .find(|(_, ts)| ts.iter().any(|t| Arc::ptr_eq(t, rt)))
            .map(|(n, _)| n.as_str())
    }

    /// Registers (or re-registers) the types a CRD defines.
    pub(crate) fn register_crd(&mut self, crd_name: &str, types: Vec<ResourceType>) {
        self.remove_crd(crd_name);
        let types: Vec<Arc<ResourceType>> = types.into_iter().map(Arc::new).collect();
        self.types.extend(types.iter().cloned());
        self.crds.insert(crd_name.to_string(), types);
    }

    /// Unregisters a CRD's types; returns the storage key they used.
    pub(crate) fn remove_crd(&mut self, crd_name: &str) -> Option<String> {
        let removed = self.crds.remove(crd_name)?;
        self.types
            .retain(|t| !removed.iter().any(|r| Arc::ptr_eq(r, t)));
        removed.first().map(|t| t.storage.clone())
    }
}

/// Builds the resource types a CRD object defines, or a list of validation causes.
pub(crate) fn types_from_crd(crd: &Value) -> Result<Vec<ResourceType>, Vec<String>> {
    let spec = &crd["spec"];
    let mut causes = Vec::new();
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let kind = spec["names"]["kind"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push("spec.group: Required value".to_string());
    }
    if plural.is_empty() {
        causes.push("spec.names.plural: Required value".to_string());
    }
    if kind.is_empty() {
        causes.push("spec.names.kind: Required value".to_string());
    }
    let expected = format!("{plural}.{group}");
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if !plural.is_empty() && !group.is_empty() && name != expected {
        causes.push(format!(
            "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            causes.push(format!("spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""));
            true
        }
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
                .to_string(),
        );
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let singular = spec["names"]["singular"]
        .as_str()
        .map_or_else(|| kind.to_lowercase(), str::to_string);
    let mut out = Vec::new();
    for v in versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
    {
        let Some(version) = v["name"].as_str() else {
            continue;
        };
        let columns: Vec<PrinterColumn> = v["additionalPrinterColumns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .filter_map(|c| {
                        Some(PrinterColumn {
                            name: c["name"].as_str()?.to_string(),
                            type_: c["type"].as_str().unwrap_or("string").to_string(),
                            json_path: c["jsonPath"].as_str()?.to_string(),
                            priority: c["priority"].as_i64().unwrap_or(0),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let field_labels = v["selectableFields"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|s| {
                        s["jsonPath"]
                            .as_str()
                            .map(|p| p.trim_start_matches('.').to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceType {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            singular: singular.clone(),
            kind: kind.to_string(),
            namespaced,
            short_names: strings(&spec["names"]["shortNames"]),
            categories: strings(&spec["names"]["categories"]),
            status: v["subresources"]["status"].is_object(),
            names: NameRule::PathSegment,
            printer: Printer::Custom(columns),
            field_labels,
            create_on_update: false,
            scale: false,
            storage: format!("{group}/{plural}"),
            conversion: Conversion::None,
        });
    }
    Ok(out)
}
