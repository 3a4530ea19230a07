//! The load balancer model, validated on construction.
//!
//! A caller describes a load balancer with plain strings and numbers in a
//! [`LoadBalancerSpec`] and turns it into a [`LoadBalancer`] with
//! [`LoadBalancer::new`]. Construction checks every string against a strict
//! grammar (see [`grammar`]) and every cross reference (routes to listeners and
//! backends, certificates to keys), so a driver never sees a value that could
//! break out of a configuration file. A rejected spec yields an
//! [`Error::Invalid`] that names the load balancer and the field.

pub mod grammar;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

pub use grammar::{HostMatch, Hostname, HttpPath, Name};

/// The largest `scale` a load balancer may ask for.
pub const MAX_SCALE: u32 = 256;

/// The longest raw snippet accepted, in bytes.
pub const MAX_SNIPPET_LEN: usize = 4096;

/// Errors from building the model.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A field holds a value the model does not accept.
    #[error("load balancer {lb:?}: {field}: {reason}")]
    Invalid {
        /// The load balancer id as given (possibly itself invalid).
        lb: String,
        /// The path of the offending field, e.g. `http_routes[2].path`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    fn invalid(lb: &str, field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self::Invalid {
            lb: lb.to_owned(),
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// The field the error names.
    pub fn field(&self) -> &str {
        match self {
            Self::Invalid { field, .. } => field,
        }
    }
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The identity of a load balancer: an RFC 1123 subdomain, at most 253 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LbId(Name);

impl LbId {
    /// Validates an id.
    pub fn new(id: &str) -> Result<Self, grammar::Error> {
        Name::new(id).map(Self)
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl TryFrom<String> for LbId {
    type Error = grammar::Error;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<LbId> for String {
    fn from(value: LbId) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for LbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Plain HTTP, routed by host and path.
    Http,
    /// HTTP over TLS terminated by the load balancer; certificate by SNI.
    Https,
    /// TCP forwarded as is (also TLS pass-through).
    Tcp,
    /// TLS terminated by the load balancer, then forwarded as TCP.
    Tls,
}

impl Protocol {
    /// Whether the listener routes HTTP requests by host and path.
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Https)
    }

    /// Whether the listener terminates TLS and so needs certificates.
    pub fn terminates_tls(self) -> bool {
        matches!(self, Self::Https | Self::Tls)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// How a route's path is compared with the request path.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PathMatch {
    /// The whole request path, case-sensitively.
    Exact,
    /// Element-wise on `/`: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
    #[default]
    Prefix,
}

/// How a backend spreads requests over its endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The endpoint with the fewest connections.
    LeastConn,
    /// A hash of the client address.
    Source,
}

/// Session stickiness, as given by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum StickinessSpec {
    /// No stickiness.
    #[default]
    None,
    /// A client address sticks to the endpoint it first reached.
    Source,
    /// An HTTP cookie names the endpoint (HTTP listeners only).
    Cookie {
        /// The cookie name.
        name: String,
    },
}

/// Session stickiness, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stickiness {
    /// No stickiness.
    #[default]
    None,
    /// A client address sticks to the endpoint it first reached.
    Source,
    /// An HTTP cookie named by the value names the endpoint.
    Cookie(grammar::Token),
}

/// The raw description of a load balancer; see [`LoadBalancer::new`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadBalancerSpec {
    /// Identity, an RFC 1123 subdomain.
    pub id: String,
    /// Ports the load balancer listens on.
    pub listeners: Vec<ListenerSpec>,
    /// Host and path routes on HTTP/HTTPS listeners.
    pub http_routes: Vec<HttpRouteSpec>,
    /// The backend answering HTTP requests that no route of the request's
    /// host matches (an Ingress's `defaultBackend`), on every HTTP/HTTPS
    /// listener: a host of this load balancer tries its own paths, then this
    /// backend; any other host tries the routes without a host, then this
    /// backend. `None`: such requests get 404.
    pub default_backend: Option<String>,
    /// Routes on TCP/TLS listeners (one per listener).
    pub tcp_routes: Vec<TcpRouteSpec>,
    /// Named groups of endpoints.
    pub backends: Vec<BackendSpec>,
    /// Certificates for HTTPS/TLS listeners, chosen by SNI.
    pub certificates: Vec<CertificateSpec>,
    /// Number of instances, each on its own host. 0 means none.
    pub scale: u32,
    /// Constraints on the hosts instances run on.
    pub placement: PlacementSpec,
    /// Raw proxy configuration added to each backend. Drivers refuse it unless
    /// snippets were explicitly enabled.
    pub snippet: Option<String>,
}

