//! The Rancher driver: load balancers as Rancher `loadBalancerService`s,
//! shared the way the HAProxy driver shares one process per host.
//!
//! [`RancherDriver`] keeps its load balancers in one stack
//! ([`RancherConfig::stack`]). Every instance of a Rancher load balancer
//! service publishes the same host ports, and Rancher never puts two
//! services publishing a port on one host, so one service per load balancer
//! would make two Ingresses on port 80 compete for hosts. Instead, load
//! balancers that can share are served by one service:
//!
//! - they share when their placement gives the same scheduler labels, each
//!   wants instances (`scale` above 0, or global), they have a listener port
//!   in common, and on every common port both speak HTTP (or both HTTPS), as
//!   [`can_share`](crate::placement::can_share) says for the HAProxy driver.
//!   A TCP or TLS port is never shared: such load balancers get services of
//!   their own, and when they clash on hosts the shortfall names the load
//!   balancer holding the port;
//! - the service publishes the union of their ports (`80:80/tcp`), carries
//!   their scheduler labels (`io.rancher.scheduler.affinity:host_label`,
//!   `..._ne`, `..._soft`, `..._soft_ne`, `io.rancher.scheduler.global`),
//!   and its `scale` is the largest they ask;
//! - `lbConfig.portRules` is the union of their rules, one per HTTP route
//!   and one per TCP route (`sourcePort`, `protocol`, `hostname`, `path`,
//!   `targetPort`, the target service from [`RancherConfig::resolve`] or a
//!   selector `rancher-lb.backend=<lb>.<backend>`), each naming its load
//!   balancer in `backendName` (`<lb>_<backend>`), and for a default backend
//!   one rule per host without a rule for all its paths plus one without a
//!   host (`backendName` `<lb>_<backend>_default`), so a host's unmatched
//!   paths reach it; with explicit priorities: per port, exact hosts before
//!   wildcard hosts before any host, longer paths first. Where two members
//!   route the same port, host and path, the one that joined first keeps it
//!   and the other gets a `RouteConflict` condition, and any member's route
//!   beats another's default backend rule (the Ingress controller resolves
//!   its conflicts, oldest Ingress first, before they get here);
//! - certificates are uploaded once per fingerprint under namespaced names
//!   `<lb>-<certificate>-<fingerprint prefix>` and all attached, chosen by
//!   SNI; the first member's default one is `defaultCertificateId`;
//! - the members are recorded in the service's `metadata` under
//!   [`METADATA_KEY`] (id, scale, listeners, certificate ids, in the order
//!   they joined), so a restarted driver knows who is in which service and
//!   `list` returns every member.
//!
//! Changing or deleting one member updates the service in place (`PUT`) and
//! keeps every other member's rules; the service is removed with its last
//! member. What Rancher cannot change in place, published ports and
//! scheduler labels, is done by removing the service and creating it again
//! with every member: when a member needs a port the service does not
//! publish (then services that came to clash with it merge into the new
//! one), or when the only member's ports or labels change. A port nobody
//! uses any more stays published until then. A member whose placement or
//! ports no longer fit leaves for another service.
//!
//! Every member is served by every instance, so its status lists every
//! instance's host: a member may get more addresses than its own `scale`.
//! A member gets a `Shortfall` only when the service has fewer instances
//! than the member itself asked for.
//!
//! Named objects (the stack, services, certificates) are created once:
//! `ensure` and `ensure_deleted` run one at a time, and a `NotUnique` answer
//! (another process, or a retried request, made it first) means the object
//! is read and used. The status addresses are the service's
//! `publicEndpoints` IP addresses. `ensure` never waits for Rancher to
//! settle: it returns what Rancher reports now, and
//! [`RancherDriver::refresh`] re-reads the services and publishes changes.

mod shared;
mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use rancher_client::resource::{LaunchConfig, PortRule};
use rancher_client::{Client, ListParams, LoadBalancerService, Stack};
use tokio::sync::{Mutex, broadcast};

use crate::driver::{self, Driver, STATUS_CHANNEL_CAPACITY, Status, StatusUpdate};
use crate::model::{Backend, Certificate, LbId, LoadBalancer, Name};
use shared::{Member, Part, Shared};

