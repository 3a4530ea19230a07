//! The translated model: load balancers with listeners, routes, backends and
//! certificates. No Kubernetes types; this is what an
//! [`IngressBackend`](crate::backend::IngressBackend) realises.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, SocketAddr},
};

use crate::{host::Host, path::PathRule};

/// Identifies an Ingress: `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IngressKey {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl IngressKey {
    /// The key `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for IngressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A rejected input: the field that is wrong and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field, as a path into the object (`spec.rules[0].http.paths[1].path`,
    /// `metadata.annotations["scale"]`).
    pub field: String,
    /// What is wrong, in lowercase.
    pub message: String,
}

impl FieldError {
    /// An error for `field`.
    pub fn new(field: impl Into<String>, message: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            message: message.to_string(),
        }
    }
}

/// A listener's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// Plain HTTP.
    Http,
    /// HTTPS, terminated with the certificate chosen by SNI.
    Https,
}

/// A port the load balancer listens on, on every host it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Listener {
    /// The port.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// A backend: one Service port, resolved to ready endpoint addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// The Service port as the Ingress named it: a number or a port name.
    pub port: String,
    /// The ready endpoints (pod address and target port), sorted. Empty when the
    /// Service is missing or has no ready endpoint; requests then get 503.
    pub endpoints: Vec<SocketAddr>,
}

impl Backend {
    /// A stable identifier, unique within a load balancer and a valid DNS
    /// subdomain: `namespace.service.port`.
    pub fn id(&self) -> String {
        format!("{}.{}.{}", self.namespace, self.service, self.port)
    }
}

/// A routing rule: requests for `host` whose path matches `path` go to `backend`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// The hosts the rule applies to.
    pub host: Host,
    /// The path and its match kind.
    pub path: PathRule,
    /// The [`Backend::id`] of the backend.
    pub backend: String,
    /// The Ingress this route came from.
    pub owner: IngressKey,
}

/// PEM text of a private key. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrivateKeyPem(String);

impl PrivateKeyPem {
    /// Wraps PEM text.
    pub fn new(pem: impl Into<String>) -> Self {
        Self(pem.into())
    }

    /// The PEM text. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

/// A certificate served by SNI for `hosts`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Certificate {
    /// `namespace/secret`, where it came from; also a stable identifier.
    pub name: String,
    /// The SNI hosts it is served for. [`Host::Any`] makes it the default
    /// certificate.
    pub hosts: Vec<Host>,
    /// The certificate chain, PEM.
    pub chain_pem: String,
    /// The private key, PEM.
    pub key_pem: PrivateKeyPem,
}

/// Where instances may run, from Rancher's scheduler labels: host label
/// constraints, each `key=value`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Placement {
    /// Hosts must have all of these labels.
    pub required: BTreeMap<String, String>,
    /// Hosts must not have any of these labels.
    pub forbidden: BTreeMap<String, String>,
    /// Hosts with these labels are preferred.
    pub preferred: BTreeMap<String, String>,
    /// Hosts with these labels are avoided when others are eligible.
    pub avoided: BTreeMap<String, String>,
    /// One instance on every eligible host, whatever the scale.
    pub global: bool,
}

impl Placement {
    /// Whether no constraint is set.
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// Cookie stickiness (Rancher's `io.rancher.stickiness.policy`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stickiness {
    /// The policy's name.
    pub name: Option<String>,
    /// The cookie's name.
    pub cookie: Option<String>,
    /// The cookie's domain.
    pub domain: Option<String>,
    /// `insert`, `prefix` or `rewrite`.
    pub mode: Option<String>,
    /// Remove the cookie before forwarding.
    pub indirect: bool,
    /// Mark responses not cacheable.
    pub nocache: bool,
    /// Only insert on POST.
    pub postonly: bool,
}

