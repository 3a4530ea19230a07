//! Translation: Ingresses and what they reference → load balancers.
//!
//! [`Sources`] holds the stripped objects; [`translate`] turns them into the
//! load balancers to realise and an [`Outcome`] per Ingress.
//!
//! Ingresses with the same listener ports, scale, placement, stickiness and
//! snippet share one load balancer, so their rules merge into one frontend. Rules
//! are claimed oldest Ingress first (creationTimestamp, then namespace/name): a
//! host and path (or an SNI host) that an older Ingress already serves is dropped
//! from the newer one, with a note naming the winner. An Ingress with any invalid
//! field is rejected whole: nothing of it is programmed, the others are.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, hash_map::Entry},
    net::SocketAddr,
};

use crate::{
    annotations::{self, Annotations},
    class::ClassConfig,
    host::{self, Host},
    model::{
        Backend, Certificate, FieldError, IngressKey, Listener, LoadBalancer, PrivateKeyPem,
        Protocol, Route,
    },
    path::PathRule,
    source::{
        BackendRef, EndpointSlice, Ingress, IngressClass, PortRef, Secret, Service, TLS_SECRET_TYPE,
    },
    tls,
};

/// Translation settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Which Ingresses are ours.
    pub class: ClassConfig,
    /// Annotation parsing options.
    pub annotations: annotations::Options,
}

/// A Secret with its TLS material checked once, when it was stored.
#[derive(Clone, Debug)]
struct StoredSecret {
    type_: String,
    /// The checked pair, or why it was rejected (naming the data key).
    pair: Result<(String, PrivateKeyPem), String>,
}

/// The objects translation reads, indexed for lookup.
#[derive(Debug, Default)]
pub struct Sources {
    ingresses: BTreeMap<IngressKey, Ingress>,
    classes: BTreeMap<String, IngressClass>,
    services: HashMap<(String, String), Service>,
    /// Slices by (namespace, service), then slice name.
    slices: HashMap<(String, String), BTreeMap<String, EndpointSlice>>,
    /// The service each slice (namespace, name) was filed under.
    slice_owner: HashMap<(String, String), String>,
    secrets: HashMap<(String, String), StoredSecret>,
    /// Change counters of what parsing reads, so a cached parse knows it is stale.
    versions: HashMap<Dep, u64>,
    next_version: u64,
    /// Parsed Ingresses, reused until the Ingress or something it read changes.
    cache: std::sync::Mutex<Cache>,
}

/// Something an Ingress's parse read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Dep {
    /// A Service and its EndpointSlices: (namespace, name).
    Service(String, String),
    /// A Secret: (namespace, name).
    Secret(String, String),
}

#[derive(Debug, Default)]
struct Cache {
    config: Option<Config>,
    entries: HashMap<IngressKey, Cached>,
}

#[derive(Debug)]
struct Cached {
    deps: Vec<(Dep, u64)>,
    result: Result<Parsed, Vec<FieldError>>,
}

impl Sources {
    fn version(&self, dep: &Dep) -> u64 {
        self.versions.get(dep).copied().unwrap_or(0)
    }

    fn bump(&mut self, dep: Dep) {
        self.next_version += 1;
        self.versions.insert(dep, self.next_version);
    }

    /// After a delete: a new version while something of `dep` is left, else no
    /// version at all, as for what was never seen. Version 0 then means nothing
    /// exists, which is what a parse that read version 0 saw, and the counters of
    /// short-lived Services and Secrets do not pile up.
    fn settle(&mut self, dep: Dep) {
        let left = match &dep {
            Dep::Service(namespace, name) => {
                let key = (namespace.clone(), name.clone());
                self.services.contains_key(&key) || self.slices.contains_key(&key)
            }
            Dep::Secret(namespace, name) => self
                .secrets
                .contains_key(&(namespace.clone(), name.clone())),
        };
        if left {
            self.bump(dep);
        } else {
            self.versions.remove(&dep);
        }
    }

    fn forget(&mut self, key: &IngressKey) {
        self.cache
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entries
            .remove(key);
    }

