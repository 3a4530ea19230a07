//! Conversion of Kubernetes objects into the record model (feature
//! `runtime`): Services, `discovery.k8s.io/v1` EndpointSlices and Pods,
//! stripped to what DNS needs. The converters take the [`object`] types the
//! controller decodes; the full `k8s-openapi` types convert into those with
//! `From`.

use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;

use crate::model::{
    Endpoint, EndpointSlice, Pod, Port, Protocol, Service, ServiceKey, ServiceKind,
};
use crate::object;

/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Why an object could not be converted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A field is missing or invalid.
    #[error("{kind} {namespace}/{name}: field {field}: {reason}")]
    Invalid {
        /// Object kind.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The object is valid but DNS ignores it (e.g. an FQDN EndpointSlice).
    #[error("{0}")]
    Ignored(String),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn meta(m: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (m.namespace.unwrap_or_default(), m.name.unwrap_or_default())
}

fn protocol(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

/// Converts a Service (decoded by [`object`], or the full type through
/// `From`).
pub fn service(svc: object::Service) -> Result<Service> {
    let (namespace, name) = meta(svc.metadata);
    let invalid = |field, reason: String| Error::Invalid {
        kind: "service",
        namespace: namespace.clone(),
        name: name.clone(),
        field,
        reason,
    };
    let spec = svc.spec;
    let kind =
        if spec.type_.as_deref() == Some("ExternalName") {
            let target = spec.external_name.unwrap_or_default();
            if target.is_empty() {
                return Err(invalid("spec.externalName", "empty".into()));
            }
            ServiceKind::ExternalName(target)
        } else if spec.cluster_ip.as_deref() == Some("None") {
            ServiceKind::Headless
        } else {
            let raw = match (spec.cluster_ips, spec.cluster_ip) {
                (Some(ips), _) if !ips.is_empty() => ips,
                (_, Some(ip)) if !ip.is_empty() => vec![ip],
                _ => Vec::new(),
            };
            let mut ips = Vec::with_capacity(raw.len());
            for ip in raw {
                ips.push(ip.parse::<IpAddr>().map_err(|_| {
                    invalid("spec.clusterIPs", format!("{ip:?} is not an IP address"))
                })?);
            }
            ServiceKind::ClusterIp(ips)
        };
    let mut ports = Vec::new();
    for p in spec.ports.into_iter().flatten() {
        let (Some(protocol), Ok(port)) = (protocol(p.protocol.as_deref()), u16::try_from(p.port))
        else {
            return Err(invalid(
                "spec.ports",
                format!("port {:?} {} is not valid", p.protocol, p.port),
            ));
        };
        ports.push(Port {
            name: p.name.filter(|n| !n.is_empty()),
            protocol,
            port,
        });
    }
    Ok(Service {
        key: ServiceKey::new(namespace, name),
        kind,
        ports,
        publish_not_ready_addresses: spec.publish_not_ready_addresses.unwrap_or(false),
    })
}

/// Converts an EndpointSlice. Slices without a Service label or of address
/// type FQDN are [`Error::Ignored`]; an endpoint with an unparsable address
/// keeps its other addresses.
pub fn endpoint_slice(slice: object::EndpointSlice) -> Result<EndpointSlice> {
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .cloned();
    let (namespace, name) = meta(slice.metadata);
    let Some(service) = service else {
        return Err(Error::Ignored(format!(
            "endpointslice {namespace}/{name} has no {SERVICE_NAME_LABEL} label"
        )));
    };
    if slice.address_type == "FQDN" {
        return Err(Error::Ignored(format!(
            "endpointslice {namespace}/{name} has FQDN addresses"
        )));
    }
    let endpoints = slice
        .endpoints
        .into_iter()
        .flatten()
        .map(|e| Endpoint {
            addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            hostname: e.hostname,
            ready: e.ready.unwrap_or(true),
            pod_name: e.pod_name,
        })
        .collect();
    let ports = slice
        .ports
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(Port {
                name: p.name.filter(|n| !n.is_empty()),
                protocol: protocol(p.protocol.as_deref())?,
                port: u16::try_from(p.port?).ok()?,
            })
        })
        .collect();
    Ok(EndpointSlice {
        namespace,
        name,
        service,
        endpoints,
        ports,
    })
}

/// Converts a Pod (its `status.podIPs`, else `status.podIP`).
pub fn pod(pod: object::Pod) -> Pod {
    let (namespace, name) = meta(pod.metadata);
    let status = pod.status;
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(status.pod_ip.and_then(|ip| ip.parse::<IpAddr>().ok()));
    }
    Pod {
        namespace,
        name,
        ips,
    }
}

/// The DNS fields of a full Service.
impl From<&core::Service> for object::Service {
    fn from(svc: &core::Service) -> Self {
        let spec = svc.spec.as_ref();
        Self {
            metadata: lean(&svc.metadata),
            spec: object::ServiceSpec {
                type_: spec.and_then(|s| s.type_.clone()),
                cluster_ip: spec.and_then(|s| s.cluster_ip.clone()),
                cluster_ips: spec.and_then(|s| s.cluster_ips.clone()),
                external_name: spec.and_then(|s| s.external_name.clone()),
                ports: spec.and_then(|s| s.ports.as_ref()).map(|ports| {
                    ports
                        .iter()
                        .map(|p| object::ServicePort {
                            name: p.name.clone(),
                            protocol: p.protocol.clone(),
                            port: p.port,
                        })
                        .collect()
                }),
                publish_not_ready_addresses: spec.and_then(|s| s.publish_not_ready_addresses),
            },
        }
    }
}