/// A listener as given by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSpec {
    /// Port, 1–65535.
    pub port: u32,
    /// Protocol.
    pub protocol: Protocol,
}

/// An HTTP route as given by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpRouteSpec {
    /// The listener port the route belongs to.
    pub port: u32,
    /// Host: exact, `*.`-wildcard, or `None` for every host.
    pub host: Option<String>,
    /// Path; `None` is the prefix `/`.
    pub path: Option<String>,
    /// How the path matches.
    pub path_match: PathMatch,
    /// Backend name.
    pub backend: String,
}

/// A TCP route as given by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpRouteSpec {
    /// The listener port.
    pub port: u32,
    /// Backend name.
    pub backend: String,
}

/// A backend as given by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackendSpec {
    /// Name, an RFC 1123 subdomain unique in the load balancer.
    pub name: String,
    /// Endpoints; may be empty (requests then get 503).
    pub endpoints: Vec<EndpointSpec>,
    /// Balance algorithm.
    pub balance: Balance,
    /// Stickiness.
    pub stickiness: StickinessSpec,
}

/// An endpoint as given by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// IP address (no host names).
    pub address: String,
    /// Port, 1–65535.
    pub port: u32,
}

/// A certificate as given by the caller.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificateSpec {
    /// Name, an RFC 1123 subdomain unique in the load balancer.
    pub name: String,
    /// PEM certificate chain, leaf first.
    pub chain_pem: String,
    /// PEM private key of the leaf.
    pub key_pem: String,
    /// SNI hosts this certificate serves (exact or `*.` wildcard).
    pub hosts: Vec<String>,
    /// Whether this is the certificate for clients without a matching SNI.
    pub default: bool,
}

impl fmt::Debug for CertificateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateSpec")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .field("default", &self.default)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Placement constraints as given by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlacementSpec {
    /// Labels a host must carry, all of them, with these values.
    pub required_labels: BTreeMap<String, String>,
    /// Labels a host must not carry: a host with any of these label values
    /// is not eligible (Rancher's `host_label_ne`).
    pub forbidden_labels: BTreeMap<String, String>,
    /// Soft affinity: new instances go to hosts carrying more of these
    /// first (Rancher's `host_label_soft`).
    pub preferred_labels: BTreeMap<String, String>,
    /// Soft anti-affinity: new instances go to hosts carrying fewer of
    /// these first (Rancher's `host_label_soft_ne`).
    pub avoided_labels: BTreeMap<String, String>,
    /// One instance on every eligible host, whatever `scale` says
    /// (Rancher's `io.rancher.scheduler.global`).
    pub global: bool,
    /// Hosts to prefer, in order, when new instances are placed.
    pub preferred_hosts: Vec<IpAddr>,
}

/// A validated listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listener {
    /// Port, 1–65535.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

/// A validated HTTP route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpRoute {
    /// Listener port.
    pub port: u16,
    /// Host match.
    pub host: HostMatch,
    /// Path, normalised (a prefix loses its trailing slash, except `/`).
    pub path: HttpPath,
    /// Match kind.
    pub path_match: PathMatch,
    /// Backend name (exists in the load balancer).
    pub backend: Name,
}

/// A validated TCP route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpRoute {
    /// Listener port.
    pub port: u16,
    /// Backend name (exists in the load balancer).
    pub backend: Name,
}

/// A validated endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Address.
    pub address: IpAddr,
    /// Port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        std::net::SocketAddr::new(self.address, self.port).fmt(f)
    }
}

/// A validated backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Name.
    pub name: Name,
    /// Endpoints, sorted and deduplicated.
    pub endpoints: Vec<Endpoint>,
    /// Balance algorithm.
    pub balance: Balance,
    /// Stickiness.
    pub stickiness: Stickiness,
}

