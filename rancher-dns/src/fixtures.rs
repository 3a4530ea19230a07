//! Hand-built objects for tests (feature `testing`).

use std::net::IpAddr;

use crate::model::{Endpoint, EndpointSlice, Port, Protocol, Service, ServiceKey, ServiceKind};

fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// A named TCP port.
pub fn tcp(name: &str, port: u16) -> Port {
    Port {
        name: Some(name.to_owned()),
        protocol: Protocol::Tcp,
        port,
    }
}

/// A ClusterIP Service with the given cluster IPs and ports.
pub fn mk_service(ns: &str, name: &str, ips: &[&str], ports: Vec<Port>) -> Service {
    Service {
        key: ServiceKey::new(ns, name),
        kind: ServiceKind::ClusterIp(ips.iter().map(|s| ip(s)).collect()),
        ports,
        publish_not_ready_addresses: false,
    }
}

/// A headless Service.
pub fn mk_headless(ns: &str, name: &str, ports: Vec<Port>) -> Service {
    Service {
        key: ServiceKey::new(ns, name),
        kind: ServiceKind::Headless,
        ports,
        publish_not_ready_addresses: false,
    }
}

/// An ExternalName Service.
pub fn mk_external(ns: &str, name: &str, target: &str) -> Service {
    Service {
        key: ServiceKey::new(ns, name),
        kind: ServiceKind::ExternalName(target.to_owned()),
        ports: Vec::new(),
        publish_not_ready_addresses: false,
    }
}

/// An endpoint with one address, an optional hostname and readiness.
pub fn mk_endpoint(addr: &str, hostname: Option<&str>, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![ip(addr)],
        hostname: hostname.map(str::to_owned),
        ready,
        pod_name: hostname.map(str::to_owned),
    }
}

/// An EndpointSlice of a Service.
pub fn mk_slice(
    ns: &str,
    name: &str,
    service: &str,
    endpoints: Vec<Endpoint>,
    ports: Vec<Port>,
) -> EndpointSlice {
    EndpointSlice {
        namespace: ns.to_owned(),
        name: name.to_owned(),
        service: service.to_owned(),
        endpoints,
        ports,
    }
}
