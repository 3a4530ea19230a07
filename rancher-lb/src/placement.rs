//! Placing load balancer instances on hosts.
//!
//! [`place`] puts each load balancer's [`scale`](crate::model::LoadBalancer::scale)
//! instances on distinct eligible hosts:
//!
//! - a host is eligible when it is healthy, carries every required label and
//!   none of the forbidden ones; a `global` load balancer gets one instance on
//!   every eligible host whatever its `scale`;
//! - two load balancers share a host only where their listeners can share: HTTP
//!   listeners on the same port share one frontend (and so do HTTPS ones); any
//!   other pair of listeners on the same port conflicts;
//! - instances already placed stay where they are while their host stays
//!   eligible (an update never moves an instance without cause), and all kept
//!   instances are accounted for before any new one is placed;
//! - new instances go to preferred hosts first, then to hosts carrying more
//!   preferred and fewer avoided labels, then to the least loaded hosts;
//! - a load balancer that cannot get all its instances gets a [`Shortfall`]
//!   saying why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{LbId, LoadBalancer, Protocol};

/// A host instances can run on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// The address instances on this host bind and clients reach.
    pub address: IpAddr,
    /// Host labels, matched against required labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether the host can run instances.
    pub healthy: bool,
}

impl Host {
    /// A healthy host without labels.
    pub fn new(address: IpAddr) -> Self {
        Self {
            address,
            labels: BTreeMap::new(),
            healthy: true,
        }
    }

    /// The same host with a label.
    #[must_use]
    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    fn has_labels(&self, required: &BTreeMap<String, String>) -> bool {
        required.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }

    /// How many of `labels` this host carries with those values.
    fn matching(&self, labels: &BTreeMap<String, String>) -> usize {
        labels
            .iter()
            .filter(|(k, v)| self.labels.get(*k) == Some(*v))
            .count()
    }

    /// Why this host cannot run `lb` at all, whatever else runs there.
    fn ineligible(&self, lb: &LoadBalancer) -> Option<Exclusion> {
        let p = lb.placement();
        if !self.healthy {
            Some(Exclusion::Unhealthy)
        } else if !self.has_labels(&p.required_labels) {
            Some(Exclusion::MissingLabels)
        } else if self.matching(&p.forbidden_labels) > 0 {
            Some(Exclusion::ForbiddenLabels)
        } else {
            None
        }
    }
}

enum Exclusion {
    Unhealthy,
    MissingLabels,
    ForbiddenLabels,
}

/// How many instances `lb` wants on `hosts`: its scale, or for a global load
/// balancer one per eligible host (at least one, so that having none shows
/// as a shortfall).
fn wanted(hosts: &[Host], lb: &LoadBalancer) -> usize {
    if lb.placement().global {
        hosts
            .iter()
            .filter(|h| h.ineligible(lb).is_none())
            .count()
            .max(1)
    } else {
        lb.scale() as usize
    }
}

/// Where each load balancer's instances are, by host address, in placement order.
pub type Assignment = BTreeMap<LbId, Vec<IpAddr>>;

/// The placement of one load balancer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Hosts running an instance.
    pub hosts: Vec<IpAddr>,
    /// Set when fewer than `scale` instances could be placed.
    pub shortfall: Option<Shortfall>,
}