    /// No objects.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores or replaces an Ingress.
    pub fn apply_ingress(&mut self, ingress: Ingress) {
        let same_spec = self.ingresses.get(&ingress.key).is_some_and(|old| {
            old.uid == ingress.uid
                && old.annotations == ingress.annotations
                && old.default_backend == ingress.default_backend
                && old.rules == ingress.rules
                && old.tls == ingress.tls
        });
        if !same_spec {
            self.forget(&ingress.key);
        }
        self.ingresses.insert(ingress.key.clone(), ingress);
    }

    /// Removes an Ingress.
    pub fn delete_ingress(&mut self, key: &IngressKey) -> Option<Ingress> {
        self.forget(key);
        self.ingresses.remove(key)
    }

    /// The Ingress `key`.
    pub fn ingress(&self, key: &IngressKey) -> Option<&Ingress> {
        self.ingresses.get(key)
    }

    /// Every Ingress.
    pub fn ingresses(&self) -> impl Iterator<Item = &Ingress> {
        self.ingresses.values()
    }

    /// Stores or replaces an IngressClass.
    pub fn apply_class(&mut self, class: IngressClass) {
        self.classes.insert(class.name.clone(), class);
    }

    /// Removes an IngressClass.
    pub fn delete_class(&mut self, name: &str) {
        self.classes.remove(name);
    }

    /// Stores or replaces a Service.
    pub fn apply_service(&mut self, service: Service) {
        self.bump(Dep::Service(
            service.namespace.clone(),
            service.name.clone(),
        ));
        self.services
            .insert((service.namespace.clone(), service.name.clone()), service);
    }

    /// Removes a Service.
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        self.services
            .remove(&(namespace.to_owned(), name.to_owned()));
        self.settle(Dep::Service(namespace.to_owned(), name.to_owned()));
    }

    /// Stores or replaces an EndpointSlice.
    pub fn apply_slice(&mut self, slice: EndpointSlice) {
        let key = (slice.namespace.clone(), slice.name.clone());
        self.delete_slice(&key.0, &key.1);
        let Some(service) = slice.service.clone() else {
            return;
        };
        self.bump(Dep::Service(key.0.clone(), service.clone()));
        self.slice_owner.insert(key.clone(), service.clone());
        self.slices
            .entry((key.0, service))
            .or_default()
            .insert(key.1, slice);
    }

    /// Removes an EndpointSlice.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(service) = self.slice_owner.remove(&key) {
            let by_service = (key.0, service);
            if let Some(slices) = self.slices.get_mut(&by_service) {
                slices.remove(&key.1);
                if slices.is_empty() {
                    self.slices.remove(&by_service);
                }
            }
            self.settle(Dep::Service(by_service.0, by_service.1));
        }
    }

    /// Stores or replaces a Secret, checking its TLS material once.
    pub fn apply_secret(&mut self, secret: Secret) {
        let pair = match (&secret.cert, &secret.key) {
            (None, _) => Err("has no tls.crt".to_owned()),
            (_, None) => Err("has no tls.key".to_owned()),
            (Some(cert), Some(key)) => tls::check_pair(cert, key)
                .map(|(cert, key)| (cert, PrivateKeyPem::new(key)))
                .map_err(|error| error.to_string()),
        };
        self.bump(Dep::Secret(secret.namespace.clone(), secret.name.clone()));
        self.secrets.insert(
            (secret.namespace, secret.name),
            StoredSecret {
                type_: secret.type_,
                pair,
            },
        );
    }

    /// Removes a Secret.
    pub fn delete_secret(&mut self, namespace: &str, name: &str) {
        self.secrets
            .remove(&(namespace.to_owned(), name.to_owned()));
        self.settle(Dep::Secret(namespace.to_owned(), name.to_owned()));
    }

    /// Whether the Secret `namespace/name` is stored (used to skip Secrets no
    /// Ingress references).
    pub fn has_secret(&self, namespace: &str, name: &str) -> bool {
        self.secrets
            .contains_key(&(namespace.to_owned(), name.to_owned()))
    }

    /// The IngressClasses by name.
    pub fn classes(&self) -> &BTreeMap<String, IngressClass> {
        &self.classes
    }
}

