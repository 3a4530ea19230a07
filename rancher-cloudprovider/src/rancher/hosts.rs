//! [`Instances`] and [`Zones`] from Rancher hosts ([`RancherHosts`]) or from the
//! nodes' own labels ([`NodeLabelInstances`]).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use parking_lot::Mutex;
use rancher_client::{ListParams, resource::IpAddress};
use tokio::time::Instant;

use crate::{
    Instances, Zones,
    error::{Error, Result},
    model::{AddressType, Node, NodeAddress, Zone},
};

/// The provider name, and the `providerID` scheme: `rancher://<host uuid>`.
pub const PROVIDER_NAME: &str = "rancher";

/// The host (or node) label naming the zone.
pub const HOST_ZONE_LABEL: &str = "io.rancher.host.zone";

/// The host (or node) label naming the region.
pub const HOST_REGION_LABEL: &str = "io.rancher.host.region";

/// The instance type reported for every Rancher host.
const INSTANCE_TYPE: &str = "rancher";

#[derive(Clone, Debug)]
struct HostInfo {
    id: String,
    hostname: String,
    addresses: Vec<String>,
    labels: BTreeMap<String, String>,
}

impl HostInfo {
    /// Matches a node by name (case-insensitive, short names against FQDNs) or by
    /// one of its addresses.
    fn matches(&self, node: &Node) -> bool {
        let host = self.hostname.to_ascii_lowercase();
        let name = node.name.to_ascii_lowercase();
        let short = |s: &str| s.split('.').next().unwrap_or_default().to_owned();
        host == name
            || ((host.contains('.') != name.contains('.')) && short(&host) == short(&name))
            || self.addresses.contains(&node.name)
            || node
                .addresses
                .iter()
                .any(|na| na.kind != AddressType::Hostname && self.addresses.contains(&na.address))
    }
}

fn zone_of(labels: &BTreeMap<String, String>) -> Zone {
    let get = |keys: [&str; 2]| {
        keys.iter()
            .find_map(|k| labels.get(*k).cloned())
            .unwrap_or_default()
    };
    Zone {
        zone: get([HOST_ZONE_LABEL, crate::well_known::ZONE_LABEL]),
        region: get([HOST_REGION_LABEL, crate::well_known::REGION_LABEL]),
    }
}

/// Instances and zones from the hosts of a Rancher environment.
///
/// Hosts are listed once per `ttl` (default 30 s) and shared by every lookup;
/// when Rancher cannot be reached the last list keeps serving. Zones come from
/// each host's [`HOST_ZONE_LABEL`] and [`HOST_REGION_LABEL`] labels, so nodes on
/// different hosts get real failure domains (the original reported the same zone
/// for every node).
pub struct RancherHosts {
    client: rancher_client::Client,
    ttl: Duration,
    cache: Mutex<Option<(Instant, Arc<Vec<HostInfo>>)>>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RancherHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RancherHosts")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RancherHosts {
    /// Hosts from `client`'s environment.
    pub fn new(client: rancher_client::Client) -> Self {
        Self {
            client,
            ttl: Duration::from_secs(30),
            cache: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// How long a host list is reused.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn fresh(&self) -> Option<Arc<Vec<HostInfo>>> {
        self.cache
            .lock()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, hosts)| hosts.clone())
    }

    async fn hosts(&self) -> Result<Arc<Vec<HostInfo>>> {
        if let Some(hosts) = self.fresh() {
            return Ok(hosts);
        }
        let _one = self.refresh.lock().await;
        if let Some(hosts) = self.fresh() {
            return Ok(hosts);
        }
        match self.list().await {
            Ok(hosts) => {
                let hosts = Arc::new(hosts);
                *self.cache.lock() = Some((Instant::now(), hosts.clone()));
                Ok(hosts)
            }
            Err(error) => match self.cache.lock().as_ref() {
                Some((_, stale)) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "listing Rancher hosts failed; using the last list"
                    );
                    Ok(stale.clone())
                }
                None => Err(error),
            },
        }
    }

    async fn list(&self) -> Result<Vec<HostInfo>> {
        let hosts = self
            .client
            .hosts()
            .list(&ListParams::new().removed_null())
            .await
            .map_err(Error::other)?;
        let mut infos = Vec::with_capacity(hosts.len());
        for host in hosts {
            let mut addresses: Vec<String> = host.agent_ip_address.iter().cloned().collect();
            if host
                .meta
                .links
                .contains_key(rancher_client::resource::Host::IP_ADDRESSES_LINK)
            {
                let ips: Vec<IpAddress> = self
                    .client
                    .follow_link_list(&host, rancher_client::resource::Host::IP_ADDRESSES_LINK)
                    .await
                    .map_err(Error::other)?;
                for ip in ips {
                    if !ip.address.is_empty() && !addresses.contains(&ip.address) {
                        addresses.push(ip.address);
                    }
                }
            }
            infos.push(HostInfo {
                id: host
                    .meta
                    .uuid
                    .clone()
                    .unwrap_or_else(|| host.meta.id.clone()),
                hostname: host.hostname,
                addresses,
                labels: host.labels,
            });
        }
        Ok(infos)
    }

    async fn host(&self, node: &Node) -> Result<HostInfo> {
        self.hosts()
            .await?
            .iter()
            .find(|h| h.matches(node))
            .cloned()
            .ok_or_else(|| Error::InstanceNotFound {
                node: node.name.clone(),
            })
    }
}

