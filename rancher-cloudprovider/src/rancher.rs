//! The Rancher implementation (feature `rancher`): one L4 load balancer per
//! Service on a [`rancher_lb`] driver (HAProxy on hosts, or Rancher's own load
//! balancer services), and [`Instances`]/[`Zones`]
//! from Rancher hosts or from node labels.
//!
//! Each Service port becomes a TCP listener on the same port, forwarding to the
//! port's node port on every backend node, or straight to the ready endpoints when
//! the port has no node port (`allocateLoadBalancerNodePorts: false`). The
//! Service's status lists the addresses of the hosts running an instance.
//!
//! | input | becomes |
//! | --- | --- |
//! | annotation [`SCALE_ANNOTATION`] (default 1, 0 = no instance) | instances on that many distinct hosts; honoured on every update |
//! | annotation [`HOST_LABEL_ANNOTATION`] (`k=v,k2=v2`) | hosts must carry these labels |
//! | `sessionAffinity: ClientIP` | source-address stickiness (the original rejected it) |
//! | `spec.loadBalancerIP` | an instance on the host with that address, when the provider knows it as a host; otherwise a Warning event and an error, as the original did |
//! | a UDP or SCTP port | rejected before anything changes: the load balancer serves TCP only |

mod applying;
#[cfg(feature = "clap")]
pub mod args;
mod hosts;

use std::{collections::BTreeSet, net::IpAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use rancher_lb::{
    driver::{self, Driver},
    model::{
        BackendSpec, EndpointSpec, LbId, ListenerSpec, LoadBalancerSpec, MAX_SCALE, PlacementSpec,
        Protocol as LbProtocol, StickinessSpec, TcpRouteSpec,
    },
};

pub use hosts::{
    HOST_REGION_LABEL, HOST_ZONE_LABEL, NodeLabelInstances, PROVIDER_NAME, RancherHosts,
};

use crate::{
    Cloud, Instances, LoadBalancer, Zones,
    error::{Error, Result},
    model::{Ingress, IpMode, LoadBalancerStatus, Node, Protocol, Service, SessionAffinity},
};

/// The number of load balancer instances, each on its own host (default 1).
pub const SCALE_ANNOTATION: &str = "service.rancher.io/scale";

/// Host labels instances require, as `key=value` pairs separated by commas.
pub const HOST_LABEL_ANNOTATION: &str = "service.rancher.io/host-label";

/// Instances when the Service does not say.
pub const DEFAULT_SCALE: u32 = 1;

/// A [`LoadBalancer`] on a [`rancher_lb`] driver.
///
/// Services created together are applied together: each driver `ensure`
/// runs in a task of its own, and a call made while other load balancers
/// are being applied answers [`Error::Retry`] at once instead of holding a
/// controller worker until its turn; when the driver is done, the load
/// balancer's name comes out of [`LoadBalancer::status_changes`], and the
/// next call returns the status without asking the driver again. A driver
/// that batches concurrent calls (the HAProxy driver: one check and reload
/// for all of them) then batches every pending Service, however few workers
/// the controller runs. A change made on its own is one call that waits.
pub struct RancherLoadBalancer {
    driver: Arc<dyn Driver>,
    hosts: Option<BTreeSet<IpAddr>>,
    settle: Duration,
    applying: Arc<applying::Applying>,
}

impl std::fmt::Debug for RancherLoadBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RancherLoadBalancer")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl RancherLoadBalancer {
    /// Load balancers on `driver`. Without [`with_hosts`](Self::with_hosts) the
    /// host addresses are unknown, so `spec.loadBalancerIP` cannot be honoured.
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        Self {
            driver,
            hosts: None,
            settle: Duration::from_secs(2),
            applying: Arc::new(applying::Applying::new()),
        }
    }

    /// The addresses of the hosts the driver places instances on (those given to
    /// [`Driver::set_hosts`]); a `loadBalancerIP` among them is honoured.
    #[must_use]
    pub fn with_hosts(mut self, hosts: impl IntoIterator<Item = IpAddr>) -> Self {
        self.hosts = Some(hosts.into_iter().collect());
        self
    }

    /// How long to wait before asking again while no instance runs yet.
    #[must_use]
    pub fn with_settle_delay(mut self, delay: Duration) -> Self {
        self.settle = delay;
        self
    }

    fn id(&self, cluster: &str, service: &Service) -> Result<LbId> {
        let name = self.load_balancer_name(cluster, service);
        LbId::new(&name).map_err(|e| {
            Error::invalid(
                &service.key,
                "metadata.name",
                format!("load balancer name {name:?}: {e}"),
            )
        })
    }

    /// The load balancer `service` asks for on `nodes`, validated; nothing is
    /// changed. Errors name the Service field at fault.
    pub fn build(
        &self,
        cluster: &str,
        service: &Service,
        nodes: &[Node],
    ) -> Result<rancher_lb::model::LoadBalancer> {
        let key = &service.key;
        if service.ports.is_empty() {
            return Err(Error::invalid(key, "spec.ports", "no ports to listen on"));
        }
        let mut spec = LoadBalancerSpec {
            id: self.id(cluster, service)?.to_string(),
            scale: scale(service)?,
            placement: PlacementSpec {
                required_labels: host_labels(service)?,
                ..PlacementSpec::default()
            },
            ..LoadBalancerSpec::default()
        };
        let stickiness = match service.session_affinity {
            SessionAffinity::None => StickinessSpec::None,
            SessionAffinity::ClientIp { .. } => StickinessSpec::Source,
        };
        for (i, port) in service.ports.iter().enumerate() {
            if port.protocol != Protocol::Tcp {
                return Err(Error::invalid(
                    key,
                    format!("spec.ports[{i}].protocol"),
                    format!(
                        "{} is not supported: the Rancher load balancer forwards TCP only",
                        port.protocol
                    ),
                ));
            }
            let backend = format!("port-{}", port.port);
            let endpoints = match port.node_port {
                Some(node_port) => nodes
                    .iter()
                    .filter_map(Node::forwarding_address)
                    .map(|address| EndpointSpec {
                        address: address.to_string(),
                        port: u32::from(node_port),
                    })
                    .collect(),
                None => service
                    .endpoint_targets(port)
                    .into_iter()
                    .map(|target| EndpointSpec {
                        address: target.ip().to_string(),
                        port: u32::from(target.port()),
                    })
                    .collect(),
            };
            spec.listeners.push(ListenerSpec {
                port: u32::from(port.port),
                protocol: LbProtocol::Tcp,
            });
            spec.tcp_routes.push(TcpRouteSpec {
                port: u32::from(port.port),
                backend: backend.clone(),
            });
            spec.backends.push(BackendSpec {
                name: backend,
                endpoints,
                stickiness: stickiness.clone(),
                ..BackendSpec::default()
            });
        }
        if let Some(ip) = service.load_balancer_ip {
            match &self.hosts {
                Some(hosts) if hosts.contains(&ip) => spec.placement.preferred_hosts.push(ip),
                _ => {
                    return Err(Error::invalid(
                        key,
                        "spec.loadBalancerIP",
                        format!(
                            "{ip} is not the address of a load balancer host; it cannot be honoured"
                        ),
                    ));
                }
            }
        }
        rancher_lb::model::LoadBalancer::new(&spec)
            .map_err(|e| Error::invalid(key, e.field().to_owned(), e.to_string()))
    }

    fn status(&self, service: &Service, status: &driver::Status) -> Result<LoadBalancerStatus> {
        let wanted = scale(service)?;
        if wanted > 0 && status.addresses.is_empty() {
            let why: Vec<&str> = status
                .conditions
                .iter()
                .map(|c| c.message.as_str())
                .collect();
            let reason = if why.is_empty() {
                "no load balancer instance is running yet".to_owned()
            } else {
                format!(
                    "no load balancer instance is running yet: {}",
                    why.join("; ")
                )
            };
            return Err(Error::retry(self.settle, reason));
        }
        Ok(to_status(status))
    }
}

