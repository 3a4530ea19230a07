//! Hand-built objects for tests: `mk_ingress(...)` and friends.

use std::net::IpAddr;

use crate::{
    class::DEFAULT_CONTROLLER,
    model::IngressKey,
    source::{
        BackendRef, EndpointSlice, HttpPath, Ingress, IngressClass, PortRef, Rule, Secret, Service,
        ServicePort, SlicePort, TLS_SECRET_TYPE, Tls,
    },
};

/// A certificate for `example.org` and `*.example.org` (PEM).
pub const EXAMPLE_ORG_CRT: &str = include_str!("../tests/data/example.org.crt");
/// The key of [`EXAMPLE_ORG_CRT`] (PEM; a throwaway test key).
pub const EXAMPLE_ORG_KEY: &str = include_str!("../tests/data/example.org.key");
/// A certificate for `example.net` and `*.example.net` (PEM).
pub const EXAMPLE_NET_CRT: &str = include_str!("../tests/data/example.net.crt");
/// The key of [`EXAMPLE_NET_CRT`] (PEM; a throwaway test key).
pub const EXAMPLE_NET_KEY: &str = include_str!("../tests/data/example.net.key");

/// A service backend on a port number.
pub fn svc(name: &str, port: u16) -> BackendRef {
    BackendRef::Service {
        name: name.into(),
        port: Some(PortRef::Number(port)),
    }
}

/// A service backend on a named port.
pub fn svc_named(name: &str, port: &str) -> BackendRef {
    BackendRef::Service {
        name: name.into(),
        port: Some(PortRef::Name(port.into())),
    }
}

/// A path entry.
pub fn path(path: &str, path_type: &str, backend: BackendRef) -> HttpPath {
    HttpPath {
        path: Some(path.into()),
        path_type: path_type.into(),
        backend,
    }
}

/// A rule for `host` (empty: any host) with these paths.
pub fn rule(host: &str, paths: Vec<HttpPath>) -> Rule {
    Rule {
        host: (!host.is_empty()).then(|| host.to_owned()),
        paths,
    }
}

/// An Ingress of class `rancher` created at `created` (seconds) with these rules.
pub fn mk_ingress(namespace: &str, name: &str, created: i64, rules: Vec<Rule>) -> Ingress {
    Ingress {
        key: IngressKey::new(namespace, name),
        uid: format!("uid-{namespace}-{name}"),
        created,
        class_name: Some("rancher".into()),
        rules,
        ..Ingress::default()
    }
}

/// Adds an annotation.
pub fn annotate(mut ingress: Ingress, key: &str, value: &str) -> Ingress {
    ingress.annotations.insert(key.into(), value.into());
    ingress
}

/// Adds a `tls` entry.
pub fn with_tls(mut ingress: Ingress, hosts: &[&str], secret: &str) -> Ingress {
    ingress.tls.push(Tls {
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        secret_name: Some(secret.into()),
    });
    ingress
}

/// The IngressClass `rancher` of this controller.
pub fn mk_class(name: &str, controller: &str, is_default: bool) -> IngressClass {
    IngressClass {
        name: name.into(),
        controller: controller.into(),
        is_default,
    }
}

/// The IngressClass `rancher`, ours.
pub fn rancher_class() -> IngressClass {
    mk_class("rancher", DEFAULT_CONTROLLER, false)
}

/// A Service with TCP ports `(name, port)`.
pub fn mk_service(namespace: &str, name: &str, ports: &[(&str, u16)]) -> Service {
    Service {
        namespace: namespace.into(),
        name: name.into(),
        ports: ports
            .iter()
            .map(|(name, port)| ServicePort {
                name: (*name).into(),
                port: *port,
                tcp: true,
            })
            .collect(),
        external_name: false,
    }
}

/// An EndpointSlice of `service` with TCP ports `(name, port)` and these ready
/// addresses.
pub fn mk_slice(
    namespace: &str,
    name: &str,
    service: &str,
    ports: &[(&str, u16)],
    ready: &[&str],
) -> EndpointSlice {
    EndpointSlice {
        namespace: namespace.into(),
        name: name.into(),
        service: Some(service.into()),
        ports: ports
            .iter()
            .map(|(name, port)| SlicePort {
                name: (*name).into(),
                port: *port,
                tcp: true,
            })
            .collect(),
        ready: ready
            .iter()
            .map(|ip| ip.parse::<IpAddr>().expect("fixture address"))
            .collect(),
    }
}

/// A `kubernetes.io/tls` Secret.
pub fn mk_tls_secret(namespace: &str, name: &str, cert: &str, key: &str) -> Secret {
    Secret {
        namespace: namespace.into(),
        name: name.into(),
        type_: TLS_SECRET_TYPE.into(),
        cert: Some(cert.as_bytes().to_vec()),
        key: Some(key.as_bytes().to_vec()),
    }
}