/// The default stack holding the load balancers.
pub const DEFAULT_STACK: &str = "rancher-lb";
/// The prefix of a load balancer's `externalId`.
pub const EXTERNAL_ID_PREFIX: &str = "rancher-lb://";
/// The label key the default target selector matches.
pub const BACKEND_LABEL: &str = "rancher-lb.backend";
/// The key of a service's `metadata` that records its members.
pub const METADATA_KEY: &str = "rancher-lb";

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
    state: Mutex<State>,
    tx: broadcast::Sender<StatusUpdate>,
}

/// What the driver remembers between calls. Rancher holds the truth; this
/// saves look-ups and keeps what only this process knows.
#[derive(Default)]
struct State {
    /// The stack's id, once found or made.
    stack_id: Option<String>,
    /// The `lb.instance.image` setting, once read.
    image: Option<Option<String>>,
    /// Certificate ids by Rancher name.
    certificates: HashMap<String, String>,
    /// The load balancers ensured and not deleted since the process started.
    models: BTreeMap<LbId, LoadBalancer>,
    /// The last status published for each load balancer.
    known: BTreeMap<LbId, Status>,
    /// Members of services removed to be created again, until the new
    /// service exists (placed first on the next call if creating failed).
    pending: Vec<(Part, BTreeMap<String, String>)>,
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

/// Whether a service is not on its way out (removed services stay listed
/// until purged).
fn is_live(svc: &LoadBalancerService) -> bool {
    !matches!(
        svc.meta.state.as_deref(),
        Some("removed" | "removing" | "purging" | "purged")
    )
}

/// Services oldest first: by creation time, then by id (ids grow).
fn by_age(a: &Shared, b: &Shared) -> std::cmp::Ordering {
    let key = |s: &Shared| {
        (
            s.svc.meta.created.clone(),
            s.svc.meta.id.len(),
            s.svc.meta.id.clone(),
        )
    };
    key(a).cmp(&key(b))
}

/// Our services in the stack, oldest first, and the names of every live
/// service there.
struct Services {
    ours: Vec<Shared>,
    names: BTreeSet<String>,
}

impl RancherDriver {
    /// A driver using `client`.
    pub fn new(client: Client, config: RancherConfig) -> Self {
        Self {
            client,
            config,
            state: Mutex::new(State::default()),
            tx: broadcast::channel(STATUS_CHANNEL_CAPACITY).0,
        }
    }

    /// The stack's id; made when `create` and missing. A `NotUnique`
    /// answer means someone made it meanwhile: it is read and used.
    async fn stack_id(&self, st: &mut State, create: bool) -> driver::Result<Option<String>> {
        if let Some(id) = &st.stack_id {
            return Ok(Some(id.clone()));
        }
        let stacks = self.client.stacks();
        let name = &self.config.stack;
        let found = stacks
            .find_by_name(name)
            .await
            .map_err(api("finding the stack"))?;
        let stack = match found {
            Some(s) => s,
            None if !create => return Ok(None),
            None => {
                let new = Stack::new(name.clone(), format!("{EXTERNAL_ID_PREFIX}{name}"));
                match stacks.create(&new).await {
                    Ok(s) => s,
                    Err(e) if e.is_not_unique() => match stacks.find_by_name(name).await {
                        Ok(Some(s)) => s,
                        Ok(None) => return Err(api("creating the stack")(e)),
                        Err(e) => return Err(api("reading the stack made meanwhile")(e)),
                    },
                    Err(e) => return Err(api("creating the stack")(e)),
                }
            }
        };
        st.stack_id = Some(stack.meta.id.clone());
        Ok(Some(stack.meta.id))
    }

    async fn services(&self, st: &State, stack_id: &str) -> driver::Result<Services> {
        let params = ListParams::new().stack_id(stack_id).removed_null();
        let all = self
            .client
            .load_balancer_services()
            .list(&params)
            .await
            .map_err(api("listing the load balancers"))?;
        let live: Vec<LoadBalancerService> = all.into_iter().filter(is_live).collect();
        let names = live.iter().filter_map(|s| s.meta.name.clone()).collect();
        let mut ours: Vec<Shared> = live.into_iter().filter_map(Shared::parse).collect();
        ours.sort_by(by_age);
        // Members this process ensured route as their model says (a route
        // an older member held comes back once that one left).
        for s in &mut ours {
            for p in &mut s.parts {
                if let Some(model) = st.models.get(&p.member.id) {
                    p.rules = shared::rules(&self.config, model);
                }
            }
        }
        Ok(Services { ours, names })
    }