fn to_status(status: &driver::Status) -> LoadBalancerStatus {
    LoadBalancerStatus {
        ingress: status
            .addresses
            .iter()
            .map(|ip| Ingress {
                ip_mode: Some(IpMode::Proxy),
                ..Ingress::ip(*ip)
            })
            .collect(),
    }
}

fn scale(service: &Service) -> Result<u32> {
    let Some(value) = service.annotations.get(SCALE_ANNOTATION) else {
        return Ok(DEFAULT_SCALE);
    };
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n <= MAX_SCALE)
        .ok_or_else(|| {
            Error::invalid(
                &service.key,
                format!("metadata.annotations[{SCALE_ANNOTATION}]"),
                format!("{value:?} is not a number of instances from 0 to {MAX_SCALE}"),
            )
        })
}

fn host_labels(service: &Service) -> Result<std::collections::BTreeMap<String, String>> {
    let mut labels = std::collections::BTreeMap::new();
    let Some(value) = service.annotations.get(HOST_LABEL_ANNOTATION) else {
        return Ok(labels);
    };
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(Error::invalid(
                &service.key,
                format!("metadata.annotations[{HOST_LABEL_ANNOTATION}]"),
                format!("{pair:?} is not key=value"),
            ));
        };
        labels.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(labels)
}

fn driver_error(error: driver::Error) -> Error {
    match error {
        driver::Error::Retry { after } => Error::retry(after, "the load balancer driver is busy"),
        driver::Error::NotImplemented => Error::NotImplemented {
            what: "driver operation",
        },
        other => Error::other(other),
    }
}

/// A label-safe lowercase form of `value`.
fn label(value: &str) -> String {
    let cleaned: String = value
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "x".into()
    } else {
        trimmed
            .chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches('-')
            .to_owned()
    }
}

#[async_trait]
impl LoadBalancer for RancherLoadBalancer {
    async fn get_load_balancer(
        &self,
        cluster: &str,
        service: &Service,
    ) -> Result<Option<LoadBalancerStatus>> {
        let id = self.id(cluster, service)?;
        let status = self.driver.status(&id).await.map_err(driver_error)?;
        Ok(status.as_ref().map(to_status))
    }

