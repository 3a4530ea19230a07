//! The custom resources, group `federation.rancher.io`, version `v1alpha1`:
//! [`Federation`], [`FederatedCluster`] and [`FederatedService`].
//!
//! A federated Service is a [`FederatedService`] rather than an annotation on
//! a Service: it carries the Service to create in every member as a template,
//! and its status holds what an annotation cannot, the load balancer addresses
//! collected per cluster, zone and region, and the DNS names published. A plain
//! Service in the host cluster stays an ordinary Service of the host.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceSpec;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A federation: a DNS suffix under which federated services get names, and
/// the settings its members are checked with. Namespaced: it lives in the
/// controller's namespace with its members' credentials.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "federation.rancher.io",
    version = "v1alpha1",
    kind = "Federation",
    namespaced,
    status = "FederationStatus",
    shortname = "fed",
    printcolumn = r#"{"name":"Suffix","type":"string","jsonPath":".spec.dnsSuffix"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.memberCount"}"#,
    printcolumn = r#"{"name":"Healthy","type":"integer","jsonPath":".status.healthyCount"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FederationSpec {
    /// The DNS suffix the federation's names live under (`example.com`).
    pub dns_suffix: String,
    /// The TTL of every record, seconds (default 180).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Seconds between health checks of each member (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_period_seconds: Option<u32>,
    /// Seconds a member's `/readyz` may take before it counts as unreachable
    /// (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_timeout_seconds: Option<u32>,
}

/// The observed state of a [`Federation`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FederationStatus {
    /// Member names, sorted.
    #[serde(default)]
    pub members: Vec<String>,
    /// How many members there are.
    #[serde(default)]
    pub member_count: u32,
    /// How many members passed their last health check.
    #[serde(default)]
    pub healthy_count: u32,
    /// `DNSPublished`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A member cluster: its API endpoint, the Secret with its credentials, and
/// its observed health, region and zones.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "federation.rancher.io",
    version = "v1alpha1",
    kind = "FederatedCluster",
    namespaced,
    status = "FederatedClusterStatus",
    shortname = "fedcluster",
    printcolumn = r#"{"name":"Federation","type":"string","jsonPath":".spec.federation"}"#,
    printcolumn = r#"{"name":"Healthy","type":"boolean","jsonPath":".status.healthy"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".status.region"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FederatedClusterSpec {
    /// The federation this cluster belongs to.
    pub federation: String,
    /// The member's API endpoint (`https://host:6443`). Overrides the server of
    /// a kubeconfig; required when the Secret holds a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_endpoint: Option<String>,
    /// The Secret, in this object's namespace, with the credentials: key
    /// `kubeconfig`, or key `token` (and optionally `ca.crt`). Absent for a
    /// cluster that is a Rancher environment (`rancher`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// The Rancher environment this cluster is, for members discovered from
    /// Rancher (`--rancher`): reached through Rancher's Kubernetes proxy with
    /// the controller's API key. Exactly one of `secretRef` and `rancher` is
    /// set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rancher: Option<RancherEnvironment>,
}

/// A Rancher environment (a project of Rancher's API).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RancherEnvironment {
    /// The project id, e.g. `1a7`.
    pub project_id: String,
    /// The environment's name when it was discovered, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A reference to a Secret in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
}

/// The observed state of a [`FederatedCluster`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FederatedClusterStatus {
    /// Whether the last health check passed.
    #[serde(default)]
    pub healthy: bool,
    /// The member's region (the most common node region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The member's zones in that region, sorted.
    #[serde(default)]
    pub zones: Vec<String>,
    /// `Ready`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A Service federated into every member cluster.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "federation.rancher.io",
    version = "v1alpha1",
    kind = "FederatedService",
    namespaced,
    status = "FederatedServiceStatus",
    shortname = "fedsvc",
    printcolumn = r#"{"name":"Federation","type":"string","jsonPath":".spec.federation"}"#,
    printcolumn = r#"{"name":"Name","type":"string","jsonPath":".status.dnsName"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FederatedServiceSpec {
    /// The federation to publish into.
    pub federation: String,
    /// The Service created in every member, with this object's namespace and
    /// name.
    pub template: ServiceTemplate,
}

/// The Service created in each member.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct ServiceTemplate {
    /// Labels and annotations of the member Services.
    #[serde(default)]
    pub metadata: TemplateMetadata,
    /// The member Services' spec (`type: LoadBalancer` for DNS records).
    #[schemars(schema_with = "any_object")]
    pub spec: ServiceSpec,
}