/// The DNS fields of a full EndpointSlice.
impl From<&discovery::EndpointSlice> for object::EndpointSlice {
    fn from(slice: &discovery::EndpointSlice) -> Self {
        let mut metadata = lean(&slice.metadata);
        metadata.labels = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .map(|v| [(SERVICE_NAME_LABEL.to_owned(), v.clone())].into());
        Self {
            metadata,
            address_type: slice.address_type.clone(),
            endpoints: slice.endpoints.as_ref().map(|eps| {
                eps.iter()
                    .map(|e| object::Endpoint {
                        addresses: e.addresses.clone(),
                        hostname: e.hostname.clone(),
                        ready: e.conditions.as_ref().and_then(|c| c.ready),
                        pod_name: e
                            .target_ref
                            .as_ref()
                            .filter(|r| r.kind.as_deref() == Some("Pod"))
                            .and_then(|r| r.name.clone()),
                    })
                    .collect()
            }),
            ports: slice.ports.as_ref().map(|ports| {
                ports
                    .iter()
                    .map(|p| object::EndpointPort {
                        name: p.name.clone(),
                        protocol: p.protocol.clone(),
                        port: p.port,
                    })
                    .collect()
            }),
        }
    }
}

/// The DNS fields of a full Pod.
impl From<&core::Pod> for object::Pod {
    fn from(pod: &core::Pod) -> Self {
        let status = pod.status.as_ref();
        Self {
            metadata: lean(&pod.metadata),
            status: object::PodStatus {
                pod_ip: status.and_then(|s| s.pod_ip.clone()),
                pod_ips: status
                    .and_then(|s| s.pod_ips.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|p| p.ip.clone())
                    .collect(),
            },
        }
    }
}

fn lean(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        resource_version: m.resource_version.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn converts_services() {
        let svc = core::Service {
            metadata: meta("ns", "web"),
            spec: Some(core::ServiceSpec {
                cluster_ip: Some("10.43.0.7".into()),
                cluster_ips: Some(vec!["10.43.0.7".into(), "fd00::7".into()]),
                ports: Some(vec![core::ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = service((&svc).into()).unwrap();
        assert_eq!(
            s.kind,
            ServiceKind::ClusterIp(vec![
                "10.43.0.7".parse().unwrap(),
                "fd00::7".parse().unwrap()
            ])
        );
        assert_eq!(
            s.ports,
            vec![Port {
                name: Some("http".into()),
                protocol: Protocol::Tcp,
                port: 80
            }]
        );

        let mut headless = svc.clone();
        headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        headless.spec.as_mut().unwrap().cluster_ips = Some(vec!["None".into()]);
        assert_eq!(
            service((&headless).into()).unwrap().kind,
            ServiceKind::Headless
        );

        let mut ext = svc.clone();
        let spec = ext.spec.as_mut().unwrap();
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some("www.example.org".into());
        assert_eq!(
            service((&ext).into()).unwrap().kind,
            ServiceKind::ExternalName("www.example.org".into())
        );

        let mut bad = svc;
        bad.spec.as_mut().unwrap().cluster_ips = Some(vec!["nope".into()]);
        let err = service((&bad).into()).unwrap_err().to_string();
        assert!(
            err.contains("ns/web") && err.contains("spec.clusterIPs"),
            "{err}"
        );
    }

    #[test]
    fn converts_endpoint_slices() {
        let mut m = meta("ns", "mongodb-abc");
        m.labels = Some([(SERVICE_NAME_LABEL.to_owned(), "mongodb".to_owned())].into());
        let slice = discovery::EndpointSlice {
            metadata: m,
            address_type: "IPv4".into(),
            endpoints: Some(vec![discovery::Endpoint {
                addresses: vec!["10.42.0.11".into()],
                hostname: Some("mdb-1".into()),
                conditions: Some(discovery::EndpointConditions {
                    ready: Some(false),
                    ..Default::default()
                }),
                target_ref: Some(core::ObjectReference {
                    kind: Some("Pod".into()),
                    name: Some("mdb-1".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ports: Some(vec![discovery::EndpointPort {
                name: Some("mongo".into()),
                port: Some(27017),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        };
        let s = endpoint_slice((&slice).into()).unwrap();
        assert_eq!(s.service, "mongodb");
        assert_eq!(s.endpoints[0].hostname.as_deref(), Some("mdb-1"));
        assert!(!s.endpoints[0].ready);
        assert_eq!(s.endpoints[0].pod_name.as_deref(), Some("mdb-1"));
        assert_eq!(s.ports[0].port, 27017);

        let mut unlabelled = slice;
        unlabelled.metadata.labels = None;
        assert!(matches!(
            endpoint_slice((&unlabelled).into()),
            Err(Error::Ignored(_))
        ));
    }
}
