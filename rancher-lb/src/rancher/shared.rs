//! Load balancers sharing one Rancher `loadBalancerService`.
//!
//! A service's members are recorded in its `metadata` under
//! [`METADATA_KEY`]: each member's id, scale, listeners and certificates, in
//! the order they joined. Each port rule names its member in `backendName`
//! (`<load balancer>_<backend>`). From these, a service read back from
//! Rancher says who is in it and which rules are whose, whether or not this
//! process ensured them, so a member can change or leave without touching
//! the others' rules.
//!
//! Everything here is pure: [`plan`] decides where a load balancer goes and
//! what becomes of the services it leaves, [`build`] turns a member list into
//! the service's `lbConfig`, scale and metadata.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rancher_client::LoadBalancerService;
use rancher_client::resource::{LbConfig, PortRule, Protocol as RProtocol, scheduler};
use serde::{Deserialize, Serialize};

use super::{BACKEND_LABEL, EXTERNAL_ID_PREFIX, METADATA_KEY, RancherConfig};
use crate::model::{HostMatch, LbId, LoadBalancer, Name, PathMatch, Placement, Protocol};
use crate::placement::can_share;

/// Separates the load balancer from the backend in a rule's `backendName`.
/// Neither ids nor backend names (RFC 1123) contain it.
pub(super) const BACKEND_SEPARATOR: char = '_';

/// Ends the `backendName` of a default backend's rules
/// (`<lb>_<backend>_default`), which give way to any member's route.
const DEFAULT_SUFFIX: &str = "_default";

/// Whether a rule is a default backend's (see [`DEFAULT_SUFFIX`]).
fn is_default(rule: &PortRule) -> bool {
    rule.backend_name
        .as_deref()
        .is_some_and(|b| b.ends_with(DEFAULT_SUFFIX) && b.matches(BACKEND_SEPARATOR).count() == 2)
}

/// A listener a member asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) struct Port {
    pub(super) port: u16,
    pub(super) protocol: Protocol,
}

/// What a load balancer asks of the service serving it, as recorded in the
/// service's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Member {
    pub(super) id: LbId,
    pub(super) scale: u32,
    #[serde(default)]
    pub(super) listeners: Vec<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) default_certificate_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) certificate_ids: Vec<String>,
}

impl Member {
    /// The member for `lb`, with the ids of its uploaded certificates.
    pub(super) fn of(lb: &LoadBalancer, certificates: (Option<String>, Vec<String>)) -> Self {
        Self {
            id: lb.id().clone(),
            scale: lb.scale(),
            listeners: lb
                .listeners()
                .iter()
                .map(|l| Port {
                    port: l.port,
                    protocol: l.protocol,
                })
                .collect(),
            default_certificate_id: certificates.0,
            certificate_ids: certificates.1,
        }
    }

    /// Whether it may share a service: it wants instances.
    fn shareable(&self, global: bool) -> bool {
        global || self.scale > 0
    }
}

/// What the metadata key holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    #[serde(default)]
    members: Vec<Member>,
}

/// A member and the port rules it owns.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Part {
    pub(super) member: Member,
    pub(super) rules: Vec<PortRule>,
}

/// One of this driver's services, read back from Rancher.
#[derive(Clone, Debug)]
pub(super) struct Shared {
    pub(super) svc: LoadBalancerService,
    /// Members in the order they joined, each with its rules.
    pub(super) parts: Vec<Part>,
    /// Rules no member owns (added by hand): kept as they are.
    pub(super) foreign: Vec<PortRule>,
}

fn protocol_of(p: RProtocol) -> Protocol {
    match p {
        RProtocol::Http => Protocol::Http,
        RProtocol::Https => Protocol::Https,
        RProtocol::Tls => Protocol::Tls,
        RProtocol::Tcp | RProtocol::Sni | RProtocol::Udp => Protocol::Tcp,
    }
}

fn rprotocol(p: Protocol) -> RProtocol {
    match p {
        Protocol::Http => RProtocol::Http,
        Protocol::Https => RProtocol::Https,
        Protocol::Tcp => RProtocol::Tcp,
        Protocol::Tls => RProtocol::Tls,
    }
}

