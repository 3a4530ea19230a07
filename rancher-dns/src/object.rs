//! Kubernetes objects as DNS reads them (feature `runtime`): Services,
//! `discovery.k8s.io/v1` EndpointSlices and Pods decoded from the API
//! server's JSON straight into the fields DNS uses.
//!
//! Everything else is skipped while a list page or watch event is parsed,
//! so it is never allocated: `managedFields`, annotations (`kubectl apply`'s
//! last-applied configuration holds a second copy of the object), labels
//! other than `kubernetes.io/service-name`, selectors, node names, target
//! references other than a Pod's name, status. A real API server's objects
//! are several times the size of what DNS keeps; decoding into the full
//! `k8s-openapi` types would allocate all of it for every object listed.
//!
//! The controller lists and watches these types (they implement
//! [`kube::Resource`] like the `k8s-openapi` types they mirror);
//! [`convert`](crate::convert) turns them, or the full types, into the
//! record model.

use std::fmt;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::convert::SERVICE_NAME_LABEL;

/// `metadata` with only `name`, `namespace`, `resourceVersion` (the watch
/// resumes from it) and the `kubernetes.io/service-name` label.
fn lean_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    d.deserialize_map(MetaVisitor)
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum MetaField {
    Name,
    Namespace,
    ResourceVersion,
    Labels,
    #[serde(other)]
    Other,
}

struct MetaVisitor;

impl<'de> Visitor<'de> for MetaVisitor {
    type Value = ObjectMeta;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("object metadata")
    }

    fn visit_unit<E: de::Error>(self) -> Result<ObjectMeta, E> {
        Ok(ObjectMeta::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectMeta, A::Error> {
        let mut meta = ObjectMeta::default();
        while let Some(field) = map.next_key::<MetaField>()? {
            match field {
                MetaField::Name => meta.name = map.next_value()?,
                MetaField::Namespace => meta.namespace = map.next_value()?,
                MetaField::ResourceVersion => meta.resource_version = map.next_value()?,
                MetaField::Labels => {
                    let kept = map.next_value_seed(ServiceNameLabel)?;
                    meta.labels = kept.map(|v| [(SERVICE_NAME_LABEL.to_owned(), v)].into());
                }
                MetaField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(meta)
    }
}

/// Reads a label map keeping only the `kubernetes.io/service-name` value.
struct ServiceNameLabel;

impl<'de> DeserializeSeed<'de> for ServiceNameLabel {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_option(self)
    }
}

/// A label key: whether it is the one kept (compared without allocating).
struct IsServiceName(bool);

impl<'de> Deserialize<'de> for IsServiceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl Visitor<'_> for Key {
            type Value = IsServiceName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a label key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IsServiceName, E> {
                Ok(IsServiceName(v == SERVICE_NAME_LABEL))
            }
        }
        d.deserialize_str(Key)
    }
}

impl<'de> Visitor<'de> for ServiceNameLabel {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of labels")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut kept = None;
        while let Some(IsServiceName(wanted)) = map.next_key()? {
            if wanted {
                kept = map.next_value()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(kept)
    }
}

macro_rules! resource {
    ($lean:ty, $full:ty) => {
        impl k8s_openapi::Resource for $lean {
            const API_VERSION: &'static str = <$full as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <$full as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <$full as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <$full as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str =
                <$full as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <$full as k8s_openapi::Resource>::Scope;
        }

        impl k8s_openapi::Metadata for $lean {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// A Service: its addressing and ports.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Service {
    /// Name, namespace and resourceVersion only.
    #[serde(deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    /// The spec fields DNS reads.
    pub spec: ServiceSpec,
}
resource!(Service, core::Service);

/// The part of a `ServiceSpec` DNS reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `type`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// `clusterIP`.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// `clusterIPs`.
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Option<Vec<String>>,
    /// `externalName`.
    pub external_name: Option<String>,
    /// `ports`.
    pub ports: Option<Vec<ServicePort>>,
    /// `publishNotReadyAddresses`.
    pub publish_not_ready_addresses: Option<bool>,
}

/// A Service port: name, protocol, number.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServicePort {
    /// `name`.
    pub name: Option<String>,
    /// `protocol`.
    pub protocol: Option<String>,
    /// `port`.
    pub port: i32,
}

/// An EndpointSlice: its Service label, address type, endpoints and ports.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Name, namespace, resourceVersion and the `kubernetes.io/service-name` label.
    #[serde(deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    /// `addressType`.
    pub address_type: String,
    /// `endpoints` (`null` in a placeholder slice).
    pub endpoints: Option<Vec<Endpoint>>,
    /// `ports`.
    pub ports: Option<Vec<EndpointPort>>,
}
resource!(EndpointSlice, discovery::EndpointSlice);

/// An endpoint: addresses, hostname, readiness and the Pod it is.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Endpoint {
    /// `addresses`.
    pub addresses: Vec<String>,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `conditions.ready`.
    #[serde(rename = "conditions", deserialize_with = "ready")]
    pub ready: Option<bool>,
    /// `targetRef.name` when `targetRef.kind` is `Pod`.
    #[serde(rename = "targetRef", deserialize_with = "pod_name")]
    pub pod_name: Option<String>,
}

