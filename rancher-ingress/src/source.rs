//! The Kubernetes objects the controller reads, stripped to what translation
//! needs. No Kubernetes types: [`convert`](crate) fills these from k8s-openapi
//! objects, tests build them by hand.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use crate::model::{Address, IngressKey};

/// A Service port reference: a number or a port name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortRef {
    /// `port.number`.
    Number(u16),
    /// `port.name`.
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => n.fmt(f),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// An Ingress backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendRef {
    /// A Service in the Ingress's namespace.
    Service {
        /// The Service's name.
        name: String,
        /// The Service port.
        port: Option<PortRef>,
    },
    /// A `resource` backend (not supported here).
    Resource {
        /// The resource's kind.
        kind: String,
    },
}

/// One `spec.rules[].http.paths[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpPath {
    /// The path (`None` means `/`).
    pub path: Option<String>,
    /// `Exact`, `Prefix` or `ImplementationSpecific`.
    pub path_type: String,
    /// Where requests go.
    pub backend: BackendRef,
}

/// One `spec.rules[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// The host (`None` or empty: every host).
    pub host: Option<String>,
    /// The paths; empty when the rule has no `http`.
    pub paths: Vec<HttpPath>,
}

/// One `spec.tls[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// The SNI hosts.
    pub hosts: Vec<String>,
    /// The `kubernetes.io/tls` Secret in the Ingress's namespace.
    pub secret_name: Option<String>,
}

/// An Ingress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ingress {
    /// `namespace/name`.
    pub key: IngressKey,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.creationTimestamp`, seconds since the epoch.
    pub created: i64,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.ingressClassName`.
    pub class_name: Option<String>,
    /// `spec.defaultBackend`.
    pub default_backend: Option<BackendRef>,
    /// `spec.rules`.
    pub rules: Vec<Rule>,
    /// `spec.tls`.
    pub tls: Vec<Tls>,
    /// `status.loadBalancer.ingress`, as currently written.
    pub status: Vec<Address>,
}

impl Default for IngressKey {
    fn default() -> Self {
        Self::new("default", "")
    }
}

/// An IngressClass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngressClass {
    /// Its name.
    pub name: String,
    /// `spec.controller`.
    pub controller: String,
    /// Annotated `ingressclass.kubernetes.io/is-default-class: "true"`.
    pub is_default: bool,
}

/// A Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `name` (empty when unnamed).
    pub name: String,
    /// `port`.
    pub port: u16,
    /// `protocol` is TCP (or unset).
    pub tcp: bool,
}

/// A Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `spec.type` is `ExternalName`.
    pub external_name: bool,
}

/// A port of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    /// `name` (empty when unnamed), equal to the Service port's name.
    pub name: String,
    /// `port`, the target port.
    pub port: u16,
    /// `protocol` is TCP (or unset).
    pub tcp: bool,
}

/// An EndpointSlice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSlice {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The Service it belongs to (label `kubernetes.io/service-name`).
    pub service: Option<String>,
    /// Its ports.
    pub ports: Vec<SlicePort>,
    /// The first address of each endpoint that is ready (`conditions.ready`
    /// true or unset).
    pub ready: Vec<IpAddr>,
}

/// A Secret's TLS material. `Debug` redacts the key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its `type`.
    pub type_: String,
    /// `data["tls.crt"]`.
    pub cert: Option<Vec<u8>>,
    /// `data["tls.key"]`.
    pub key: Option<Vec<u8>>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("type_", &self.type_)
            .field("cert", &self.cert.as_ref().map(Vec::len))
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The Secret type for TLS material.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