/// One load balancer: what a backend realises.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadBalancer {
    /// Its name: stable, DNS-label safe.
    pub name: String,
    /// The ports it listens on.
    pub listeners: Vec<Listener>,
    /// The routes, sorted; conflicts already resolved (no two routes share a
    /// host and path).
    pub routes: Vec<Route>,
    /// The backend for requests no route matches (`defaultBackend`), by
    /// [`Backend::id`]; without one they get 404.
    pub default_backend: Option<String>,
    /// The backends, by [`Backend::id`].
    pub backends: BTreeMap<String, Backend>,
    /// Certificates by SNI host.
    pub certificates: Vec<Certificate>,
    /// The number of instances, each on a distinct host.
    pub scale: u32,
    /// Placement constraints.
    pub placement: Placement,
    /// Cookie stickiness.
    pub stickiness: Option<Stickiness>,
    /// Raw configuration text, only when the controller allows snippets.
    pub snippet: Option<String>,
    /// The Ingresses this load balancer serves.
    pub owners: BTreeSet<IngressKey>,
}

impl LoadBalancer {
    /// The backend a request for `host` and `path` reaches, by the Ingress rules:
    /// the most specific matching host (exact, then wildcard, then any), then the
    /// longest matching path (`Exact` before `Prefix` on a tie); otherwise the
    /// default backend. `None` means 404.
    ///
    /// This is the reference semantics every backend must implement.
    pub fn route(&self, host: &str, path: &str) -> Option<&Backend> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let host = host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        });
        let best_host = self
            .routes
            .iter()
            .filter(|route| route.host.matches(host))
            .map(|route| route.host.specificity())
            .max();
        let chosen = best_host.and_then(|specificity| {
            self.routes
                .iter()
                .filter(|route| route.host.specificity() == specificity && route.host.matches(host))
                .filter(|route| route.path.matches(path))
                .max_by_key(|route| route.path.precedence())
        });
        let id = chosen
            .map(|route| &route.backend)
            .or(self.default_backend.as_ref())?;
        self.backends.get(id)
    }

    /// The certificate served for an SNI name: exact host, then wildcard, then a
    /// default certificate.
    pub fn certificate_for(&self, sni: &str) -> Option<&Certificate> {
        self.certificates
            .iter()
            .flat_map(|cert| cert.hosts.iter().map(move |host| (host, cert)))
            .filter(|(host, _)| host.matches(sni))
            .max_by_key(|(host, _)| host.specificity())
            .map(|(_, cert)| cert)
    }
}

/// An address where a load balancer is reachable.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    /// An IP address, written to the Ingress status as `ip`.
    Ip(IpAddr),
    /// A host name, written as `hostname`.
    Hostname(String),
}

impl Address {
    /// An IP when `value` parses as one, else a host name.
    pub fn parse(value: &str) -> Self {
        value
            .parse()
            .map_or_else(|_| Self::Hostname(value.to_owned()), Self::Ip)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Hostname(name) => f.write_str(name),
        }
    }
}

/// What a backend reports for a load balancer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The addresses of the hosts running instances, sorted and deduplicated.
    pub addresses: Vec<Address>,
    /// Problems worth telling the owners about (fewer hosts than `scale`, an
    /// instance down), one sentence each; empty when all is well.
    pub problems: Vec<String>,
}