/// Labels and annotations for the member Services.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct TemplateMetadata {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The observed state of a [`FederatedService`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FederatedServiceStatus {
    /// The global DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// Per member cluster, sorted by name.
    #[serde(default)]
    pub clusters: Vec<ClusterServiceStatus>,
    /// Healthy addresses per region, sorted.
    #[serde(default)]
    pub regions: Vec<LevelStatus>,
    /// Healthy addresses per zone, sorted.
    #[serde(default)]
    pub zones: Vec<LevelStatus>,
    /// `Propagated`, `DNSPublished`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The federated Service in one member.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterServiceStatus {
    /// The member.
    pub cluster: String,
    /// Its region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Its zones.
    #[serde(default)]
    pub zones: Vec<String>,
    /// The Service's load balancer IPs and hostnames.
    #[serde(default)]
    pub ingress: Vec<String>,
    /// Ready endpoints of the Service in the member.
    #[serde(default)]
    pub ready_endpoints: u32,
    /// Whether the shard counts for DNS (healthy member, address, ready endpoint).
    #[serde(default)]
    pub healthy: bool,
    /// What went wrong, if anything (collision, unreachable member, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why, as a reason word, when the Service could not be propagated to a
    /// healthy member: `NameCollision`, `NamespaceCreationFailed` or
    /// `PropagationFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The healthy addresses of one region or zone.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LevelStatus {
    /// The region.
    pub region: String,
    /// The zone, for zone entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The addresses (and unresolved hostnames).
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A status condition, as `metav1.Condition` spells it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type (`Ready`, `Propagated`, `DNSPublished`).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl Condition {
    /// A condition with `status` `True` when `ok`, else `False`.
    pub fn new(type_: &str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_owned(),
            status: if ok { "True" } else { "False" }.to_owned(),
            reason: reason.to_owned(),
            message: message.into(),
            last_transition_time: None,
        }
    }

    /// Whether the status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Sets `condition` in `conditions`, keeping the previous transition time when
/// the status did not change, and stamping `now` when it did.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition, now: &str) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            condition.last_transition_time = if existing.status == condition.status {
                existing.last_transition_time.clone()
            } else {
                Some(now.to_owned())
            };
            *existing = condition;
        }
        None => {
            condition.last_transition_time = Some(now.to_owned());
            conditions.push(condition);
        }
    }
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crds_are_namespaced_v1alpha1_with_status() {
        for crd in [
            Federation::crd(),
            FederatedCluster::crd(),
            FederatedService::crd(),
        ] {
            assert_eq!(crd.spec.group, "federation.rancher.io");
            assert_eq!(crd.spec.scope, "Namespaced");
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, "v1alpha1");
            assert!(version.subresources.as_ref().unwrap().status.is_some());
        }
        assert_eq!(
            FederatedService::crd().metadata.name.as_deref(),
            Some("federatedservices.federation.rancher.io")
        );
    }

    #[test]
    fn the_service_template_keeps_every_field() {
        let json = serde_json::json!({
            "apiVersion": "federation.rancher.io/v1alpha1",
            "kind": "FederatedService",
            "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {
                "federation": "myfed",
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {
                        "type": "LoadBalancer",
                        "selector": {"app": "nginx"},
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]
                    }
                }
            }
        });
        let fs: FederatedService = serde_json::from_value(json).unwrap();
        assert_eq!(fs.spec.template.spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(fs.spec.template.spec.ports.as_ref().unwrap()[0].port, 80);
        let schema = serde_json::to_value(FederatedService::crd()).unwrap();
        let template = &schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["template"]["properties"]["spec"];
        assert_eq!(template["x-kubernetes-preserve-unknown-fields"], true);
    }

    #[test]
    fn conditions_keep_their_transition_time_until_the_status_changes() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            Condition::new("Ready", true, "Healthy", "ok"),
            "t1",
        );
        set_condition(
            &mut conditions,
            Condition::new("Ready", true, "Healthy", "still ok"),
            "t2",
        );
        assert_eq!(conditions[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(conditions[0].message, "still ok");
        set_condition(
            &mut conditions,
            Condition::new("Ready", false, "Unreachable", "timeout"),
            "t3",
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time.as_deref(), Some("t3"));
        assert!(!conditions[0].is_true());
    }
}