    /// `<cluster>.<namespace>.<name>.<first 8 characters of the UID>`: readable,
    /// so users can find the load balancer of a Service, and unique per UID.
    fn load_balancer_name(&self, cluster: &str, service: &Service) -> String {
        let uid: String = service
            .uid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        format!(
            "{}.{}.{}.{}",
            label(cluster),
            label(&service.key.namespace),
            label(&service.key.name),
            label(&uid)
        )
    }

    async fn ensure_load_balancer(
        &self,
        cluster: &str,
        service: &Service,
        nodes: &[Node],
    ) -> Result<LoadBalancerStatus> {
        let lb = self.build(cluster, service, nodes)?;
        match self.applying.ensure(&self.driver, &lb).await {
            applying::Outcome::Done(result) => self.status(service, &result.map_err(driver_error)?),
            applying::Outcome::Pending => Err(Error::retry(
                self.settle,
                "the load balancer is being applied together with others",
            )),
        }
    }

    async fn update_load_balancer(
        &self,
        cluster: &str,
        service: &Service,
        nodes: &[Node],
    ) -> Result<()> {
        let lb = self.build(cluster, service, nodes)?;
        self.driver.ensure(&lb).await.map_err(driver_error)?;
        Ok(())
    }

    async fn ensure_load_balancer_deleted(&self, cluster: &str, service: &Service) -> Result<()> {
        let id = self.id(cluster, service)?;
        self.applying.forget(&id).await;
        self.driver.ensure_deleted(&id).await.map_err(driver_error)
    }

    /// Forwards the driver's status updates (an instance restarted, a host
    /// failed) and the ends of ensures that answered [`Error::Retry`] while
    /// others were applied, as load balancer names.
    fn status_changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut updates = self.driver.subscribe();
        let mut finished = self.applying.finished();
        let applying = self.applying.clone();
        let (tx, rx) = tokio::sync::broadcast::channel(driver::STATUS_CHANNEL_CAPACITY);
        runtime.spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let received = tokio::select! {
                    update = updates.recv() => update.map(|u| u.id.to_string()),
                    name = finished.recv() => name,
                };
                match received {
                    // The end of its ensure follows: asking now would find it
                    // still running.
                    Ok(name) if applying.is_running(&name) => {}
                    Ok(name) => {
                        if tx.send(name).is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        // Those Services are asked again when their retry
                        // delay ends.
                        tracing::warn!(missed, "missed load balancer status updates");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Some(rx)
    }
}

/// The Rancher [`Cloud`]: load balancers on a driver, instances and zones from
/// Rancher hosts or node labels.
pub struct RancherCloud {
    load_balancer: Arc<RancherLoadBalancer>,
    instances: Option<Arc<dyn InstancesAndZones>>,
}

impl std::fmt::Debug for RancherCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RancherCloud")
            .field("load_balancer", &self.load_balancer)
            .finish_non_exhaustive()
    }
}

/// [`Instances`] and [`Zones`] in one object.
pub trait InstancesAndZones: Instances + Zones {}

impl<T: Instances + Zones> InstancesAndZones for T {}

impl RancherCloud {
    /// Load balancers only.
    pub fn new(load_balancer: RancherLoadBalancer) -> Self {
        Self {
            load_balancer: Arc::new(load_balancer),
            instances: None,
        }
    }

    /// Adds instances and zones (from [`RancherHosts`] or [`NodeLabelInstances`]).
    #[must_use]
    pub fn with_instances(mut self, instances: impl InstancesAndZones) -> Self {
        self.instances = Some(Arc::new(instances));
        self
    }
}

struct AsInstances(Arc<dyn InstancesAndZones>);

#[async_trait]
impl Instances for AsInstances {
    async fn node_addresses(&self, node: &Node) -> Result<Vec<crate::model::NodeAddress>> {
        self.0.node_addresses(node).await
    }
    async fn provider_id(&self, node: &Node) -> Result<String> {
        self.0.provider_id(node).await
    }
    async fn instance_exists(&self, node: &Node) -> Result<bool> {
        self.0.instance_exists(node).await
    }
    async fn instance_shutdown(&self, node: &Node) -> Result<bool> {
        self.0.instance_shutdown(node).await
    }
    async fn instance_type(&self, node: &Node) -> Result<String> {
        self.0.instance_type(node).await
    }
}

#[async_trait]
impl Zones for AsInstances {
    async fn zone(&self, node: &Node) -> Result<crate::model::Zone> {
        self.0.zone(node).await
    }
}

impl Cloud for RancherCloud {
    fn provider_name(&self) -> &str {
        PROVIDER_NAME
    }

    fn load_balancer(&self) -> Option<Arc<dyn LoadBalancer>> {
        Some(self.load_balancer.clone())
    }

    fn instances(&self) -> Option<Arc<dyn Instances>> {
        self.instances
            .clone()
            .map(|i| Arc::new(AsInstances(i)) as Arc<dyn Instances>)
    }

    fn zones(&self) -> Option<Arc<dyn Zones>> {
        self.instances
            .clone()
            .map(|i| Arc::new(AsInstances(i)) as Arc<dyn Zones>)
    }
}

#[cfg(test)]
mod tests;