/// A validated certificate: the chain and key parsed, and the key known to
/// match the leaf.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Name.
    pub name: Name,
    /// SNI hosts.
    pub hosts: Vec<HostMatch>,
    /// Whether this is the default certificate.
    pub default: bool,
    chain: Arc<[CertificateDer<'static>]>,
    key_der: Arc<[u8]>,
    key_label: &'static str,
}

impl Certificate {
    /// The chain in DER, leaf first.
    pub fn chain_der(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Chain and key as canonical PEM (re-encoded from DER), as one file.
    pub fn to_combined_pem(&self) -> String {
        let mut out = String::new();
        for cert in self.chain.iter() {
            pem_block(&mut out, "CERTIFICATE", cert.as_ref());
        }
        pem_block(&mut out, self.key_label, &self.key_der);
        out
    }

    /// Only the chain, as canonical PEM.
    pub fn chain_pem(&self) -> String {
        let mut out = String::new();
        for cert in self.chain.iter() {
            pem_block(&mut out, "CERTIFICATE", cert.as_ref());
        }
        out
    }

    /// Only the key, as canonical PEM.
    pub fn key_pem(&self) -> String {
        let mut out = String::new();
        pem_block(&mut out, self.key_label, &self.key_der);
        out
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .field("default", &self.default)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

pub(crate) fn pem_block(out: &mut String, label: &str, der: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}

/// Validated placement constraints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Labels a host must carry.
    pub required_labels: BTreeMap<String, String>,
    /// Labels a host must not carry.
    pub forbidden_labels: BTreeMap<String, String>,
    /// Labels that make a host preferred for new instances.
    pub preferred_labels: BTreeMap<String, String>,
    /// Labels that make a host avoided for new instances.
    pub avoided_labels: BTreeMap<String, String>,
    /// One instance on every eligible host.
    pub global: bool,
    /// Hosts to prefer, in order.
    pub preferred_hosts: Vec<IpAddr>,
}

/// A validated load balancer. Build it with [`LoadBalancer::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    id: LbId,
    listeners: Vec<Listener>,
    http_routes: Vec<HttpRoute>,
    default_backend: Option<Name>,
    tcp_routes: Vec<TcpRoute>,
    backends: Vec<Backend>,
    certificates: Vec<Certificate>,
    scale: u32,
    placement: Placement,
    snippet: Option<String>,
}

impl LoadBalancer {
    /// Validates a spec.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the first offending field.
    pub fn new(spec: &LoadBalancerSpec) -> Result<Self> {
        Validator { lb: &spec.id }.run(spec)
    }

    /// Identity.
    pub fn id(&self) -> &LbId {
        &self.id
    }
    /// Listeners, sorted by port.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }
    /// HTTP routes.
    pub fn http_routes(&self) -> &[HttpRoute] {
        &self.http_routes
    }
    /// The backend for HTTP requests no route of their host matches; see
    /// [`LoadBalancerSpec::default_backend`].
    pub fn default_backend(&self) -> Option<&Name> {
        self.default_backend.as_ref()
    }
    /// TCP routes.
    pub fn tcp_routes(&self) -> &[TcpRoute] {
        &self.tcp_routes
    }
    /// Backends, sorted by name.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }
    /// The backend with this name.
    pub fn backend(&self, name: &Name) -> Option<&Backend> {
        self.backends.iter().find(|b| &b.name == name)
    }
    /// Certificates.
    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }
    /// Number of instances wanted.
    pub fn scale(&self) -> u32 {
        self.scale
    }
    /// Placement constraints.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }
    /// The raw snippet, if any.
    pub fn snippet(&self) -> Option<&str> {
        self.snippet.as_deref()
    }

    /// The same load balancer with another `scale`.
    #[must_use]
    pub fn with_scale(mut self, scale: u32) -> Self {
        self.scale = scale.min(MAX_SCALE);
        self
    }