/// Why a load balancer got fewer instances than it asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shortfall {
    /// Instances asked for.
    pub wanted: u32,
    /// Instances placed.
    pub placed: u32,
    /// Hosts not used because they are unhealthy.
    pub unhealthy: usize,
    /// Hosts not used because they lack a required label.
    pub missing_labels: usize,
    /// Hosts not used because they carry a forbidden label.
    pub forbidden_labels: usize,
    /// Hosts not used because a listener port is taken there.
    pub port_conflicts: usize,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wanted {}, placed {}: ", self.wanted, self.placed)?;
        let mut parts = Vec::new();
        let plural = |n: usize| if n == 1 { "host" } else { "hosts" };
        if self.unhealthy > 0 {
            parts.push(format!(
                "{} {} unhealthy",
                self.unhealthy,
                plural(self.unhealthy)
            ));
        }
        if self.missing_labels > 0 {
            parts.push(format!(
                "{} {} without the required labels",
                self.missing_labels,
                plural(self.missing_labels)
            ));
        }
        if self.forbidden_labels > 0 {
            parts.push(format!(
                "{} {} with a forbidden label",
                self.forbidden_labels,
                plural(self.forbidden_labels)
            ));
        }
        if self.port_conflicts > 0 {
            parts.push(format!(
                "{} {} with a conflicting listener port",
                self.port_conflicts,
                plural(self.port_conflicts)
            ));
        }
        if parts.is_empty() {
            f.write_str("not enough hosts")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Whether two listeners on the same port of one host can share it.
pub fn can_share(a: Protocol, b: Protocol) -> bool {
    a == b && a.is_http()
}

#[derive(Default)]
struct Usage {
    ports: BTreeMap<u16, Protocol>,
    instances: usize,
}

impl Usage {
    fn fits(&self, lb: &LoadBalancer) -> bool {
        lb.listeners()
            .iter()
            .all(|l| match self.ports.get(&l.port) {
                None => true,
                Some(p) => can_share(*p, l.protocol),
            })
    }

    fn take(&mut self, lb: &LoadBalancer) {
        for l in lb.listeners() {
            self.ports.insert(l.port, l.protocol);
        }
        self.instances += 1;
    }
}

/// Places every load balancer on `hosts`, keeping the `current` assignment
/// where it is still valid. Returns an outcome for every load balancer given.
pub fn place(
    hosts: &[Host],
    lbs: &[&LoadBalancer],
    current: &Assignment,
) -> BTreeMap<LbId, Outcome> {
    let mut lbs: Vec<&LoadBalancer> = lbs.to_vec();
    lbs.sort_by(|a, b| a.id().cmp(b.id()));
    let by_addr: BTreeMap<IpAddr, &Host> = hosts.iter().map(|h| (h.address, h)).collect();
    let mut usage: BTreeMap<IpAddr, Usage> = BTreeMap::new();
    let mut placed: BTreeMap<LbId, Vec<IpAddr>> = BTreeMap::new();

    // Keep every valid existing instance first.
    for lb in &lbs {
        let mut kept = Vec::new();
        let wanted = wanted(hosts, lb);
        for addr in current.get(lb.id()).into_iter().flatten() {
            if kept.len() >= wanted || kept.contains(addr) {
                continue;
            }
            let Some(host) = by_addr.get(addr) else {
                continue;
            };
            if host.ineligible(lb).is_some() {
                continue;
            }
            let u = usage.entry(*addr).or_default();
            if !u.fits(lb) {
                continue;
            }
            u.take(lb);
            kept.push(*addr);
        }
        placed.insert(lb.id().clone(), kept);
    }

    // Then add new instances.
    let mut out = BTreeMap::new();
    for lb in &lbs {
        let mine = placed.remove(lb.id()).unwrap_or_default();
        let mut mine_set: BTreeSet<IpAddr> = mine.iter().copied().collect();
        let mut mine = mine;
        let wanted = wanted(hosts, lb);
        let p = lb.placement();
        while mine.len() < wanted {
            let best = hosts
                .iter()
                .filter(|h| !mine_set.contains(&h.address))
                .filter(|h| h.ineligible(lb).is_none())
                .filter(|h| usage.get(&h.address).is_none_or(|u| u.fits(lb)))
                .min_by_key(|h| {
                    (
                        p.preferred_hosts
                            .iter()
                            .position(|a| *a == h.address)
                            .unwrap_or(usize::MAX),
                        h.matching(&p.avoided_labels),
                        std::cmp::Reverse(h.matching(&p.preferred_labels)),
                        usage.get(&h.address).map_or(0, |u| u.instances),
                        h.address,
                    )
                });
            let Some(best) = best else { break };
            usage.entry(best.address).or_default().take(lb);
            mine_set.insert(best.address);
            mine.push(best.address);
        }
        let shortfall = (mine.len() < wanted).then(|| {
            let mut s = Shortfall {
                wanted: u32::try_from(wanted).unwrap_or(u32::MAX),
                placed: u32::try_from(mine.len()).unwrap_or(u32::MAX),
                ..Default::default()
            };
            for h in hosts.iter().filter(|h| !mine_set.contains(&h.address)) {
                match h.ineligible(lb) {
                    Some(Exclusion::Unhealthy) => s.unhealthy += 1,
                    Some(Exclusion::MissingLabels) => s.missing_labels += 1,
                    Some(Exclusion::ForbiddenLabels) => s.forbidden_labels += 1,
                    None => s.port_conflicts += 1,
                }
            }
            s
        });
        out.insert(
            lb.id().clone(),
            Outcome {
                hosts: mine,
                shortfall,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackendSpec, ListenerSpec, LoadBalancerSpec, PlacementSpec, TcpRouteSpec};

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn hosts(n: u8) -> Vec<Host> {
        (2..2 + n).map(|i| Host::new(ip(i))).collect()
    }

    fn lb(id: &str, scale: u32, listeners: &[(u32, Protocol)]) -> LoadBalancer {
        let tcp_routes = listeners
            .iter()
            .filter(|(_, p)| !p.is_http())
            .map(|(port, _)| TcpRouteSpec {
                port: *port,
                backend: "b".into(),
            })
            .collect();
        LoadBalancer::new(&LoadBalancerSpec {
            id: id.into(),
            listeners: listeners
                .iter()
                .map(|(port, protocol)| ListenerSpec {
                    port: *port,
                    protocol: *protocol,
                })
                .collect(),
            tcp_routes,
            backends: vec![BackendSpec {
                name: "b".into(),
                ..Default::default()
            }],
            scale,
            ..Default::default()
        })
        .unwrap()
    }

    fn assignment(out: &BTreeMap<LbId, Outcome>) -> Assignment {
        out.iter()
            .map(|(k, v)| (k.clone(), v.hosts.clone()))
            .collect()
    }

    #[test]
    fn instances_go_to_distinct_hosts() {
        let a = lb("a", 3, &[(80, Protocol::Http)]);
        let out = place(&hosts(3), &[&a], &Assignment::new());
        let mut got = out[a.id()].hosts.clone();
        got.sort();
        assert_eq!(got, vec![ip(2), ip(3), ip(4)]);
        assert_eq!(out[a.id()].shortfall, None);
    }

    #[test]
    fn http_listeners_share_and_tcp_listeners_conflict() {
        let a = lb("a", 2, &[(80, Protocol::Http)]);
        let b = lb("b", 2, &[(80, Protocol::Http)]);
        let out = place(&hosts(2), &[&a, &b], &Assignment::new());
        assert_eq!(out[b.id()].hosts.len(), 2, "http on :80 shares");

        let t1 = lb("t1", 2, &[(5432, Protocol::Tcp)]);
        let t2 = lb("t2", 2, &[(5432, Protocol::Tcp)]);
        let out = place(&hosts(3), &[&t1, &t2], &Assignment::new());
        assert_eq!(out[t1.id()].hosts.len(), 2);
        assert_eq!(out[t2.id()].hosts.len(), 1);
        let s = out[t2.id()].shortfall.clone().unwrap();
        assert_eq!(
            s.to_string(),
            "wanted 2, placed 1: 2 hosts with a conflicting listener port"
        );

        let h = lb("h", 1, &[(443, Protocol::Http)]);
        let s = lb("s", 1, &[(443, Protocol::Tcp)]);
        let both = place(&hosts(1), &[&h, &s], &Assignment::new());
        assert_eq!(both[h.id()].hosts.len() + both[s.id()].hosts.len(), 1);
    }

    #[test]
    fn placement_is_stable_across_updates() {
        let a = lb("a", 2, &[(80, Protocol::Http)]);
        let hs = hosts(4);
        let mut current = Assignment::new();
        current.insert(a.id().clone(), vec![ip(5), ip(3)]);
        let out = place(&hs, &[&a], &current);
        assert_eq!(out[a.id()].hosts, vec![ip(5), ip(3)]);

        // Scale up keeps the existing two and adds one.
        let a3 = a.clone().with_scale(3);
        let out = place(&hs, &[&a3], &current);
        assert_eq!(&out[a3.id()].hosts[..2], &[ip(5), ip(3)]);
        assert_eq!(out[a3.id()].hosts.len(), 3);

        // Scale down drops from the end.
        let a1 = a.with_scale(1);
        let out = place(&hs, &[&a1], &current);
        assert_eq!(out[a1.id()].hosts, vec![ip(5)]);
    }

    #[test]
    fn instances_move_off_failed_hosts() {
        let a = lb("a", 2, &[(80, Protocol::Http)]);
        let mut hs = hosts(3);
        let first = place(&hs, &[&a], &Assignment::new());
        let failed = first[a.id()].hosts[0];
        hs.iter_mut().find(|h| h.address == failed).unwrap().healthy = false;
        let out = place(&hs, &[&a], &assignment(&first));
        assert!(!out[a.id()].hosts.contains(&failed));
        assert_eq!(out[a.id()].hosts.len(), 2);
        assert!(
            out[a.id()].hosts.contains(&first[a.id()].hosts[1]),
            "the other stays"
        );
    }

    #[test]
    fn labels_and_preferences_are_honoured() {
        let mut spec = LoadBalancerSpec {
            id: "a".into(),
            listeners: vec![ListenerSpec {
                port: 80,
                protocol: Protocol::Http,
            }],
            scale: 5,
            placement: PlacementSpec {
                required_labels: [("zone".to_owned(), "a".to_owned())].into(),
                preferred_hosts: vec![ip(4)],
                ..Default::default()
            },
            ..Default::default()
        };
        let mut hs = vec![
            Host::new(ip(2)).with_label("zone", "a"),
            Host::new(ip(3)).with_label("zone", "b"),
            Host::new(ip(4)).with_label("zone", "a"),
            Host::new(ip(5)),
        ];
        hs.push(Host {
            healthy: false,
            ..Host::new(ip(6)).with_label("zone", "a")
        });
        let a = LoadBalancer::new(&spec).unwrap();
        let out = place(&hs, &[&a], &Assignment::new());
        assert_eq!(out[a.id()].hosts, vec![ip(4), ip(2)]);
        assert_eq!(
            out[a.id()].shortfall.as_ref().unwrap().to_string(),
            "wanted 5, placed 2: 1 host unhealthy, 2 hosts without the required labels"
        );
        spec.scale = 0;
        let a = LoadBalancer::new(&spec).unwrap();
        let out = place(&hs, &[&a], &Assignment::new());
        assert!(out[a.id()].hosts.is_empty());
        assert_eq!(out[a.id()].shortfall, None);
    }

    fn labelled(placement: PlacementSpec, scale: u32) -> LoadBalancer {
        LoadBalancer::new(&LoadBalancerSpec {
            id: "a".into(),
            listeners: vec![ListenerSpec {
                port: 80,
                protocol: Protocol::Http,
            }],
            scale,
            placement,
            ..Default::default()
        })
        .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn forbidden_labels_exclude_hosts_and_soft_labels_order_them() {
        let hs = vec![
            Host::new(ip(2)).with_label("etcd", "true"),
            Host::new(ip(3)).with_label("disk", "slow"),
            Host::new(ip(4)),
            Host::new(ip(5)).with_label("lb", "yes"),
        ];
        let a = labelled(
            PlacementSpec {
                forbidden_labels: labels(&[("etcd", "true")]),
                preferred_labels: labels(&[("lb", "yes")]),
                avoided_labels: labels(&[("disk", "slow")]),
                ..Default::default()
            },
            4,
        );
        let out = place(&hs, &[&a], &Assignment::new());
        // Preferred first, the avoided host last, the etcd host never.
        assert_eq!(out[a.id()].hosts, vec![ip(5), ip(4), ip(3)]);
        assert_eq!(
            out[a.id()].shortfall.as_ref().unwrap().to_string(),
            "wanted 4, placed 3: 1 host with a forbidden label"
        );

        // A host that gains a forbidden label loses its instance.
        let mut moved = hs.clone();
        moved[2] = Host::new(ip(4)).with_label("etcd", "true");
        let out = place(&moved, &[&a], &assignment(&out));
        assert_eq!(out[a.id()].hosts, vec![ip(5), ip(3)]);

        // A label both required and forbidden is refused up front.
        let both = LoadBalancer::new(&LoadBalancerSpec {
            id: "a".into(),
            placement: PlacementSpec {
                required_labels: labels(&[("etcd", "true")]),
                forbidden_labels: labels(&[("etcd", "true")]),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            both.to_string().contains("placement.forbidden_labels"),
            "{both}"
        );
    }

    #[test]
    fn global_places_one_instance_on_every_eligible_host() {
        let mut hs = vec![
            Host::new(ip(2)).with_label("lb", "yes"),
            Host::new(ip(3)).with_label("lb", "yes"),
            Host::new(ip(4)),
        ];
        let global = PlacementSpec {
            required_labels: labels(&[("lb", "yes")]),
            global: true,
            ..Default::default()
        };
        // The scale is ignored.
        let a = labelled(global.clone(), 1);
        let out = place(&hs, &[&a], &Assignment::new());
        assert_eq!(out[a.id()].hosts, vec![ip(2), ip(3)]);
        assert_eq!(out[a.id()].shortfall, None);

        // A new eligible host gets an instance; the others stay.
        hs.push(Host::new(ip(5)).with_label("lb", "yes"));
        let out = place(&hs, &[&a], &assignment(&out));
        assert_eq!(out[a.id()].hosts, vec![ip(2), ip(3), ip(5)]);

        // A port taken by another load balancer is a shortfall.
        let tcp = lb("b-tcp", 1, &[(80, Protocol::Tcp)]);
        let mut current = assignment(&out);
        current.insert(tcp.id().clone(), vec![ip(3)]);
        current.get_mut(a.id()).unwrap().retain(|h| *h != ip(3));
        let out = place(&hs, &[&a, &tcp], &current);
        assert_eq!(out[a.id()].hosts, vec![ip(2), ip(5)]);
        assert_eq!(
            out[a.id()].shortfall.as_ref().unwrap().to_string(),
            "wanted 3, placed 2: 1 host without the required labels, 1 host with a conflicting listener port"
        );

        // No eligible host at all is a shortfall too, not silence.
        let none = labelled(
            PlacementSpec {
                required_labels: labels(&[("lb", "nowhere")]),
                global: true,
                ..Default::default()
            },
            1,
        );
        let out = place(&hs, &[&none], &Assignment::new());
        assert!(out[none.id()].hosts.is_empty());
        assert_eq!(
            out[none.id()].shortfall.as_ref().unwrap().to_string(),
            "wanted 1, placed 0: 4 hosts without the required labels"
        );
    }

    #[test]
    fn existing_instances_are_not_displaced_by_new_load_balancers() {
        let old = lb("z-old", 1, &[(5432, Protocol::Tcp)]);
        let new = lb("a-new", 1, &[(5432, Protocol::Tcp)]);
        let hs = hosts(1);
        let first = place(&hs, &[&old], &Assignment::new());
        let out = place(&hs, &[&new, &old], &assignment(&first));
        assert_eq!(out[old.id()].hosts, vec![ip(2)]);
        assert!(out[new.id()].hosts.is_empty());
    }

    #[test]
    fn new_instances_spread_to_the_least_loaded_host() {
        let a = lb("a", 1, &[(80, Protocol::Http)]);
        let b = lb("b", 1, &[(80, Protocol::Http)]);
        let out = place(&hosts(2), &[&a, &b], &Assignment::new());
        assert_ne!(out[a.id()].hosts, out[b.id()].hosts);
    }
}
