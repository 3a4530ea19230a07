//! The Rancher driver: a load balancer as a Rancher `loadBalancerService`.
//!
//! [`RancherDriver`] keeps every load balancer in one stack
//! ([`RancherConfig::stack`]) as a `loadBalancerService` whose `externalId` is
//! `rancher-lb://<id>`:
//!
//! - `launchConfig.ports` publishes every listener port (`80:80/tcp`);
//!   required, forbidden, preferred and avoided host labels become the
//!   scheduler labels `io.rancher.scheduler.affinity:host_label`,
//!   `..._ne`, `..._soft` and `..._soft_ne`, and a global placement
//!   `io.rancher.scheduler.global: "true"`; the image comes from the
//!   `lb.instance.image` setting when Rancher has one;
//! - `scale` is sent on create and on every update (updated in place);
//! - `lbConfig.portRules` has one rule per HTTP route and endpoint port, and
//!   one per TCP route: `sourcePort`, `protocol`, `hostname`, `path`,
//!   `targetPort` (the endpoint port), `backendName`, and the target service:
//!   the id [`RancherConfig::resolve`] gives for the backend, or else a
//!   `selector` `rancher-lb.backend=<lb>.<backend>` matching services labelled
//!   that way;
//! - certificates are uploaded once per fingerprint under namespaced names
//!   `<lb>-<certificate>-<fingerprint prefix>`, the default one as
//!   `defaultCertificateId`;
//! - a change of published ports or scheduler labels, which Rancher cannot
//!   apply in place, removes the service and creates it again.
//!
//! The status addresses are the service's `publicEndpoints` IP addresses.
//! `ensure` never waits for Rancher to settle: it returns what Rancher reports
//! now, and [`RancherDriver::refresh`] re-reads every known load balancer and
//! publishes changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use rancher_client::resource::{
    LaunchConfig, LbConfig, PortRule, Protocol as RProtocol, scheduler,
};
use rancher_client::{Client, ListParams, LoadBalancerService, Stack};
use tokio::sync::{Mutex, broadcast};

use crate::driver::{
    self, Condition, ConditionKind, Driver, Instance, InstanceState, STATUS_CHANNEL_CAPACITY,
    Status, StatusUpdate,
};
use crate::model::{
    Backend, Certificate, HostMatch, LbId, LoadBalancer, Name, PathMatch, Protocol,
};

/// The default stack holding the load balancers.
pub const DEFAULT_STACK: &str = "rancher-lb";
/// The prefix of a load balancer's `externalId`.
pub const EXTERNAL_ID_PREFIX: &str = "rancher-lb://";
/// The label key the default target selector matches.
pub const BACKEND_LABEL: &str = "rancher-lb.backend";

/// Maps a backend to the id of the Rancher service that serves it.
pub type Resolver = Arc<dyn Fn(&LbId, &Backend) -> Option<String> + Send + Sync>;

/// Configuration of a [`RancherDriver`].
#[derive(Clone)]
#[non_exhaustive]
pub struct RancherConfig {
    /// The stack holding the load balancers (created when missing).
    pub stack: String,
    /// Backend → Rancher service id; `None` (or a `None` answer) uses a selector.
    pub resolve: Option<Resolver>,
}

impl RancherConfig {
    /// Stack [`DEFAULT_STACK`], selectors for targets.
    pub fn new() -> Self {
        Self {
            stack: DEFAULT_STACK.to_owned(),
            resolve: None,
        }
    }

    /// Uses another stack.
    #[must_use]
    pub fn with_stack(mut self, stack: impl Into<String>) -> Self {
        self.stack = stack.into();
        self
    }

    /// Resolves backends to Rancher service ids.
    #[must_use]
    pub fn with_resolver(mut self, resolve: Resolver) -> Self {
        self.resolve = Some(resolve);
        self
    }
}

impl Default for RancherConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RancherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RancherConfig")
            .field("stack", &self.stack)
            .field("resolve", &self.resolve.is_some())
            .finish()
    }
}