    async fn image(&self, st: &mut State) -> Option<String> {
        if let Some(image) = &st.image {
            return image.clone();
        }
        let setting = self
            .client
            .settings()
            .find_by_name(rancher_client::resource::LB_INSTANCE_IMAGE)
            .await
            .ok()?;
        let image = setting.and_then(|s| s.effective_value().map(|v| format!("docker:{v}")));
        st.image = Some(image.clone());
        image
    }

    /// Uploads the load balancer's certificates that Rancher does not have
    /// yet; returns (default id, other ids).
    async fn certificates(
        &self,
        st: &mut State,
        lb: &LoadBalancer,
    ) -> driver::Result<(Option<String>, Vec<String>)> {
        let api_certs = self.client.certificates();
        let mut default = None;
        let mut others = Vec::new();
        for cert in lb.certificates() {
            let fp = fingerprint(cert);
            let name = certificate_name(lb.id(), &cert.name, &fp);
            let id = match st.certificates.get(&name) {
                Some(id) => id.clone(),
                None => {
                    let found = api_certs
                        .find_by_name(&name)
                        .await
                        .map_err(api("finding a certificate"))?;
                    let id = match found {
                        Some(c) => c.meta.id,
                        None => self.upload(cert, &name).await?,
                    };
                    st.certificates.insert(name, id.clone());
                    id
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

    async fn upload(&self, cert: &Certificate, name: &str) -> driver::Result<String> {
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
            name.to_owned(),
            pems.first().cloned().unwrap_or_default(),
            cert.key_pem(),
        );
        if pems.len() > 1 {
            c.cert_chain = Some(pems[1..].concat());
        }
        let api_certs = self.client.certificates();
        match api_certs.create(&c).await {
            Ok(created) => Ok(created.meta.id),
            Err(e) if e.is_not_unique() => match api_certs.find_by_name(name).await {
                Ok(Some(found)) => Ok(found.meta.id),
                Ok(None) => Err(api("uploading a certificate")(e)),
                Err(e) => Err(api("reading a certificate made meanwhile")(e)),
            },
            Err(e) => Err(api("uploading a certificate")(e)),
        }
    }

    /// Drops what a refused reference says is gone, so the next call looks
    /// it up again.
    fn forget(st: &mut State, error: &rancher_client::Error) {
        match error.invalid_reference() {
            Some("stackId") => st.stack_id = None,
            Some(_) => st.certificates.clear(),
            None => {}
        }
    }

    /// Publishes a status if it changed.
    fn record(&self, st: &mut State, id: &LbId, status: Option<Status>) {
        let changed = match &status {
            Some(s) => st.known.insert(id.clone(), s.clone()).as_ref() != Some(s),
            None => st.known.remove(id).is_some(),
        };
        if changed {
            let _ = self.tx.send(StatusUpdate {
                id: id.clone(),
                status,
            });
        }
    }

    /// Who holds the service's ports on the hosts it is not on:
    /// `port 80 on 192.0.2.13 is held by load balancer x (Rancher service x)`.
    async fn holders(
        &self,
        svc: &LoadBalancerService,
        services: &[Shared],
    ) -> driver::Result<String> {
        let hosts = self
            .client
            .hosts()
            .list(&ListParams::new().removed_null())
            .await
            .map_err(api("listing the hosts"))?;
        let ports: BTreeSet<u16> = svc.public_ports().into_iter().collect();
        let mine: BTreeSet<&str> = svc
            .public_endpoints
            .iter()
            .filter_map(|e| e.host_id.as_deref())
            .collect();
        let mut held: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
        for host in hosts.iter().filter(|h| h.is_healthy()) {
            if mine.contains(host.meta.id.as_str()) {
                continue;
            }
            for ep in &host.public_endpoints {
                let Some(holder) = ep.service_id.as_deref() else {
                    continue;
                };
                if holder != svc.meta.id && ports.contains(&ep.port) {
                    held.entry((ep.ip_address.clone(), holder.to_owned()))
                        .or_default()
                        .insert(ep.port);
                }
            }
        }
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut out = Vec::new();
        for ((ip, holder), ports) in held {
            if !names.contains_key(&holder) {
                let who = match services.iter().find(|s| s.svc.meta.id == holder) {
                    Some(s) => {
                        let ids: Vec<&str> = s.parts.iter().map(|p| p.member.id.as_str()).collect();
                        format!(
                            "load balancer {} (Rancher service {})",
                            ids.join(", "),
                            s.svc.meta.name.as_deref().unwrap_or(&holder)
                        )
                    }
                    None => {
                        let other = self.client.load_balancer_services().get_opt(&holder).await;
                        match other.ok().flatten().and_then(|o| o.meta.name) {
                            Some(name) => format!("Rancher service {name}"),
                            None => format!("Rancher service {holder}"),
                        }
                    }
                };
                names.insert(holder.clone(), who);
            }
            let list: Vec<String> = ports.iter().map(ToString::to_string).collect();
            let (noun, verb) = if ports.len() == 1 {
                ("port", "is")
            } else {
                ("ports", "are")
            };
            out.push(format!(
                "{noun} {} on {ip} {verb} held by {}",
                list.join(", "),
                names[&holder]
            ));
        }
        Ok(out.join("; "))
    }

    /// Records the status of every member of `svc`.
    async fn publish(
        &self,
        st: &mut State,
        svc: &LoadBalancerService,
        parts: &[Part],
        foreign: &[PortRule],
        services: &[Shared],
    ) -> driver::Result<()> {
        let labels = Shared::parse(svc.clone())
            .map(|s| s.labels())
            .unwrap_or_default();
        let built = shared::build(parts, foreign, None);
        let holders = if status::short(svc, parts, &labels) {
            Some(self.holders(svc, services).await?)
        } else {
            None
        };
        let statuses = status::statuses(
            svc,
            parts,
            &labels,
            &built.conflicts,
            &st.models,
            holders.as_deref(),
        );
        for (id, status) in statuses {
            self.record(st, &id, Some(status));
        }
        Ok(())
    }

    /// Updates a service in place to serve `parts`; unchanged, it is not
    /// written.
    async fn update(
        &self,
        st: &mut State,
        current: &Shared,
        parts: &[Part],
    ) -> driver::Result<LoadBalancerService> {
        let built = shared::build(parts, &current.foreign, current.svc.lb_config.as_ref());
        let svc = &current.svc;
        let same = svc.scale == Some(built.scale)
            && svc.metadata.get(METADATA_KEY) == Some(&built.record)
            && svc
                .lb_config
                .as_ref()
                .is_some_and(|c| shared::same_config(c, &built.lb_config));
        if same {
            return Ok(svc.clone());
        }
        let mut want = svc.clone();
        want.scale = Some(built.scale);
        want.lb_config = Some(built.lb_config);
        want.metadata.insert(METADATA_KEY.to_owned(), built.record);
        self.client
            .load_balancer_services()
            .update(&want)
            .await
            .map_err(|e| {
                Self::forget(st, &e);
                api("updating the load balancer")(e)
            })
    }

    /// Creates the service `c` describes. A `NotUnique` answer for a
    /// service this driver made (a retried request) reads it and brings it
    /// up to date.
    async fn create(
        &self,
        st: &mut State,
        stack_id: &str,
        services: &Services,
        c: &shared::Creation,
    ) -> driver::Result<LoadBalancerService> {
        let (name, external_id) = match c.replaces.map(|i| &services.ours[i].svc) {
            Some(old) => (
                old.meta
                    .name
                    .clone()
                    .unwrap_or_else(|| service_name(&c.founder)),
                old.external_id
                    .clone()
                    .unwrap_or_else(|| format!("{EXTERNAL_ID_PREFIX}{}", c.founder)),
            ),
            None => (
                unique_name(&service_name(&c.founder), &services.names),
                format!("{EXTERNAL_ID_PREFIX}{}", c.founder),
            ),
        };
        let built = shared::build(&c.parts, &c.foreign, None);
        let mut svc = LoadBalancerService::new(name.clone(), stack_id);
        svc.external_id = Some(external_id.clone());
        svc.scale = Some(built.scale);
        svc.start_on_create = Some(true);
        svc.launch_config = Some(LaunchConfig {
            ports: c.ports.iter().map(|p| format!("{p}:{p}/tcp")).collect(),
            image_uuid: self.image(st).await,
            labels: c.labels.clone(),
            ..Default::default()
        });
        svc.lb_config = Some(built.lb_config);
        svc.metadata.insert(METADATA_KEY.to_owned(), built.record);
        let lbs = self.client.load_balancer_services();
        match lbs.create(&svc).await {
            Ok(created) => Ok(created),
            Err(e) if e.is_not_unique() => {
                let params = ListParams::new()
                    .stack_id(stack_id)
                    .name(name)
                    .removed_null();
                let found = lbs
                    .list(&params)
                    .await
                    .map_err(api("reading the load balancer made meanwhile"))?
                    .into_iter()
                    .filter(is_live)
                    .find(|f| f.external_id.as_deref() == Some(external_id.as_str()));
                let Some(found) = found.and_then(Shared::parse) else {
                    return Err(api("creating the load balancer")(e));
                };
                self.update(st, &found, &c.parts).await
            }
            Err(e) => {
                Self::forget(st, &e);
                Err(api("creating the load balancer")(e))
            }
        }
    }

    async fn remove(&self, svc: &LoadBalancerService) -> driver::Result<()> {
        match self
            .client
            .load_balancer_services()
            .remove(&svc.meta.id)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(api("removing the load balancer")(e)),
        }
    }

    /// Puts one member where [`shared::plan`] says and publishes the status
    /// of every member whose service changed.
    async fn place(
        &self,
        st: &mut State,
        stack_id: &str,
        part: Part,
        labels: BTreeMap<String, String>,
    ) -> driver::Result<()> {
        let services = self.services(st, stack_id).await?;
        let layout = shared::plan(&services.ours, part, &labels);
        let mut changed = Vec::new();
        for (i, parts) in &layout.update {
            let current = &services.ours[*i];
            let svc = self.update(st, current, parts).await?;
            changed.push((svc, parts.clone(), current.foreign.clone()));
        }
        let moved: Vec<LbId> = layout
            .create
            .iter()
            .flat_map(|c| &c.parts)
            .map(|p| p.member.id.clone())
            .collect();
        if let Some(c) = &layout.create {
            // Until the new service exists, the members of the ones removed
            // live here only.
            for p in &c.parts {
                let held = layout
                    .remove
                    .iter()
                    .any(|i| services.ours[*i].holds(&p.member.id));
                if held && !st.pending.iter().any(|(q, _)| q.member.id == p.member.id) {
                    st.pending.push((p.clone(), c.labels.clone()));
                }
            }
        }
        for i in &layout.remove {
            self.remove(&services.ours[*i].svc).await?;
        }
        if let Some(c) = &layout.create {
            let svc = self.create(st, stack_id, &services, c).await?;
            st.pending.retain(|(p, _)| !moved.contains(&p.member.id));
            changed.push((svc, c.parts.clone(), c.foreign.clone()));
        }
        for (svc, parts, foreign) in &changed {
            self.publish(st, svc, parts, foreign, &services.ours)
                .await?;
        }
        Ok(())
    }

    /// Places the members of services removed by a call that failed before
    /// their new service existed.
    async fn restore_pending(&self, st: &mut State, stack_id: &str) -> driver::Result<()> {
        while let Some((part, labels)) = st.pending.pop() {
            if let Err(e) = self.place(st, stack_id, part.clone(), labels.clone()).await {
                if !st
                    .pending
                    .iter()
                    .any(|(p, _)| p.member.id == part.member.id)
                {
                    st.pending.push((part, labels));
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Re-reads the services and publishes the status of `lbs` and of
    /// every load balancer this driver ensured (instances moved by Rancher,
    /// hosts that failed, members that joined or left).
    pub async fn refresh(&self, lbs: &[LoadBalancer]) -> driver::Result<()> {
        let mut guard = self.state.lock().await;
        let st = &mut *guard;
        let mut wanted: BTreeSet<LbId> = st.models.keys().cloned().collect();
        wanted.extend(lbs.iter().map(|lb| lb.id().clone()));
        let Some(stack_id) = self.stack_id(st, false).await? else {
            for id in &wanted {
                self.record(st, id, None);
            }
            return Ok(());
        };
        let services = self.services(st, &stack_id).await?;
        let mut seen = BTreeSet::new();
        for s in &services.ours {
            if s.parts.iter().any(|p| wanted.contains(&p.member.id)) {
                self.publish(st, &s.svc, &s.parts, &s.foreign, &services.ours)
                    .await?;
                seen.extend(s.parts.iter().map(|p| p.member.id.clone()));
            }
        }
        for id in wanted.difference(&seen) {
            self.record(st, id, None);
        }
        Ok(())
    }
}

/// `base`, or `base-2`, `base-3`, ... whichever no live service has.
fn unique_name(base: &str, taken: &BTreeSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_owned();
    }
    (2u32..)
        .map(|n| {
            let suffix = format!("-{n}");
            let mut stem = base.to_owned();
            stem.truncate(63 - suffix.len());
            format!("{}{suffix}", stem.trim_end_matches('-'))
        })
        .find(|name| !taken.contains(name))
        .unwrap_or_else(|| base.to_owned())
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
        let mut guard = self.state.lock().await;
        let st = &mut *guard;
        let Some(stack_id) = self.stack_id(st, true).await? else {
            return Err(driver::Error::other(
                "rancher: finding the stack",
                "the stack was not made",
            ));
        };
        let certificates = self.certificates(st, lb).await?;
        st.models.insert(lb.id().clone(), lb.clone());
        st.pending.retain(|(p, _)| &p.member.id != lb.id());
        self.restore_pending(st, &stack_id).await?;
        let part = Part {
            member: Member::of(lb, certificates),
            rules: shared::rules(&self.config, lb),
        };
        let labels = shared::scheduler_labels(lb.placement());
        self.place(st, &stack_id, part, labels).await?;
        Ok(st.known.get(lb.id()).cloned().unwrap_or_default())
    }

    async fn list(&self) -> driver::Result<Vec<LbId>> {
        let mut guard = self.state.lock().await;
        let st = &mut *guard;
        let Some(stack_id) = self.stack_id(st, false).await? else {
            return Ok(Vec::new());
        };
        let services = self.services(st, &stack_id).await?;
        let ids: BTreeSet<LbId> = services
            .ours
            .iter()
            .flat_map(|s| &s.parts)
            .map(|p| p.member.id.clone())
            .chain(st.pending.iter().map(|(p, _)| p.member.id.clone()))
            .collect();
        Ok(ids.into_iter().collect())
    }

    async fn ensure_deleted(&self, id: &LbId) -> driver::Result<()> {
        let mut guard = self.state.lock().await;
        let st = &mut *guard;
        st.models.remove(id);
        st.pending.retain(|(p, _)| &p.member.id != id);
        let Some(stack_id) = self.stack_id(st, false).await? else {
            self.record(st, id, None);
            return Ok(());
        };
        self.restore_pending(st, &stack_id).await?;
        let services = self.services(st, &stack_id).await?;
        for s in services.ours.iter().filter(|s| s.holds(id)) {
            let rest: Vec<Part> = s
                .parts
                .iter()
                .filter(|p| &p.member.id != id)
                .cloned()
                .collect();
            if rest.is_empty() {
                self.remove(&s.svc).await?;
            } else {
                let svc = self.update(st, s, &rest).await?;
                self.publish(st, &svc, &rest, &s.foreign, &services.ours)
                    .await?;
            }
        }
        self.record(st, id, None);
        Ok(())
    }

    async fn status(&self, id: &LbId) -> driver::Result<Option<Status>> {
        let mut guard = self.state.lock().await;
        let st = &mut *guard;
        let services = match self.stack_id(st, false).await? {
            Some(stack_id) => self.services(st, &stack_id).await?.ours,
            None => Vec::new(),
        };
        let Some(s) = services.iter().find(|s| s.holds(id)) else {
            self.record(st, id, None);
            return Ok(None);
        };
        self.publish(st, &s.svc, &s.parts, &s.foreign, &services)
            .await?;
        Ok(st.known.get(id).cloned())
    }

    fn subscribe(&self) -> broadcast::Receiver<StatusUpdate> {
        self.tx.subscribe()
    }
}