impl Shared {
    /// Reads a service of the stack; `None` when it is not one of ours (no
    /// member record and no `rancher-lb://` external id).
    pub(super) fn parse(svc: LoadBalancerService) -> Option<Self> {
        let recorded = svc
            .metadata
            .get(METADATA_KEY)
            .and_then(|v| serde_json::from_value::<Record>(v.clone()).ok());
        let legacy = recorded.is_none();
        let mut members = match recorded {
            Some(r) => r.members,
            // A service made before sharing: one load balancer, its id in
            // the external id.
            None => vec![legacy_member(&svc)?],
        };
        let mut seen = BTreeSet::new();
        members.retain(|m| seen.insert(m.id.clone()));
        let mut parts: Vec<Part> = members
            .into_iter()
            .map(|member| Part {
                member,
                rules: Vec::new(),
            })
            .collect();
        let mut foreign = Vec::new();
        for rule in svc.lb_config.iter().flat_map(|c| &c.port_rules) {
            let owner = rule
                .backend_name
                .as_deref()
                .and_then(|b| b.split_once(BACKEND_SEPARATOR))
                .map(|(owner, _)| owner);
            let index = if legacy {
                Some(0)
            } else {
                owner.and_then(|o| parts.iter().position(|p| p.member.id.as_str() == o))
            };
            match index.and_then(|i| parts.get_mut(i)) {
                Some(p) => p.rules.push(rule.clone()),
                None => foreign.push(rule.clone()),
            }
        }
        Some(Self {
            svc,
            parts,
            foreign,
        })
    }