    /// The same load balancer with another endpoint list for one backend, as
    /// an endpoint watch produces. Unknown backends are left alone.
    #[must_use]
    pub fn with_endpoints(mut self, backend: &Name, endpoints: Vec<Endpoint>) -> Self {
        if let Some(b) = self.backends.iter_mut().find(|b| &b.name == backend) {
            let mut eps = endpoints;
            eps.sort();
            eps.dedup();
            b.endpoints = eps;
        }
        self
    }

    /// Whether `other` is this load balancer with only backend endpoints
    /// changed (what an endpoint watch produces).
    pub fn differs_only_in_endpoints(&self, other: &Self) -> bool {
        self.id == other.id
            && self.listeners == other.listeners
            && self.http_routes == other.http_routes
            && self.default_backend == other.default_backend
            && self.tcp_routes == other.tcp_routes
            && self.certificates == other.certificates
            && self.scale == other.scale
            && self.placement == other.placement
            && self.snippet == other.snippet
            && self.backends.len() == other.backends.len()
            && self.backends.iter().zip(&other.backends).all(|(a, b)| {
                a.name == b.name && a.balance == b.balance && a.stickiness == b.stickiness
            })
    }

    /// The listener on this port.
    pub fn listener(&self, port: u16) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.port == port)
    }
}

struct Validator<'a> {
    lb: &'a str,
}

