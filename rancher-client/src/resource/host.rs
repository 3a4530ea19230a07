//! `host` and `ipAddress`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Extra, ResourceMeta, impl_resource, load_balancer::PublicEndpoint};

/// A host (a machine running the Rancher agent).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    /// Common fields.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// The machine's hostname.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// The IP the agent registered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ip_address: Option<String>,
    /// The agent's connection state: `active`, `reconnecting`, `disconnected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_state: Option<String>,
    /// Host labels, used by scheduling rules.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Ports published on this host by services' instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_endpoints: Vec<PublicEndpoint>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

impl_resource!(Host, "host", "hosts");

impl Host {
    /// The link to the host's IP addresses.
    pub const IP_ADDRESSES_LINK: &'static str = "ipAddresses";

    /// Whether the agent is connected (`agentState` absent or `active`) and the host active.
    pub fn is_healthy(&self) -> bool {
        self.meta.state() == super::state::ACTIVE
            && self.agent_state.as_deref().is_none_or(|s| s == "active")
    }
}

/// An IP address of a host, reached through the host's `ipAddresses` link.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    /// Common fields.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// The address.
    #[serde(default)]
    pub address: String,
    /// The kind of address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The network it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

impl_resource!(IpAddress, "ipAddress", "ipaddresses");
