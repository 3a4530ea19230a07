//! `loadBalancerService` (API v2-beta): `launchConfig`, `lbConfig`, `publicEndpoints`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Extra, ResourceMeta, impl_resource};

/// A Rancher load balancer service: `scale` HAProxy instances, one per host, each publishing
/// the ports in [`LaunchConfig::ports`] and routing by [`LbConfig::port_rules`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerService {
    /// Common fields.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// The stack the service belongs to; required on create.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stack_id: String,
    /// An id chosen by the creator, e.g. `kubernetes-ingress-lbs://default-rancherlb-web`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Desired number of instances (Rancher's default is 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    /// Number of instances running (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_scale: Option<u32>,
    /// How the instances are launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_config: Option<LaunchConfig>,
    /// Routing, certificates and raw HAProxy config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb_config: Option<LbConfig>,
    /// Host IP and port of every published port of every instance (read-only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_endpoints: Vec<PublicEndpoint>,
    /// `healthy`, `degraded`, `unhealthy`, `initializing`, … (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_state: Option<String>,
    /// Whether to start the service when it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_on_create: Option<bool>,
    /// Ids of the running instances (read-only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_ids: Vec<String>,
    /// Free-form metadata, writable on create and update (Rancher serves it to the
    /// service's containers through rancher-metadata).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

impl_resource!(
    LoadBalancerService,
    "loadBalancerService",
    "loadbalancerservices"
);

impl LoadBalancerService {
    /// A load balancer to create in a stack.
    pub fn new(name: impl Into<String>, stack_id: impl Into<String>) -> Self {
        Self {
            meta: ResourceMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            stack_id: stack_id.into(),
            ..Default::default()
        }
    }

    /// The distinct IP addresses in [`LoadBalancerService::public_endpoints`], in order of
    /// first appearance.
    pub fn public_ips(&self) -> Vec<&str> {
        let mut ips: Vec<&str> = Vec::new();
        for ep in &self.public_endpoints {
            if !ips.contains(&ep.ip_address.as_str()) {
                ips.push(&ep.ip_address);
            }
        }
        ips
    }