#[async_trait]
impl Instances for RancherHosts {
    /// Every host address as `InternalIP` and `ExternalIP`, and the host name.
    async fn node_addresses(&self, node: &Node) -> Result<Vec<NodeAddress>> {
        let host = self.host(node).await?;
        let mut addresses = Vec::new();
        for kind in [AddressType::InternalIp, AddressType::ExternalIp] {
            addresses.extend(
                host.addresses
                    .iter()
                    .map(|a| NodeAddress::new(kind, a.clone())),
            );
        }
        if !host.hostname.is_empty() {
            addresses.push(NodeAddress::new(AddressType::Hostname, host.hostname));
        }
        Ok(addresses)
    }

    async fn provider_id(&self, node: &Node) -> Result<String> {
        Ok(format!("{PROVIDER_NAME}://{}", self.host(node).await?.id))
    }

    async fn instance_exists(&self, node: &Node) -> Result<bool> {
        match self.host(node).await {
            Ok(_) => Ok(true),
            Err(Error::InstanceNotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn instance_type(&self, node: &Node) -> Result<String> {
        self.host(node).await.map(|_| INSTANCE_TYPE.to_owned())
    }
}

#[async_trait]
impl Zones for RancherHosts {
    async fn zone(&self, node: &Node) -> Result<Zone> {
        Ok(zone_of(&self.host(node).await?.labels))
    }
}

/// Instances and zones when Rancher is not configured: every node is its own
/// instance (`rancher://<node name>`), keeps the addresses it reports, and takes
/// its zone and region from its own [`HOST_ZONE_LABEL`] and [`HOST_REGION_LABEL`]
/// labels.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeLabelInstances;

#[async_trait]
impl Instances for NodeLabelInstances {
    async fn node_addresses(&self, node: &Node) -> Result<Vec<NodeAddress>> {
        Ok(node.addresses.clone())
    }

    async fn provider_id(&self, node: &Node) -> Result<String> {
        Ok(format!("{PROVIDER_NAME}://{}", node.name))
    }

    async fn instance_exists(&self, _node: &Node) -> Result<bool> {
        Ok(true)
    }
}

#[async_trait]
impl Zones for NodeLabelInstances {
    async fn zone(&self, node: &Node) -> Result<Zone> {
        let labels: BTreeMap<String, String> = node
            .labels
            .iter()
            .filter(|(k, _)| *k == HOST_ZONE_LABEL || *k == HOST_REGION_LABEL)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(zone_of(&labels))
    }
}