    /// Its scheduler labels.
    pub(super) fn labels(&self) -> BTreeMap<String, String> {
        self.svc
            .launch_config
            .iter()
            .flat_map(|l| &l.labels)
            .filter(|(k, _)| k.starts_with(scheduler::PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The ports it publishes.
    pub(super) fn ports(&self) -> BTreeSet<u16> {
        self.svc.public_ports().into_iter().collect()
    }

    /// Whether `id` is a member.
    pub(super) fn holds(&self, id: &LbId) -> bool {
        self.parts.iter().any(|p| &p.member.id == id)
    }

    /// The load balancer it was made for (its name and external id say so).
    pub(super) fn founder(&self) -> Option<LbId> {
        self.svc
            .external_id
            .as_deref()
            .and_then(|e| e.strip_prefix(EXTERNAL_ID_PREFIX))
            .and_then(|id| LbId::new(id).ok())
            .or_else(|| self.parts.first().map(|p| p.member.id.clone()))
    }
}

fn legacy_member(svc: &LoadBalancerService) -> Option<Member> {
    let id = LbId::new(
        svc.external_id
            .as_deref()?
            .strip_prefix(EXTERNAL_ID_PREFIX)?,
    )
    .ok()?;
    let rules: &[PortRule] = svc.lb_config.as_ref().map_or(&[], |c| &c.port_rules);
    let listeners = svc
        .public_ports()
        .into_iter()
        .map(|port| Port {
            port,
            protocol: rules
                .iter()
                .find(|r| r.source_port == port)
                .map_or(Protocol::Http, |r| protocol_of(r.protocol)),
        })
        .collect();
    let cfg = svc.lb_config.clone().unwrap_or_default();
    Some(Member {
        id,
        scale: svc.scale.unwrap_or(1),
        listeners,
        default_certificate_id: cfg.default_certificate_id,
        certificate_ids: cfg.certificate_ids,
    })
}

/// The scheduler labels for a placement.
pub(super) fn scheduler_labels(p: &Placement) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
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
    labels
}

/// Whether the labels place one instance on every eligible host.
pub(super) fn is_global(labels: &BTreeMap<String, String>) -> bool {
    labels
        .get(scheduler::GLOBAL)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn target(
    config: &RancherConfig,
    lb: &LoadBalancer,
    backend: &Name,
) -> (Option<String>, Option<String>, Option<u16>) {
    let Some(b) = lb.backend(backend) else {
        return (None, None, None);
    };
    let port = b.endpoints.first().map(|e| e.port);
    if let Some(id) = config.resolve.as_ref().and_then(|r| r(lb.id(), b)) {
        return (Some(id), None, port);
    }
    (
        None,
        Some(format!("{BACKEND_LABEL}={}.{}", lb.id(), b.name)),
        port,
    )
}

/// The port rules of `lb`: one per HTTP route, one per TCP route, each
/// naming `lb` in its `backendName`.
pub(super) fn rules(config: &RancherConfig, lb: &LoadBalancer) -> Vec<PortRule> {
    let backend_name = |b: &Name| Some(format!("{}{BACKEND_SEPARATOR}{b}", lb.id()));
    let mut rules = Vec::new();
    for r in lb.http_routes() {
        let protocol = lb.listener(r.port).map_or(Protocol::Http, |l| l.protocol);
        let (service_id, selector, target_port) = target(config, lb, &r.backend);
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
            backend_name: backend_name(&r.backend),
            ..Default::default()
        });
    }
    rules.extend(default_rules(config, lb));
    for r in lb.tcp_routes() {
        let protocol = lb.listener(r.port).map_or(Protocol::Tcp, |l| l.protocol);
        let (service_id, selector, target_port) = target(config, lb, &r.backend);
        rules.push(PortRule {
            source_port: r.port,
            target_port,
            protocol: rprotocol(protocol),
            service_id,
            selector,
            backend_name: backend_name(&r.backend),
            ..Default::default()
        });
    }
    rules
}

/// The default backend's rules on every HTTP listener of `lb`: one per host
/// of `lb` without a rule for all its paths, and one without a host (unless
/// a route without a host covers every path). A hostname-only rule sorts
/// after the host's path rules and before every rule without a host (see
/// [`rule_order`]), so a host's unmatched paths reach the default backend,
/// not another route, as on the HAProxy driver.
fn default_rules(config: &RancherConfig, lb: &LoadBalancer) -> Vec<PortRule> {
    let Some(default) = lb.default_backend() else {
        return Vec::new();
    };
    let (service_id, selector, target_port) = target(config, lb, default);
    let mut rules = Vec::new();
    for l in lb.listeners().iter().filter(|l| l.protocol.is_http()) {
        let routes = || lb.http_routes().iter().filter(|r| r.port == l.port);
        let mut hosts: Vec<&HostMatch> = routes().map(|r| &r.host).collect();
        hosts.push(&HostMatch::Any);
        hosts.sort_by_key(|h| h.to_string());
        hosts.dedup();
        for host in hosts {
            let covered = routes().any(|r| {
                &r.host == host && r.path_match == PathMatch::Prefix && r.path.as_str() == "/"
            });
            if covered {
                continue;
            }
            rules.push(PortRule {
                source_port: l.port,
                target_port,
                protocol: rprotocol(l.protocol),
                hostname: (*host != HostMatch::Any).then(|| host.to_string()),
                service_id: service_id.clone(),
                selector: selector.clone(),
                backend_name: Some(format!(
                    "{}{BACKEND_SEPARATOR}{default}{DEFAULT_SUFFIX}",
                    lb.id()
                )),
                ..Default::default()
            });
        }
    }
    rules
}

/// Whether two groups of members can be served by one service: all want
/// instances, they have a port in common, and on every common port both
/// speak HTTP (or both HTTPS).
pub(super) fn can_join(a: &[&Member], b: &[&Member], global: bool) -> bool {
    if a.iter().chain(b).any(|m| !m.shareable(global)) {
        return false;
    }
    let mut overlap = false;
    for x in a.iter().flat_map(|m| &m.listeners) {
        for y in b.iter().flat_map(|m| &m.listeners) {
            if x.port == y.port {
                if !can_share(x.protocol, y.protocol) {
                    return false;
                }
                overlap = true;
            }
        }
    }
    overlap
}

/// The ports the members listen on.
pub(super) fn ports_of(parts: &[Part]) -> BTreeSet<u16> {
    parts
        .iter()
        .flat_map(|p| &p.member.listeners)
        .map(|l| l.port)
        .collect()
}

/// A service to create.
#[derive(Debug)]
pub(super) struct Creation {
    /// The service it replaces, whose name and external id it takes.
    pub(super) replaces: Option<usize>,
    /// The load balancer it is named after when it replaces none.
    pub(super) founder: LbId,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) ports: BTreeSet<u16>,
    pub(super) parts: Vec<Part>,
    pub(super) foreign: Vec<PortRule>,
}

/// What to do to the services (indexes into the slice given to [`plan`]).
#[derive(Debug, Default)]
pub(super) struct Layout {
    /// Services updated in place with these members.
    pub(super) update: Vec<(usize, Vec<Part>)>,
    /// Services removed (their members, if any, move to the creation).
    pub(super) remove: Vec<usize>,
    /// A new service, if one is needed.
    pub(super) create: Option<Creation>,
}

