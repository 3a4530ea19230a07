//! Kubernetes objects to the provider's [`model`](crate::model), and statuses back.
//!
//! Conversion is where malformed Services are caught: each error names the Service
//! and the field, and the controller turns it into a Warning event.

use std::{collections::BTreeMap, net::IpAddr};

use k8s_openapi::api::{core::v1 as core, discovery::v1::EndpointSlice};
use kube::ResourceExt;

use crate::model::{
    AddressType, Endpoint, Ingress, IpMode, LoadBalancerStatus, Node, NodeAddress, Protocol,
    Service, ServiceKey, ServicePort, SessionAffinity, TrafficPolicy,
};

/// A Service the provider model cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field is missing or malformed.
    #[error("service {service}: {field}: {message}")]
    InvalidField {
        /// `namespace/name`.
        service: String,
        /// The field, e.g. `spec.ports[0].nodePort`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// The offending field.
    pub fn field(&self) -> &str {
        match self {
            Self::InvalidField { field, .. } => field,
        }
    }
}

/// Result of a conversion.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The Service's key.
pub fn service_key(service: &core::Service) -> ServiceKey {
    ServiceKey::new(service.namespace().unwrap_or_default(), service.name_any())
}

/// Whether `service` asks for a load balancer from a controller whose class is
/// `class`: `type: LoadBalancer`, and `spec.loadBalancerClass` unset or equal to
/// `class`.
pub fn wants_load_balancer(service: &core::Service, class: Option<&str>) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    spec.type_.as_deref() == Some("LoadBalancer")
        && match spec.load_balancer_class.as_deref() {
            None => true,
            Some(requested) => Some(requested) == class,
        }
}

/// Converts a Service. `slices` are its EndpointSlices (labelled
/// `kubernetes.io/service-name`); their ready endpoints go into
/// [`Service::endpoints`] when `with_endpoints` is set.
pub fn service<'a>(
    service: &core::Service,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    with_endpoints: bool,
) -> Result<Service> {
    let key = service_key(service);
    let invalid = |field: String, message: String| Error::InvalidField {
        service: key.to_string(),
        field,
        message,
    };
    let spec = service.spec.clone().unwrap_or_default();
    let allocate_node_ports = spec.allocate_load_balancer_node_ports.unwrap_or(true);

    let k8s_ports = spec.ports.unwrap_or_default();
    if k8s_ports.is_empty() {
        return Err(invalid(
            "spec.ports".into(),
            "a load balancer needs at least one port".into(),
        ));
    }
    let mut ports: Vec<ServicePort> = Vec::with_capacity(k8s_ports.len());
    for (i, port) in k8s_ports.iter().enumerate() {
        let field = |name: &str| format!("spec.ports[{i}].{name}");
        let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => {
                return Err(invalid(
                    field("protocol"),
                    format!("unknown protocol {other:?}"),
                ));
            }
        };
        let number = u16::try_from(port.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(field("port"), format!("{} is not a port", port.port)))?;
        let node_port = match port.node_port {
            None | Some(0) => None,
            Some(n) => Some(
                u16::try_from(n)
                    .map_err(|_| invalid(field("nodePort"), format!("{n} is not a port")))?,
            ),
        };
        if node_port.is_none() && allocate_node_ports {
            return Err(invalid(
                field("nodePort"),
                "no node port allocated (allocateLoadBalancerNodePorts is true)".into(),
            ));
        }
        if let Some(first) = ports
            .iter()
            .position(|p| p.port == number && p.protocol == protocol)
        {
            return Err(invalid(
                field("port"),
                format!("{protocol}/{number} duplicates spec.ports[{first}]"),
            ));
        }
        ports.push(ServicePort {
            name: port.name.clone().unwrap_or_default(),
            protocol,
            port: number,
            node_port,
            app_protocol: port.app_protocol.clone(),
        });
    }

    let external_traffic_policy = match spec.external_traffic_policy.as_deref() {
        None | Some("Cluster") => TrafficPolicy::Cluster,
        Some("Local") => TrafficPolicy::Local,
        Some(other) => {
            return Err(invalid(
                "spec.externalTrafficPolicy".into(),
                format!("unknown policy {other:?}"),
            ));
        }
    };
    let health_check_node_port = spec
        .health_check_node_port
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0);
    let session_affinity = match spec.session_affinity.as_deref() {
        None | Some("None") => SessionAffinity::None,
        Some("ClientIP") => SessionAffinity::ClientIp {
            timeout_seconds: spec
                .session_affinity_config
                .and_then(|c| c.client_ip)
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok()),
        },
        Some(other) => {
            return Err(invalid(
                "spec.sessionAffinity".into(),
                format!("unknown affinity {other:?}"),
            ));
        }
    };
    let load_balancer_ip = match spec.load_balancer_ip.as_deref() {
        None | Some("") => None,
        Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| {
            invalid(
                "spec.loadBalancerIP".into(),
                format!("{ip:?} is not an IP address"),
            )
        })?),
    };

    let mut endpoints = Vec::new();
    if with_endpoints {
        for slice in slices {
            let slice_ports: BTreeMap<String, u16> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let port = u16::try_from(p.port?).ok()?;
                    Some((p.name.clone().unwrap_or_default(), port))
                })
                .collect();
            for endpoint in slice.endpoints.iter().flatten() {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if !ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    let Ok(address) = address.parse::<IpAddr>() else {
                        continue;
                    };
                    endpoints.push(Endpoint {
                        address,
                        node_name: endpoint.node_name.clone(),
                        ports: slice_ports.clone(),
                    });
                }
            }
        }
        endpoints.sort();
        endpoints.dedup();
    }

    Ok(Service {
        uid: service.uid().unwrap_or_default(),
        annotations: service.annotations().clone(),
        key,
        ports,
        external_traffic_policy,
        health_check_node_port,
        session_affinity,
        load_balancer_ip,
        load_balancer_source_ranges: spec.load_balancer_source_ranges.unwrap_or_default(),
        load_balancer_class: spec.load_balancer_class,
        ip_families: spec.ip_families.unwrap_or_default(),
        endpoints,
    })
}

