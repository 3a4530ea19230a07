//! The provider's view of Services and Nodes: small, Kubernetes-free structs.
//!
//! The controller builds these from `k8s-openapi` objects in the `convert` module
//! (feature `runtime`); a provider only ever sees these types, so it can be written
//! and tested without a Kubernetes dependency.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
};

/// A Service's identity: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
}

impl ServiceKey {
    /// The key `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A transport protocol of a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServicePort {
    /// The port's name; empty when the Service has a single unnamed port.
    pub name: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The port the load balancer listens on.
    pub port: u16,
    /// The node port traffic is forwarded to; `None` when the Service has
    /// `allocateLoadBalancerNodePorts: false` (target [`Service::endpoints`] instead).
    pub node_port: Option<u16>,
    /// The application protocol (`appProtocol`), if set.
    pub app_protocol: Option<String>,
}

/// `spec.externalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TrafficPolicy {
    /// Every eligible node forwards to every endpoint (source IP is not kept).
    #[default]
    Cluster,
    /// Only nodes with local endpoints receive traffic; the load balancer health
    /// checks [`Service::health_check_node_port`].
    Local,
}

/// `spec.sessionAffinity`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SessionAffinity {
    /// No stickiness.
    #[default]
    None,
    /// Requests from one client address go to one backend.
    ClientIp {
        /// `sessionAffinityConfig.clientIP.timeoutSeconds`, if set.
        timeout_seconds: Option<u32>,
    },
}

/// A ready endpoint of a Service, from its EndpointSlices.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// The endpoint's address.
    pub address: IpAddr,
    /// The node the endpoint runs on, when known.
    pub node_name: Option<String>,
    /// The endpoint's ports by port name (`""` for an unnamed port).
    pub ports: BTreeMap<String, u16>,
}

/// A `type: LoadBalancer` Service as a provider sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Namespace and name.
    pub key: ServiceKey,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.ports`, in order. Never empty, no duplicate `(port, protocol)`.
    pub ports: Vec<ServicePort>,
    /// `spec.externalTrafficPolicy`.
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.healthCheckNodePort` (set with [`TrafficPolicy::Local`]).
    pub health_check_node_port: Option<u16>,
    /// `spec.sessionAffinity` and its config.
    pub session_affinity: SessionAffinity,
    /// `spec.loadBalancerIP` (deprecated upstream; providers decide whether they
    /// can honour it).
    pub load_balancer_ip: Option<IpAddr>,
    /// `spec.loadBalancerSourceRanges`, as written.
    pub load_balancer_source_ranges: Vec<String>,
    /// `spec.loadBalancerClass`.
    pub load_balancer_class: Option<String>,
    /// `spec.ipFamilies` (`IPv4`, `IPv6`).
    pub ip_families: Vec<String>,
    /// Ready endpoints, sorted. Filled by the controller for Services whose
    /// backends depend on them: `externalTrafficPolicy: Local` and
    /// `allocateLoadBalancerNodePorts: false`; empty otherwise.
    pub endpoints: Vec<Endpoint>,
}

impl Service {
    /// A TCP Service with these `(port, node_port)` pairs and defaults elsewhere;
    /// handy in tests and examples.
    pub fn new(key: ServiceKey, uid: impl Into<String>, ports: &[(u16, Option<u16>)]) -> Self {
        Self {
            key,
            uid: uid.into(),
            annotations: BTreeMap::new(),
            ports: ports
                .iter()
                .enumerate()
                .map(|(i, (port, node_port))| ServicePort {
                    name: if ports.len() == 1 {
                        String::new()
                    } else {
                        format!("p{i}")
                    },
                    protocol: Protocol::Tcp,
                    port: *port,
                    node_port: *node_port,
                    app_protocol: None,
                })
                .collect(),
            external_traffic_policy: TrafficPolicy::Cluster,
            health_check_node_port: None,
            session_affinity: SessionAffinity::None,
            load_balancer_ip: None,
            load_balancer_source_ranges: Vec::new(),
            load_balancer_class: None,
            ip_families: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    /// Whether the load balancer should forward to endpoints rather than node
    /// ports (`allocateLoadBalancerNodePorts: false`: some port has no node port).
    pub fn targets_endpoints(&self) -> bool {
        self.ports.iter().any(|port| port.node_port.is_none())
    }

    /// The endpoint addresses serving `port` (matched by port name).
    pub fn endpoint_targets(&self, port: &ServicePort) -> Vec<SocketAddr> {
        self.endpoints
            .iter()
            .filter_map(|endpoint| {
                endpoint
                    .ports
                    .get(&port.name)
                    .map(|target| SocketAddr::new(endpoint.address, *target))
            })
            .collect()
    }
}

/// The kind of a node address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AddressType {
    /// `Hostname`.
    Hostname,
    /// `ExternalIP`.
    ExternalIp,
    /// `InternalIP`.
    InternalIp,
    /// `ExternalDNS`.
    ExternalDns,
    /// `InternalDNS`.
    InternalDns,
}

impl AddressType {
    /// The Kubernetes spelling (`ExternalIP`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hostname => "Hostname",
            Self::ExternalIp => "ExternalIP",
            Self::InternalIp => "InternalIP",
            Self::ExternalDns => "ExternalDNS",
            Self::InternalDns => "InternalDNS",
        }
    }

    /// Parses the Kubernetes spelling.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "Hostname" => Self::Hostname,
            "ExternalIP" => Self::ExternalIp,
            "InternalIP" => Self::InternalIp,
            "ExternalDNS" => Self::ExternalDns,
            "InternalDNS" => Self::InternalDns,
            _ => return None,
        })
    }
}