/// Where `part`'s load balancer goes among `services` (oldest first), given
/// the scheduler labels its placement asks for:
///
/// - it stays in the service it is in while it may share it (same labels,
///   compatible ports, a port in common with the others) or is alone there
///   and no older service could take it;
/// - otherwise it joins the oldest service it may share, or gets a service
///   of its own;
/// - a service keeps its published ports when it is updated in place: a
///   member that needs a port it does not publish, or other labels, makes it
///   be created again (Rancher cannot change either in place), and the new
///   one takes in every other service it may share with (so services that
///   came to clash merge);
/// - the services it leaves are updated without it, or removed when empty.
pub(super) fn plan(services: &[Shared], part: Part, labels: &BTreeMap<String, String>) -> Layout {
    let id = part.member.id.clone();
    let global = is_global(labels);
    let others = |i: usize| -> Vec<&Member> {
        services[i]
            .parts
            .iter()
            .filter(|p| p.member.id != id)
            .map(|p| &p.member)
            .collect()
    };
    let joinable = |i: usize| {
        let o = others(i);
        services[i].labels() == *labels && !o.is_empty() && can_join(&o, &[&part.member], global)
    };
    let holding: Vec<usize> = (0..services.len())
        .filter(|i| services[*i].holds(&id))
        .collect();
    let current = holding.first().copied();
    let candidates: Vec<usize> = (0..services.len())
        .filter(|i| Some(*i) != current && joinable(*i))
        .collect();
    let target = match current {
        Some(c) if !others(c).is_empty() && joinable(c) => Some(c),
        Some(c)
            if others(c).is_empty()
                && services[c].labels() == *labels
                && !candidates.iter().any(|i| *i < c) =>
        {
            Some(c)
        }
        _ => candidates
            .first()
            .copied()
            .or(current.filter(|c| others(*c).is_empty())),
    };

    let mut layout = Layout::default();
    for &i in &holding {
        if Some(i) == target {
            continue;
        }
        let rest: Vec<Part> = services[i]
            .parts
            .iter()
            .filter(|p| p.member.id != id)
            .cloned()
            .collect();
        if rest.is_empty() {
            layout.remove.push(i);
        } else {
            layout.update.push((i, rest));
        }
    }

    let mut parts = target.map_or_else(Vec::new, |t| services[t].parts.clone());
    match parts.iter_mut().find(|p| p.member.id == id) {
        Some(p) => *p = part,
        None => parts.push(part),
    }
    let needed = ports_of(&parts);
    if let Some(t) = target {
        let current = services[t].ports();
        let alone = parts.len() == 1;
        if services[t].labels() == *labels
            && needed.is_subset(&current)
            && (!alone || needed == current)
        {
            layout.update.push((t, parts));
            return layout;
        }
        layout.remove.push(t);
    }
    let mut creation = Creation {
        replaces: target,
        founder: target.and_then(|t| services[t].founder()).unwrap_or(id),
        labels: labels.clone(),
        ports: needed,
        parts,
        foreign: target.map_or_else(Vec::new, |t| services[t].foreign.clone()),
    };
    absorb(services, &mut layout, &mut creation, global);
    layout.create = Some(creation);
    layout
}

/// Moves into `creation` every service it may share with, until none is left.
fn absorb(services: &[Shared], layout: &mut Layout, creation: &mut Creation, global: bool) {
    loop {
        let theirs = |i: usize| -> Vec<Part> {
            layout
                .update
                .iter()
                .find(|(j, _)| *j == i)
                .map_or_else(|| services[i].parts.clone(), |(_, p)| p.clone())
        };
        let found = (0..services.len()).find(|&i| {
            if layout.remove.contains(&i) || services[i].labels() != creation.labels {
                return false;
            }
            let theirs = theirs(i);
            let a: Vec<&Member> = theirs.iter().map(|p| &p.member).collect();
            let b: Vec<&Member> = creation.parts.iter().map(|p| &p.member).collect();
            !a.is_empty() && can_join(&a, &b, global)
        });
        let Some(i) = found else { return };
        let moved = theirs(i);
        layout.update.retain(|(j, _)| *j != i);
        layout.remove.push(i);
        creation.ports.extend(ports_of(&moved));
        creation.parts.extend(moved);
        creation.foreign.extend(services[i].foreign.iter().cloned());
    }
}

/// A service's `lbConfig`, scale and member record, built from its members.
#[derive(Debug, Clone)]
pub(super) struct Built {
    pub(super) lb_config: LbConfig,
    pub(super) scale: u32,
    pub(super) record: serde_json::Value,
    /// What each member lost to an older one.
    pub(super) conflicts: BTreeMap<LbId, Vec<String>>,
}

type RuleKey = (u16, Option<String>, Option<String>);