/// Converts a Node.
pub fn node(node: &core::Node) -> Node {
    Node {
        name: node.name_any(),
        provider_id: node
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .filter(|id| !id.is_empty()),
        addresses: node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some(NodeAddress::new(
                    AddressType::parse(&a.type_)?,
                    a.address.clone(),
                ))
            })
            .collect(),
        labels: node.labels().clone(),
    }
}

/// The model's addresses as `status.addresses` entries.
pub fn node_addresses(addresses: &[NodeAddress]) -> Vec<core::NodeAddress> {
    addresses
        .iter()
        .map(|a| core::NodeAddress {
            type_: a.kind.as_str().to_owned(),
            address: a.address.clone(),
        })
        .collect()
}

/// The model's status as `status.loadBalancer`.
pub fn status(status: &LoadBalancerStatus) -> core::LoadBalancerStatus {
    core::LoadBalancerStatus {
        ingress: Some(
            status
                .ingress
                .iter()
                .map(|i| core::LoadBalancerIngress {
                    ip: i.ip.map(|ip| ip.to_string()),
                    hostname: i.hostname.clone(),
                    ip_mode: i.ip_mode.map(|m| m.as_str().to_owned()),
                    ports: None,
                })
                .collect(),
        )
        .filter(|v: &Vec<_>| !v.is_empty()),
    }
}