impl Validator<'_> {
    fn err(&self, field: impl Into<String>, reason: impl fmt::Display) -> Error {
        Error::invalid(self.lb, field, reason)
    }

    fn port(&self, field: &str, port: u32) -> Result<u16> {
        match u16::try_from(port) {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(self.err(field, format!("port {port} is outside 1-65535"))),
        }
    }

    fn run(&self, spec: &LoadBalancerSpec) -> Result<LoadBalancer> {
        let id = LbId::new(&spec.id).map_err(|e| self.err("id", e))?;

        let mut listeners = Vec::with_capacity(spec.listeners.len());
        for (i, l) in spec.listeners.iter().enumerate() {
            let field = format!("listeners[{i}].port");
            let port = self.port(&field, l.port)?;
            if listeners.iter().any(|x: &Listener| x.port == port) {
                return Err(self.err(field, format!("port {port} is used by another listener")));
            }
            listeners.push(Listener {
                port,
                protocol: l.protocol,
            });
        }
        listeners.sort_by_key(|l| l.port);

        let mut backends = Vec::with_capacity(spec.backends.len());
        for (i, b) in spec.backends.iter().enumerate() {
            backends.push(self.backend(i, b)?);
        }
        let mut names = BTreeSet::new();
        for (i, b) in backends.iter().enumerate() {
            if !names.insert(b.name.clone()) {
                return Err(self.err(
                    format!("backends[{i}].name"),
                    format!("duplicate backend {:?}", b.name.as_str()),
                ));
            }
        }
        backends.sort_by(|a, b| a.name.cmp(&b.name));

        let backend_ref = |field: String, name: &str| -> Result<Name> {
            let n = Name::new(name).map_err(|e| self.err(field.clone(), e))?;
            if !names.contains(&n) {
                return Err(self.err(field, format!("no backend named {name:?}")));
            }
            Ok(n)
        };

        let mut http_routes: Vec<HttpRoute> = Vec::with_capacity(spec.http_routes.len());
        // Index of each (port, host, path, match) already routed: a linear scan
        // here made validation quadratic in the number of routes.
        let mut seen_routes = std::collections::HashMap::with_capacity(spec.http_routes.len());
        for (i, r) in spec.http_routes.iter().enumerate() {
            let at = |f: &str| format!("http_routes[{i}].{f}");
            let port = self.port(&at("port"), r.port)?;
            match listeners.iter().find(|l| l.port == port) {
                Some(l) if l.protocol.is_http() => {}
                Some(l) => {
                    return Err(self.err(
                        at("port"),
                        format!(
                            "listener {port} is {}, http routes need http or https",
                            l.protocol.as_str()
                        ),
                    ));
                }
                None => return Err(self.err(at("port"), format!("no listener on port {port}"))),
            }
            let host = match &r.host {
                None => HostMatch::Any,
                Some(h) => HostMatch::new(h).map_err(|e| self.err(at("host"), e))?,
            };
            let path = match &r.path {
                None => HttpPath::root(),
                Some(p) => HttpPath::new(p, r.path_match).map_err(|e| self.err(at("path"), e))?,
            };
            let backend = backend_ref(at("backend"), &r.backend)?;
            let route = HttpRoute {
                port,
                host,
                path,
                path_match: r.path_match,
                backend,
            };
            let key = (
                route.port,
                route.host.clone(),
                route.path.clone(),
                route.path_match,
            );
            if let Some(&index) = seen_routes.get(&key) {
                let other: &HttpRoute = &http_routes[index];
                if other.backend != route.backend {
                    return Err(self.err(
                        at("path"),
                        format!(
                            "host {} path {} is already routed to backend {:?}",
                            route.host,
                            route.path,
                            other.backend.as_str()
                        ),
                    ));
                }
                continue;
            }
            seen_routes.insert(key, http_routes.len());
            http_routes.push(route);
        }

        let default_backend = match &spec.default_backend {
            None => None,
            Some(name) => {
                if !listeners.iter().any(|l| l.protocol.is_http()) {
                    return Err(self.err(
                        "default_backend",
                        "a default backend needs an http or https listener",
                    ));
                }
                Some(backend_ref("default_backend".to_owned(), name)?)
            }
        };

        let mut tcp_routes: Vec<TcpRoute> = Vec::with_capacity(spec.tcp_routes.len());
        for (i, r) in spec.tcp_routes.iter().enumerate() {
            let at = |f: &str| format!("tcp_routes[{i}].{f}");
            let port = self.port(&at("port"), r.port)?;
            match listeners.iter().find(|l| l.port == port) {
                Some(l) if !l.protocol.is_http() => {}
                Some(l) => {
                    return Err(self.err(
                        at("port"),
                        format!(
                            "listener {port} is {}, tcp routes need tcp or tls",
                            l.protocol.as_str()
                        ),
                    ));
                }
                None => return Err(self.err(at("port"), format!("no listener on port {port}"))),
            }
            if tcp_routes.iter().any(|t| t.port == port) {
                return Err(self.err(at("port"), format!("listener {port} already has a route")));
            }
            let backend = backend_ref(at("backend"), &r.backend)?;
            tcp_routes.push(TcpRoute { port, backend });
        }
        for (i, l) in spec.listeners.iter().enumerate() {
            if !l.protocol.is_http() && !tcp_routes.iter().any(|t| u32::from(t.port) == l.port) {
                return Err(self.err(
                    format!("listeners[{i}]"),
                    format!("{} listener {} has no route", l.protocol.as_str(), l.port),
                ));
            }
        }

        let mut certificates = Vec::with_capacity(spec.certificates.len());
        for (i, c) in spec.certificates.iter().enumerate() {
            certificates.push(self.certificate(i, c)?);
        }
        let mut cert_names = BTreeSet::new();
        for (i, c) in certificates.iter().enumerate() {
            if !cert_names.insert(c.name.clone()) {
                return Err(self.err(
                    format!("certificates[{i}].name"),
                    format!("duplicate certificate {:?}", c.name.as_str()),
                ));
            }
        }
        if certificates.iter().filter(|c| c.default).count() > 1 {
            return Err(self.err("certificates", "more than one default certificate"));
        }
        if let Some(l) = listeners.iter().find(|l| l.protocol.terminates_tls())
            && certificates.is_empty()
        {
            return Err(self.err(
                "certificates",
                format!(
                    "{} listener {} needs a certificate",
                    l.protocol.as_str(),
                    l.port
                ),
            ));
        }

        if spec.scale > MAX_SCALE {
            return Err(self.err("scale", format!("{} is above {MAX_SCALE}", spec.scale)));
        }

        let labels = |field: &str, map: &BTreeMap<String, String>| {
            for (k, v) in map {
                grammar::label_key(k)
                    .and_then(|()| grammar::label_value(v))
                    .map_err(|e| self.err(format!("placement.{field}[{k:?}]"), e))?;
            }
            Ok::<_, Error>(map.clone())
        };
        let p = &spec.placement;
        let required_labels = labels("required_labels", &p.required_labels)?;
        let forbidden_labels = labels("forbidden_labels", &p.forbidden_labels)?;
        let preferred_labels = labels("preferred_labels", &p.preferred_labels)?;
        let avoided_labels = labels("avoided_labels", &p.avoided_labels)?;
        if let Some((k, v)) = required_labels
            .iter()
            .find(|(k, v)| forbidden_labels.get(*k) == Some(*v))
        {
            return Err(self.err(
                format!("placement.forbidden_labels[{k:?}]"),
                format!("{k}={v} is also required: no host can be eligible"),
            ));
        }
        let mut preferred_hosts = Vec::new();
        for h in &spec.placement.preferred_hosts {
            if !preferred_hosts.contains(h) {
                preferred_hosts.push(*h);
            }
        }

        let snippet = match &spec.snippet {
            None => None,
            Some(s) => Some(grammar::snippet(s).map_err(|e| self.err("snippet", e))?),
        };

        Ok(LoadBalancer {
            id,
            listeners,
            http_routes,
            default_backend,
            tcp_routes,
            backends,
            certificates,
            scale: spec.scale,
            placement: Placement {
                required_labels,
                forbidden_labels,
                preferred_labels,
                avoided_labels,
                global: p.global,
                preferred_hosts,
            },
            snippet,
        })
    }

    fn backend(&self, i: usize, b: &BackendSpec) -> Result<Backend> {
        let at = |f: &str| format!("backends[{i}].{f}");
        let name = Name::new(&b.name).map_err(|e| self.err(at("name"), e))?;
        let mut endpoints = Vec::with_capacity(b.endpoints.len());
        for (j, e) in b.endpoints.iter().enumerate() {
            let address: IpAddr = e.address.parse().map_err(|_| {
                self.err(
                    format!("backends[{i}].endpoints[{j}].address"),
                    format!("{:?} is not an IP address", grammar::Shown(&e.address)),
                )
            })?;
            let port = self.port(&format!("backends[{i}].endpoints[{j}].port"), e.port)?;
            endpoints.push(Endpoint { address, port });
        }
        endpoints.sort();
        endpoints.dedup();
        let stickiness = match &b.stickiness {
            StickinessSpec::None => Stickiness::None,
            StickinessSpec::Source => Stickiness::Source,
            StickinessSpec::Cookie { name } => Stickiness::Cookie(
                grammar::Token::new(name).map_err(|e| self.err(at("stickiness.name"), e))?,
            ),
        };
        Ok(Backend {
            name,
            endpoints,
            balance: b.balance,
            stickiness,
        })
    }

    fn certificate(&self, i: usize, c: &CertificateSpec) -> Result<Certificate> {
        let at = |f: &str| format!("certificates[{i}].{f}");
        let name = Name::new(&c.name).map_err(|e| self.err(at("name"), e))?;
        let mut hosts = Vec::with_capacity(c.hosts.len());
        for (j, h) in c.hosts.iter().enumerate() {
            let m = HostMatch::new(h)
                .map_err(|e| self.err(format!("certificates[{i}].hosts[{j}]"), e))?;
            if m == HostMatch::Any {
                return Err(self.err(format!("certificates[{i}].hosts[{j}]"), "empty host"));
            }
            hosts.push(m);
        }
        if hosts.is_empty() && !c.default {
            return Err(self.err(
                at("hosts"),
                "a certificate that is not the default needs hosts",
            ));
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(c.chain_pem.as_bytes())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| self.err(at("chain_pem"), format!("not PEM certificates: {e}")))?;
        if chain.is_empty() {
            return Err(self.err(at("chain_pem"), "no certificate in the chain"));
        }
        let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes())
            .map_err(|_| self.err(at("key_pem"), "not a PEM private key"))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| self.err(at("key_pem"), format!("unsupported key: {e}")))?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
        certified.keys_match().map_err(|_| {
            self.err(
                at("key_pem"),
                "the private key does not match the certificate",
            )
        })?;
        let key_label = match &key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        Ok(Certificate {
            name,
            hosts,
            default: c.default,
            chain: chain.into(),
            key_der: key.secret_der().to_vec().into(),
            key_label,
        })
    }
}

#[cfg(test)]
mod tests;