    /// The public (host) ports in `launchConfig.ports`, parsed; entries that do not parse are
    /// skipped.
    pub fn public_ports(&self) -> Vec<u16> {
        self.launch_config
            .as_ref()
            .map(|lc| {
                lc.ports
                    .iter()
                    .filter_map(|p| parse_public_port(p))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The public port of a `launchConfig.ports` entry: `"80:8080/tcp"` → 80, `"443"` → 443.
pub fn parse_public_port(spec: &str) -> Option<u16> {
    let without_proto = spec.split('/').next()?;
    let public = without_proto.split(':').next()?;
    public.trim().parse().ok().filter(|p| *p != 0)
}

/// How a service's instances are launched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchConfig {
    /// Published ports, `"<public>:<private>[/<proto>]"`, e.g. `"80:80"`, `"443:443/tcp"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// The image, `docker:<image>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_uuid: Option<String>,
    /// Container labels, including scheduling rules such as
    /// `io.rancher.scheduler.affinity:host_label`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Scheduling labels understood by Rancher (and by the fake server).
pub mod scheduler {
    /// Hard host-label affinity: `key=value[,key2=value2]`; every pair must match.
    pub const AFFINITY_HOST_LABEL: &str = "io.rancher.scheduler.affinity:host_label";
    /// Hard host-label anti-affinity: `key=value[,...]`; a host carrying any
    /// pair is not eligible.
    pub const AFFINITY_HOST_LABEL_NE: &str = "io.rancher.scheduler.affinity:host_label_ne";
    /// Soft host-label affinity: hosts carrying these pairs are preferred.
    pub const AFFINITY_HOST_LABEL_SOFT: &str = "io.rancher.scheduler.affinity:host_label_soft";
    /// Soft host-label anti-affinity: hosts carrying these pairs are avoided.
    pub const AFFINITY_HOST_LABEL_SOFT_NE: &str =
        "io.rancher.scheduler.affinity:host_label_soft_ne";
    /// The prefix every scheduler label shares.
    pub const PREFIX: &str = "io.rancher.scheduler.";
    /// `"true"`: one instance on every eligible host, ignoring `scale`.
    pub const GLOBAL: &str = "io.rancher.scheduler.global";
}

/// `lbConfig`: what the load balancer does with traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbConfig {
    /// Routing rules.
    #[serde(default)]
    pub port_rules: Vec<PortRule>,
    /// Certificates offered by SNI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_ids: Vec<String>,
    /// The certificate offered when no SNI name matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_certificate_id: Option<String>,
    /// Cookie stickiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness_policy: Option<StickinessPolicy>,
    /// Raw HAProxy configuration appended to the generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Protocol of a [`PortRule`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP, routed by host and path.
    #[default]
    Http,
    /// HTTPS terminated at the load balancer, routed by host and path.
    Https,
    /// Plain TCP.
    Tcp,
    /// TLS terminated at the load balancer, then TCP.
    Tls,
    /// TLS passed through, routed by SNI.
    Sni,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Sni => "sni",
            Self::Udp => "udp",
        }
    }
}

/// One routing rule: traffic to `sourcePort` (matching `hostname`/`path`) goes to
/// `targetPort` of `serviceId`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRule {
    /// The public port; required.
    pub source_port: u16,
    /// The backend port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
    /// The protocol (`http` by default).
    #[serde(default)]
    pub protocol: Protocol,
    /// Host header to match; a leading or trailing `*` is a wildcard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Path prefix to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The target service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// A label selector choosing target services instead of `serviceId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Explicit rule priority (lower first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Name of the generated HAProxy backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_name: Option<String>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Cookie stickiness (`lbConfig.stickinessPolicy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StickinessPolicy {
    /// Policy name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Cookie name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Cookie domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `rewrite`, `insert` (Rancher's default) or `prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// HAProxy `indirect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indirect: Option<bool>,
    /// HAProxy `nocache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nocache: Option<bool>,
    /// HAProxy `postonly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postonly: Option<bool>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A published port of one instance on one host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicEndpoint {
    /// The host's IP.
    #[serde(default)]
    pub ip_address: String,
    /// The published port.
    #[serde(default)]
    pub port: u16,
    /// The host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// The instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
}

/// Input of the `upgrade` action: `{"inServiceStrategy": {...}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceUpgrade {
    /// Rolling upgrade of the instances in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_service_strategy: Option<InServiceStrategy>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Rolling in-service upgrade.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InServiceStrategy {
    /// The new launch config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_config: Option<LaunchConfig>,
    /// Instances replaced at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Pause between batches, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_millis: Option<u64>,
    /// Start new instances before stopping old ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_first: Option<bool>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_port_parsing() {
        assert_eq!(parse_public_port("80:8080/tcp"), Some(80));
        assert_eq!(parse_public_port("443"), Some(443));
        assert_eq!(parse_public_port("x:80"), None);
        assert_eq!(parse_public_port("0:80"), None);
    }

    #[test]
    fn unknown_fields_round_trip() {
        let json = serde_json::json!({
            "id": "1s5", "type": "loadBalancerService", "name": "web", "stackId": "1st1",
            "fqdn": "web.example.org", "vip": null,
            "lbConfig": {"portRules": [{"sourcePort": 80, "protocol": "http", "weight": 3}],
                         "future": true},
            "launchConfig": {"ports": ["80:80"], "networkMode": "managed"},
            "metadata": {"owner": {"members": ["a"]}}
        });
        let lb: LoadBalancerService = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(lb.extra["fqdn"], "web.example.org");
        let back = serde_json::to_value(&lb).unwrap();
        assert_eq!(back["fqdn"], "web.example.org");
        assert_eq!(back["lbConfig"]["future"], true);
        assert_eq!(back["lbConfig"]["portRules"][0]["weight"], 3);
        assert_eq!(back["launchConfig"]["networkMode"], "managed");
        assert!(back["vip"].is_null());
        assert_eq!(lb.metadata["owner"]["members"][0], "a");
        assert_eq!(back["metadata"]["owner"]["members"][0], "a");
    }
}