/// Merges the members' rules (an older member keeps a host, path and port
/// that a newer one also routes; any member's route beats a default
/// backend's rule), orders them for Rancher's first-match routing (per port:
/// exact hosts, then wildcard hosts, then any host; the longest path first
/// within each), attaches every member's certificates (the oldest default
/// one as the default, the others offered by SNI), and scales to the largest
/// scale asked. `base` keeps the other `lbConfig` fields as they are.
pub(super) fn build(parts: &[Part], foreign: &[PortRule], base: Option<&LbConfig>) -> Built {
    let mut conflicts: BTreeMap<LbId, Vec<String>> = BTreeMap::new();
    let mut claimed: HashMap<RuleKey, Option<&LbId>> = HashMap::new();
    let key = |r: &PortRule| (r.source_port, r.hostname.clone(), r.path.clone());
    for r in foreign {
        claimed.entry(key(r)).or_insert(None);
    }
    let mut ours: Vec<PortRule> = Vec::new();
    // Routes first, then default backends, each in the order members joined.
    for defaults in [false, true] {
        for part in parts {
            for rule in part.rules.iter().filter(|r| is_default(r) == defaults) {
                match claimed.get(&key(rule)) {
                    None => {
                        claimed.insert(key(rule), Some(&part.member.id));
                        ours.push(rule.clone());
                    }
                    Some(Some(owner)) if *owner == &part.member.id => {}
                    Some(owner) => {
                        let by = owner.map_or_else(
                            || "a rule added to the Rancher service by hand".to_owned(),
                            |o| format!("load balancer {o} in the shared Rancher service"),
                        );
                        let host = rule.hostname.as_deref().unwrap_or("*");
                        let port = rule.source_port;
                        let lost = if defaults {
                            format!(
                                "the default backend for host {host} on port {port} gives way to a route of {by}"
                            )
                        } else {
                            format!(
                                "route {host}{} on port {port} is shadowed by {by}",
                                rule.path.as_deref().unwrap_or("/"),
                            )
                        };
                        conflicts
                            .entry(part.member.id.clone())
                            .or_default()
                            .push(lost);
                    }
                }
            }
        }
    }
    ours.sort_by_key(rule_order);
    for (i, rule) in ours.iter_mut().enumerate() {
        rule.priority = Some(i64::try_from(i + 1).unwrap_or(i64::MAX));
    }
    ours.extend(foreign.iter().cloned());

    let mut default: Option<(&LbId, &String)> = None;
    let mut others: Vec<String> = Vec::new();
    for part in parts {
        let m = &part.member;
        if let Some(d) = &m.default_certificate_id {
            match default {
                None => default = Some((&m.id, d)),
                Some((_, held)) if held == d => {}
                Some((owner, _)) => {
                    conflicts.entry(m.id.clone()).or_default().push(format!(
                        "its default certificate is offered by SNI only: load balancer \
                         {owner}, older in the shared Rancher service, has the default"
                    ));
                    others.push(d.clone());
                }
            }
        }
        others.extend(m.certificate_ids.iter().cloned());
    }
    let default = default.map(|(_, d)| d.clone());
    let mut seen = BTreeSet::new();
    others.retain(|c| Some(c) != default.as_ref() && seen.insert(c.clone()));

    let mut lb_config = base.cloned().unwrap_or_default();
    lb_config.port_rules = ours;
    lb_config.certificate_ids = others;
    lb_config.default_certificate_id = default;
    let record = Record {
        members: parts.iter().map(|p| p.member.clone()).collect(),
    };
    Built {
        lb_config,
        scale: parts.iter().map(|p| p.member.scale).max().unwrap_or(0),
        record: serde_json::to_value(&record).unwrap_or_default(),
        conflicts,
    }
}

/// First-match order: by port, exact hosts before wildcards before any
/// host, longer paths first.
fn rule_order(r: &PortRule) -> (u16, u8, std::cmp::Reverse<usize>, String, String, String) {
    let host_rank = match r.hostname.as_deref() {
        Some(h) if h.starts_with('*') => 1,
        Some(_) => 0,
        None => 2,
    };
    (
        r.source_port,
        host_rank,
        std::cmp::Reverse(r.path.as_deref().map_or(0, str::len)),
        r.hostname.clone().unwrap_or_default(),
        r.path.clone().unwrap_or_default(),
        r.backend_name.clone().unwrap_or_default(),
    )
}

/// Whether two `lbConfig`s route, offer certificates and carry the same
/// fields that this driver sets.
pub(super) fn same_config(a: &LbConfig, b: &LbConfig) -> bool {
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
            r.priority,
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

#[cfg(test)]
mod tests;