/// What became of one Ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Another controller's Ingress.
    NotOurs,
    /// An invalid field: nothing of the Ingress is programmed.
    Rejected(Vec<FieldError>),
    /// Served by `balancer`; `notes` name what was dropped (conflicts lost,
    /// missing Services or ports).
    Programmed {
        /// The load balancer's name.
        balancer: String,
        /// Non-fatal problems, one per field.
        notes: Vec<FieldError>,
    },
}

/// The result of a translation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Translation {
    /// The load balancers to realise, by name.
    pub balancers: BTreeMap<String, LoadBalancer>,
    /// What became of each Ingress.
    pub outcomes: BTreeMap<IngressKey, Outcome>,
}

/// One Ingress, parsed but not yet merged.
#[derive(Clone, Debug)]
struct Parsed {
    /// The load balancer it joins.
    balancer: String,
    annotations: Annotations,
    /// (field, route) pairs.
    routes: Vec<(String, Route)>,
    default_backend: Option<String>,
    backends: BTreeMap<String, Backend>,
    /// (field, cert).
    certificates: Vec<(String, Certificate)>,
    has_tls: bool,
    notes: Vec<FieldError>,
}

/// Translates every Ingress in `sources`.
pub fn translate(sources: &Sources, config: &Config) -> Translation {
    let mut out = Translation::default();
    let mut ours: Vec<&Ingress> = Vec::new();
    for ingress in sources.ingresses.values() {
        if config.class.owns(ingress, &sources.classes) {
            ours.push(ingress);
        } else {
            out.outcomes.insert(ingress.key.clone(), Outcome::NotOurs);
        }
    }
    // Oldest first: they claim routes first.
    ours.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));

    let mut claimed_sni: HashMap<Host, (IngressKey, String)> = HashMap::new();
    let mut cache = sources
        .cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.config.as_ref() != Some(config) {
        cache.entries.clear();
        cache.config = Some(config.clone());
    }
    // First bring every cached parse up to date, then merge borrowing from it.
    for ingress in &ours {
        let valid = cache.entries.get(&ingress.key).is_some_and(|cached| {
            cached
                .deps
                .iter()
                .all(|(dep, version)| sources.version(dep) == *version)
        });
        if !valid {
            let mut deps = Vec::new();
            let result = parse(sources, config, ingress, &mut deps);
            cache
                .entries
                .insert(ingress.key.clone(), Cached { deps, result });
        }
    }
    let cache = &*cache;
    // A default backend answers what no rule matches, like a rule for any
    // host and `/`: it is claimed under that route, across load balancers
    // (they may share a port: one HAProxy frontend, one Rancher service).
    let any_host = Host::Any;
    let root = PathRule::root();
    let mut claimed_routes: HashMap<(&Host, &PathRule), &IngressKey> = HashMap::new();
    let mut claimed_defaults: HashMap<&IngressKey, &str> = HashMap::new();
    for ingress in ours {
        let cached = &cache.entries[&ingress.key];
        let parsed = match &cached.result {
            Ok(parsed) => parsed,
            Err(errors) => {
                out.outcomes
                    .insert(ingress.key.clone(), Outcome::Rejected(errors.clone()));
                continue;
            }
        };
        let mut notes = parsed.notes.clone();
        let name = parsed.balancer.clone();
        let lb = out
            .balancers
            .entry(name.clone())
            .or_insert_with(|| LoadBalancer {
                name: name.clone(),
                listeners: listeners(&parsed.annotations, parsed.has_tls),
                scale: parsed.annotations.scale,
                placement: parsed.annotations.placement.clone(),
                stickiness: parsed.annotations.stickiness.clone(),
                snippet: parsed.annotations.snippet.clone(),
                ..LoadBalancer::default()
            });
        lb.owners.insert(ingress.key.clone());

        let mut used = BTreeSet::new();
        for (field, route) in &parsed.routes {
            match claimed_routes.entry((&route.host, &route.path)) {
                Entry::Occupied(winner) if *winner.get() != &ingress.key => {
                    notes.push(FieldError::new(
                        field.clone(),
                        format!(
                            "host {:?} path {} is already served by the older Ingress {}; this rule is ignored",
                            route.host.to_string(),
                            route.path,
                            winner.get()
                        ),
                    ));
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(slot) => {
                    slot.insert(&ingress.key);
                    used.insert(route.backend.as_str());
                    lb.routes.push(route.clone());
                }
            }
        }
        let lost_default =
            parsed.default_backend.as_deref().and_then(|default| {
                match claimed_routes.entry((&any_host, &root)) {
                    Entry::Occupied(winner)
                        if *winner.get() != &ingress.key
                            && claimed_defaults.get(*winner.get()) != Some(&default) =>
                    {
                        Some(winner.get().to_string())
                    }
                    Entry::Occupied(_) => None,
                    Entry::Vacant(slot) => {
                        slot.insert(&ingress.key);
                        claimed_defaults.insert(&ingress.key, default);
                        None
                    }
                }
            });
        if let Some(winner) = lost_default {
            notes.push(FieldError::new(
                "spec.defaultBackend",
                format!(
                    "requests no rule matches already go to the older Ingress {winner} (its default backend or its rule for any host and /); this default backend is ignored"
                ),
            ));
        } else if let Some(default) = &parsed.default_backend {
            match &lb.default_backend {
                Some(existing) if existing != default => {
                    let winner = lb
                        .owners
                        .iter()
                        .find(|o| **o != ingress.key)
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    notes.push(FieldError::new(
                        "spec.defaultBackend",
                        format!(
                            "the load balancer already has the default backend {existing} from an older Ingress ({winner}); this one is ignored"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    used.insert(default.as_str());
                    lb.default_backend = Some(default.clone());
                }
            }
        }
        for (id, backend) in &parsed.backends {
            if used.contains(id.as_str()) && !lb.backends.contains_key(id) {
                lb.backends.insert(id.clone(), backend.clone());
            }
        }
        for (field, cert) in &parsed.certificates {
            let mut cert = cert.clone();
            cert.hosts.retain(|host| {
                match claimed_sni.entry(host.clone()) {
                    Entry::Occupied(winner) if winner.get().1 != cert.name => {
                        notes.push(FieldError::new(
                            field.clone(),
                            format!(
                                "the certificate for host {:?} is already set by the older Ingress {}; this one is ignored for it",
                                host.to_string(),
                                winner.get().0
                            ),
                        ));
                        false
                    }
                    Entry::Occupied(_) => true,
                    Entry::Vacant(slot) => {
                        slot.insert((ingress.key.clone(), cert.name.clone()));
                        true
                    }
                }
            });
            if cert.hosts.is_empty() {
                continue;
            }
            match lb.certificates.iter_mut().find(|c| c.name == cert.name) {
                Some(existing) => {
                    for host in cert.hosts {
                        if !existing.hosts.contains(&host) {
                            existing.hosts.push(host);
                        }
                    }
                }
                None => lb.certificates.push(cert),
            }
        }
        out.outcomes.insert(
            ingress.key.clone(),
            Outcome::Programmed {
                balancer: name,
                notes,
            },
        );
    }
    for lb in out.balancers.values_mut() {
        lb.routes.sort();
        lb.certificates.sort_by(|a, b| a.name.cmp(&b.name));
        for cert in &mut lb.certificates {
            cert.hosts.sort();
        }
    }
    out
}

/// How every load balancer name [`balancer_name`] gives begins, so that a
/// backend shared with other controllers can tell its own apart.
pub const BALANCER_PREFIX: &str = "ingress-";

/// The load balancer an Ingress with these annotations joins: named after what
/// makes it distinct, so Ingresses alike share one. Starts with
/// [`BALANCER_PREFIX`].
pub fn balancer_name(annotations: &Annotations, has_tls: bool) -> String {
    let mut name = String::from("ingress");
    if let Some(port) = annotations.http_port {
        name.push_str(&format!("-http{port}"));
    }
    if has_tls {
        name.push_str(&format!("-https{}", annotations.https_port));
    }
    name.push_str(&format!("-x{}", annotations.scale));
    let extra = (
        &annotations.placement,
        &annotations.stickiness,
        &annotations.snippet,
    );
    if !annotations.placement.is_default()
        || annotations.stickiness.is_some()
        || annotations.snippet.is_some()
    {
        name.push_str(&format!(
            "-{:08x}",
            fnv1a(format!("{extra:?}").as_bytes()) as u32
        ));
    }
    name
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn listeners(annotations: &Annotations, has_tls: bool) -> Vec<Listener> {
    let mut listeners = Vec::new();
    if let Some(port) = annotations.http_port {
        listeners.push(Listener {
            port,
            protocol: Protocol::Http,
        });
    }
    if has_tls {
        listeners.push(Listener {
            port: annotations.https_port,
            protocol: Protocol::Https,
        });
    }
    listeners
}

fn parse(
    sources: &Sources,
    config: &Config,
    ingress: &Ingress,
    deps: &mut Vec<(Dep, u64)>,
) -> Result<Parsed, Vec<FieldError>> {
    let mut errors = Vec::new();
    let annotations =
        annotations::parse(&ingress.annotations, config.annotations).unwrap_or_else(|mut e| {
            errors.append(&mut e);
            Annotations::default()
        });
    let has_tls = ingress
        .tls
        .iter()
        .any(|t| t.secret_name.as_deref().is_some_and(|s| !s.is_empty()));
    let mut parsed = Parsed {
        balancer: balancer_name(&annotations, has_tls),
        annotations,
        routes: Vec::new(),
        default_backend: None,
        backends: BTreeMap::new(),
        certificates: Vec::new(),
        has_tls,
        notes: Vec::new(),
    };
    if let Some(backend) = &ingress.default_backend {
        match resolve(
            sources,
            ingress,
            deps,
            &mut parsed,
            "spec.defaultBackend",
            backend,
        ) {
            Ok(id) => parsed.default_backend = Some(id),
            Err(error) => errors.push(error),
        }
    }
    for (i, rule) in ingress.rules.iter().enumerate() {
        let host = match Host::parse(rule.host.as_deref().unwrap_or_default()) {
            Ok(host) => host,
            Err(error) => {
                errors.push(FieldError::new(format!("spec.rules[{i}].host"), error));
                continue;
            }
        };
        for (j, http_path) in rule.paths.iter().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let path = match PathRule::parse(
                http_path.path.as_deref().unwrap_or_default(),
                &http_path.path_type,
            ) {
                Ok(path) => path,
                Err(error) => {
                    let which = if matches!(error, crate::path::Error::PathType(_)) {
                        "pathType"
                    } else {
                        "path"
                    };
                    errors.push(FieldError::new(format!("{field}.{which}"), error));
                    continue;
                }
            };
            match resolve(
                sources,
                ingress,
                deps,
                &mut parsed,
                &format!("{field}.backend"),
                &http_path.backend,
            ) {
                Ok(backend) => parsed.routes.push((
                    field,
                    Route {
                        host: host.clone(),
                        path,
                        backend,
                        owner: ingress.key.clone(),
                    },
                )),
                Err(error) => errors.push(error),
            }
        }
    }
    if ingress.rules.is_empty() && ingress.default_backend.is_none() {
        errors.push(FieldError::new(
            "spec",
            "an Ingress needs rules or a defaultBackend",
        ));
    }
    for (i, entry) in ingress.tls.iter().enumerate() {
        let field = format!("spec.tls[{i}]");
        let mut hosts = Vec::new();
        for (j, host) in entry.hosts.iter().enumerate() {
            match Host::parse(host) {
                Ok(Host::Any) | Err(_) => errors.push(FieldError::new(
                    format!("{field}.hosts[{j}]"),
                    Host::parse(host)
                        .err()
                        .map_or_else(|| "empty host".to_owned(), |e| e.to_string()),
                )),
                Ok(host) => hosts.push(host),
            }
        }
        if hosts.is_empty() {
            hosts.push(Host::Any);
        }
        let Some(secret_name) = entry.secret_name.as_deref().filter(|s| !s.is_empty()) else {
            // SNI routing alone, no certificate.
            continue;
        };
        let secret_field = format!("{field}.secretName");
        let namespace = &ingress.key.namespace;
        let dep = Dep::Secret(namespace.clone(), secret_name.to_owned());
        deps.push((dep.clone(), sources.version(&dep)));
        match sources
            .secrets
            .get(&(namespace.clone(), secret_name.to_owned()))
        {
            None => errors.push(FieldError::new(
                secret_field,
                format!("secret {namespace}/{secret_name} not found"),
            )),
            Some(secret) if secret.type_ != TLS_SECRET_TYPE => errors.push(FieldError::new(
                secret_field,
                format!(
                    "secret {namespace}/{secret_name} has type {:?}, not {TLS_SECRET_TYPE:?}",
                    secret.type_
                ),
            )),
            Some(StoredSecret { pair: Err(why), .. }) => errors.push(FieldError::new(
                secret_field,
                format!("secret {namespace}/{secret_name}: {why}"),
            )),
            Some(StoredSecret {
                pair: Ok((chain, key)),
                ..
            }) => parsed.certificates.push((
                secret_field,
                Certificate {
                    name: format!("{namespace}/{secret_name}"),
                    hosts,
                    chain_pem: chain.clone(),
                    key_pem: key.clone(),
                },
            )),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// Resolves a backend reference to a backend id, adding the backend (with its
/// ready endpoints) to `parsed`. Missing Services and ports are notes, not
/// errors: the route answers 503 until they appear.
fn resolve(
    sources: &Sources,
    ingress: &Ingress,
    deps: &mut Vec<(Dep, u64)>,
    parsed: &mut Parsed,
    field: &str,
    backend: &BackendRef,
) -> Result<String, FieldError> {
    let namespace = &ingress.key.namespace;
    let (name, port) = match backend {
        BackendRef::Resource { kind } => {
            return Err(FieldError::new(
                format!("{field}.resource"),
                format!("resource backends ({kind}) are not supported; use a service"),
            ));
        }
        BackendRef::Service { name, port } => (name, port),
    };
    if name.contains('.') || name.contains('/') {
        return Err(FieldError::new(
            format!("{field}.service.name"),
            format!(
                "{name:?} refers outside the Ingress's namespace; cross-namespace backends are not allowed"
            ),
        ));
    }
    if !host::is_label(name) {
        return Err(FieldError::new(
            format!("{field}.service.name"),
            format!("{name:?} is not a valid service name"),
        ));
    }
    let Some(port) = port else {
        return Err(FieldError::new(
            format!("{field}.service.port"),
            "a service port (number or name) is required",
        ));
    };
    let mut backend = Backend {
        namespace: namespace.clone(),
        service: name.clone(),
        port: port.to_string(),
        endpoints: Vec::new(),
    };
    let id = backend.id();
    if parsed.backends.contains_key(&id) {
        return Ok(id);
    }
    let dep = Dep::Service(namespace.clone(), name.clone());
    deps.push((dep.clone(), sources.version(&dep)));
    match sources.services.get(&(namespace.clone(), name.clone())) {
        None => parsed.notes.push(FieldError::new(
            format!("{field}.service.name"),
            format!("service {namespace}/{name} not found; requests get 503 until it exists"),
        )),
        Some(service) if service.external_name => {
            return Err(FieldError::new(
                format!("{field}.service.name"),
                format!(
                    "service {namespace}/{name} is of type ExternalName, which is not allowed as a backend"
                ),
            ));
        }
        Some(service) => {
            let found = service.ports.iter().find(|p| match port {
                PortRef::Number(n) => p.port == *n,
                PortRef::Name(n) => p.name == *n,
            });
            match found {
                None => parsed.notes.push(FieldError::new(
                    format!("{field}.service.port"),
                    format!("service {namespace}/{name} has no port {port}; requests get 503"),
                )),
                Some(service_port) if !service_port.tcp => {
                    return Err(FieldError::new(
                        format!("{field}.service.port"),
                        format!("port {port} of service {namespace}/{name} is not TCP"),
                    ));
                }
                Some(service_port) => {
                    backend.endpoints = endpoints(sources, namespace, name, &service_port.name);
                }
            }
        }
    }
    parsed.backends.insert(id.clone(), backend);
    Ok(id)
}

/// The ready endpoints of the Service port named `port_name`, sorted.
fn endpoints(
    sources: &Sources,
    namespace: &str,
    service: &str,
    port_name: &str,
) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    if let Some(slices) = sources
        .slices
        .get(&(namespace.to_owned(), service.to_owned()))
    {
        for slice in slices.values() {
            for port in slice.ports.iter().filter(|p| p.name == port_name && p.tcp) {
                out.extend(slice.ready.iter().map(|ip| SocketAddr::new(*ip, port.port)));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
