//! The status of each member of a shared service.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use rancher_client::LoadBalancerService;

use super::shared::{Part, is_global};
use crate::driver::{Condition, ConditionKind, Instance, InstanceState, Status};
use crate::model::{LbId, LoadBalancer};

/// The distinct host addresses of the service's instances.
fn addresses(svc: &LoadBalancerService) -> Vec<IpAddr> {
    let set: BTreeSet<IpAddr> = svc
        .public_endpoints
        .iter()
        .filter_map(|ep| ep.ip_address.parse().ok())
        .collect();
    set.into_iter().collect()
}

fn settled(svc: &LoadBalancerService) -> bool {
    svc.meta.transitioning.as_deref().is_none_or(|t| t == "no")
}

/// How many instances a member wants: its scale, or for a global service at
/// least one (the eligible hosts are Rancher's to know).
fn wanted(part: &Part, global: bool) -> u32 {
    if global { 1 } else { part.member.scale }
}

/// Whether some member of the settled service has fewer instances than it
/// asked for (then [`statuses`] wants to know who holds the ports).
pub(super) fn short(
    svc: &LoadBalancerService,
    parts: &[Part],
    labels: &BTreeMap<String, String>,
) -> bool {
    let placed = u32::try_from(addresses(svc).len()).unwrap_or(u32::MAX);
    let global = is_global(labels);
    settled(svc) && parts.iter().any(|p| placed < wanted(p, global))
}

/// Every member's status: the service's instances serve all of them, so each
/// lists every instance's host. A member short of its own scale gets a
/// shortfall with Rancher's reason and `holders` (who holds the ports on
/// the hosts left out); a member with a backend without endpoints, or a
/// route or certificate lost to an older member, gets a condition saying so.
pub(super) fn statuses(
    svc: &LoadBalancerService,
    parts: &[Part],
    labels: &BTreeMap<String, String>,
    conflicts: &BTreeMap<LbId, Vec<String>>,
    models: &BTreeMap<LbId, LoadBalancer>,
    holders: Option<&str>,
) -> Vec<(LbId, Status)> {
    let addresses = addresses(svc);
    let placed = u32::try_from(addresses.len()).unwrap_or(u32::MAX);
    let global = is_global(labels);
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let id = &part.member.id;
        let mut status = Status {
            instances: addresses
                .iter()
                .map(|a| Instance {
                    host: *a,
                    state: InstanceState::Running,
                })
                .collect(),
            addresses: addresses.clone(),
            conditions: Vec::new(),
        };
        let want = wanted(part, global);
        if settled(svc) && placed < want {
            let why = svc
                .meta
                .transitioning_message
                .clone()
                .unwrap_or_else(|| "not enough eligible hosts".into());
            let mut message = format!("wanted {want}, placed {placed}: {why}");
            if let Some(h) = holders.filter(|h| !h.is_empty()) {
                message.push_str("; ");
                message.push_str(h);
            }
            status.conditions.push(Condition {
                kind: ConditionKind::Shortfall,
                message,
            });
        }
        for b in models.get(id).into_iter().flat_map(|m| m.backends()) {
            if b.endpoints.is_empty() {
                status.conditions.push(Condition {
                    kind: ConditionKind::NoEndpoints,
                    message: format!("backend {} has no endpoints", b.name),
                });
            }
        }
        for c in conflicts.get(id).into_iter().flatten() {
            status.conditions.push(Condition {
                kind: ConditionKind::RouteConflict,
                message: c.clone(),
            });
        }
        out.push((id.clone(), status));
    }
    out
}