/// A Service's current `status.loadBalancer` in the model (unparseable entries are
/// dropped, so they compare unequal and get rewritten).
pub fn current_status(service: &core::Service) -> LoadBalancerStatus {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .map(|i| Ingress {
            ip: i.ip.as_deref().and_then(|ip| ip.parse().ok()),
            hostname: i.hostname.clone(),
            ip_mode: match i.ip_mode.as_deref() {
                Some("VIP") => Some(IpMode::Vip),
                Some("Proxy") => Some(IpMode::Proxy),
                _ => None,
            },
        })
        .collect();
    LoadBalancerStatus { ingress }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::{core::v1::ServiceSpec, discovery::v1 as discovery};
    use kube::api::ObjectMeta;

    fn svc(ports: Vec<core::ServicePort>) -> core::Service {
        core::Service {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some("web".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                ports: Some(ports),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn port(name: &str, port: i32, node_port: Option<i32>) -> core::ServicePort {
        core::ServicePort {
            name: Some(name.into()),
            port,
            node_port,
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    #[test]
    fn converts_ports_and_policies() {
        let mut s = svc(vec![
            port("http", 80, Some(30080)),
            port("https", 443, Some(30443)),
        ]);
        let spec = s.spec.as_mut().unwrap();
        spec.external_traffic_policy = Some("Local".into());
        spec.health_check_node_port = Some(32000);
        spec.session_affinity = Some("ClientIP".into());
        let m = service(&s, [], false).unwrap();
        assert_eq!(m.key, ServiceKey::new("default", "web"));
        assert_eq!(m.ports[1].port, 443);
        assert_eq!(m.ports[1].node_port, Some(30443));
        assert_eq!(m.external_traffic_policy, TrafficPolicy::Local);
        assert_eq!(m.health_check_node_port, Some(32000));
        assert_eq!(
            m.session_affinity,
            SessionAffinity::ClientIp {
                timeout_seconds: None
            }
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            (svc(vec![]), "spec.ports"),
            (
                svc(vec![port("a", 80, Some(30080)), port("b", 80, Some(30081))]),
                "spec.ports[1].port",
            ),
            (svc(vec![port("a", 80, None)]), "spec.ports[0].nodePort"),
            (
                svc(vec![port("a", 70000, Some(30080))]),
                "spec.ports[0].port",
            ),
        ];
        for (s, field) in cases {
            assert_eq!(service(&s, [], false).unwrap_err().field(), field);
        }
        let mut s = svc(vec![port("a", 80, Some(30080))]);
        s.spec.as_mut().unwrap().load_balancer_ip = Some("not-an-ip".into());
        let error = service(&s, [], false).unwrap_err();
        assert_eq!(error.field(), "spec.loadBalancerIP");
        assert!(error.to_string().contains("default/web"), "{error}");
    }

    #[test]
    fn same_port_number_on_two_protocols_is_allowed() {
        let mut udp = port("dns-udp", 53, Some(30053));
        udp.protocol = Some("UDP".into());
        let s = svc(vec![port("dns", 53, Some(30053)), udp]);
        assert_eq!(service(&s, [], false).unwrap().ports.len(), 2);
    }

    #[test]
    fn without_node_ports_endpoints_are_ready_ones_only() {
        let mut s = svc(vec![port("http", 80, None)]);
        s.spec.as_mut().unwrap().allocate_load_balancer_node_ports = Some(false);
        let slice = discovery::EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: Some(vec![
                discovery::Endpoint {
                    addresses: vec!["10.42.0.6".into()],
                    node_name: Some("n2".into()),
                    ..Default::default()
                },
                discovery::Endpoint {
                    addresses: vec!["10.42.0.7".into()],
                    conditions: Some(discovery::EndpointConditions {
                        ready: Some(false),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ports: Some(vec![discovery::EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                ..Default::default()
            }]),
            metadata: ObjectMeta::default(),
        };
        let m = service(&s, [&slice], true).unwrap();
        assert!(m.targets_endpoints());
        assert_eq!(
            m.endpoint_targets(&m.ports[0]),
            vec!["10.42.0.6:8080".parse().unwrap()]
        );
    }

    #[test]
    fn class_filter() {
        let mut s = svc(vec![port("a", 80, Some(30080))]);
        assert!(wants_load_balancer(&s, None));
        s.spec.as_mut().unwrap().load_balancer_class = Some("example.org/other".into());
        assert!(!wants_load_balancer(&s, None));
        assert!(wants_load_balancer(&s, Some("example.org/other")));
        s.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        assert!(!wants_load_balancer(&s, Some("example.org/other")));
    }

    #[test]
    fn status_round_trip() {
        let model = LoadBalancerStatus {
            ingress: vec![Ingress {
                ip: "192.0.2.1".parse().ok(),
                hostname: None,
                ip_mode: Some(IpMode::Proxy),
            }],
        };
        let mut s = svc(vec![]);
        s.status = Some(core::ServiceStatus {
            load_balancer: Some(status(&model)),
            ..Default::default()
        });
        assert_eq!(current_status(&s), model);
        assert_eq!(status(&LoadBalancerStatus::default()).ingress, None);
    }
}