fn ready<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    struct Conditions {
        ready: Option<bool>,
    }
    Ok(Option::<Conditions>::deserialize(d)?.and_then(|c| c.ready))
}

fn pod_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct TargetRef {
        kind: Option<String>,
        name: Option<String>,
    }
    Ok(Option::<TargetRef>::deserialize(d)?
        .filter(|r| r.kind.as_deref() == Some("Pod"))
        .and_then(|r| r.name))
}

/// An EndpointSlice port.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndpointPort {
    /// `name`.
    pub name: Option<String>,
    /// `protocol`.
    pub protocol: Option<String>,
    /// `port`.
    pub port: Option<i32>,
}

/// A Pod: its IPs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Pod {
    /// Name, namespace and resourceVersion only.
    #[serde(deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    /// `status.podIP` and `status.podIPs`.
    pub status: PodStatus,
}
resource!(Pod, core::Pod);

/// The IPs of a Pod.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    /// `podIP`.
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    /// `podIPs[].ip`.
    #[serde(rename = "podIPs", deserialize_with = "pod_ips")]
    pub pod_ips: Vec<String>,
}

fn pod_ips<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    struct PodIp {
        ip: String,
    }
    Ok(Option::<Vec<PodIp>>::deserialize(d)?
        .into_iter()
        .flatten()
        .map(|p| p.ip)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Service as kube-apiserver lists it after `kubectl apply`.
    const SERVICE: &str = r#"{
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\",\"kind\":\"Service\"}\n"},
            "creationTimestamp": "2025-03-04T10:21:07Z",
            "labels": {"app": "db"},
            "managedFields": [{"apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:clusterIP": {}, "f:ports": {".": {}, "k:{\"port\":27017,\"protocol\":\"TCP\"}": {".": {}}}}},
                "manager": "kubectl-client-side-apply", "operation": "Update", "time": "2025-03-04T10:21:07Z"}],
            "name": "db", "namespace": "shop", "resourceVersion": "1185",
            "uid": "0c6f2a8e-51b7-4f0d-a3c4-9e8d7b6a5f41"
        },
        "spec": {
            "clusterIP": "None", "clusterIPs": ["None"], "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "mongo", "port": 27017, "protocol": "TCP", "targetPort": 27017}],
            "selector": {"app": "db"}, "sessionAffinity": "None", "type": "ClusterIP"
        },
        "status": {"loadBalancer": {}}
    }"#;

    #[test]
    fn a_service_keeps_only_what_dns_reads() {
        let svc: Service = serde_json::from_str(SERVICE).unwrap();
        assert_eq!(svc.metadata.name.as_deref(), Some("db"));
        assert_eq!(svc.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(svc.metadata.resource_version.as_deref(), Some("1185"));
        assert!(svc.metadata.labels.is_none(), "no service-name label");
        assert!(svc.metadata.annotations.is_none() && svc.metadata.managed_fields.is_none());
        assert_eq!(svc.spec.cluster_ip.as_deref(), Some("None"));
        let ports = svc.spec.ports.unwrap();
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("mongo"), 27017)
        );
    }

    #[test]
    fn slices_keep_the_service_label_and_pod_names_and_may_be_empty() {
        let slice: EndpointSlice = serde_json::from_str(
            r#"{"metadata": {"name": "db-1", "namespace": "shop", "resourceVersion": "7",
                "labels": {"app": "db", "kubernetes.io/service-name": "db", "service.kubernetes.io/headless": ""},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "db", "uid": "u"}]},
              "addressType": "IPv4",
              "endpoints": [
                {"addresses": ["10.42.0.11"], "conditions": {"ready": false, "serving": true},
                 "hostname": "db-0", "nodeName": "n1",
                 "targetRef": {"kind": "Pod", "namespace": "shop", "name": "db-0", "uid": "p"}},
                {"addresses": ["10.42.0.12"], "targetRef": {"kind": "Node", "name": "n2"}}
              ],
              "ports": [{"name": "mongo", "port": 27017, "protocol": "TCP"}]}"#,
        )
        .unwrap();
        assert_eq!(
            slice.metadata.labels,
            Some([(SERVICE_NAME_LABEL.to_owned(), "db".to_owned())].into())
        );
        let eps = slice.endpoints.unwrap();
        assert_eq!(eps[0].ready, Some(false));
        assert_eq!(eps[0].pod_name.as_deref(), Some("db-0"));
        assert_eq!(eps[1].ready, None);
        assert_eq!(eps[1].pod_name, None, "a Node is not a Pod");

        let placeholder: EndpointSlice = serde_json::from_str(
            r#"{"metadata": {"name": "db-x", "namespace": "shop", "labels": null},
                "addressType": "IPv4", "endpoints": null, "ports": null}"#,
        )
        .unwrap();
        assert!(placeholder.endpoints.is_none() && placeholder.metadata.labels.is_none());
    }

    #[test]
    fn pods_keep_their_ips() {
        let pod: Pod = serde_json::from_str(
            r#"{"metadata": {"name": "p", "namespace": "n", "managedFields": []},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
                "status": {"podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}, {"ip": "fd00::5"}]}}"#,
        )
        .unwrap();
        assert_eq!(pod.status.pod_ips, ["10.42.0.5", "fd00::5"]);
    }
}