/// The Rancher [`Driver`]. See the [module docs](self).
pub struct RancherDriver {
    client: Client,
    config: RancherConfig,
    known: Mutex<BTreeMap<LbId, Status>>,
    tx: broadcast::Sender<StatusUpdate>,
}

fn api(context: &str) -> impl FnOnce(rancher_client::Error) -> driver::Error + '_ {
    move |e| driver::Error::other(format!("rancher: {context}"), e)
}

/// The Rancher name of a load balancer: the id with dots as dashes, at most
/// 63 bytes (the `externalId` stays the identity).
pub fn service_name(id: &LbId) -> String {
    let mut name: String = id.as_str().replace('.', "-");
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

/// The Rancher name of a certificate: `<lb>-<certificate>-<16 hex digits of
/// the fingerprint>`, dots as dashes, at most 63 bytes (the fingerprint kept).
pub fn certificate_name(lb: &LbId, cert: &Name, fingerprint: &str) -> String {
    let fp: String = fingerprint.chars().take(16).collect();
    let mut prefix = format!("{lb}-{cert}").replace('.', "-");
    prefix.truncate(63 - fp.len() - 1);
    format!("{}-{fp}", prefix.trim_end_matches('-'))
}

/// SHA-256 of the leaf certificate, hex.
pub fn fingerprint(cert: &Certificate) -> String {
    let leaf = cert
        .chain_der()
        .first()
        .map(|c| c.as_ref())
        .unwrap_or_default();
    // The SHA-256 of ring's TLS 1.3 suite: no second hashing crate.
    let rustls::SupportedCipherSuite::Tls13(suite) =
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
    else {
        return String::new();
    };
    let hash = suite.common.hash_provider.hash(leaf);
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn rprotocol(p: Protocol) -> RProtocol {
    match p {
        Protocol::Http => RProtocol::Http,
        Protocol::Https => RProtocol::Https,
        Protocol::Tcp => RProtocol::Tcp,
        Protocol::Tls => RProtocol::Tls,
    }
}

impl RancherDriver {
    /// A driver using `client`.
    pub fn new(client: Client, config: RancherConfig) -> Self {
        Self {
            client,
            config,
            known: Mutex::new(BTreeMap::new()),
            tx: broadcast::channel(STATUS_CHANNEL_CAPACITY).0,
        }
    }

    async fn stack_id(&self) -> driver::Result<String> {
        let stacks = self.client.stacks();
        if let Some(s) = stacks
            .find_by_name(&self.config.stack)
            .await
            .map_err(api("finding the stack"))?
        {
            return Ok(s.meta.id);
        }
        let created = stacks
            .create(&Stack::new(
                self.config.stack.clone(),
                format!("{EXTERNAL_ID_PREFIX}{}", self.config.stack),
            ))
            .await
            .map_err(api("creating the stack"))?;
        Ok(created.meta.id)
    }

    async fn find(&self, id: &LbId) -> driver::Result<Option<LoadBalancerService>> {
        let params = ListParams::new()
            .external_id(format!("{EXTERNAL_ID_PREFIX}{id}"))
            .removed_null();
        let found = self
            .client
            .load_balancer_services()
            .list(&params)
            .await
            .map_err(api("finding the load balancer"))?;
        Ok(found.into_iter().find(is_live))
    }

    /// Uploads the load balancer's certificates that Rancher does not have
    /// yet; returns (default id, other ids).
    async fn certificates(
        &self,
        lb: &LoadBalancer,
    ) -> driver::Result<(Option<String>, Vec<String>)> {
        let api_certs = self.client.certificates();
        let mut default = None;
        let mut others = Vec::new();
        for cert in lb.certificates() {
            let fp = fingerprint(cert);
            let name = certificate_name(lb.id(), &cert.name, &fp);
            let id = match api_certs
                .find_by_name(&name)
                .await
                .map_err(api("finding a certificate"))?
            {
                Some(c) => c.meta.id,
                None => {
                    let pems: Vec<String> = cert
                        .chain_der()
                        .iter()
                        .map(|der| {
                            let mut s = String::new();
                            crate::model::pem_block(&mut s, "CERTIFICATE", der.as_ref());
                            s
                        })
                        .collect();
                    let mut c = rancher_client::Certificate::new(
                        name.clone(),
                        pems.first().cloned().unwrap_or_default(),
                        cert.key_pem(),
                    );
                    if pems.len() > 1 {
                        c.cert_chain = Some(pems[1..].concat());
                    }
                    api_certs
                        .create(&c)
                        .await
                        .map_err(api("uploading a certificate"))?
                        .meta
                        .id
                }
            };
            if cert.default && default.is_none() {
                default = Some(id);
            } else {
                others.push(id);
            }
        }
        Ok((default, others))
    }

    fn target(
        &self,
        lb: &LoadBalancer,
        backend: &Name,
    ) -> (Option<String>, Option<String>, Option<u16>) {
        let Some(b) = lb.backend(backend) else {
            return (None, None, None);
        };
        let port = b.endpoints.first().map(|e| e.port);
        if let Some(id) = self.config.resolve.as_ref().and_then(|r| r(lb.id(), b)) {
            return (Some(id), None, port);
        }
        (
            None,
            Some(format!("{BACKEND_LABEL}={}.{}", lb.id(), b.name)),
            port,
        )
    }

    fn port_rules(&self, lb: &LoadBalancer) -> Vec<PortRule> {
        let mut rules = Vec::new();
        for r in lb.http_routes() {
            let protocol = lb.listener(r.port).map_or(Protocol::Http, |l| l.protocol);
            let (service_id, selector, target_port) = self.target(lb, &r.backend);
            let hostname = match &r.host {
                HostMatch::Any => None,
                h => Some(h.to_string()),
            };
            // Rancher's path rules are prefixes; an exact path is sent as is.
            let path = match (r.path_match, r.path.as_str()) {
                (PathMatch::Prefix, "/") => None,
                (_, p) => Some(p.to_owned()),
            };
            rules.push(PortRule {
                source_port: r.port,
                target_port,
                protocol: rprotocol(protocol),
                hostname,
                path,
                service_id,
                selector,
                backend_name: Some(r.backend.to_string()),
                ..Default::default()
            });
        }
        for r in lb.tcp_routes() {
            let protocol = lb.listener(r.port).map_or(Protocol::Tcp, |l| l.protocol);
            let (service_id, selector, target_port) = self.target(lb, &r.backend);
            rules.push(PortRule {
                source_port: r.port,
                target_port,
                protocol: rprotocol(protocol),
                service_id,
                selector,
                backend_name: Some(r.backend.to_string()),
                ..Default::default()
            });
        }
        rules
    }

    async fn desired(
        &self,
        lb: &LoadBalancer,
        stack_id: &str,
    ) -> driver::Result<LoadBalancerService> {
        let mut svc = LoadBalancerService::new(service_name(lb.id()), stack_id);
        svc.external_id = Some(format!("{EXTERNAL_ID_PREFIX}{}", lb.id()));
        svc.scale = Some(lb.scale());
        svc.start_on_create = Some(true);
        let mut labels = BTreeMap::new();
        let p = lb.placement();
        for (key, pairs) in [
            (scheduler::AFFINITY_HOST_LABEL, &p.required_labels),
            (scheduler::AFFINITY_HOST_LABEL_NE, &p.forbidden_labels),
            (scheduler::AFFINITY_HOST_LABEL_SOFT, &p.preferred_labels),
            (scheduler::AFFINITY_HOST_LABEL_SOFT_NE, &p.avoided_labels),
        ] {
            if !pairs.is_empty() {
                let v: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                labels.insert(key.to_owned(), v.join(","));
            }
        }
        if p.global {
            labels.insert(scheduler::GLOBAL.to_owned(), "true".to_owned());
        }
        let image = self
            .client
            .settings()
            .find_by_name(rancher_client::resource::LB_INSTANCE_IMAGE)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.effective_value().map(|v| format!("docker:{v}")));
        svc.launch_config = Some(LaunchConfig {
            ports: lb
                .listeners()
                .iter()
                .map(|l| format!("{0}:{0}/tcp", l.port))
                .collect(),
            image_uuid: image,
            labels,
            ..Default::default()
        });
        let (default_certificate_id, certificate_ids) = self.certificates(lb).await?;
        svc.lb_config = Some(LbConfig {
            port_rules: self.port_rules(lb),
            certificate_ids,
            default_certificate_id,
            ..Default::default()
        });
        Ok(svc)
    }

    fn status_of(lb: &LoadBalancer, svc: &LoadBalancerService) -> Status {
        let mut status = Status::default();
        let mut seen = BTreeSet::new();
        for ep in &svc.public_endpoints {
            let Ok(ip) = ep.ip_address.parse::<IpAddr>() else {
                continue;
            };
            if seen.insert(ip) {
                status.instances.push(Instance {
                    host: ip,
                    state: InstanceState::Running,
                });
            }
        }
        status.addresses = seen.into_iter().collect();
        let placed = u32::try_from(status.addresses.len()).unwrap_or(u32::MAX);
        let settled = svc.meta.transitioning.as_deref().is_none_or(|t| t == "no");
        // A global load balancer wants every eligible host, which Rancher
        // knows and this driver does not: at least one.
        let wanted = if lb.placement().global { 1 } else { lb.scale() };
        if settled && placed < wanted {
            let why = svc
                .meta
                .transitioning_message
                .clone()
                .unwrap_or_else(|| "not enough eligible hosts".into());
            status.conditions.push(Condition {
                kind: ConditionKind::Shortfall,
                message: format!("wanted {wanted}, placed {placed}: {why}"),
            });
        }
        for b in lb.backends() {
            if b.endpoints.is_empty() {
                status.conditions.push(Condition {
                    kind: ConditionKind::NoEndpoints,
                    message: format!("backend {} has no endpoints", b.name),
                });
            }
        }
        status
    }

    async fn record(&self, id: &LbId, status: Option<Status>) {
        let mut known = self.known.lock().await;
        let changed = match &status {
            Some(s) => known.insert(id.clone(), s.clone()).as_ref() != Some(s),
            None => known.remove(id).is_some(),
        };
        if changed {
            let _ = self.tx.send(StatusUpdate {
                id: id.clone(),
                status,
            });
        }
    }

    /// Re-reads every load balancer this driver knows and publishes changes
    /// (instances moved by Rancher, hosts that failed).
    pub async fn refresh(&self, lbs: &[LoadBalancer]) -> driver::Result<()> {
        for lb in lbs {
            let status = self
                .find(lb.id())
                .await?
                .map(|svc| Self::status_of(lb, &svc));
            self.record(lb.id(), status).await;
        }
        Ok(())
    }
}

fn same_rules(a: &LbConfig, b: &LbConfig) -> bool {
    let key = |r: &PortRule| {
        (
            r.source_port,
            r.target_port,
            r.protocol.as_str(),
            r.hostname.clone(),
            r.path.clone(),
            r.service_id.clone(),
            r.selector.clone(),
            r.backend_name.clone(),
        )
    };
    let mut x: Vec<_> = a.port_rules.iter().map(key).collect();
    let mut y: Vec<_> = b.port_rules.iter().map(key).collect();
    x.sort();
    y.sort();
    let mut ca = a.certificate_ids.clone();
    let mut cb = b.certificate_ids.clone();
    ca.sort();
    cb.sort();
    x == y && ca == cb && a.default_certificate_id == b.default_certificate_id
}

/// Whether a service is not on its way out (removed services stay listed
/// until purged).
fn is_live(svc: &LoadBalancerService) -> bool {
    !matches!(
        svc.meta.state.as_deref(),
        Some("removed" | "removing" | "purging" | "purged")
    )
}

/// What Rancher cannot change in place: the published ports and the
/// scheduler labels.
fn placement_key(svc: &LoadBalancerService) -> (BTreeSet<u16>, BTreeMap<String, String>) {
    let ports = svc.public_ports().into_iter().collect();
    let scheduling = svc
        .launch_config
        .iter()
        .flat_map(|l| &l.labels)
        .filter(|(k, _)| k.starts_with(scheduler::PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (ports, scheduling)
}

#[async_trait]
impl Driver for RancherDriver {
    async fn ensure(&self, lb: &LoadBalancer) -> driver::Result<Status> {
        if lb.snippet().is_some() {
            return Err(driver::Error::Rejected {
                lb: lb.id().clone(),
                reason: "snippets are not supported by the rancher driver".into(),
            });
        }
        let stack_id = self.stack_id().await?;
        let desired = self.desired(lb, &stack_id).await?;
        let services = self.client.load_balancer_services();
        let current = self.find(lb.id()).await?;
        let svc = match current {
            Some(cur) if placement_key(&cur) != placement_key(&desired) => {
                services
                    .remove(&cur.meta.id)
                    .await
                    .map_err(api("removing the load balancer to recreate it"))?;
                services
                    .create(&desired)
                    .await
                    .map_err(api("creating the load balancer"))?
            }
            Some(cur) => {
                let same_config = match (&cur.lb_config, &desired.lb_config) {
                    (Some(a), Some(b)) => same_rules(a, b),
                    (None, None) => true,
                    _ => false,
                };
                if same_config && cur.scale == desired.scale {
                    cur
                } else {
                    let mut update = cur.clone();
                    update.scale = desired.scale;
                    let mut cfg = cur.lb_config.clone().unwrap_or_default();
                    if let Some(want) = &desired.lb_config {
                        cfg.port_rules = want.port_rules.clone();
                        cfg.certificate_ids = want.certificate_ids.clone();
                        cfg.default_certificate_id = want.default_certificate_id.clone();
                    }
                    update.lb_config = Some(cfg);
                    services
                        .update(&update)
                        .await
                        .map_err(api("updating the load balancer"))?
                }
            }
            None => services
                .create(&desired)
                .await
                .map_err(api("creating the load balancer"))?,
        };
        let status = Self::status_of(lb, &svc);
        self.record(lb.id(), Some(status.clone())).await;
        Ok(status)
    }

    async fn list(&self) -> driver::Result<Vec<LbId>> {
        let params = ListParams::new()
            .stack_id(self.stack_id().await?)
            .removed_null();
        let services = self
            .client
            .load_balancer_services()
            .list(&params)
            .await
            .map_err(api("listing the load balancers"))?;
        let mut ids: Vec<LbId> = services
            .iter()
            .filter(|svc| is_live(svc))
            .filter_map(|svc| svc.external_id.as_deref()?.strip_prefix(EXTERNAL_ID_PREFIX))
            .filter_map(|id| LbId::new(id).ok())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn ensure_deleted(&self, id: &LbId) -> driver::Result<()> {
        if let Some(svc) = self.find(id).await? {
            match self
                .client
                .load_balancer_services()
                .remove(&svc.meta.id)
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(api("removing the load balancer")(e)),
            }
        }
        self.record(id, None).await;
        Ok(())
    }

    async fn status(&self, id: &LbId) -> driver::Result<Option<Status>> {
        let Some(svc) = self.find(id).await? else {
            self.record(id, None).await;
            return Ok(None);
        };
        // Addresses as Rancher reports them now; conditions from the last ensure.
        let mut status = self.known.lock().await.get(id).cloned().unwrap_or_default();
        let mut addresses: Vec<IpAddr> = svc
            .public_endpoints
            .iter()
            .filter_map(|ep| ep.ip_address.parse().ok())
            .collect();
        addresses.sort();
        addresses.dedup();
        status.instances = addresses
            .iter()
            .map(|a| Instance {
                host: *a,
                state: InstanceState::Running,
            })
            .collect();
        status.addresses = addresses;
        Ok(Some(status))
    }

    fn subscribe(&self) -> broadcast::Receiver<StatusUpdate> {
        self.tx.subscribe()
    }
}