impl Status {
    /// A status with these addresses, sorted and deduplicated.
    pub fn new(addresses: impl IntoIterator<Item = Address>) -> Self {
        let set: BTreeSet<Address> = addresses.into_iter().collect();
        Self {
            addresses: set.into_iter().collect(),
            problems: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str) -> Backend {
        Backend {
            namespace: "default".into(),
            service: name.into(),
            port: "80".into(),
            endpoints: vec![],
        }
    }

    fn lb(routes: &[(&str, &str, &str, &str)], default: Option<&str>) -> LoadBalancer {
        let mut lb = LoadBalancer::default();
        for (host, path, kind, svc) in routes {
            let backend = backend(svc);
            lb.routes.push(Route {
                host: Host::parse(host).unwrap(),
                path: PathRule::parse(path, kind).unwrap(),
                backend: backend.id(),
                owner: IngressKey::new("default", "test"),
            });
            lb.backends.insert(backend.id(), backend);
        }
        if let Some(svc) = default {
            let backend = backend(svc);
            lb.default_backend = Some(backend.id());
            lb.backends.insert(backend.id(), backend);
        }
        lb
    }

    fn reach<'a>(lb: &'a LoadBalancer, host: &str, path: &str) -> Option<&'a str> {
        lb.route(host, path).map(|b| b.service.as_str())
    }

    #[test]
    fn longest_path_wins_and_exact_beats_prefix() {
        let lb = lb(
            &[
                ("", "/", "Prefix", "root"),
                ("", "/aaa", "Prefix", "aaa"),
                ("", "/aaa/bbb", "Prefix", "bbb"),
                ("", "/foo", "Prefix", "foo-prefix"),
                ("", "/foo", "Exact", "foo-exact"),
            ],
            None,
        );
        assert_eq!(reach(&lb, "x", "/aaa/ccc"), Some("aaa"));
        assert_eq!(reach(&lb, "x", "/aaa/bbb"), Some("bbb"));
        assert_eq!(reach(&lb, "x", "/ccc"), Some("root"));
        assert_eq!(reach(&lb, "x", "/foo"), Some("foo-exact"));
        assert_eq!(reach(&lb, "x", "/foo/x"), Some("foo-prefix"));
        assert_eq!(
            reach(&lb, "x", "/aaa/bbb?q=/zzz"),
            Some("bbb"),
            "query ignored"
        );
    }

    #[test]
    fn host_precedence_then_default_backend_then_404() {
        let lb = lb(
            &[
                ("foo.example.org", "/foo", "Prefix", "exact-host"),
                ("*.example.org", "/", "Prefix", "wildcard"),
                ("", "/", "Prefix", "any"),
            ],
            Some("default"),
        );
        assert_eq!(reach(&lb, "foo.example.org", "/foo"), Some("exact-host"));
        assert_eq!(
            reach(&lb, "foo.example.org:8080", "/foo/bar"),
            Some("exact-host")
        );
        // The host matched but no path: the default backend, not a less specific host.
        assert_eq!(reach(&lb, "foo.example.org", "/other"), Some("default"));
        assert_eq!(reach(&lb, "bar.example.org", "/x"), Some("wildcard"));
        assert_eq!(reach(&lb, "a.b.example.org", "/x"), Some("any"));
        let no_default = self::lb(&[("foo.example.org", "/foo", "Prefix", "a")], None);
        assert_eq!(reach(&no_default, "foo.example.org", "/bar"), None);
        assert_eq!(reach(&no_default, "other.example.org", "/foo"), None);
    }

    #[test]
    fn certificates_by_sni_and_redacted_keys() {
        let cert = |name: &str, host: &str| Certificate {
            name: name.into(),
            hosts: vec![Host::parse(host).unwrap()],
            chain_pem: String::new(),
            key_pem: PrivateKeyPem::new("-----BEGIN PRIVATE KEY-----secret"),
        };
        let lb = LoadBalancer {
            certificates: vec![
                cert("a", "*.example.org"),
                cert("b", "foo.example.org"),
                cert("c", ""),
            ],
            ..LoadBalancer::default()
        };
        assert_eq!(lb.certificate_for("foo.example.org").unwrap().name, "b");
        assert_eq!(lb.certificate_for("bar.example.org").unwrap().name, "a");
        assert_eq!(lb.certificate_for("example.net").unwrap().name, "c");
        assert!(!format!("{:?}", lb.certificates[0]).contains("secret"));
    }

    #[test]
    fn status_is_a_sorted_set() {
        let status = Status::new([
            Address::parse("127.0.0.3"),
            Address::parse("127.0.0.2"),
            Address::parse("127.0.0.3"),
            Address::parse("lb.example.org"),
        ]);
        assert_eq!(
            status.addresses,
            vec![
                Address::Ip("127.0.0.2".parse().unwrap()),
                Address::Ip("127.0.0.3".parse().unwrap()),
                Address::Hostname("lb.example.org".into()),
            ]
        );
    }
}