/// One address of a node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddress {
    /// The kind.
    pub kind: AddressType,
    /// The address (an IP, or a name for the DNS and hostname kinds).
    pub address: String,
}

impl NodeAddress {
    /// An address of `kind`.
    pub fn new(kind: AddressType, address: impl Into<String>) -> Self {
        Self {
            kind,
            address: address.into(),
        }
    }
}

/// A node as a provider sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// `metadata.name`.
    pub name: String,
    /// `spec.providerID`, if set.
    pub provider_id: Option<String>,
    /// `status.addresses`.
    pub addresses: Vec<NodeAddress>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
}

impl Node {
    /// A node with one `InternalIP`.
    pub fn new(name: impl Into<String>, internal_ip: IpAddr) -> Self {
        Self {
            name: name.into(),
            provider_id: None,
            addresses: vec![NodeAddress::new(
                AddressType::InternalIp,
                internal_ip.to_string(),
            )],
            labels: BTreeMap::new(),
        }
    }

    /// The address a load balancer should forward to: the first `InternalIP`,
    /// else the first `ExternalIP`.
    pub fn forwarding_address(&self) -> Option<IpAddr> {
        [AddressType::InternalIp, AddressType::ExternalIp]
            .into_iter()
            .find_map(|kind| {
                self.addresses
                    .iter()
                    .filter(|address| address.kind == kind)
                    .find_map(|address| address.address.parse().ok())
            })
    }
}

/// `status.loadBalancer.ingress[].ipMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpMode {
    /// Traffic arrives with the load balancer IP as destination (`VIP`).
    Vip,
    /// The load balancer proxies; the destination is the node (`Proxy`).
    Proxy,
}

impl IpMode {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vip => "VIP",
            Self::Proxy => "Proxy",
        }
    }
}

/// One address of a load balancer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ingress {
    /// An IP address.
    pub ip: Option<IpAddr>,
    /// A DNS name.
    pub hostname: Option<String>,
    /// How traffic reaches the load balancer, where the provider knows.
    pub ip_mode: Option<IpMode>,
}

impl Ingress {
    /// An IP ingress without an `ipMode`.
    pub fn ip(ip: IpAddr) -> Self {
        Self {
            ip: Some(ip),
            hostname: None,
            ip_mode: None,
        }
    }

    /// A hostname ingress.
    pub fn hostname(hostname: impl Into<String>) -> Self {
        Self {
            ip: None,
            hostname: Some(hostname.into()),
            ip_mode: None,
        }
    }
}

/// What the controller writes to `status.loadBalancer`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LoadBalancerStatus {
    /// The load balancer's addresses, in the provider's order.
    pub ingress: Vec<Ingress>,
}

/// A node's failure domain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Zone {
    /// `topology.kubernetes.io/zone`; empty when unknown.
    pub zone: String,
    /// `topology.kubernetes.io/region`; empty when unknown.
    pub region: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_targets_match_by_port_name() {
        let mut svc = Service::new(
            ServiceKey::new("default", "web"),
            "uid",
            &[(80, None), (443, None)],
        );
        svc.endpoints = vec![Endpoint {
            address: "10.42.0.5".parse().unwrap(),
            node_name: Some("n1".into()),
            ports: BTreeMap::from([("p0".into(), 8080), ("p1".into(), 8443)]),
        }];
        assert!(svc.targets_endpoints());
        assert_eq!(
            svc.endpoint_targets(&svc.ports[1]),
            vec!["10.42.0.5:8443".parse().unwrap()]
        );
    }

    #[test]
    fn forwarding_address_prefers_internal_ip() {
        let mut node = Node::new("n1", "10.0.0.1".parse().unwrap());
        node.addresses
            .insert(0, NodeAddress::new(AddressType::ExternalIp, "203.0.113.1"));
        assert_eq!(node.forwarding_address(), "10.0.0.1".parse().ok());
        node.addresses.retain(|a| a.kind != AddressType::InternalIp);
        assert_eq!(node.forwarding_address(), "203.0.113.1".parse().ok());
    }
}
