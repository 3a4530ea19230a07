//! Kubernetes objects → [`source`](crate::source) objects.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{Secret as KubeSecret, Service as KubeService},
        discovery::v1::EndpointSlice as KubeSlice,
        networking::v1::{
            Ingress as KubeIngress, IngressBackend as KubeBackend, IngressClass as KubeClass,
        },
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use crate::{
    annotations::IS_DEFAULT_CLASS,
    model::{Address, IngressKey},
    source::{
        BackendRef, EndpointSlice, HttpPath, Ingress, IngressClass, PortRef, Rule, Secret, Service,
        ServicePort, SlicePort, Tls,
    },
};

/// The EndpointSlice label naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn namespace(meta: &ObjectMeta) -> String {
    meta.namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned())
}

fn name(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn is_tcp(protocol: Option<&String>) -> bool {
    protocol.is_none_or(|p| p == "TCP")
}

fn backend(backend: &KubeBackend) -> BackendRef {
    if let Some(service) = &backend.service {
        let port = service.port.as_ref().and_then(|port| {
            match (port.number, port.name.as_deref().filter(|n| !n.is_empty())) {
                // Out-of-range numbers become port 0, which no Service has.
                (Some(number), _) => Some(PortRef::Number(u16::try_from(number).unwrap_or(0))),
                (None, Some(name)) => Some(PortRef::Name(name.to_owned())),
                (None, None) => None,
            }
        });
        BackendRef::Service {
            name: service.name.clone(),
            port,
        }
    } else {
        BackendRef::Resource {
            kind: backend
                .resource
                .as_ref()
                .map(|r| r.kind.clone())
                .unwrap_or_default(),
        }
    }
}

/// Converts an Ingress.
pub fn ingress(ingress: &KubeIngress) -> Ingress {
    let meta = &ingress.metadata;
    let spec = ingress.spec.clone().unwrap_or_default();
    let status = ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| {
                    entry
                        .ip
                        .as_deref()
                        .or(entry.hostname.as_deref())
                        .map(Address::parse)
                })
                .collect()
        })
        .unwrap_or_default();
    Ingress {
        key: IngressKey::new(namespace(meta), name(meta)),
        uid: meta.uid.clone().unwrap_or_default(),
        created: meta
            .creation_timestamp
            .as_ref()
            .map_or(0, |time| time.0.as_second()),
        annotations: meta.annotations.clone().unwrap_or_default(),
        class_name: spec.ingress_class_name.clone(),
        default_backend: spec.default_backend.as_ref().map(backend),
        rules: spec
            .rules
            .unwrap_or_default()
            .into_iter()
            .map(|rule| Rule {
                host: rule.host,
                paths: rule
                    .http
                    .map(|http| {
                        http.paths
                            .iter()
                            .map(|p| HttpPath {
                                path: p.path.clone(),
                                path_type: p.path_type.clone(),
                                backend: backend(&p.backend),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect(),
        tls: spec
            .tls
            .unwrap_or_default()
            .into_iter()
            .map(|tls| Tls {
                hosts: tls.hosts.unwrap_or_default(),
                secret_name: tls.secret_name,
            })
            .collect(),
        status,
    }
}

/// Converts an IngressClass.
pub fn class(class: &KubeClass) -> IngressClass {
    IngressClass {
        name: name(&class.metadata),
        controller: class
            .spec
            .as_ref()
            .and_then(|s| s.controller.clone())
            .unwrap_or_default(),
        is_default: class
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(IS_DEFAULT_CLASS))
            .is_some_and(|v| v == "true"),
    }
}

/// Converts a Service.
pub fn service(service: &KubeService) -> Service {
    let spec = service.spec.clone().unwrap_or_default();
    Service {
        namespace: namespace(&service.metadata),
        name: name(&service.metadata),
        external_name: spec.type_.as_deref() == Some("ExternalName"),
        ports: spec
            .ports
            .unwrap_or_default()
            .iter()
            .filter_map(|port| {
                Some(ServicePort {
                    name: port.name.clone().unwrap_or_default(),
                    port: u16::try_from(port.port).ok()?,
                    tcp: is_tcp(port.protocol.as_ref()),
                })
            })
            .collect(),
    }
}

/// Converts an EndpointSlice, keeping the first address of each ready endpoint.
pub fn slice(slice: &KubeSlice) -> EndpointSlice {
    let labels: BTreeMap<String, String> = slice.metadata.labels.clone().unwrap_or_default();
    EndpointSlice {
        namespace: namespace(&slice.metadata),
        name: name(&slice.metadata),
        service: labels.get(SERVICE_NAME_LABEL).cloned(),
        ports: slice
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|port| {
                Some(SlicePort {
                    name: port.name.clone().unwrap_or_default(),
                    port: u16::try_from(port.port?).ok()?,
                    tcp: is_tcp(port.protocol.as_ref()),
                })
            })
            .collect(),
        ready: slice
            .endpoints
            .iter()
            .flatten()
            .filter(|endpoint| {
                endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true)
            })
            .filter_map(|endpoint| endpoint.addresses.first()?.parse().ok())
            .collect(),
    }
}

/// Converts a Secret, keeping only `tls.crt` and `tls.key`.
pub fn secret(secret: &KubeSecret) -> Secret {
    let data = secret.data.as_ref();
    Secret {
        namespace: namespace(&secret.metadata),
        name: name(&secret.metadata),
        type_: secret.type_.clone().unwrap_or_else(|| "Opaque".to_owned()),
        cert: data.and_then(|d| d.get("tls.crt")).map(|b| b.0.clone()),
        key: data.and_then(|d| d.get("tls.key")).map(|b| b.0.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_from_yaml_shape() {
        let ingress: KubeIngress = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "scalelb", "namespace": "default", "uid": "u1",
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "annotations": {"scale": "2"}
            },
            "spec": {
                "rules": [{"host": "foo.bar.com", "http": {"paths": [
                    {"path": "/foo", "pathType": "Prefix",
                     "backend": {"service": {"name": "nginx-service", "port": {"number": 80}}}},
                    {"path": "/n", "pathType": "Exact",
                     "backend": {"service": {"name": "web", "port": {"name": "http"}}}}
                ]}}],
                "tls": [{"hosts": ["foo.bar.com"], "secretName": "foo"}]
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.2"}, {"hostname": "lb.example.org"}]}}
        }))
        .unwrap();
        let converted = super::ingress(&ingress);
        assert_eq!(converted.key, IngressKey::new("default", "scalelb"));
        assert_eq!(converted.created, 1_767_323_045);
        assert_eq!(converted.annotations["scale"], "2");
        assert_eq!(
            converted.rules[0].paths[0].backend,
            crate::fixtures::svc("nginx-service", 80)
        );
        assert_eq!(
            converted.rules[0].paths[1].backend,
            crate::fixtures::svc_named("web", "http")
        );
        assert_eq!(converted.tls[0].secret_name.as_deref(), Some("foo"));
        assert_eq!(
            converted.status,
            vec![
                Address::parse("127.0.0.2"),
                Address::parse("lb.example.org")
            ]
        );
    }

    #[test]
    fn slices_keep_ready_endpoints_only() {
        let slice: KubeSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.42.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.42.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.42.0.3"]}
            ]
        }))
        .unwrap();
        let converted = super::slice(&slice);
        assert_eq!(converted.service.as_deref(), Some("web"));
        assert_eq!(
            converted.ready,
            vec![
                "10.42.0.1".parse::<std::net::IpAddr>().unwrap(),
                "10.42.0.3".parse().unwrap()
            ]
        );
        assert_eq!(converted.ports[0].port, 8080);
    }

    #[test]
    fn classes_and_services() {
        let class: KubeClass = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "rancher",
                         "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": "rancher.io/ingress"}
        }))
        .unwrap();
        let converted = super::class(&class);
        assert!(converted.is_default);
        assert_eq!(converted.controller, "rancher.io/ingress");
        let service: KubeService = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.net",
                     "ports": [{"port": 53, "protocol": "UDP"}]}
        }))
        .unwrap();
        let converted = super::service(&service);
        assert!(converted.external_name);
        assert!(!converted.ports[0].tcp);
    }
}
